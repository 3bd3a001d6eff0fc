//! Deadlines, cancellation, backpressure, shutdown and teardown, through the Rust API.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{collect, engine, engine_with, one, sub};
use portway::{Error, Polled, ShutdownMode, Status, Submission};

fn timed(handler: u32, payload: &[u8], timeout_ms: u32) -> Submission<'_> {
    Submission {
        handler,
        timeout_ms,
        user_data: 0,
        payload,
    }
}

#[test]
fn deadline_times_out_a_sleep() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&timed(sleep, b"5000", 30)).unwrap();
    let c = one(&eng);
    assert_eq!(c.status, Status::PORTWAY_TIMEOUT);
    assert!(String::from_utf8_lossy(&c.data).contains("30 ms"));
}

#[test]
fn default_timeout_applies_when_the_request_has_none() {
    let eng = engine_with(|c| c.set_default_timeout_ms(20).unwrap());
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"5000")).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_TIMEOUT);
    // A request's own timeout wins over the default.
    eng.submit(&timed(sleep, b"40", 2000)).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
}

#[test]
fn deadlines_that_were_met_never_fire_and_timed_out_requests_complete_once() {
    // Deadlines live on the engine timer; a request that finished first leaves its entry
    // behind until the entry's time (or a purge). Those entries must stay silent, and a request
    // whose time did come must complete exactly once, whichever of the handler and the timer
    // got there first.
    let eng = engine();
    let (echo_pool, sleep) = (
        eng.register_blocking("quick", |c: &mut portway::handlers::Call| {
            c.respond(b"done").unwrap();
        })
        .unwrap(),
        eng.lookup("sleep").unwrap(),
    );
    let mut batch: Vec<Submission<'_>> = (0..3000).map(|_| timed(echo_pool, b"", 40)).collect();
    batch.extend((0..300).map(|_| timed(sleep, b"5000", 25)));
    batch.extend((0..300).map(|i| timed(sleep, if i % 2 == 0 { b"20" } else { b"30" }, 25)));
    let (n, r) = eng.submit_batch(&batch, None);
    r.unwrap();
    let got = collect(&eng, n);
    assert_eq!(got.len(), n);
    let timeouts = got
        .iter()
        .filter(|c| c.status == Status::PORTWAY_TIMEOUT)
        .count();
    assert!(
        timeouts >= 300,
        "the 5 s sleeps all time out, got {timeouts}"
    );
    let mut ids: Vec<u64> = got.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "one completion per request");
    // Every deadline has passed by now: nothing more may arrive.
    std::thread::sleep(Duration::from_millis(80));
    let (late, _) = eng.poll_owned(64, Some(Duration::ZERO)).unwrap();
    assert!(
        late.is_empty(),
        "{} completions after the last one",
        late.len()
    );
    let st = eng.stats().unwrap();
    assert_eq!(st.in_flight, 0);
}

#[test]
fn deadline_counts_queue_time() {
    // One pool worker busy for 100 ms: a request queued behind it with a 30 ms deadline
    // times out even though its own work would be instant.
    let eng = engine_with(|c| c.set_pool_workers(1).unwrap());
    let block = eng
        .register_blocking("block", |c: &mut portway::handlers::Call| {
            std::thread::sleep(Duration::from_millis(100));
            c.respond(b"").unwrap();
        })
        .unwrap();
    eng.submit(&sub(block, b"")).unwrap();
    let late = eng.submit(&timed(block, b"", 30)).unwrap();
    let all = collect(&eng, 2);
    let c = all.iter().find(|c| c.id == late).unwrap();
    assert_eq!(c.status, Status::PORTWAY_TIMEOUT);
}

#[test]
fn cancel_running_request_then_not_found() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let id = eng.submit(&sub(sleep, b"10000")).unwrap();
    eng.cancel(id).unwrap();
    let c = one(&eng);
    assert_eq!((c.id, c.status), (id, Status::PORTWAY_CANCELLED));
    assert_eq!(
        eng.cancel(id).unwrap_err().status(),
        Status::PORTWAY_NOT_FOUND
    );
    assert_eq!(
        eng.cancel(987_654).unwrap_err().status(),
        Status::PORTWAY_NOT_FOUND
    );
}

