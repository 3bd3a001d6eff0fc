//! Waiting for completions: the level-triggered notify fd, the notify hook, wake, and many
//! pollers at once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{engine, sub};
use portway::{Polled, ShutdownMode};

fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLIN != 0
}

fn wait_readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

#[test]
fn notify_fd_is_level_triggered() {
    let eng = engine();
    let fd = eng.notify_fd().unwrap();
    let echo = eng.lookup("echo").unwrap();
    assert!(!readable(fd), "fresh engine must not be readable");
    for _ in 0..3 {
        eng.submit(&sub(echo, b"x")).unwrap();
    }
    assert!(readable(fd));
    // Partial poll: still readable.
    let (got, _) = eng.poll_owned(2, Some(Duration::ZERO)).unwrap();
    assert_eq!(got.len(), 2);
    assert!(readable(fd), "one completion still waits");
    let (got, _) = eng.poll_owned(2, Some(Duration::ZERO)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(!readable(fd), "nothing waits: no spurious readiness");
    // A new completion makes it readable again (no missed wakeup).
    eng.submit(&sub(echo, b"y")).unwrap();
    assert!(readable(fd));
    eng.poll_owned(8, Some(Duration::ZERO)).unwrap();
    assert!(!readable(fd));
}

#[test]
fn notify_fd_wakes_an_event_loop_for_async_completions() {
    let eng = engine();
    let fd = eng.notify_fd().unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    for round in 0..20 {
        eng.submit(&sub(sleep, b"2")).unwrap();
        assert!(
            wait_readable(fd, 5000),
            "round {round}: completion not signalled"
        );
        let (got, _) = eng.poll_owned(8, Some(Duration::ZERO)).unwrap();
        assert_eq!(got.len(), 1);
        assert!(!readable(fd));
    }
}

#[test]
fn notify_fd_is_readable_once_closed() {
    let eng = engine();
    let fd = eng.notify_fd().unwrap();
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    assert!(readable(fd));
    assert_eq!(
        eng.poll(1, Some(Duration::ZERO), |_, _| {}).unwrap(),
        Polled::Closed
    );
}

#[test]
fn notify_hook_fires_on_empty_to_ready_transitions() {
    let eng = engine();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    eng.set_notify(Some(Arc::new(move || {
        c2.fetch_add(1, Ordering::SeqCst);
    })))
    .unwrap();
    let echo = eng.lookup("echo").unwrap();
    let batch: Vec<_> = (0..10).map(|_| sub(echo, b"z")).collect();
    eng.submit_batch(&batch, None).1.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one batch, one transition");
    eng.submit(&sub(echo, b"z")).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "queue was not empty");
    eng.poll_owned(64, Some(Duration::ZERO)).unwrap();
    eng.submit(&sub(echo, b"z")).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    eng.set_notify(None).unwrap();
    eng.poll_owned(64, Some(Duration::ZERO)).unwrap();
    eng.submit(&sub(echo, b"z")).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "removed hook is not called"
    );
}

#[test]
fn wake_releases_a_blocked_poller_with_nothing() {
    let eng = Arc::new(engine());
    let eng2 = eng.clone();
    let t = std::thread::spawn(move || eng2.poll(4, None, |_, _| {}).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    eng.wake().unwrap();
    assert_eq!(t.join().unwrap(), Polled::Ready(0));
}

#[test]
fn poll_timeout_returns_zero() {
    let eng = engine();
    let start = std::time::Instant::now();
    assert_eq!(
        eng.poll(4, Some(Duration::from_millis(30)), |_, _| {})
            .unwrap(),
        Polled::Ready(0)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(
        eng.poll(0, None, |_, _| {}).is_err(),
        "zero capacity is invalid"
    );
}

#[test]
fn many_pollers_each_completion_delivered_once() {
    let eng = Arc::new(engine());
    let echo = eng.lookup("echo").unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let dupes = Arc::new(AtomicUsize::new(0));
    let mut pollers = Vec::new();
    for _ in 0..4 {
        let (eng, seen, dupes) = (eng.clone(), seen.clone(), dupes.clone());
        pollers.push(std::thread::spawn(move || {
            loop {
                let mut ids = Vec::new();
                match eng
                    .poll(64, Some(Duration::from_millis(200)), |_, c| {
                        ids.push(c.id())
                    })
                    .unwrap()
                {
                    Polled::Closed => break,
                    Polled::Ready(_) => {}
                }
                eng.release(ids.iter().copied()).unwrap();
                let mut s = seen.lock().unwrap();
                for id in ids {
                    if !s.insert(id) {
                        dupes.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let mut submitted = HashSet::new();
    let payload = [7u8; 16];
    for _ in 0..200 {
        let batch: Vec<_> = (0..100).map(|_| sub(echo, &payload)).collect();
        let mut ids = [0u64; 100];
        eng.submit_batch(&batch, Some(&mut ids)).1.unwrap();
        submitted.extend(ids);
    }
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    for p in pollers {
        p.join().unwrap();
    }
    assert_eq!(dupes.load(Ordering::SeqCst), 0);
    assert_eq!(*seen.lock().unwrap(), submitted);
    assert_eq!(eng.stats().unwrap().in_flight, 0);
}

#[test]
fn notify_hook_fires_when_the_last_poll_closes_the_engine() {
    let eng = engine();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    eng.set_notify(Some(Arc::new(move || {
        c2.fetch_add(1, Ordering::SeqCst);
    })))
    .unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"20")).unwrap();
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    let (got, _) = eng.poll_owned(4, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(got.len(), 1);
    // One call when the completion became ready, one when taking it closed the engine. The
    // first runs on the engine thread after it queued the completion, so it may land after
    // this poll returned: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while calls.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        eng.poll(1, Some(Duration::ZERO), |_, _| {}).unwrap(),
        Polled::Closed
    );
}
