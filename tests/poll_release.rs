//! A completion shown by a poll stays valid for the whole callback, even when it is released
//! meanwhile (issue 12, point 1): from inside the callback, or from another thread.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{engine, sub};
use portway::{Polled, Status, Submission};

const BIG: usize = 8 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The probe from the issue: an 8 MiB echo released inside the poll callback, then read. The
/// freed buffer used to be unmapped under the callback's feet (SIGSEGV).
#[test]
fn releasing_inside_the_callback_keeps_the_completion_readable() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let payload = pattern(BIG, 7);
    let id = eng.submit(&sub(echo, &payload)).unwrap();
    let mut seen = 0;
    let polled = eng
        .poll(1, Some(Duration::from_secs(10)), |_, c| {
            assert_eq!(c.id(), id);
            assert_eq!(
                eng.release([c.id()]).unwrap(),
                1,
                "the release takes effect"
            );
            assert_eq!(eng.stats().unwrap().in_flight, 0, "its slot is back");
            // Read every byte after the release.
            assert!(c.data().as_slice() == payload.as_slice());
            assert_eq!(c.status(), Status::PORTWAY_OK);
            seen += 1;
        })
        .unwrap();
    assert_eq!((polled, seen), (Polled::Ready(1), 1));
    assert_eq!(eng.release([id]).unwrap(), 0, "released exactly once");
    // The engine goes on: the next request reuses nothing it should not.
    let small = eng.submit(&sub(echo, b"after")).unwrap();
    let (got, _) = eng.poll_owned(1, Some(Duration::from_secs(10))).unwrap();
    assert_eq!((got[0].id, got[0].data.as_slice()), (small, &b"after"[..]));
    assert_eq!(eng.stats().unwrap().in_flight, 0);
}

/// Releasing the other completions of the batch from inside the callback, before they are
/// shown: each is still shown intact, once.
#[test]
fn releasing_later_completions_of_the_batch_inside_the_callback() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| pattern(BIG / 4, i)).collect();
    let subs: Vec<Submission<'_>> = payloads.iter().map(|p| sub(echo, p)).collect();
    let mut ids = vec![0; subs.len()];
    let (n, r) = eng.submit_batch(&subs, Some(&mut ids));
    assert_eq!((n, r.is_ok()), (4, true));
    let mut shown = Vec::new();
    eng.poll_min(4, 4, Some(Duration::from_secs(10)), |i, c| {
        // Not yet shown ones are ignored (never polled); this one is released.
        eng.release(ids.iter().copied()).unwrap();
        assert!(c.data().as_slice() == payloads[i].as_slice());
        shown.push(c.id());
    })
    .unwrap();
    assert_eq!(shown, ids);
    assert_eq!(eng.stats().unwrap().in_flight, 0);
    assert_eq!(eng.stats().unwrap().unreleased, 0);
}

/// One thread polls and reads every byte inside its callback while another releases ids it
/// guesses (the ones just submitted, polled or not): no completion is freed while it is read,
/// each is released once, and every slot comes back.
#[test]
fn releasing_from_another_thread_while_a_poll_reads() {
    let eng = Arc::new(engine());
    let echo = eng.lookup("echo").unwrap();
    const ROUNDS: u64 = 300;
    let payload = pattern(1 << 20, 3);
    let last_id = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let releaser = {
        let (eng, last_id, done) = (eng.clone(), last_id.clone(), done.clone());
        std::thread::spawn(move || {
            let mut released = 0;
            while !done.load(Ordering::Acquire) {
                let last = last_id.load(Ordering::Acquire);
                released += eng.release(last.saturating_sub(2)..=last).unwrap();
            }
            released
        })
    };
    let mut polled_by_me = 0;
    let mut released_by_me = 0;
    for _ in 0..ROUNDS {
        let id = eng.submit(&sub(echo, &payload)).unwrap();
        last_id.store(id, Ordering::Release);
        let mut got = 0;
        while got == 0 {
            eng.poll(1, Some(Duration::from_secs(10)), |_, c| {
                // Slow enough for the releaser to strike while we read.
                for _ in 0..4 {
                    assert!(c.data().as_slice() == payload.as_slice());
                }
                got += 1;
            })
            .unwrap();
        }
        polled_by_me += got;
        released_by_me += eng.release([id]).unwrap();
    }
    done.store(true, Ordering::Release);
    let released_by_other = releaser.join().unwrap();
    assert_eq!(polled_by_me, ROUNDS as usize);
    assert_eq!(released_by_me + released_by_other, ROUNDS as usize);
    let stats = eng.stats().unwrap();
    assert_eq!((stats.in_flight, stats.unreleased), (0, 0));
}
