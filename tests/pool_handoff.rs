//! The batched hand-off to the pool (issue 17): a submit batch's pool jobs travel and run as
//! chunks, and each job still completes exactly once, honouring cancel, deadlines, shutdown,
//! concurrency limits and panics.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{collect, engine};
use portway::handlers::Call;
use portway::{Engine, OwnedCompletion, ShutdownMode, Status, Submission};

/// A handler gate: records which payloads started, and blocks each call until opened.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, Vec<Vec<u8>>)>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self, payload: &[u8]) {
        let mut st = self.state.lock().unwrap();
        st.1.push(payload.to_vec());
        self.cv.notify_all();
        while !st.0 {
            st = self.cv.wait(st).unwrap();
        }
    }

    /// Waits until `n` calls started; returns the payloads that did.
    fn wait_started(&self, n: usize) -> HashSet<Vec<u8>> {
        let mut st = self.state.lock().unwrap();
        while st.1.len() < n {
            let (s, timeout) = self.cv.wait_timeout(st, Duration::from_secs(10)).unwrap();
            assert!(!timeout.timed_out(), "only {} calls started", s.1.len());
            st = s;
        }
        st.1.iter().cloned().collect()
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.cv.notify_all();
    }

    fn started(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().1.clone()
    }
}

/// An engine with two pool workers and a gated pool handler.
fn gated() -> (Engine, u32, Arc<Gate>) {
    let eng = engine();
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let id = eng
        .register_blocking("gated", move |c: &mut Call| {
            g.enter(c.payload());
            let echo = c.payload().to_vec();
            c.respond(&echo).unwrap();
        })
        .unwrap();
    (eng, id, gate)
}

/// `n` payloads "0", "1", ... as submissions to `handler` with `timeout_ms`.
fn batch(handler: u32, payloads: &[Vec<u8>], timeout_ms: u32) -> Vec<Submission<'_>> {
    payloads
        .iter()
        .map(|p| Submission {
            handler,
            timeout_ms,
            user_data: 0,
            payload: p,
        })
        .collect()
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| i.to_string().into_bytes()).collect()
}

/// Submits `subs` as one batch; returns the ids, all accepted.
fn submit_all(eng: &Engine, subs: &[Submission<'_>]) -> Vec<u64> {
    let mut ids = vec![0; subs.len()];
    let (n, r) = eng.submit_batch(subs, Some(&mut ids));
    r.unwrap();
    assert_eq!(n, subs.len());
    ids
}

/// Every id completes exactly once: the completions by id.
fn by_id(ids: &[u64], got: Vec<OwnedCompletion>) -> HashMap<u64, OwnedCompletion> {
    assert_eq!(got.len(), ids.len());
    let map: HashMap<u64, OwnedCompletion> = got.into_iter().map(|c| (c.id, c)).collect();
    assert_eq!(map.len(), ids.len(), "a request completed twice");
    assert!(ids.iter().all(|id| map.contains_key(id)));
    map
}

/// Items still queued in a chunk when cancelled complete CANCELLED, once, and never run.
#[test]
fn jobs_cancelled_while_queued_in_a_chunk_complete_cancelled_and_never_run() {
    let (eng, id, gate) = gated();
    let p = payloads(40);
    let ids = submit_all(&eng, &batch(id, &p, 0));
    // Both workers are inside the first job of a chunk; the rest wait in their chunks.
    let running = gate.wait_started(2);
    let queued: Vec<u64> = (0..40)
        .filter(|&i| !running.contains(&p[i]))
        .map(|i| ids[i])
        .collect();
    for &q in &queued {
        eng.cancel(q).unwrap();
    }
    gate.open();
    let got = by_id(&ids, collect(&eng, 40));
    for (i, rid) in ids.iter().enumerate() {
        let c = &got[rid];
        if running.contains(&p[i]) {
            assert_eq!((c.status, &c.data), (Status::PORTWAY_OK, &p[i]));
        } else {
            assert_eq!(c.status, Status::PORTWAY_CANCELLED, "item {i}");
        }
    }
    assert_eq!(gate.started().len(), 2, "a cancelled job ran");
}

/// Items whose deadline passes while they wait in a chunk complete TIMEOUT and never run.
#[test]
fn jobs_whose_deadline_passes_in_a_chunk_time_out_and_never_run() {
    let (eng, id, gate) = gated();
    let p = payloads(40);
    let ids = submit_all(&eng, &batch(id, &p, 100));
    let running = gate.wait_started(2);
    // Every waiting item times out (the two running ones too).
    let got = by_id(&ids, collect(&eng, 40));
    gate.open();
    for c in got.values() {
        assert_eq!(c.status, Status::PORTWAY_TIMEOUT);
    }
    // The workers go on to the rest of their chunks, which they skip.
    std::thread::sleep(Duration::from_millis(50));
    drop(eng);
    assert_eq!(gate.started().len(), 2, "a job past its deadline ran");
    assert_eq!(running.len(), 2);
}

/// A shutdown that cancels, with chunks queued: every item completes once (CANCELLED) and the
/// queued ones never run.
#[test]
fn shutdown_with_chunks_queued_cancels_each_item_once() {
    let (eng, id, gate) = gated();
    let p = payloads(64);
    let ids = submit_all(&eng, &batch(id, &p, 0));
    gate.wait_started(2);
    eng.shutdown(ShutdownMode::CancelNow, None).unwrap();
    let got = by_id(&ids, collect(&eng, 64));
    gate.open();
    assert!(got.values().all(|c| c.status == Status::PORTWAY_CANCELLED));
    drop(eng);
    assert_eq!(gate.started().len(), 2, "a job ran after the shutdown");
}

/// Freeing the engine with chunks queued runs none of the queued jobs.
#[test]
fn freeing_the_engine_with_chunks_queued_runs_none_of_them() {
    let (eng, id, gate) = gated();
    let p = payloads(64);
    submit_all(&eng, &batch(id, &p, 0));
    gate.wait_started(2);
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            gate.open();
        })
    };
    drop(eng);
    opener.join().unwrap();
    assert_eq!(
        gate.started().len(),
        2,
        "a job ran after the engine was freed"
    );
}

