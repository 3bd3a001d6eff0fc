//! The engine: one tokio runtime, one native worker pool, one in-flight ledger and one
//! completion queue. Hosts submit requests and poll completions; every accepted request gets
//! exactly one completion, which holds its in-flight slot until it is released.
//!
//! This file is the table of contents. The [`Engine`] API is split by concern, one file each:
//!
//! | file | concern |
//! |---|---|
//! | `types.rs` | the public value types: [`Submission`], [`Completion`], [`Polled`], ... |
//! | `wiring.rs` | the [`Engine`] value and [`Engine::new`]: runtime, pool, shared state |
//! | `registration.rs` | registering handlers, lookup, concurrency limits |
//! | `pipeline.rs` | registering pipelines (flattening nested ones) |
//! | `builtins.rs` | the built-in handlers: the one place the engine names `src/handlers` |
//! | `submit.rs` | the submit path: resolve, reserve intake, take slots, start |
//! | `batch.rs` | batches: n payloads as one unit with one completion ([`Engine::submit_items`]) |
//! | `completions.rs` | poll, release, the notify fd, hook and wake |
//! | `lifecycle.rs` | cancel, shutdown, and the teardown in `Drop` |
//! | `observe.rs` | stats, per-handler figures, Prometheus text, in-flight JSON, log hook |
//!
//! The machinery under the API: `dispatch.rs` (moving a request through its stages and the one
//! place a completion is posted), `request.rs` (one request's state machine), `ledger.rs`,
//! `queue.rs`, `lend.rs` (payloads the host lends instead of having them copied), `registry.rs`,
//! `policy/` (what stands between a request and its handler: the concurrency limit, the rate
//! limit, the circuit breaker, one file per policy), `pool.rs`, `job.rs` (one pool job and
//! running it), `handoff.rs` (a submit batch's pool jobs sent and run in chunks), `lanes.rs`,
//! `timer.rs`, `recycle.rs`, `spin.rs` (whether a waiter spins before it sleeps), `shared.rs`,
//! `stats.rs`, `metrics.rs`, `exposition.rs`, `log.rs`, `fork.rs`, `sync.rs`.

// The Engine API, one concern per file.
mod batch;
mod builtins;
mod completions;
mod lifecycle;
mod observe;
mod pipeline;
mod registration;
mod submit;
mod types;
mod wiring;

// The machinery under it.
mod config;
mod dispatch;
mod exposition;
mod fork;
mod handoff;
mod hook_slot;
mod job;
mod lanes;
mod ledger;
pub(crate) mod lend;
mod log;
#[cfg(all(test, portway_loom))]
mod loom_models;
mod metrics;

mod policy;
mod pool;
mod queue;
mod recycle;
mod registry;
mod request;
mod shared;
mod spin;
mod stats;
mod sync;
mod timer;

pub use crate::contract::{Body, Meta, Outcome, portway_meta};
pub use batch::{BatchColumns, BatchItems};
pub use config::{Config, LogSetting};
pub use log::{LogHook, LogLevel};
pub use metrics::{HandlerStats, LatencySummary};
pub use policy::{HedgeSettings, PolicySettings, PolicyState};
pub use queue::NotifyHook;
pub use stats::{STATUS_SLOTS, StatsSnapshot};
pub use types::{
    Completion, MAX_PIPELINE_STAGES, OwnedCompletion, Polled, ShutdownMode, Submission,
};
pub use wiring::Engine;
