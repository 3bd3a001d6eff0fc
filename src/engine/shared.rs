//! The state an engine's threads share: registry, ledger, completion queue, counters and the
//! handles used to start work (runtime handle, pool channel).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use std::time::Instant;

use super::config::Config;
use super::lanes::Lanes;
use super::ledger::Ledger;
use super::log::Logger;
use super::pool::{BusyFlags, PoolJob, PoolMsg};
use super::queue::CompletionQueue;
use super::recycle::Recycler;
use super::registry::Registry;
use super::stats::Counters;
use super::timer::Timers;

pub(crate) struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub ledger: Ledger,
    pub queue: CompletionQueue,
    pub counters: Counters,
    pub pool_tx: flume::Sender<PoolMsg>,
    pub pool_workers: usize,
    /// Pool threads inside a handler call right now.
    pub pool_busy: BusyFlags,
    /// The jobs of the chunk each pool worker runs (see `lanes.rs`).
    pub pool_lanes: Lanes<PoolJob>,
    pub logger: Logger,
    /// The `sleep` handler's timer (its driver task holds it too).
    pub timers: std::sync::Arc<Timers>,
    pub rt: tokio::runtime::Handle,
    /// Released requests kept for reuse by the next submits.
    pub recycler: Recycler,
    /// Next request id; ids start at 1 and are never reused.
    pub next_id: AtomicU64,
    /// Set by a draining shutdown with a deadline.
    pub drain_deadline: Mutex<Option<Instant>>,
}