#[test]
fn cancel_reaches_a_native_handler_cooperatively() {
    let eng = engine();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let seen = saw_cancel.clone();
    let spin = eng
        .register_blocking("spin", move |c: &mut portway::handlers::Call| {
            let start = Instant::now();
            while !c.is_cancelled() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.store(c.is_cancelled(), Ordering::SeqCst);
            let _ = c.respond(b"too late");
        })
        .unwrap();
    let id = eng.submit(&sub(spin, b"")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    eng.cancel(id).unwrap();
    let c = one(&eng);
    assert_eq!(c.status, Status::PORTWAY_CANCELLED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !saw_cancel.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(saw_cancel.load(Ordering::SeqCst));
    // The late response was discarded: no second completion.
    let (extra, _) = eng.poll_owned(8, Some(Duration::from_millis(50))).unwrap();
    assert!(extra.is_empty());
}

#[test]
fn busy_when_slots_are_taken_and_slots_free_on_release_only() {
    let eng = engine_with(|c| c.set_max_in_flight(3).unwrap());
    let echo = eng.lookup("echo").unwrap();
    for _ in 0..3 {
        eng.submit(&sub(echo, b"x")).unwrap();
    }
    assert!(matches!(eng.submit(&sub(echo, b"x")), Err(Error::Busy(3))));
    // Polling without releasing keeps the slots.
    let mut ids = Vec::new();
    eng.poll(8, Some(Duration::ZERO), |_, c| ids.push(c.id()))
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(matches!(eng.submit(&sub(echo, b"x")), Err(Error::Busy(_))));
    assert_eq!(eng.release(ids.iter().copied()).unwrap(), 3);
    // Releasing twice changes nothing.
    assert_eq!(eng.release(ids.iter().copied()).unwrap(), 0);
    eng.submit(&sub(echo, b"x")).unwrap();
    let s = eng.stats().unwrap();
    assert_eq!((s.accepted, s.rejected_busy, s.in_flight), (4, 2, 1));
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
}

#[test]
fn releasing_an_unpolled_request_is_ignored() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let id = eng.submit(&sub(sleep, b"20")).unwrap();
    assert_eq!(eng.release([id]).unwrap(), 0);
    assert_eq!(eng.stats().unwrap().in_flight, 1);
    assert_eq!(one(&eng).id, id);
    assert_eq!(eng.stats().unwrap().in_flight, 0);
}

#[test]
fn batch_accepts_the_longest_prefix() {
    let eng = engine_with(|c| c.set_max_in_flight(4).unwrap());
    let echo = eng.lookup("echo").unwrap();
    let reqs: Vec<_> = (0..6).map(|_| sub(echo, b"b")).collect();
    let mut ids = [0u64; 6];
    let (n, r) = eng.submit_batch(&reqs, Some(&mut ids));
    assert_eq!(n, 4);
    assert!(matches!(r, Err(Error::Busy(4))));
    assert!(ids[..4].iter().all(|&i| i != 0) && ids[4..].iter().all(|&i| i == 0));
    assert_eq!(collect(&eng, 4).len(), 4);
    // An invalid request stops the batch at its index.
    let bad = [sub(echo, b"1"), sub(777, b"2"), sub(echo, b"3")];
    let (n, r) = eng.submit_batch(&bad, None);
    assert_eq!(n, 1);
    assert_eq!(r.unwrap_err(), Error::UnknownHandler(777));
    assert_eq!(collect(&eng, 1).len(), 1);
}

#[test]
fn submit_wait_blocks_for_a_slot() {
    let eng = Arc::new(engine_with(|c| c.set_max_in_flight(1).unwrap()));
    let echo = eng.lookup("echo").unwrap();
    eng.submit(&sub(echo, b"first")).unwrap();
    let start = Instant::now();
    let err = eng
        .submit_wait(&sub(echo, b"x"), Some(Duration::from_millis(30)))
        .unwrap_err();
    assert!(matches!(err, Error::Busy(1)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    let eng2 = eng.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        one(&eng2)
    });
    let id = eng.submit_wait(&sub(echo, b"second"), None).unwrap();
    assert_eq!(releaser.join().unwrap().data, b"first");
    let c = one(&eng);
    assert_eq!((c.id, c.data.as_slice()), (id, &b"second"[..]));
}

#[test]
fn submit_wait_gives_up_on_shutdown() {
    let eng = Arc::new(engine_with(|c| c.set_max_in_flight(1).unwrap()));
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"10000")).unwrap();
    let eng2 = eng.clone();
    let waiter = std::thread::spawn(move || eng2.submit_wait(&sub(sleep, b"1"), None));
    std::thread::sleep(Duration::from_millis(30));
    eng.shutdown(ShutdownMode::CancelNow, None).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap_err(), Error::Shutdown);
}

