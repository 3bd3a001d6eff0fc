//! The concurrency slot a hedge holds. `max_concurrency` caps the calls of a handler running at
//! once, and a hedge is one more call (on the pool, one more worker), so under a limit it takes
//! a slot as any run does (Envoy counts hedges against its breaker's `max_requests` too): only
//! a slot free now — a hedge never waits, nor passes a request waiting for a slot — or it is
//! skipped (`hedges_skipped`) and the run goes on with its first attempt alone.

use std::sync::Arc;

use super::super::super::registry::HandlerEntry;
use super::super::super::shared::Shared;
use super::super::start_all;

/// A slot of the concurrency limit held by a hedge; dropping it (the hedge ended, or the race
/// did) gives it back and starts what waited for it.
pub(crate) struct HedgeSlot {
    shared: Arc<Shared>,
    entry: Arc<HandlerEntry>,
}

/// A slot for a hedge of a run of `entry`: `Some(None)` without a limit (nothing to hold),
/// `Some(Some(slot))` when one was free, `None` when the limit is full.
pub(crate) fn take(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>) -> Option<Option<HedgeSlot>> {
    let counted = entry.policies.limit.try_take()?;
    Some(counted.then(|| HedgeSlot {
        shared: shared.clone(),
        entry: entry.clone(),
    }))
}

impl Drop for HedgeSlot {
    fn drop(&mut self) {
        let startable = self.entry.policies.limit.release_one();
        start_all(&self.shared, &self.entry, startable);
    }
}
