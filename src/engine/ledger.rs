//! The in-flight ledger: every accepted request from acceptance until its completion is
//! released, and the bounded slot count (`max_in_flight`) that gives backpressure.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::request::Request;

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

type Shard = Mutex<HashMap<u64, Arc<Request>, BuildHasherDefault<IdHasher>>>;

/// Requests in flight, by id, plus the slot counter.
pub(crate) struct Ledger {
    shards: Box<[Shard]>,
    in_flight: AtomicU64,
    max_in_flight: u64,
    slot_waiters: AtomicUsize,
    slot_lock: Mutex<()>,
    slot_freed: Condvar,
}

fn shard_of(id: u64) -> usize {
    (id as usize) % SHARDS
}

impl Ledger {
    pub fn new(max_in_flight: u64) -> Self {
        Ledger {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            in_flight: AtomicU64::new(0),
            max_in_flight,
            slot_waiters: AtomicUsize::new(0),
            slot_lock: Mutex::new(()),
            slot_freed: Condvar::new(),
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

    /// Waits for one slot until `deadline` (None = forever) or until `give_up()` says stop.
    /// Returns true when a slot was taken.
    pub fn acquire_wait(&self, deadline: Option<Instant>, give_up: impl Fn() -> bool) -> bool {
        if self.try_acquire(1) == 1 {
            return true;
        }
        let mut guard = self.slot_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.slot_waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if self.try_acquire(1) == 1 {
                break true;
            }
            if give_up() {
                break false;
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

    /// Records an accepted request.
    pub fn insert(&self, req: Arc<Request>) {
        let mut shard = self.shards[shard_of(req.id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        shard.insert(req.id, req);
    }

    /// The request with this id, if it is still in flight.
    pub fn get(&self, id: u64) -> Option<Arc<Request>> {
        self.shards[shard_of(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Forgets a request whose completion was polled (it is being released). Returns it if it
    /// was present and polled; an unpolled request stays.
    pub fn remove_polled(&self, id: u64) -> Option<Arc<Request>> {
        let mut shard = self.shards[shard_of(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match shard.get(&id) {
            Some(req) if req.is_polled() => shard.remove(&id),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
