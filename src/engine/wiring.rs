//! The [`Engine`] value and its construction: the runtime, the pool, the shared state and the
//! built-in handlers, wired together once.

use std::sync::Arc;

use super::builtins;
use super::config::Config;
use super::fork;
use super::lanes::Lanes;
use super::ledger::Ledger;
use super::log::{self, LogLevel};
use super::pool::{BusyFlags, Pool};
use super::queue::CompletionQueue;
use super::recycle::Recycler;
use super::registry::Registry;
use super::shared::Shared;
use super::timer::{self, Timers};
use crate::error::{Error, Result};

/// An engine. Dropping it cancels everything, waits briefly for native handlers and frees all.
pub struct Engine {
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    pub(super) pool: Option<Pool>,
    pub(super) generation: u64,
}

impl Engine {
    /// Builds an engine with its runtime, pool and the built-in handlers `echo`, `sleep` and
    /// `http`.
    pub fn new(config: Config) -> Result<Engine> {
        let generation = fork::current_generation();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.effective_runtime_threads())
            .thread_name("portway-rt")
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
        let (pool_tx, pool_rx) = flume::unbounded();
        let pool_workers = config.effective_pool_workers();
        let shared = Arc::new(Shared {
            ledger: Ledger::new(u64::from(config.max_in_flight)),
            queue: CompletionQueue::new()?,
            registry: Registry::default(),
            counters: Default::default(),
            pool_tx,
            pool_workers,
            pool_busy: BusyFlags::new(pool_workers),
            pool_lanes: Lanes::new(pool_workers),
            logger: log::Logger::new(),
            timers: Arc::new(Timers::new()),
            rt: runtime.handle().clone(),
            next_id: 1.into(),
            recycler: Recycler::default(),
            drain_deadline: Default::default(),
            config,
        });
        if let Some(log) = &shared.config.log {
            shared.logger.set(Some(log.hook.clone()), log.min);
        }
        shared.logger.log(LogLevel::Info, || {
            format!(
                "engine started: {} runtime thread(s), {} pool worker(s), max_in_flight {}",
                shared.config.effective_runtime_threads(),
                shared.pool_workers,
                shared.config.max_in_flight
            )
        });
        builtins::register(&shared.registry)?;
        runtime.spawn(timer::drive(shared.timers.clone(), Arc::downgrade(&shared)));
        // Last: from here on the workers hold `shared` until the engine's teardown stops them.
        let pool = Pool::start(&shared, pool_rx)
            .map_err(|e| Error::Internal(format!("cannot start the worker pool: {e}")))?;
        Ok(Engine {
            shared,
            runtime: Some(runtime),
            pool: Some(pool),
            generation,
        })
    }

    /// True when this engine was inherited across `fork()` (every call then fails).
    pub fn is_forked(&self) -> bool {
        fork::is_stale(self.generation)
    }

    pub(super) fn check_fork(&self) -> Result<()> {
        if self.is_forked() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    /// Refuses registration once shutdown began: a handler registered then could never run, and
    /// an OK would tell the host it can.
    pub(super) fn check_registration(&self) -> Result<()> {
        self.check_fork()?;
        if self.shared.queue.is_shutting_down() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle to the engine's tokio runtime (for handlers that spawn their own work).
    pub fn runtime_handle(&self) -> &tokio::runtime::Handle {
        &self.shared.rt
    }
}
