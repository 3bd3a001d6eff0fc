//! loom models of the completion queue, the ledger, requests and the recycler: the real types,
//! built with loom's synchronisation types (`src/engine/sync.rs`), every interleaving of a few
//! threads explored. Run with `make loom` (at most 4 preemptions per interleaving) or
//! `make test-loom` (at most 2: the run `make test` does).
//!
//! They cover poll vs release (issue 12, point 1: a release never frees what a poller reads),
//! blocking polls vs pushes (no lost wake-up), a poll's spin before it sleeps vs pushes and
//! wakes (issue 17), shutdown vs poll vs submit (exactly the accepted
//! requests are polled, then `Closed`), wake, the notify hook and fd, cancel vs completion
//! (exactly one completion), slot waiters vs release, and a pool worker filling its lane vs
//! another going idle (issue 17: no job left behind a busy worker while the other sleeps).
//!
//! Polls use no finite timeout: loom's `Condvar::wait_timeout` never times out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use loom::thread;

use super::lanes::Lanes;
use super::ledger::Ledger;
use super::queue::{CompletionQueue, PollEnd};
use super::recycle::Recycler;
use super::registry::{HandlerEntry, echo_entry};
use super::request::Request;
use super::sync::{AtomicBool, AtomicUsize};
use crate::contract::Outcome;
use crate::status::Status;

/// One engine's worth of queue, ledger and recycler.
struct Parts {
    queue: CompletionQueue,
    ledger: Ledger,
    recycler: Recycler,
}

impl Parts {
    fn new(max_in_flight: u64) -> Arc<Parts> {
        Arc::new(Parts {
            queue: CompletionQueue::new().unwrap(),
            ledger: Ledger::new(max_in_flight),
            recycler: Recycler::default(),
        })
    }

    /// Accepts a request the way `Engine::submit_batch` does (intake, slot, ledger) and
    /// returns it, not yet completed. None when intake is closed.
    fn accept(&self, id: u64, entry: &Arc<HandlerEntry>) -> Option<Arc<Request>> {
        self.queue.reserve(1).ok()?;
        assert_eq!(
            self.ledger.try_acquire(1),
            1,
            "the model stays within its slots"
        );
        let req = Arc::new(Request::new(id, 0, entry.clone(), Instant::now(), 0));
        self.ledger.insert([req.clone()]);
        Some(req)
    }

    /// Completes `req` the way `dispatch::finish` does: whoever wins the claim queues it.
    fn finish(&self, req: &Arc<Request>, outcome: Outcome) -> bool {
        if req.claim_completion(outcome, None).is_some() {
            self.queue.push([req.clone()]);
            true
        } else {
            false
        }
    }

    /// Polls like `Engine::poll_min` (blocking, no time limit): each completion is shown to
    /// `f`, and those released meanwhile are freed after the batch.
    fn poll(&self, cap: usize, min: usize, mut f: impl FnMut(&Request, &Outcome)) -> PollEnd {
        let mut released_while_shown = Vec::new();
        let end = self.queue.poll(
            cap,
            min,
            None,
            || 0,
            |_, req| {
                released_while_shown.extend(req.show(&mut f));
            },
        );
        self.recycler.give(released_while_shown);
        end
    }

    fn release(&self, ids: impl IntoIterator<Item = u64>) -> usize {
        self.recycler.release(&self.ledger, ids).0
    }
}

/// Accepts requests 1 and 2 (both before either completes), then completes each on a thread
/// of its own (a worker each).
fn two_finishing(parts: &Arc<Parts>) -> Vec<thread::JoinHandle<()>> {
    let entry = echo_entry();
    let reqs: Vec<_> = (1..=2)
        .map(|id| parts.accept(id, &entry).unwrap())
        .collect();
    reqs.into_iter()
        .map(|req| {
            let parts = parts.clone();
            thread::spawn(move || assert!(parts.finish(&req, Outcome::ok(Vec::new()))))
        })
        .collect()
}

fn join_all(threads: Vec<thread::JoinHandle<()>>) {
    for t in threads {
        t.join().unwrap();
    }
}

