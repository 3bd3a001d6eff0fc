//! Per-worker lanes: the jobs of the chunk a pool worker is running, where a worker that ran
//! out of work takes half of them (so a worker never sits on a chunk behind a slow job while
//! another idles), and the count of idle workers that makes a worker that filled its lane send
//! a hint to the pool channel (so a worker asleep on the channel wakes to take some).
//!
//! No job is left behind by the race between a worker filling its lane and another going idle:
//! the idle one counts itself idle, then looks at every lane under its lock; the filling one
//! fills under that lock, then reads the idle count. Both go through the lane's lock, so either
//! the idle worker finds the jobs or the filling one sees it idle and sends the hint (the loom
//! model `an_idle_worker_finds_a_new_chunk_or_is_hinted` checks it). One hint at a time is
//! out: a worker that finds the channel full of chunks while the other is slow to wake does
//! not add a hint per chunk.
//!
//! Each job is taken once: only under its lane's lock, by the owner from the front or by a
//! thief from the back.

use std::collections::VecDeque;

use super::sync::{AtomicBool, AtomicUsize, Mutex, MutexGuard};
use std::sync::atomic::Ordering::SeqCst;

/// One lane per worker, and the idle count.
pub(crate) struct Lanes<T> {
    lanes: Box<[Lane<T>]>,
    /// Workers that found no message and are looking for work or asleep on the channel.
    idle: AtomicUsize,
    /// A hint was sent and no worker took it yet.
    hinted: AtomicBool,
}

/// One worker's jobs, on its own cache lines (its owner takes the lock once per job).
#[repr(align(128))]
struct Lane<T>(Mutex<VecDeque<T>>);

impl<T> Lanes<T> {
    /// Empty lanes for `n` workers.
    pub fn new(n: usize) -> Self {
        Lanes {
            lanes: (0..n.max(1))
                .map(|_| Lane(Mutex::new(VecDeque::new())))
                .collect(),
            idle: AtomicUsize::new(0),
            hinted: AtomicBool::new(false),
        }
    }

    fn lane(&self, worker: usize) -> MutexGuard<'_, VecDeque<T>> {
        let lane = &self.lanes[worker % self.lanes.len()].0;
        lane.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a chunk's jobs at the back of `worker`'s lane. True when the caller is to send a
    /// hint to the pool channel: the lane holds two jobs or more, a worker is idle, and no
    /// hint is out yet.
    pub fn fill(&self, worker: usize, jobs: Vec<T>) -> bool {
        let mut lane = self.lane(worker);
        if lane.is_empty() {
            // Takes over the chunk's buffer: no job is moved (a pool job is 64 bytes).
            *lane = VecDeque::from(jobs);
        } else {
            lane.extend(jobs);
        }
        let shareable = lane.len() >= 2;
        drop(lane);
        // SeqCst, after the lane's lock: see the module comment.
        shareable
            && self.idle.load(SeqCst) > 0
            && self
                .hinted
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_ok()
    }

    /// A worker took the hint: takes the back half of another worker's lane, as
    /// [`Lanes::begin_idle`] does (None when the others took it all already).
    pub fn take_hint(&self, worker: usize) -> Option<Vec<T>> {
        self.hinted.store(false, SeqCst);
        self.steal(worker)
    }

    /// The next job of `worker`'s lane (its oldest).
    pub fn next(&self, worker: usize) -> Option<T> {
        self.lane(worker).pop_front()
    }

    /// Everything left in `worker`'s lane.
    pub fn drain(&self, worker: usize) -> Vec<T> {
        self.lane(worker).drain(..).collect()
    }

    /// `worker` found no message: counts it idle and takes the back half (at least one job)
    /// of another worker's lane. Some: it is busy again with those jobs. None: it stays
    /// counted idle until [`Lanes::end_idle`] (call it once a message came).
    pub fn begin_idle(&self, worker: usize) -> Option<Vec<T>> {
        self.idle.fetch_add(1, SeqCst);
        let taken = self.steal(worker);
        if taken.is_some() {
            self.end_idle();
        }
        taken
    }

    /// An idle worker got work.
    pub fn end_idle(&self) {
        self.idle.fetch_sub(1, SeqCst);
    }

    /// The back half (at least one job) of the first other lane that holds any.
    fn steal(&self, worker: usize) -> Option<Vec<T>> {
        let n = self.lanes.len();
        (1..n).map(|k| (worker + k) % n).find_map(|other| {
            let mut lane = self.lane(other);
            let len = lane.len();
            (len > 0).then(|| lane.drain(len - len.div_ceil(2)..).collect())
        })
    }
}
