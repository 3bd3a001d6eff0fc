//! The pool channel under criterion: flume (the engine's) vs crossbeam-channel vs tokio mpsc,
//! each in the engine's own pattern (see the crate docs in `src/lib.rs`): one producer sending
//! batches of 1024 with at most 8192 outstanding, 2 blocking workers, completions through a
//! `Mutex<VecDeque>` + `Condvar` queue polled in batches of up to 1024.
//!
//! Two groups, each with one benchmark per channel and 100,000 jobs per iteration (reported as
//! elements/s):
//! - `pool_noop`: the jobs do nothing, so the channel and the completion queue are all there is;
//! - `pool_spin_2us`: each job spins for 2 µs, so the 2 workers are CPU-bound.
//!
//! Each sample starts its own pool and stops it (channel closed, workers joined) before the
//! next, outside the timed part, so no thread outlives its benchmark. Flat sampling, 1 s of
//! warm-up and 3 s (no-op, 15 samples) or 4 s (spin, 10 samples) of measurement keep the whole
//! run under a minute on 2 cores.
//!
//! Run: `make bench-channels` (mk/channels.mk), which also writes `target/bench/channels.json`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use portway_bench_channels::{
    Channel, Crossbeam, Flume, JOBS, MAX_OUTSTANDING, Pool, SPIN, TokioMpsc, WORKERS, Work,
};

/// Measures one channel in `group`: for each sample, starts a fresh pool, runs one untimed
/// warm-up round, times `iters` rounds of [`JOBS`] jobs, then stops the pool (joining its
/// workers). A fresh pool per sample makes the samples independent draws of how the scheduler
/// places the three threads on the two cores, which otherwise persists through a benchmark.
fn bench_channel<C: Channel>(group: &mut BenchmarkGroup<'_, WallTime>, work: Work) {
    group.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let mut pool = Pool::<C>::start(WORKERS, work);
            black_box(pool.run(MAX_OUTSTANDING));
            let start = Instant::now();
            for _ in 0..iters {
                black_box(pool.run(JOBS));
            }
            let elapsed = start.elapsed();
            pool.stop();
            elapsed
        })
    });
}

/// One group: the three channels under the same settings and the same `work`, with `samples`
/// samples in about `measure` of measurement each.
fn bench_group(c: &mut Criterion, name: &str, work: Work, samples: usize, measure: Duration) {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(JOBS))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measure);
    bench_channel::<Flume>(&mut group, work);
    bench_channel::<Crossbeam>(&mut group, work);
    bench_channel::<TokioMpsc>(&mut group, work);
    group.finish();
}

/// No-op jobs: the channel and the completion queue alone.
fn noop(c: &mut Criterion) {
    bench_group(c, "pool_noop", Work::Noop, 15, Duration::from_secs(3));
}

/// 2 µs busy-spin jobs: the channels under a CPU-bound pool.
fn spin_2us(c: &mut Criterion) {
    // An iteration takes at least 100 ms here (100,000 x 2 us on 2 workers): fewer samples.
    bench_group(
        c,
        "pool_spin_2us",
        Work::Spin(SPIN),
        10,
        Duration::from_secs(4),
    );
}

criterion_group!(benches, noop, spin_2us);
criterion_main!(benches);
