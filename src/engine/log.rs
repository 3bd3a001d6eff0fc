//! Engine events delivered to the host: a hook, a minimum level, and the one function that
//! calls the hook (never while an engine lock is held).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::hook_slot::HookSlot;

/// How important a log event is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Fine detail.
    Debug = 1,
    /// Lifecycle: engine start and shutdown.
    Info = 2,
    /// Something the host should look at: leaked requests, abandoned handlers, failed connections.
    Warn = 3,
    /// A handler panicked or an invariant failed.
    Error = 4,
}

impl LogLevel {
    /// The level with this numeric value.
    pub fn from_u32(v: u32) -> Option<LogLevel> {
        match v {
            1 => Some(LogLevel::Debug),
            2 => Some(LogLevel::Info),
            3 => Some(LogLevel::Warn),
            4 => Some(LogLevel::Error),
            _ => None,
        }
    }
}

/// Receives log events; called from whichever engine or host thread saw the event.
pub type LogHook = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// The installed hook and its level filter.
pub(crate) struct Logger {
    hook: HookSlot<LogHook>,
    min: AtomicU8,
}

impl Logger {
    pub fn new() -> Self {
        Logger {
            hook: HookSlot::new(),
            min: AtomicU8::new(u8::MAX),
        }
    }

    /// Installs (or removes) the hook with its minimum level; returns once the hook it
    /// replaced is no longer running (see `HookSlot::set`).
    pub fn set(&self, hook: Option<LogHook>, min: LogLevel) {
        self.min.store(
            if hook.is_some() { min as u8 } else { u8::MAX },
            Ordering::Release,
        );
        self.hook.set(hook);
    }

    /// True when an event at `level` would be delivered (cheap; check before formatting).
    pub fn enabled(&self, level: LogLevel) -> bool {
        level as u8 >= self.min.load(Ordering::Acquire)
    }

    /// Delivers an event; the message is built only when it will be delivered.
    pub fn log(&self, level: LogLevel, message: impl FnOnce() -> String) {
        if !self.enabled(level) {
            return;
        }
        self.hook.call(|h| h(level, &message()));
    }
}
