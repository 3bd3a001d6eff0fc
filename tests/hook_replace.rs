//! Replacing or clearing a host hook while it runs: `set_notify` / `set_log` return only once
//! the hook they replaced has returned, and never call it again; a hook that replaces a hook
//! from inside itself does not wait for itself.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{engine, one, sub};
use portway::engine::LogLevel;
use portway::{Engine, ShutdownMode};

/// Counts a slow hook's entries and exits.
#[derive(Default)]
struct Slow {
    entered: AtomicUsize,
    exited: AtomicUsize,
}

impl Slow {
    /// Runs the hook body: slow on purpose, so a setter that does not wait returns first.
    fn run(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(300));
        self.exited.fetch_add(1, Ordering::SeqCst);
    }

    fn wait_entered(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.entered.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < until, "the hook was never called");
            thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn replacing_the_notify_hook_waits_for_the_running_call() {
    let eng = engine();
    let slow = Arc::new(Slow::default());
    let s = slow.clone();
    eng.set_notify(Some(Arc::new(move || s.run()))).unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"20")).unwrap();
    slow.wait_entered();
    let fresh = Arc::new(AtomicUsize::new(0));
    let f = fresh.clone();
    eng.set_notify(Some(Arc::new(move || {
        f.fetch_add(1, Ordering::SeqCst);
    })))
    .unwrap();
    assert_eq!(
        slow.exited.load(Ordering::SeqCst),
        1,
        "old hook still running"
    );
    one(&eng);
    // The old hook is never called again; the new one is.
    eng.submit(&sub(sleep, b"20")).unwrap();
    one(&eng);
    assert_eq!(slow.entered.load(Ordering::SeqCst), 1);
    assert!(fresh.load(Ordering::SeqCst) >= 1);
}

#[test]
fn clearing_the_log_hook_waits_for_the_running_call() {
    let eng = Arc::new(engine());
    let slow = Arc::new(Slow::default());
    let s = slow.clone();
    eng.set_log(Some(Arc::new(move |_, _| s.run())), LogLevel::Info)
        .unwrap();
    // Shutdown logs an Info event on the calling thread: the hook runs there.
    let e = eng.clone();
    let shutter = thread::spawn(move || e.shutdown(ShutdownMode::Drain, None).unwrap());
    slow.wait_entered();
    eng.set_log(None, LogLevel::Info).unwrap();
    assert_eq!(
        slow.exited.load(Ordering::SeqCst),
        1,
        "old hook still running"
    );
    shutter.join().unwrap();
}

#[test]
fn a_hook_that_replaces_hooks_from_inside_does_not_deadlock() {
    let eng = Arc::new(engine());
    let me: Arc<Mutex<Option<std::sync::Weak<Engine>>>> = Arc::default();
    *me.lock().unwrap() = Some(Arc::downgrade(&eng));
    let calls = Arc::new(AtomicUsize::new(0));
    let (m, c) = (me.clone(), calls.clone());
    eng.set_notify(Some(Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        let weak = m.lock().unwrap().clone();
        if let Some(eng) = weak.and_then(|w| w.upgrade()) {
            // Its own slot and the other one, from inside the hook.
            eng.set_log(None, LogLevel::Error).unwrap();
            eng.set_notify(None).unwrap();
        }
    })))
    .unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"10")).unwrap();
    one(&eng);
    let until = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the hook was never called");
        thread::sleep(Duration::from_millis(2));
    }
    // The hook removed itself: later completions do not call it.
    eng.submit(&sub(sleep, b"10")).unwrap();
    one(&eng);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
