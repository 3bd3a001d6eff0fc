//! Engine configuration: thread counts, limits and defaults, validated when set.

use super::log::{LogHook, LogLevel};
use crate::error::{Error, Result};

/// Most threads accepted for the runtime or the pool.
const MAX_THREADS: u32 = 1024;

/// How an engine is built. `Config::default()` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Tokio runtime threads; 0 = one per CPU.
    pub runtime_threads: u32,
    /// Native worker-pool threads; 0 = one per CPU.
    pub pool_workers: u32,
    /// Slots: requests accepted and not yet released.
    pub max_in_flight: u32,
    /// Deadline applied to requests submitted with `timeout_ms == 0`; 0 = none.
    pub default_timeout_ms: u32,
    /// Largest payload accepted, in bytes.
    pub max_payload: u64,
    /// How long freeing a live engine waits for native handlers to return before abandoning them.
    pub free_grace_ms: u32,
    /// Log hook installed before the engine starts (so it sees the start event).
    pub log: Option<LogSetting>,
    /// Record per-handler counts and latency histograms (default on).
    pub metrics: bool,
}

/// A log hook and its minimum level.
#[derive(Clone)]
pub struct LogSetting {
    /// The hook.
    pub hook: LogHook,
    /// Events below this level are dropped.
    pub min: LogLevel,
}

impl std::fmt::Debug for LogSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSetting")
            .field("min", &self.min)
            .finish_non_exhaustive()
    }
}

impl PartialEq for LogSetting {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.hook, &other.hook) && self.min == other.min
    }
}

impl Eq for LogSetting {}

impl Default for Config {
    fn default() -> Self {
        Config {
            runtime_threads: 0,
            pool_workers: 0,
            max_in_flight: 65_536,
            default_timeout_ms: 0,
            max_payload: 64 << 20,
            free_grace_ms: 1_000,
            log: None,
            metrics: true,
        }
    }
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

impl Config {
    /// Sets the runtime thread count (0 = CPUs).
    pub fn set_runtime_threads(&mut self, n: u32) -> Result<()> {
        self.runtime_threads = check_threads("runtime_threads", n)?;
        Ok(())
    }

    /// Sets the pool thread count (0 = CPUs).
    pub fn set_pool_workers(&mut self, n: u32) -> Result<()> {
        self.pool_workers = check_threads("pool_workers", n)?;
        Ok(())
    }

    /// Sets the in-flight bound; must be at least 1.
    pub fn set_max_in_flight(&mut self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::invalid("max_in_flight must be at least 1"));
        }
        self.max_in_flight = n;
        Ok(())
    }

    /// Sets the default deadline (0 = none).
    pub fn set_default_timeout_ms(&mut self, ms: u32) -> Result<()> {
        self.default_timeout_ms = ms;
        Ok(())
    }

    /// Sets the payload limit; must be at least 1 byte.
    pub fn set_max_payload(&mut self, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Err(Error::invalid("max_payload must be at least 1 byte"));
        }
        self.max_payload = bytes;
        Ok(())
    }

    /// Sets how long freeing a live engine waits for native handlers.
    pub fn set_free_grace_ms(&mut self, ms: u32) -> Result<()> {
        self.free_grace_ms = ms;
        Ok(())
    }

    /// Turns per-handler metrics (counts, histograms) on or off; engine-wide stats stay on.
    pub fn set_metrics(&mut self, on: bool) -> Result<()> {
        self.metrics = on;
        Ok(())
    }

    /// Installs a log hook that the engine uses from its start (None removes it).
    pub fn set_log(&mut self, log: Option<LogSetting>) {
        self.log = log;
    }

    /// Runtime threads after resolving 0.
    pub fn effective_runtime_threads(&self) -> usize {
        resolve(self.runtime_threads)
    }

    /// Pool threads after resolving 0.
    pub fn effective_pool_workers(&self) -> usize {
        resolve(self.pool_workers)
    }
}

fn resolve(n: u32) -> usize {
    if n == 0 { cpus() as usize } else { n as usize }
}

fn check_threads(what: &str, n: u32) -> Result<u32> {
    if n > MAX_THREADS {
        return Err(Error::invalid(format!(
            "{what} of {n} exceeds the limit of {MAX_THREADS}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut c = Config::default();
        assert_eq!(c.max_in_flight, 65_536);
        assert_eq!(c.max_payload, 64 << 20);
        assert!(c.set_max_in_flight(0).is_err());
        assert!(c.set_max_payload(0).is_err());
        assert!(c.set_runtime_threads(5000).is_err());
        assert!(c.set_pool_workers(2).is_ok());
        assert_eq!(c.effective_pool_workers(), 2);
        assert!(c.effective_runtime_threads() >= 1);
    }
}
