//! What an engine tells about itself: counters, per-handler figures, the Prometheus text, the
//! in-flight snapshot and the log hook.

use super::Engine;
use super::exposition;
use super::log::{LogHook, LogLevel};
use super::metrics::HandlerStats;
use super::registry::HandlerKind;
use super::stats::StatsSnapshot;
use crate::error::Result;

impl Engine {
    /// Latency and completion figures of one handler (for a pipeline: whole requests; each
    /// stage handler's own figures include its runs as a stage).
    pub fn handler_stats(&self, id: u32) -> Result<HandlerStats> {
        self.check_fork()?;
        let entry = self.shared.registry.get(id)?;
        Ok(entry.metrics.snapshot(entry.id, &entry.name, &[]).0)
    }

    /// The Prometheus text exposition of this engine's metrics.
    pub fn metrics_text(&self) -> Result<String> {
        let engine = self.stats()?;
        let bounds = exposition::bucket_bounds_ns();
        let handlers: Vec<exposition::HandlerFigures> = self
            .shared
            .registry
            .all()
            .iter()
            .map(|e| {
                let (stats, queue_buckets, run_buckets) =
                    e.metrics.snapshot(e.id, &e.name, &bounds);
                let mut extra = match &e.kind {
                    HandlerKind::Async(h) => h.metrics(),
                    _ => Vec::new(),
                };
                extra.extend(e.policies.metrics());
                exposition::HandlerFigures {
                    stats,
                    queue_buckets,
                    run_buckets,
                    extra,
                }
            })
            .collect();
        let busy = self.shared.pool_busy.count();
        Ok(exposition::prometheus(&engine, busy, &handlers))
    }

    /// A JSON snapshot of the requests in flight, oldest first, at most `limit` of them.
    pub fn inflight_json(&self, limit: usize) -> Result<String> {
        self.check_fork()?;
        // A batch's items not yet completed are listed too, each with its batch's id.
        let mut entries = Vec::new();
        for req in self.shared.ledger.snapshot() {
            if let Some(batch) = req.batch() {
                entries.extend(batch.pending().into_iter().map(|item| (item, Some(req.id))));
            }
            entries.push((req, None));
        }
        Ok(exposition::inflight_json(entries, limit))
    }

    /// Installs (or removes, with None) the log hook; events below `min` are dropped.
    /// Returns once the hook it replaced is no longer running (at once from inside a hook).
    pub fn set_log(&self, hook: Option<LogHook>, min: LogLevel) -> Result<()> {
        self.check_fork()?;
        self.shared.logger.set(hook, min);
        Ok(())
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Result<StatsSnapshot> {
        self.check_fork()?;
        Ok(self.shared.counters.snapshot(
            self.shared.ledger.in_flight(),
            self.shared.pool_workers as u64,
        ))
    }
}
