//! The in-flight ledger: every accepted request from acceptance until its completion is
//! released, and the bounded slot count (`max_in_flight`) that gives backpressure.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::request::{ReleaseClaim, Request};
use super::sync::{AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Hashes engine-assigned ids (sequential integers) with one multiply.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = Mutex<ShardMap>;

/// Requests in flight, by id, plus the slot counter.
pub(crate) struct Ledger {
    shards: Box<[Shard]>,
    in_flight: AtomicU64,
    max_in_flight: u64,
    slot_waiters: AtomicUsize,
    slot_lock: Mutex<()>,
    slot_freed: Condvar,
    /// Set (with its message) when everything in flight is cancelled for good (a `CANCEL_NOW`
    /// shutdown, a drain deadline, the engine freed): a submit that reserved intake before the
    /// shutdown but records its requests after the cancel pass's snapshot cancels them itself.
    cancelling: std::sync::OnceLock<String>,
}

/// Ids in runs of this many share a shard, so a batch of consecutive ids (one submit or
/// release of a batch) takes each shard's lock once per run rather than once per id.
const RUN: u64 = 64;

fn shard_of(id: u64) -> usize {
    ((id / RUN) as usize) % SHARDS
}

impl Ledger {
    pub fn new(max_in_flight: u64) -> Self {
        Ledger {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(ShardMap::default()))
                .collect(),
            in_flight: AtomicU64::new(0),
            max_in_flight,
            slot_waiters: AtomicUsize::new(0),
            slot_lock: Mutex::new(()),
            slot_freed: Condvar::new(),
            cancelling: std::sync::OnceLock::new(),
        }
    }

    /// The configured bound.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight
    }

    /// Slots currently held.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes up to `n` slots at once; returns how many were taken.
    pub fn try_acquire(&self, n: u64) -> u64 {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            let take = n.min(self.max_in_flight.saturating_sub(cur));
            if take == 0 {
                return 0;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes `n` slots if that many are free, else none; true when taken (a batch is
    /// accepted whole or not at all).
    pub fn try_acquire_all(&self, n: u64) -> bool {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n > self.max_in_flight.saturating_sub(cur) {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Waits for one slot until `deadline` (None = forever) or until `give_up()` says stop.
    /// Returns true when a slot was taken.
    ///
    /// `give_up()` is asked before every attempt and again after a slot was taken: a waiter
    /// woken by a release after `give_up()` turned true (a shutdown) must not win the freed
    /// slot, so one taken then is given back (waking the other waiters) and the wait fails.
    pub fn acquire_wait(&self, deadline: Option<Instant>, give_up: impl Fn() -> bool) -> bool {
        let take = || {
            if self.try_acquire(1) == 0 {
                return false;
            }
            if give_up() {
                self.release_slots(1);
                return false;
            }
            true
        };
        if take() {
            return true;
        }
        let mut guard = self.slot_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.slot_waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if give_up() {
                break false;
            }
            if self.try_acquire(1) == 1 {
                if give_up() {
                    // Lost to the stop after all: the slot goes back. `release_slots` would
                    // take `slot_lock`, which this thread holds: give it back by hand.
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                    self.slot_freed.notify_all();
                    break false;
                }
                break true;
            }
            guard = match deadline {
                None => self
                    .slot_freed
                    .wait(guard)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    self.slot_freed
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        };
        self.slot_waiters.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// Returns `n` slots and wakes waiting submitters.
    pub fn release_slots(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        if self.slot_waiters.load(Ordering::SeqCst) > 0 {
            self.wake_slot_waiters();
        }
    }

    /// Wakes every submitter blocked in `acquire_wait` (slot freed, or shutdown).
    pub fn wake_slot_waiters(&self) {
        let _g = self.slot_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.slot_freed.notify_all();
    }

    /// Records accepted requests, taking each shard's lock once per run of ids in it.
    pub fn insert(&self, reqs: impl IntoIterator<Item = Arc<Request>>) {
        let mut cursor = ShardCursor::new(self);
        for req in reqs {
            cursor.shard(req.id).insert(req.id, req);
        }
    }

    /// The request with this id, if it is still in flight.
    pub fn get(&self, id: u64) -> Option<Arc<Request>> {
        self.shards[shard_of(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Forgets the requests whose completions were polled (they are being released), keeping
    /// each shard's lock across a run of ids in that shard. Returns how many were released
    /// and those whose memory the caller frees or recycles (outside the locks); a request a
    /// poller is still showing to the host is released but left for that poller to free.
    /// Ids unknown or not yet polled are skipped.
    pub fn remove_polled(&self, ids: impl IntoIterator<Item = u64>) -> Released {
        let mut cursor = ShardCursor::new(self);
        let mut released = Released::default();
        for id in ids {
            if let Entry::Occupied(e) = cursor.shard(id).entry(id) {
                match e.get().claim_release() {
                    ReleaseClaim::NotPolled => {}
                    ReleaseClaim::Free => {
                        released.count += 1;
                        released.slots += e.get().slots();
                        released.to_free.push(e.remove());
                    }
                    ReleaseClaim::Deferred => {
                        released.count += 1;
                        released.slots += e.get().slots();
                        // The poller holds its own reference until it is done.
                        drop(e.remove());
                    }
                }
            }
        }
        released
    }

    /// From now on every request recorded is to be cancelled with `message` (the first
    /// message set stays). Call before taking the snapshot of the cancel pass: a request
    /// recorded after its shard was read then sees the mark (the shard lock orders the two).
    pub fn cancel_from_now(&self, message: &str) {
        let _ = self.cancelling.set(message.to_owned());
    }

    /// The message every request recorded now must be cancelled with, if any (ask after
    /// `insert`).
    pub fn cancelling(&self) -> Option<&str> {
        self.cancelling.get().map(String::as_str)
    }

    /// Every request in flight (a snapshot).
    pub fn snapshot(&self) -> Vec<Arc<Request>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(s.values().cloned());
        }
        all
    }

    /// Drops every entry (engine teardown).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let drained: Vec<_> = shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            drop(drained);
        }
    }
}

/// What `Ledger::remove_polled` released.
#[derive(Default)]
pub(crate) struct Released {
    /// Requests released.
    pub count: usize,
    /// The slots they held (a batch holds one per item): the caller's to return.
    pub slots: u64,
    /// The released requests nothing reads any more, to be freed or recycled.
    pub to_free: Vec<Arc<Request>>,
}

type ShardMap = HashMap<u64, Arc<Request>, BuildHasherDefault<IdHasher>>;

/// Walks ids in order holding one shard's lock at a time, switching only when an id belongs to
/// another shard.
struct ShardCursor<'a> {
    ledger: &'a Ledger,
    held: Option<(usize, MutexGuard<'a, ShardMap>)>,
}

impl<'a> ShardCursor<'a> {
    fn new(ledger: &'a Ledger) -> Self {
        ShardCursor { ledger, held: None }
    }

    /// The locked shard that holds (or would hold) `id`.
    fn shard(&mut self, id: u64) -> &mut ShardMap {
        let want = shard_of(id);
        if !matches!(&self.held, Some((i, _)) if *i == want) {
            self.held = None; // unlock before locking the next shard
            let guard = self.ledger.shards[want]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.held = Some((want, guard));
        }
        match &mut self.held {
            Some((_, guard)) => guard,
            None => unreachable!("a shard was just locked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_all_its_slots_or_none() {
        let l = Ledger::new(5);
        assert!(l.try_acquire_all(3));
        assert!(!l.try_acquire_all(3));
        assert_eq!(l.in_flight(), 3);
        assert!(l.try_acquire_all(2));
        assert!(!l.try_acquire_all(1));
    }

    #[test]
    fn slots_are_bounded_and_partial() {
        let l = Ledger::new(5);
        assert_eq!(l.try_acquire(3), 3);
        assert_eq!(l.try_acquire(3), 2);
        assert_eq!(l.try_acquire(1), 0);
        l.release_slots(4);
        assert_eq!(l.in_flight(), 1);
    }

    #[test]
    fn remove_polled_skips_unknown_and_unpolled_ids_across_shards() {
        use crate::engine::registry::echo_entry;
        let entry = echo_entry();
        let l = Ledger::new(1000);
        let now = Instant::now();
        let ids = [1, 2, 63, 64, 65, 200, 1030];
        for id in ids {
            let req = Arc::new(Request::new(id, 0, entry.clone(), now, 0));
            if id != 2 {
                assert!(req.show(|_, _| {}).is_none());
            }
            l.insert([req]);
        }
        // 2 is not polled, 999 is unknown, 63 appears twice: 5 removed.
        let released = l.remove_polled([1, 2, 63, 63, 64, 999, 65, 1030]);
        assert_eq!((released.count, released.to_free.len()), (5, 5));
        let mut left: Vec<u64> = l.snapshot().iter().map(|r| r.id).collect();
        left.sort();
        assert_eq!(left, [2, 200]);
    }

    #[test]
    fn acquire_wait_times_out_and_wakes() {
        let l = Arc::new(Ledger::new(1));
        assert_eq!(l.try_acquire(1), 1);
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        assert!(!l.acquire_wait(Some(soon), || false));
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.acquire_wait(None, || false));
        std::thread::sleep(std::time::Duration::from_millis(20));
        l.release_slots(1);
        assert!(t.join().unwrap());
        assert_eq!(l.in_flight(), 1);
    }

    /// A waiter woken by a release after its give-up condition turned true (a shutdown) must
    /// not take the freed slot: it gives up and the slot stays free.
    #[test]
    fn acquire_wait_gives_up_before_taking_a_slot_freed_after_the_stop() {
        let l = Arc::new(Ledger::new(1));
        assert_eq!(l.try_acquire(1), 1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l2, stop2) = (l.clone(), stop.clone());
        let t = std::thread::spawn(move || l2.acquire_wait(None, || stop2.load(Ordering::SeqCst)));
        // The waiter counts itself under `slot_lock` and holds it until it sleeps on the
        // condvar: once it is counted, taking the lock means it is asleep.
        while l.slot_waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        {
            let _asleep = l.slot_lock.lock().unwrap();
            stop.store(true, Ordering::SeqCst);
        }
        // The release (not the stop) wakes it, with the slot free.
        l.release_slots(1);
        assert!(!t.join().unwrap(), "a waiter took a slot after giving up");
        assert_eq!(l.in_flight(), 0);
    }

    /// A slot won while the give-up condition already holds (shutdown began between the
    /// caller's intake check and its attempt) is given back, not kept.
    #[test]
    fn acquire_wait_gives_back_a_slot_won_after_the_stop() {
        let l = Ledger::new(2);
        assert!(!l.acquire_wait(None, || true));
        assert_eq!(l.in_flight(), 0);
    }
}
