//! The worker pool's channel, measured in the engine's own pattern.
//!
//! portway's native worker pool is a few threads pulling jobs from one unbounded `flume`
//! channel (`src/engine/pool.rs`); each finished job is pushed at once into the completion
//! queue, a `Mutex<VecDeque<_>>` + `Condvar` that the poller drains in batches
//! (`src/engine/queue.rs`). This crate rebuilds that pattern with nothing else of the engine in
//! it, so that the channel is the only thing that differs between the variants:
//!
//! - one producer (the benchmark's own thread) sends jobs in batches of [`BATCH`], never more
//!   than [`MAX_OUTSTANDING`] of them outstanding (submitted and not yet polled);
//! - [`WORKERS`] worker threads block on the channel's `recv`, run the job (a no-op, or a busy
//!   spin to model a CPU-bound pool) and push its id into the shared [`Completions`] queue;
//! - the producer polls completions in batches of up to [`BATCH`], blocking when none is ready,
//!   until every job of the round is back.
//!
//! The three channels are flume (unbounded MPMC, what the engine uses), crossbeam-channel
//! (unbounded MPMC) and tokio's unbounded mpsc. Tokio's receiver is single-consumer, so its
//! workers share it behind a `std::sync::Mutex` and call `blocking_recv` under the lock: that
//! is the only way to feed several blocking threads from it.
//!
//! Why: the issue asks to keep flume unless another channel is clearly faster *in this
//! pattern*, where a round trip is a send, a wake-up of a blocked worker, a job, and a
//! completion push (with a poller wake-up). Channel micro-benchmarks that time send/recv pairs
//! on spinning threads measure something else.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs per submitted batch, and the most completions taken per poll.
pub const BATCH: u64 = 1024;
/// The most jobs outstanding (sent and not yet polled) at any time.
pub const MAX_OUTSTANDING: u64 = 8192;
/// Worker threads in the pool.
pub const WORKERS: usize = 2;
/// Jobs per measured round (one criterion iteration).
pub const JOBS: u64 = 100_000;
/// How long the CPU-bound job spins.
pub const SPIN: Duration = Duration::from_micros(2);

/// One job on the pool channel: an id plus padding, four pointer-sized words in all, about the
/// size of the engine's `PoolJob` (a few `Arc`s and a ticket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Word 0 is the id; the others stand for the engine job's other fields.
    words: [usize; 4],
}

impl Job {
    /// A job with this id (truncated to the pointer width).
    pub fn new(id: u64) -> Job {
        Job {
            words: [id as usize, 0, 0, 0],
        }
    }

    /// The job's id.
    pub fn id(&self) -> u64 {
        self.words[0] as u64
    }
}

/// What a worker does with a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Nothing: the round measures the channel and the completion queue alone.
    Noop,
    /// Spin on the CPU for this long (a CPU-bound pool).
    Spin(Duration),
}

impl Work {
    /// Runs `job`.
    fn run(self, job: &Job) {
        match self {
            Work::Noop => {}
            Work::Spin(d) => {
                let start = Instant::now();
                while start.elapsed() < d {
                    std::hint::spin_loop();
                }
            }
        }
        std::hint::black_box(job);
    }
}

/// An unbounded channel that [`WORKERS`] blocking threads can receive from.
pub trait Channel: 'static {
    /// The name the benchmark reports (criterion's benchmark id).
    const NAME: &'static str;
    /// The producer's end.
    type Tx;
    /// The workers' end, one clone per worker.
    type Rx: Clone + Send + 'static;
    /// Makes a new unbounded channel.
    fn unbounded() -> (Self::Tx, Self::Rx);
    /// Sends one job (the receivers outlive every send of a round).
    fn send(tx: &Self::Tx, job: Job);
    /// Blocks for the next job; `None` once the sender is gone and the channel is empty.
    fn recv(rx: &Self::Rx) -> Option<Job>;
}

/// flume's unbounded MPMC channel, as the engine uses it.
pub struct Flume;

impl Channel for Flume {
    const NAME: &'static str = "flume";
    type Tx = flume::Sender<Job>;
    type Rx = flume::Receiver<Job>;

    fn unbounded() -> (Self::Tx, Self::Rx) {
        flume::unbounded()
    }