/// A concurrency limit of 1 holds for a batch of 100: never two calls at once, all complete.
#[test]
fn a_limit_of_one_holds_for_a_batch() {
    let eng = engine();
    let running = Arc::new(Mutex::new((0u32, 0u32)));
    let r = running.clone();
    let id = eng
        .register_blocking("one", move |c: &mut Call| {
            {
                let mut g = r.lock().unwrap();
                g.0 += 1;
                g.1 = g.1.max(g.0);
            }
            std::thread::sleep(Duration::from_micros(200));
            r.lock().unwrap().0 -= 1;
            c.respond(b"").unwrap();
        })
        .unwrap();
    eng.set_concurrency(id, 1).unwrap();
    let p = payloads(100);
    let ids = submit_all(&eng, &batch(id, &p, 0));
    let got = by_id(&ids, collect(&eng, 100));
    assert!(got.values().all(|c| c.status == Status::PORTWAY_OK));
    assert_eq!(running.lock().unwrap().1, 1, "two calls ran at once");
}

/// A panic in one job of a chunk loses none of the others.
#[test]
fn a_panic_in_one_job_of_a_chunk_loses_no_other() {
    let eng = engine();
    let id = eng
        .register_blocking("boom13", |c: &mut Call| {
            if c.payload() == b"13" {
                panic!("thirteen");
            }
            let echo = c.payload().to_vec();
            c.respond(&echo).unwrap();
        })
        .unwrap();
    let p = payloads(64);
    let ids = submit_all(&eng, &batch(id, &p, 0));
    let got = by_id(&ids, collect(&eng, 64));
    for (i, rid) in ids.iter().enumerate() {
        let c = &got[rid];
        if i == 13 {
            assert_eq!(c.status, Status::PORTWAY_PANIC);
        } else {
            assert_eq!((c.status, &c.data), (Status::PORTWAY_OK, &p[i]));
        }
    }
}

/// In a chunk, a job starts when the previous one ended, read from one clock reading: for two
/// consecutive jobs of one chunk (accepted together), the second's queue wait is the first's
/// queue wait plus its run time, to the nanosecond.
#[test]
fn consecutive_jobs_of_a_chunk_share_one_clock_reading() {
    let eng = engine();
    let id = eng
        .register_blocking("quick", |c: &mut Call| c.respond(b"").unwrap())
        .unwrap();
    let p = payloads(64);
    let ids = submit_all(&eng, &batch(id, &p, 0));
    let mut timings = HashMap::new();
    while timings.len() < ids.len() {
        eng.poll(64, Some(Duration::from_secs(10)), |_, c| {
            timings.insert(c.id(), c.timings());
        })
        .unwrap();
        let seen: Vec<u64> = timings.keys().copied().collect();
        eng.release(seen).unwrap();
    }
    let t: Vec<(u64, u64)> = ids.iter().map(|i| timings[i]).collect();
    // 64 items on two workers: chunks of 16, items 16j..16j+16.
    let chained = (0..64)
        .filter(|k| k % 16 != 15)
        .filter(|&k| t[k + 1].0 == t[k].0 + t[k].1)
        .count();
    assert!(
        chained > 0,
        "no job started at its predecessor's end: {t:?}"
    );
}
