//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use portway::{Config, Engine, OwnedCompletion, Submission};

/// An engine with small thread counts, suited to a 2-core test machine.
pub fn engine() -> Engine {
    engine_with(|_| {})
}

/// An engine with small thread counts and a tweak.
pub fn engine_with(tweak: impl FnOnce(&mut Config)) -> Engine {
    let mut c = Config::default();
    c.set_runtime_threads(2).unwrap();
    c.set_pool_workers(2).unwrap();
    tweak(&mut c);
    Engine::new(c).unwrap()
}

/// A submission.
pub fn sub(handler: u32, payload: &[u8]) -> Submission<'_> {
    Submission {
        handler,
        timeout_ms: 0,
        user_data: 0,
        payload,
    }
}

/// Polls until `n` completions arrived (fails after 10 s).
pub fn collect(eng: &Engine, n: usize) -> Vec<OwnedCompletion> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out with {} of {n} completions",
            out.len()
        );
        let (mut got, closed) = eng
            .poll_owned(1024, Some(Duration::from_millis(100)))
            .unwrap();
        out.append(&mut got);
        if closed {
            break;
        }
    }
    out
}

/// Polls exactly one completion.
pub fn one(eng: &Engine) -> OwnedCompletion {
    collect(eng, 1).pop().unwrap()
}