/// Issue 12, point 1: another thread releases the id while the poller reads the outcome. loom
/// checks every access to the outcome against the happens-before order: a free racing the
/// read fails the model. The release happens exactly once, and every slot comes back.
#[test]
fn loom_release_never_frees_what_a_poll_reads() {
    loom::model(|| {
        let parts = Parts::new(4);
        let entry = echo_entry();
        let req = parts.accept(1, &entry).unwrap();
        assert!(parts.finish(&req, Outcome::ok(b"abc".to_vec())));
        drop(req);
        let releaser = {
            let parts = parts.clone();
            thread::spawn(move || parts.release([1]))
        };
        let mut seen = Vec::new();
        let end = parts.poll(1, 1, |req, outcome| {
            assert_eq!(req.id, 1);
            seen.push(outcome.data.as_slice().to_vec());
        });
        assert!(matches!(end, PollEnd::Taken(1)));
        let by_releaser = releaser.join().unwrap();
        let by_poller = parts.release([1]);
        assert_eq!(seen, [b"abc".to_vec()]);
        assert_eq!(by_releaser + by_poller, 1, "released exactly once");
        assert_eq!(parts.ledger.in_flight(), 0);
        assert!(parts.ledger.snapshot().is_empty());
    });
}

/// Two pollers block while two workers post one completion each: both pollers get one (a
/// lost wake-up would leave one blocked forever, which loom reports as a deadlock).
#[test]
fn loom_blocked_pollers_are_woken_by_pushes() {
    loom::model(|| {
        let parts = Parts::new(4);
        let workers = two_finishing(&parts);
        let other_poller = {
            let parts = parts.clone();
            thread::spawn(move || matches!(parts.poll(1, 1, |_, _| {}), PollEnd::Taken(1)))
        };
        assert!(matches!(parts.poll(1, 1, |_, _| {}), PollEnd::Taken(1)));
        assert!(other_poller.join().unwrap());
        join_all(workers);
        assert_eq!(parts.release([1, 2]), 2);
    });
}

/// A poll for a batch (`min` 2) waits for both completions, posted by two workers.
#[test]
fn loom_a_batch_poll_waits_for_the_whole_batch() {
    loom::model(|| {
        let parts = Parts::new(4);
        let workers = two_finishing(&parts);
        let mut got = 0;
        assert!(matches!(
            parts.poll(2, 2, |_, _| got += 1),
            PollEnd::Taken(2)
        ));
        assert_eq!(got, 2);
        join_all(workers);
    });
}

/// Shutdown races a completion and a submit: the poller gets exactly the requests that were
/// accepted (the one in flight, and the late submit if it got in before shutdown), then
/// `Closed`; a submit after shutdown is refused.
#[test]
fn loom_shutdown_vs_submit_vs_poll() {
    loom::model(|| {
        let parts = Parts::new(4);
        let entry = echo_entry();
        let first = parts.accept(1, &entry).unwrap();
        let worker = {
            let parts = parts.clone();
            thread::spawn(move || assert!(parts.finish(&first, Outcome::ok(Vec::new()))))
        };
        let late_submit = {
            let (parts, entry) = (parts.clone(), entry.clone());
            thread::spawn(move || match parts.accept(2, &entry) {
                Some(req) => {
                    assert!(parts.finish(&req, Outcome::ok(Vec::new())));
                    1
                }
                None => 0,
            })
        };
        let shutdown = {
            let parts = parts.clone();
            thread::spawn(move || {
                assert!(parts.queue.begin_shutdown());
                assert!(parts.queue.reserve(1).is_err(), "no submit after shutdown");
            })
        };
        let mut polled = 0;
        loop {
            match parts.poll(4, 1, |_, _| {}) {
                PollEnd::Taken(n) => polled += n,
                PollEnd::Closed => break,
            }
        }
        worker.join().unwrap();
        shutdown.join().unwrap();
        let accepted_late = late_submit.join().unwrap();
        assert_eq!(polled, 1 + accepted_late);
        assert_eq!(parts.release(1..=2), polled);
        assert_eq!(parts.ledger.in_flight(), 0);
    });
}

