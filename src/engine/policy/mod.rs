//! The policy layer: what stands between a request and its handler, per handler, without the
//! engine knowing which policies there are.
//!
//! `dispatch.rs` asks a handler's [`Policies`] one question — may this run start now? — and
//! gets the ticket back with a [`Permit`] (start it), or nothing (a policy kept the ticket and
//! will start it later through [`dispatch::enter_admitted`], or finished the request itself).
//! Dropping the permit ends the run, which lets the policies start what they held back. When
//! no policy is set ([`Policies::holds_nothing_back`]), dispatch skips the layer entirely: no
//! lock, no permit, no reference count.
//!
//! One policy per file, each owning its state and its knob:
//! - `limit.rs`: the concurrency limit (`portway_handler_set_concurrency`).
//!
//! A new policy (a rate limit, a breaker, hedging) is a file here, a field in [`Policies`],
//! a step in [`Policies::admit`] and one in [`Permit`]'s `Drop`; dispatch does not change.
//! Waiting must never hold a thread: a policy parks the [`Ticket`], not the caller.

mod limit;

use std::sync::Arc;

use super::dispatch;
use super::registry::HandlerEntry;
use super::request::Request;
use super::shared::Shared;
use limit::{Admission, ConcurrencyLimit};

/// Work waiting to pass a handler's policies: run `stage` of `req` with `payload`.
pub(crate) struct Ticket {
    pub req: Arc<Request>,
    pub stage: usize,
    pub payload: Vec<u8>,
}

/// The policies of one handler.
pub(crate) struct Policies {
    limit: ConcurrencyLimit,
}

impl Policies {
    /// No policy set: everything passes.
    pub fn new() -> Self {
        Policies {
            limit: ConcurrencyLimit::new(),
        }
    }

    /// True when no policy is set, so a run may start without asking (the common case).
    pub fn holds_nothing_back(&self) -> bool {
        self.limit.get() == 0
    }

    /// Admits `ticket` now (returning it, with a permit when a policy needs to hear that the
    /// run ended) or keeps it until a policy lets it start.
    pub fn admit(
        &self,
        shared: &Arc<Shared>,
        entry: &Arc<HandlerEntry>,
        ticket: Ticket,
    ) -> Option<(Ticket, Option<Permit>)> {
        match self.limit.admit(ticket) {
            Admission::Free(ticket) => Some((ticket, None)),
            Admission::Counted(ticket) => Some((ticket, Some(Permit::new(shared, entry)))),
            Admission::Parked => None,
        }
    }

    /// Drops every ticket a policy holds (engine teardown: breaks request -> handler cycles).
    pub fn clear(&self) {
        self.limit.clear();
    }
}

/// Proof of one admitted run; dropping it ends the run and starts what the policies let in.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    entry: Arc<HandlerEntry>,
}

impl Permit {
    fn new(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>) -> Self {
        Permit {
            shared: shared.clone(),
            entry: entry.clone(),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let startable = self.entry.policies.limit.release_one();
        start_all(&self.shared, &self.entry, startable);
    }
}

/// Sets handler `entry`'s concurrency limit (0 = none) and starts what the new limit lets in.
pub(crate) fn set_concurrency(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>, limit: u32) {
    let startable = entry.policies.limit.set(limit);
    start_all(shared, entry, startable);
}

/// Starts tickets a policy let in, each with its own permit.
fn start_all(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>, tickets: Vec<Ticket>) {
    for ticket in tickets {
        dispatch::enter_admitted(shared, ticket, Some(Permit::new(shared, entry)));
    }
}
