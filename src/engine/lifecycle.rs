//! The end of requests and of the engine: cancel, cancel-all, shutdown (drain or cancel now)
//! and the teardown in `Drop`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use super::dispatch;
use super::log::LogLevel;
use super::shared::Shared;
use super::types::ShutdownMode;
use crate::contract::Outcome;
use crate::error::{Error, Result};
use crate::status::Status;

impl Engine {
    /// Cancels request `id`. Ok when it was still in flight (its completion will say
    /// `PORTWAY_CANCELLED`); `NotFound` when unknown or already completed.
    pub fn cancel(&self, id: u64) -> Result<()> {
        self.check_fork()?;
        let not_found = || Error::NotFound(format!("request {id} is unknown or already completed"));
        let req = self.shared.ledger.get(id).ok_or_else(not_found)?;
        if let Some(batch) = req.batch() {
            // A batch: every item not yet completed is cancelled (OK when at least one was).
            return match batch.cancel_items(&self.shared, "cancelled") {
                0 => Err(not_found()),
                _ => Ok(()),
            };
        }
        let outcome = Outcome::failed(Status::PORTWAY_CANCELLED, "cancelled");
        if dispatch::finish(&self.shared, &req, outcome) {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Cancels every request in flight. Returns how many were cancelled.
    pub fn cancel_all(&self) -> Result<usize> {
        self.check_fork()?;
        Ok(cancel_everything(&self.shared, "cancelled by cancel_all"))
    }

    /// Stops intake now; drains (until `deadline`, if given) or cancels what is in flight.
    /// Calling it again may tighten a drain into a cancel.
    pub fn shutdown(&self, mode: ShutdownMode, deadline: Option<Duration>) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.begin_shutdown();
        self.shared.ledger.wake_slot_waiters();
        self.shared.logger.log(LogLevel::Info, || {
            format!(
                "shutdown: {mode:?}{}, {} request(s) in flight",
                deadline.map_or(String::new(), |d| format!(
                    " with a deadline of {} ms",
                    d.as_millis()
                )),
                self.shared.ledger.in_flight()
            )
        });
        match (mode, deadline) {
            (ShutdownMode::CancelNow, _) => {
                let msg = "cancelled by shutdown";
                self.shared.ledger.cancel_from_now(msg);
                cancel_everything(&self.shared, msg);
            }
            (ShutdownMode::Drain, None) => {}
            (ShutdownMode::Drain, Some(d)) => {
                let at = Instant::now() + d;
                *self
                    .shared
                    .drain_deadline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(at);
                let shared = self.shared.clone();
                self.shared.rt.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let msg = format!(
                        "cancelled: shutdown drain deadline of {} ms passed",
                        d.as_millis()
                    );
                    shared.ledger.cancel_from_now(&msg);
                    cancel_everything(&shared, &msg);
                });
            }
        }
        Ok(())
    }
}

fn cancel_everything(shared: &Arc<Shared>, message: &str) -> usize {
    let mut n = 0;
    for req in shared.ledger.snapshot() {
        if let Some(batch) = req.batch() {
            n += batch.cancel_items(shared, message);
        } else if !req.is_done()
            && dispatch::finish(
                shared,
                &req,
                Outcome::failed(Status::PORTWAY_CANCELLED, message),
            )
        {
            n += 1;
        }
    }
    n
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.is_forked() {
            // The runtime's threads do not exist in this process: touching them would hang or
            // crash. Leak everything instead.
            std::mem::forget(self.runtime.take());
            std::mem::forget(self.pool.take());
            std::mem::forget(self.shared.clone());
            return;
        }
        let shared = &self.shared;
        shared.queue.begin_shutdown();
        shared.ledger.wake_slot_waiters();
        let unfinished = cancel_everything(shared, "cancelled: the engine was freed");
        let held = shared.ledger.in_flight();
        if held > 0 {
            shared.logger.log(LogLevel::Warn, || {
                format!(
                    "engine freed with {held} request(s) not released ({unfinished} still running were cancelled); their completions are discarded"
                )
            });
        }
        if let Some(pool) = self.pool.take() {
            pool.stop(shared);
            let drain_left = shared
                .drain_deadline
                .lock()
                .ok()
                .and_then(|d| *d)
                .map(|d| d.saturating_duration_since(Instant::now()));
            let grace = drain_left.unwrap_or(Duration::from_millis(u64::from(
                shared.config.free_grace_ms,
            )));
            let abandoned = pool.join_within(shared, grace);
            if abandoned > 0 {
                shared.logger.log(LogLevel::Warn, || {
                    format!(
                        "{abandoned} native handler(s) did not return within {} ms and were abandoned",
                        grace.as_millis()
                    )
                });
            }
        }
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_millis(100));
            }
        }
        // Abandoned handlers may still finish later: they must not reach the host's hooks,
        // whose contexts the host frees once this returns.
        shared.logger.set(None, LogLevel::Error);
        shared.queue.set_hook(None);
        for entry in shared.registry.all() {
            entry.policies.clear();
        }
        shared.timers.clear();
        shared.queue.clear();
        shared.ledger.clear();
    }
}