/// `wake` ends a blocked poll with nothing, whether it comes before or during the wait.
#[test]
fn loom_wake_ends_a_blocked_poll() {
    loom::model(|| {
        let parts = Parts::new(1);
        let waker = {
            let parts = parts.clone();
            thread::spawn(move || parts.queue.wake())
        };
        assert!(matches!(parts.poll(1, 1, |_, _| {}), PollEnd::Taken(0)));
        waker.join().unwrap();
    });
}

/// Issue 17: a batch poll (`min` 2) with a request in flight spins on the queue's counters
/// before it sleeps, while a worker posts the batch's last completion and another thread wakes
/// it. Whatever the order (push or wake before, during or after the spin, or while it
/// sleeps), the poll ends: with the whole batch, or with nothing for the wake (once), and the
/// next poll then gets the batch. A push or wake missed between the spin and the sleep would
/// leave it asleep, which loom reports as a deadlock.
#[test]
fn loom_a_spinning_poll_never_misses_a_push_or_a_wake() {
    loom::model(|| {
        let parts = Parts::new(4);
        let entry = echo_entry();
        let first = parts.accept(1, &entry).unwrap();
        let second = parts.accept(2, &entry).unwrap();
        assert!(parts.finish(&first, Outcome::ok(Vec::new())));
        let worker = {
            let parts = parts.clone();
            thread::spawn(move || assert!(parts.finish(&second, Outcome::ok(Vec::new()))))
        };
        let waker = {
            let parts = parts.clone();
            thread::spawn(move || parts.queue.wake())
        };
        let (mut polled, mut woken) = (0, 0);
        while polled < 2 {
            match parts.poll(2, 2, |_, _| {}) {
                PollEnd::Taken(0) => woken += 1,
                PollEnd::Taken(n) => polled += n,
                PollEnd::Closed => unreachable!("not shut down"),
            }
        }
        worker.join().unwrap();
        waker.join().unwrap();
        assert_eq!(polled, 2);
        assert!(woken <= 1, "one wake ends at most one poll");
        assert_eq!(parts.release([1, 2]), 2);
    });
}

/// Issue 17: a batch poller and a plain poller sleep while one worker posts three completions
/// one push at a time. A batch poller already signalled is not signalled again by the pushes
/// that follow; one that wakes, finds too little and sleeps again must still be woken by a
/// later push. Both get theirs (a lost wake-up is a deadlock for loom).
#[test]
fn loom_a_batch_and_a_plain_poller_are_each_woken() {
    loom::model(|| {
        let parts = Parts::new(4);
        let entry = echo_entry();
        let reqs: Vec<_> = (1..=3)
            .map(|id| parts.accept(id, &entry).unwrap())
            .collect();
        let worker = {
            let parts = parts.clone();
            thread::spawn(move || {
                for req in &reqs {
                    assert!(parts.finish(req, Outcome::ok(Vec::new())));
                }
            })
        };
        let plain = {
            let parts = parts.clone();
            thread::spawn(move || matches!(parts.poll(1, 1, |_, _| {}), PollEnd::Taken(1)))
        };
        let mut polled = 0;
        while polled < 2 {
            if let PollEnd::Taken(n) = parts.poll(2, 2, |_, _| {}) {
                polled += n;
            }
        }
        assert!(plain.join().unwrap());
        worker.join().unwrap();
        assert_eq!(polled, 2);
        assert_eq!(parts.release(1..=3), 3);
    });
}

/// The notify fd follows the queue (readable exactly while completions wait, or once closed)
/// and the hook runs after completions arrive, whatever the order of pushes and polls.
#[test]
fn loom_notify_fd_and_hook_follow_the_queue() {
    loom::model(|| {
        let parts = Parts::new(4);
        let fd = parts.queue.fd();
        let hooks = Arc::new(AtomicUsize::new(0));
        let counter = hooks.clone();
        parts.queue.set_hook(Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })));
        let workers = two_finishing(&parts);
        let mut polled = 0;
        while polled < 2 {
            if let PollEnd::Taken(n) = parts.poll(2, 1, |_, _| {}) {
                polled += n;
            }
        }
        join_all(workers);
        assert!(hooks.load(Ordering::SeqCst) >= 1);
        assert!(!readable(fd), "nothing waits: the fd must not be readable");
        parts.queue.begin_shutdown();
        assert!(readable(fd), "closed: the fd must be readable");
    });
}

fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// A cancel races the handler's own completion: exactly one completion is posted, polled and
/// released, with the winner's status.
#[test]
fn loom_cancel_vs_completion_posts_exactly_one() {
    loom::model(|| {
        let parts = Parts::new(4);
        let entry = echo_entry();
        let req = parts.accept(1, &entry).unwrap();
        req.mark_running(None);
        let handler = {
            let (parts, req) = (parts.clone(), req.clone());
            thread::spawn(move || parts.finish(&req, Outcome::ok(b"done".to_vec())))
        };
        let canceller = {
            let parts = parts.clone();
            thread::spawn(move || match parts.ledger.get(1) {
                Some(req) => parts.finish(
                    &req,
                    Outcome::failed(Status::PORTWAY_CANCELLED, "cancelled"),
                ),
                None => false,
            })
        };
        drop(req);
        let mut status = None;
        assert!(matches!(
            parts.poll(4, 1, |_, o| status = Some(o.status)),
            PollEnd::Taken(1)
        ));
        let handler_won = handler.join().unwrap();
        let cancel_won = canceller.join().unwrap();
        assert!(handler_won ^ cancel_won, "exactly one completion");
        let want = if handler_won {
            Status::PORTWAY_OK
        } else {
            Status::PORTWAY_CANCELLED
        };
        assert_eq!(status, Some(want));
        assert_eq!(parts.release([1]), 1);
        assert_eq!(parts.release([1]), 0);
        assert_eq!(parts.ledger.in_flight(), 0);
    });
}

/// A submitter waits for a slot (`portway_submit_wait`) while the holder releases it, or while
/// shutdown begins: it never sleeps through either.
#[test]
fn loom_slot_waiters_wake_on_release_or_shutdown() {
    loom::model(|| {
        let parts = Parts::new(1);
        assert_eq!(parts.ledger.try_acquire(1), 1);
        let stopping = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (parts, stopping) = (parts.clone(), stopping.clone());
            thread::spawn(move || {
                parts
                    .ledger
                    .acquire_wait(None, || stopping.load(Ordering::SeqCst))
            })
        };
        let stopper = {
            let (parts, stopping) = (parts.clone(), stopping.clone());
            thread::spawn(move || {
                stopping.store(true, Ordering::SeqCst);
                parts.ledger.wake_slot_waiters();
            })
        };
        parts.ledger.release_slots(1);
        let got = waiter.join().unwrap();
        stopper.join().unwrap();
        assert_eq!(parts.ledger.in_flight(), u64::from(got));
    });
}

/// Issue 17: worker 0 fills its lane with a chunk and starts its first job (a slow one, which
/// never ends here) while worker 1 runs out of messages and goes idle. Either worker 1 takes
/// jobs from the lane, or worker 0 is told to send it a hint: the rest of the chunk never
/// waits behind the slow job while a worker sleeps. Every job is taken exactly once.
#[test]
fn loom_an_idle_worker_finds_a_new_chunk_or_is_hinted() {
    loom::model(|| {
        let lanes = Arc::new(Lanes::<u32>::new(2));
        let filler = {
            let lanes = lanes.clone();
            thread::spawn(move || {
                let hint = lanes.fill(0, vec![1, 2, 3]);
                (hint, lanes.next(0))
            })
        };
        let stolen = lanes.begin_idle(1);
        let (hint, first) = filler.join().unwrap();
        assert!(stolen.is_some() || hint, "a worker sleeps while jobs wait");
        // The hint, once taken, finds whatever is left.
        let hinted = if hint { lanes.take_hint(1) } else { None };
        let mut all: Vec<u32> = first.into_iter().collect();
        all.extend(stolen.into_iter().flatten());
        all.extend(hinted.into_iter().flatten());
        all.extend(lanes.drain(0));
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3]);
    });
}