#[test]
fn drain_finishes_short_work_and_cancels_the_rest_at_the_deadline() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let short = eng.submit(&sub(sleep, b"10")).unwrap();
    let long = eng.submit(&sub(sleep, b"60000")).unwrap();
    eng.shutdown(ShutdownMode::Drain, Some(Duration::from_millis(150)))
        .unwrap();
    assert_eq!(eng.submit(&sub(sleep, b"1")).unwrap_err(), Error::Shutdown);
    let all = collect(&eng, 2);
    let status_of = |id| all.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!(status_of(short), Status::PORTWAY_OK);
    assert_eq!(status_of(long), Status::PORTWAY_CANCELLED);
    assert_eq!(
        eng.poll(4, Some(Duration::ZERO), |_, _| {}).unwrap(),
        Polled::Closed
    );
    let s = eng.stats().unwrap();
    assert_eq!((s.rejected_shutdown, s.in_flight), (1, 0));
}

#[test]
fn cancel_now_cancels_everything_and_closes() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    for _ in 0..100 {
        eng.submit(&sub(sleep, b"60000")).unwrap();
    }
    eng.shutdown(ShutdownMode::CancelNow, None).unwrap();
    let all = collect(&eng, 100);
    assert_eq!(all.len(), 100);
    assert!(all.iter().all(|c| c.status == Status::PORTWAY_CANCELLED));
    assert_eq!(eng.poll(4, None, |_, _| {}).unwrap(), Polled::Closed);
}

#[test]
fn closed_is_reported_only_after_the_last_completion_is_polled() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    eng.submit(&sub(echo, b"1")).unwrap();
    eng.submit(&sub(echo, b"2")).unwrap();
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    let (first, closed) = eng.poll_owned(1, Some(Duration::ZERO)).unwrap();
    assert_eq!((first.len(), closed), (1, false));
    let (second, _) = eng.poll_owned(1, Some(Duration::ZERO)).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        eng.poll(1, Some(Duration::ZERO), |_, _| {}).unwrap(),
        Polled::Closed
    );
}

#[test]
fn shutdown_of_an_idle_engine_closes_at_once_and_wakes_blocked_pollers() {
    let eng = Arc::new(engine());
    let eng2 = eng.clone();
    let poller = std::thread::spawn(move || eng2.poll(4, None, |_, _| {}).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    eng.shutdown(ShutdownMode::Drain, None).unwrap();
    assert_eq!(poller.join().unwrap(), Polled::Closed);
}

#[test]
fn drop_of_a_live_engine_returns_promptly() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    for _ in 0..1000 {
        eng.submit(&sub(sleep, b"60000")).unwrap();
    }
    let start = Instant::now();
    drop(eng);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn drop_abandons_a_stuck_native_handler_after_the_grace() {
    let eng = engine_with(|c| c.set_free_grace_ms(100).unwrap());
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let stuck = eng
        .register_blocking("stuck", move |c: &mut portway::handlers::Call| {
            s2.store(true, Ordering::SeqCst);
            // Ignores cancellation for a while.
            std::thread::sleep(Duration::from_millis(600));
            let _ = c.respond(b"");
        })
        .unwrap();
    eng.submit(&sub(stuck, b"")).unwrap();
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    drop(eng);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_millis(500),
        "{took:?}"
    );
}

#[test]
fn cancel_all_cancels_each_request_once() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    for _ in 0..50 {
        eng.submit(&sub(sleep, b"60000")).unwrap();
    }
    assert_eq!(eng.cancel_all().unwrap(), 50);
    assert_eq!(eng.cancel_all().unwrap(), 0);
    let all = collect(&eng, 50);
    assert!(all.iter().all(|c| c.status == Status::PORTWAY_CANCELLED));
    let (extra, _) = eng.poll_owned(8, Some(Duration::from_millis(20))).unwrap();
    assert!(extra.is_empty());
}
