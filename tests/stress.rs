//! The exactly-once stress test: over a million requests from several submitter threads with
//! random cancels, random short deadlines, handler errors and a shutdown in the middle.
//! Batches (`submit_items`) are mixed in, and cancelled at random like the rest: every
//! accepted batch completes exactly once, with every one of its items in submit order.
//! Every accepted id must complete exactly once, no completion may appear for a refused
//! submit, and nothing may be left in flight.
//!
//! `PORTWAY_STRESS_SCALE=k` (default 1) multiplies the request count by k (issue 17 runs it
//! once at 10).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portway::handlers::Call;
use portway::{Error, Polled, ShutdownMode, Submission};

/// Requests to accept at scale 1 (see [`scale`]).
const BASE_ACCEPTED: u64 = 1_000_000;
const SUBMITTERS: usize = 3;
const POLLERS: usize = 2;
const BATCH: usize = 64;

/// `PORTWAY_STRESS_SCALE`: how many times `BASE_ACCEPTED` to run (default 1).
fn scale() -> u64 {
    match std::env::var("PORTWAY_STRESS_SCALE") {
        Err(_) => 1,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(k) if k >= 1 => k,
            _ => panic!("PORTWAY_STRESS_SCALE must be a whole number of at least 1, not {v:?}"),
        },
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A batch's results: each item OK with its own payload back (echo, the native handler, the
/// pipeline; empty for sleep; the native handler fails `fail{i}`) or failed, in submit order; `code` counts the failures.
fn check_batch(items: &portway::engine::BatchItems, code: u32) {
    let mut failures = 0;
    for i in 0..items.len() {
        match items.status(i) {
            portway::Status::PORTWAY_OK => {
                let data = items.data(i);
                assert!(
                    data.is_empty()
                        || data == format!("ok{i}").as_bytes()
                        || data == format!("fail{i}").as_bytes(),
                    "item {i} of a batch answered {:?}",
                    String::from_utf8_lossy(data)
                );
            }
            portway::Status::PORTWAY_TIMEOUT
            | portway::Status::PORTWAY_CANCELLED
            | portway::Status::PORTWAY_HANDLER_ERROR => failures += 1,
            other => panic!("item {i} of a batch completed with {other:?}"),
        }
    }
    assert_eq!(code, failures);
    assert_eq!(items.failures(), failures);
}

#[test]
fn every_accepted_request_completes_exactly_once() {
    let target_accepted = BASE_ACCEPTED * scale();
    let eng = Arc::new(common::engine_with(|c| c.set_max_in_flight(8192).unwrap()));
    let echo = eng.lookup("echo").unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    let native = eng
        .register_blocking("flaky", |c: &mut Call| {
            if c.payload().first() == Some(&b'f') {
                c.fail("asked to fail").unwrap();
            } else {
                c.respond(c.payload().to_vec().as_slice()).unwrap();
            }
        })
        .unwrap();
    let echo_then_flaky = eng.register_pipeline("mixed", &[echo, native]).unwrap();

    // Ids are sequential from 1; leave headroom for the requests accepted after the target.
    let ids = 2 * target_accepted as usize;
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..ids).map(|_| AtomicU8::new(0)).collect());
    // The item count each batch completion showed, by batch id (0 for plain requests).
    let batch_len: Arc<Vec<AtomicU8>> = Arc::new((0..ids).map(|_| AtomicU8::new(0)).collect());
    let accepted_total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let mut pollers = Vec::new();
    for _ in 0..POLLERS {
        let (eng, seen, batch_len) = (eng.clone(), seen.clone(), batch_len.clone());
        pollers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let mut ids = Vec::with_capacity(256);
                match eng
                    .poll(256, Some(Duration::from_millis(200)), |_, c| {
                        ids.push(c.id());
                        if let Some(items) = c.batch() {
                            check_batch(&items, c.code());
                            batch_len[c.id() as usize].store(items.len() as u8, Ordering::Relaxed);
                        }
                    })
                    .unwrap()
                {
                    Polled::Closed => return n,
                    Polled::Ready(_) => {}
                }
                for &id in &ids {
                    seen[id as usize].fetch_add(1, Ordering::Relaxed);
                }
                n += ids.len() as u64;
                eng.release(ids).unwrap();
            }
        }));
    }

    let accepted_ids = Arc::new(Mutex::new(Vec::new()));
    let batches: Arc<Mutex<Vec<(u64, u8)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut submitters = Vec::new();
    for t in 0..SUBMITTERS {
        let (eng, accepted_total, stop, accepted_ids, batches) = (
            eng.clone(),
            accepted_total.clone(),
            stop.clone(),
            accepted_ids.clone(),
            batches.clone(),
        );
        submitters.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9 + t as u64 * 7919);
            let mut mine = Vec::new();
            let mut my_batches = Vec::new();
            let (mut busy, mut shutdown_seen) = (0u64, false);
            let payloads: [&[u8]; 5] = [b"ok", b"fail", b"0", b"1", b"30"];
            while !shutdown_seen {
                if rng.next().is_multiple_of(8) {
                    // A batch of 1..=BATCH items to one random handler, some with deadlines.
                    let r = rng.next();
                    let n = 1 + (r >> 4) as usize % BATCH;
                    let (handler, timeout_ms) = match r % 6 {
                        0 | 1 => (echo, 0),
                        2 => (native, 0),
                        3 => (native, 1 + (r >> 12) as u32 % 3),
                        4 => (echo_then_flaky, 0),
                        _ => (sleep, 1 + (r >> 12) as u32 % 5),
                    };
                    let owned: Vec<Vec<u8>> = (0..n)
                        .map(|i| match (handler == sleep, rng.next() % 4) {
                            (true, k) => k.to_string().into_bytes(),
                            (false, 0) => format!("fail{i}").into_bytes(),
                            (false, _) => format!("ok{i}").into_bytes(),
                        })
                        .collect();
                    let items: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                    match eng.submit_items(handler, &items, timeout_ms, r) {
                        Ok(id) => {
                            mine.push(id);
                            my_batches.push((id, n as u8));
                            // Some batches are cancelled at once, while items still run.
                            if rng.next().is_multiple_of(3) {
                                match eng.cancel(id) {
                                    Ok(()) | Err(Error::NotFound(_)) => {}
                                    Err(e) => panic!("cancel of a batch failed: {e}"),
                                }
                            }
                            let total = accepted_total.fetch_add(n as u64 + 1, Ordering::Relaxed);
                            if total + n as u64 + 1 >= target_accepted {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(Error::Busy(_)) => {
                            busy += 1;
                            std::thread::yield_now();
                        }
                        Err(Error::Shutdown) => shutdown_seen = true,
                        Err(e) => panic!("unexpected batch submit error: {e}"),
                    }
                    continue;
                }
                let mut batch = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    let r = rng.next();
                    let (handler, payload, timeout_ms) = match r % 20 {
                        0..=12 => (echo, payloads[0], 0),
                        13 => (native, payloads[1], 0),
                        14 => (native, payloads[0], 1 + (r >> 8) as u32 % 3),
                        15 => (echo_then_flaky, payloads[(r >> 8) as usize % 2], 0),
                        16 => (sleep, payloads[2], 0),
                        17 => (sleep, payloads[3], 2),
                        _ => (sleep, payloads[4], 1 + (r >> 8) as u32 % 5),
                    };
                    batch.push(Submission {
                        handler,
                        timeout_ms,
                        user_data: r,
                        payload,
                    });
                }
                let mut ids = [0u64; BATCH];
                let (n, result) = eng.submit_batch(&batch, Some(&mut ids));
                mine.extend_from_slice(&ids[..n]);
                // Cancel a few random earlier requests (some finished long ago: NOT_FOUND).
                // Half of them the newest (likely still in flight: a batch among them too).
                if rng.next().is_multiple_of(4) && !mine.is_empty() {
                    let r = rng.next() as usize;
                    let victim = match r % 2 {
                        0 => mine[mine.len() - 1],
                        _ => mine[(r / 2) % mine.len()],
                    };
                    match eng.cancel(victim) {
                        Ok(()) | Err(Error::NotFound(_)) => {}
                        Err(e) => panic!("cancel failed: {e}"),
                    }
                }
                let total = accepted_total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if total >= target_accepted {
                    stop.store(true, Ordering::Relaxed);
                }
                match result {
                    Ok(()) => {}
                    Err(Error::Busy(_)) => {
                        busy += 1;
                        std::thread::yield_now();
                    }
                    Err(Error::Shutdown) => shutdown_seen = true,
                    Err(e) => panic!("unexpected submit error: {e}"),
                }
            }
            accepted_ids.lock().unwrap().extend(mine);
            batches.lock().unwrap().extend(my_batches);
            busy
        }));
    }

    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Shut down while submitters are still submitting and requests are in flight.
    eng.shutdown(ShutdownMode::Drain, Some(Duration::from_millis(200)))
        .unwrap();
    let busy: u64 = submitters.into_iter().map(|s| s.join().unwrap()).sum();
    let polled: u64 = pollers.into_iter().map(|p| p.join().unwrap()).sum();

    let accepted = accepted_ids.lock().unwrap();
    // (A batch counts as its items plus itself.)
    let total = accepted_total.load(Ordering::Relaxed);
    assert!(total >= target_accepted, "only {total} accepted");
    assert_eq!(polled, accepted.len() as u64, "completions != accepted");
    let mut is_accepted = vec![false; seen.len()];
    for &id in accepted.iter() {
        is_accepted[id as usize] = true;
    }
    for (id, count) in seen.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if is_accepted[id] {
            assert_eq!(count, 1, "accepted id {id} completed {count} times");
        } else {
            assert_eq!(count, 0, "id {id} was never accepted but completed");
        }
    }
    // Every batch showed all its items; items count as requests in the stats.
    let batches = batches.lock().unwrap();
    assert!(!batches.is_empty(), "no batch was accepted");
    let mut items = 0u64;
    for &(id, n) in batches.iter() {
        assert_eq!(
            batch_len[id as usize].load(Ordering::Relaxed),
            n,
            "batch {id}"
        );
        items += u64::from(n);
    }
    let s = eng.stats().unwrap();
    assert_eq!(s.in_flight, 0);
    let plain = accepted.len() as u64 - batches.len() as u64;
    assert_eq!(s.accepted, plain + items);
    assert_eq!(s.completed_total(), s.accepted);
    assert_eq!((s.queued, s.running, s.ready, s.unreleased), (0, 0, 0, 0));
    let outcomes = [
        portway::Status::PORTWAY_OK,
        portway::Status::PORTWAY_TIMEOUT,
        portway::Status::PORTWAY_CANCELLED,
        portway::Status::PORTWAY_HANDLER_ERROR,
    ];
    for st in outcomes {
        assert!(
            s.completed_with(st) > 0,
            "no completion with {st:?}: the mix did not exercise it"
        );
    }
    eprintln!(
        "stress: accepted {}, busy retries {busy}, completed by status: ok {} timeout {} cancelled {} handler_error {}",
        s.accepted,
        s.completed_with(outcomes[0]),
        s.completed_with(outcomes[1]),
        s.completed_with(outcomes[2]),
        s.completed_with(outcomes[3]),
    );
}