    fn send(tx: &Self::Tx, job: Job) {
        tx.send(job).expect("the pool's workers are alive");
    }

    fn recv(rx: &Self::Rx) -> Option<Job> {
        rx.recv().ok()
    }
}

/// crossbeam-channel's unbounded MPMC channel.
pub struct Crossbeam;

impl Channel for Crossbeam {
    const NAME: &'static str = "crossbeam-channel";
    type Tx = crossbeam_channel::Sender<Job>;
    type Rx = crossbeam_channel::Receiver<Job>;

    fn unbounded() -> (Self::Tx, Self::Rx) {
        crossbeam_channel::unbounded()
    }

    fn send(tx: &Self::Tx, job: Job) {
        tx.send(job).expect("the pool's workers are alive");
    }

    fn recv(rx: &Self::Rx) -> Option<Job> {
        rx.recv().ok()
    }
}

/// tokio's unbounded mpsc channel. It has a single consumer, so the workers share the receiver
/// behind a `std::sync::Mutex` and call `blocking_recv` while holding it: one worker waits in
/// the channel, the other on the mutex. That is how one would have to run a pool of blocking
/// threads on it; the job itself runs after the lock is released.
pub struct TokioMpsc;

impl Channel for TokioMpsc {
    const NAME: &'static str = "tokio-mpsc";
    type Tx = tokio::sync::mpsc::UnboundedSender<Job>;
    type Rx = Arc<Mutex<tokio::sync::mpsc::UnboundedReceiver<Job>>>;

    fn unbounded() -> (Self::Tx, Self::Rx) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, Arc::new(Mutex::new(rx)))
    }

    fn send(tx: &Self::Tx, job: Job) {
        tx.send(job).expect("the pool's workers are alive");
    }

    fn recv(rx: &Self::Rx) -> Option<Job> {
        lock(rx).blocking_recv()
    }
}

/// Locks `m`, ignoring poisoning (as the engine does).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The completion queue, shared by every variant: the engine's `CompletionQueue` without its
/// eventfd, hook and intake counter. A push wakes a blocked poller only when one is waiting and
/// has not been signalled yet, so a burst of pushes costs one wake-up, not one per push.
#[derive(Default)]
pub struct Completions {
    /// The queued ids and the poller bookkeeping.
    state: Mutex<CompletionState>,
    /// Signalled when completions arrive for a blocked poller.
    ready_cv: Condvar,
}

/// What [`Completions`] keeps under its lock.
#[derive(Default)]
struct CompletionState {
    /// Ids of finished jobs, oldest first.
    ready: VecDeque<u64>,
    /// Pollers blocked in [`Completions::poll`].
    waiting_pollers: usize,
    /// Wake-ups sent to blocked pollers that they have not consumed yet.
    signalled: usize,
}

impl Completions {
    /// Queues one finished job (a worker calls this as soon as the job returns).
    pub fn push(&self, id: u64) {
        let mut st = lock(&self.state);
        st.ready.push_back(id);
        if st.waiting_pollers > st.signalled {
            st.signalled += 1;
            self.ready_cv.notify_one();
        }
    }

    /// Blocks until at least one completion is ready, then moves up to `cap` of them into
    /// `out`. Returns how many were moved.
    pub fn poll(&self, cap: usize, out: &mut Vec<u64>) -> usize {
        let mut st = lock(&self.state);
        loop {
            if !st.ready.is_empty() {
                let n = cap.min(st.ready.len());
                out.extend(st.ready.drain(..n));
                return n;
            }
            st.waiting_pollers += 1;
            st = self
                .ready_cv
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiting_pollers -= 1;
            st.signalled = st.signalled.saturating_sub(1).min(st.waiting_pollers);
        }
    }
}

/// A running pool: [`WORKERS`] threads on one channel of kind `C`, and the completion queue.
/// Dropping it (or [`Pool::stop`]) closes the channel and joins every worker.
pub struct Pool<C: Channel> {
    /// The producer's end; `None` once the pool is stopping.
    tx: Option<C::Tx>,
    /// The worker threads, joined on stop.
    workers: Vec<JoinHandle<()>>,
    /// Where the workers post finished jobs.
    completions: Arc<Completions>,
    /// The id of the next job to send.
    next_id: u64,
    /// Reused buffer for polled ids.
    polled: Vec<u64>,
}

