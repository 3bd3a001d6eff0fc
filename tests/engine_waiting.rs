//! Waiting for completions: the level-triggered notify fd, the notify hook, wake, and many
//! pollers at once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect, engine, sub};
use portway::{Engine, Polled, ShutdownMode};

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

#[test]
fn notify_fd_asked_for_late_shows_completions_already_waiting() {
    // The eventfd is left alone until the host asks for it: arming it must catch up with the
    // queue, or a loop that registers the fd after submitting would never wake.
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    eng.submit(&sub(echo, b"early")).unwrap();
    let fd = eng.notify_fd().unwrap();
    assert!(
        readable(fd),
        "a completion was waiting before the fd was asked for"
    );
    eng.poll_owned(8, Some(Duration::ZERO)).unwrap();
    assert!(!readable(fd));
    eng.submit(&sub(echo, b"later")).unwrap();
    assert!(readable(fd));
}

#[test]
fn notify_fd_asked_for_after_shutdown_is_readable() {
    let eng = engine();
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    assert!(readable(eng.notify_fd().unwrap()));
}

/// Polls once with `poll_min`, returning the ids it took (released) or None when closed.
fn poll_min_ids(eng: &Engine, cap: usize, min: usize, timeout: Option<Duration>) -> Vec<u64> {
    let mut ids = Vec::new();
    let end = eng
        .poll_min(cap, min, timeout, |_, c| ids.push(c.id()))
        .unwrap();
    assert_ne!(end, Polled::Closed);
    eng.release(ids.iter().copied()).unwrap();
    ids
}

#[test]
fn poll_min_waits_for_the_batch() {
    let eng = engine();
    let (echo, sleep) = (eng.lookup("echo").unwrap(), eng.lookup("sleep").unwrap());
    eng.submit(&sub(echo, b"now")).unwrap();
    eng.submit(&sub(sleep, b"50")).unwrap();
    eng.submit(&sub(sleep, b"60")).unwrap();
    // A plain poll would return the echo at once; this one waits for all three.
    let got = poll_min_ids(&eng, 8, 3, Some(Duration::from_secs(10)));
    assert_eq!(got.len(), 3);
}

#[test]
fn poll_min_times_out_with_nothing_rather_than_a_short_batch() {
    let eng = engine();
    let (echo, sleep) = (eng.lookup("echo").unwrap(), eng.lookup("sleep").unwrap());
    eng.submit(&sub(echo, b"now")).unwrap();
    let sleeper = eng.submit(&sub(sleep, b"60000")).unwrap();
    let got = poll_min_ids(&eng, 8, 2, Some(Duration::from_millis(30)));
    assert!(got.is_empty(), "one ready, two wanted, one still running");
    assert_eq!(poll_min_ids(&eng, 8, 1, Some(Duration::ZERO)).len(), 1);
    eng.cancel(sleeper).unwrap();
    assert_eq!(collect(&eng, 1).len(), 1);
}

#[test]
fn poll_min_returns_early_when_everything_in_flight_is_ready() {
    // Asking for more than is in flight must not wait: once every accepted request has
    // completed, no more can come. (Without that rule this poll would wait out its timeout
    // and return nothing.)
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    eng.submit(&sub(echo, b"a")).unwrap();
    eng.submit(&sub(echo, b"b")).unwrap();
    let got = poll_min_ids(&eng, 64, 64, Some(Duration::from_secs(60)));
    assert_eq!(got.len(), 2);
}

#[test]
fn poll_min_rejects_a_minimum_of_zero_or_above_the_capacity() {
    let eng = engine();
    assert!(eng.poll_min(4, 0, Some(Duration::ZERO), |_, _| {}).is_err());
    assert!(eng.poll_min(4, 5, Some(Duration::ZERO), |_, _| {}).is_err());
}

#[test]
fn a_plain_poller_is_woken_while_a_batch_poller_waits() {
    // Pollers that want different counts share one queue: a completion that is enough for
    // the plain poller must wake it even though the batch poller keeps waiting.
    let eng = Arc::new(engine());
    let (echo, sleep) = (eng.lookup("echo").unwrap(), eng.lookup("sleep").unwrap());
    let sleeper = eng.submit(&sub(sleep, b"60000")).unwrap();
    let batch = {
        let eng = eng.clone();
        std::thread::spawn(move || poll_min_ids(&eng, 64, 64, Some(Duration::from_secs(60))))
    };
    let plain = {
        let eng = eng.clone();
        std::thread::spawn(move || poll_min_ids(&eng, 64, 1, Some(Duration::from_secs(60))))
    };
    std::thread::sleep(Duration::from_millis(50)); // both are asleep in poll by now
    let echoed = eng.submit(&sub(echo, b"x")).unwrap();
    assert_eq!(plain.join().unwrap(), vec![echoed]);
    eng.cancel(sleeper).unwrap();
    assert_eq!(batch.join().unwrap(), vec![sleeper]);
}