impl<C: Channel> Pool<C> {
    /// Starts `workers` threads that run `work` for each job.
    pub fn start(workers: usize, work: Work) -> Pool<C> {
        let (tx, rx) = C::unbounded();
        let completions = Arc::new(Completions::default());
        let workers = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let completions = completions.clone();
                std::thread::Builder::new()
                    .name(format!("bench-pool-{}-{i}", C::NAME))
                    .spawn(move || {
                        while let Some(job) = C::recv(&rx) {
                            work.run(&job);
                            completions.push(job.id());
                        }
                    })
                    .expect("spawn a pool worker")
            })
            .collect();
        Pool {
            tx: Some(tx),
            workers,
            completions,
            next_id: 0,
            polled: Vec::with_capacity(BATCH as usize),
        }
    }

    /// Runs one round of `n` jobs: sends them in batches of [`BATCH`] with at most
    /// [`MAX_OUTSTANDING`] outstanding, and polls completions in batches of up to [`BATCH`]
    /// until all `n` are back. Returns the sum of the completed ids (wrapping), which a caller
    /// can check against [`Pool::expected_sum`].
    pub fn run(&mut self, n: u64) -> u64 {
        let tx = self.tx.as_ref().expect("the pool is running");
        let first = self.next_id;
        let (mut sent, mut done, mut sum) = (0u64, 0u64, 0u64);
        while done < n {
            // Top up: whole batches while they fit under the outstanding limit.
            while sent < n && sent - done + BATCH.min(n - sent) <= MAX_OUTSTANDING {
                let end = (sent + BATCH).min(n);
                for id in first + sent..first + end {
                    C::send(tx, Job::new(id));
                }
                sent = end;
            }
            self.polled.clear();
            done += self.completions.poll(BATCH as usize, &mut self.polled) as u64;
            sum = self
                .polled
                .iter()
                .fold(sum, |acc, &id| acc.wrapping_add(id));
        }
        self.next_id = first + n;
        sum
    }

    /// The sum [`Pool::run`] returns for a round of `n` jobs whose first id is `first`.
    pub fn expected_sum(first: u64, n: u64) -> u64 {
        (first..first + n).fold(0u64, |acc, id| acc.wrapping_add(id))
    }

    /// Closes the channel and joins every worker (panicking if one panicked).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Drops the sender so that each worker's `recv` returns `None`, then joins them.
    fn shutdown(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            if w.join().is_err() && !std::thread::panicking() {
                panic!("a {} pool worker panicked", C::NAME);
            }
        }
    }
}

impl<C: Channel> Drop for Pool<C> {
    /// Stops the pool if [`Pool::stop`] was not called (e.g. on a panic).
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a few rounds, including sizes that are not multiples of the batch, on `C`.
    fn rounds<C: Channel>(work: Work) {
        let mut pool = Pool::<C>::start(WORKERS, work);
        let mut first = 0;
        for n in [1, BATCH - 1, MAX_OUTSTANDING + 3, 20_000] {
            assert_eq!(
                pool.run(n),
                Pool::<C>::expected_sum(first, n),
                "{}",
                C::NAME
            );
            first += n;
        }
        pool.stop();
    }

    /// Every job of every round comes back exactly once, on every channel.
    #[test]
    fn every_job_completes() {
        for work in [Work::Noop, Work::Spin(Duration::from_nanos(200))] {
            rounds::<Flume>(work);
            rounds::<Crossbeam>(work);
            rounds::<TokioMpsc>(work);
        }
    }

    /// The job is four pointer-sized words, like the engine's.
    #[test]
    fn job_is_four_words() {
        assert_eq!(std::mem::size_of::<Job>(), 4 * std::mem::size_of::<usize>());
    }

    /// Stopping joins the workers: the completion-queue handles they held are all gone.
    #[test]
    fn stop_joins_workers() {
        let mut pool = Pool::<TokioMpsc>::start(WORKERS, Work::Noop);
        pool.run(10);
        let completions = pool.completions.clone();
        assert_eq!(Arc::strong_count(&completions), 2 + WORKERS);
        pool.stop();
        assert_eq!(Arc::strong_count(&completions), 1);
    }
}
