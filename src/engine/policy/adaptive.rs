//! Adaptive concurrency: a latency-driven concurrency limit in the spirit of Netflix's
//! Gradient2 (concurrency-limits) and Envoy's adaptive-concurrency filter.
//!
//! The concurrency limit (`limit.rs`) enforces whatever limit is stored in it; this file only
//! decides that figure. Each run that ends with a latency worth learning from (see
//! `Permit`'s drop in `mod.rs`) is a sample. Samples are grouped in windows of
//! `max(MIN_WINDOW_SAMPLES, limit)` runs — about one round trip of the whole limit, so a
//! window sees the latency that the current limit causes, like TCP's once-per-RTT update.
//! When a window closes:
//!
//! ```text
//! short    = mean latency of the window
//! long     = exponential average of `short` over about LONG_WINDOW windows (the baseline)
//! gradient = clamp(long / short, MIN_GRADIENT, 1.0)
//! target   = limit * gradient + sqrt(limit)          (sqrt(limit): room to probe upwards)
//! limit    = limit * (1 - SMOOTHING) + target * SMOOTHING, within [min, max], never below 1
//! ```
//!
//! It starts in *slow start*, as TCP does: while a window's latency stays within
//! `1 + 1/sqrt(limit)` of the baseline (where the rule above would not shrink the limit), the
//! limit grows by `SMOOTHING` (20 %) per window instead, so a handler that can take a few
//! hundred calls gets there within a few dozen round trips rather than a few hundred; the
//! first window above that ends slow start for good, and the rule above takes over.
//!
//! Past slow start, while latency stays at the baseline the gradient is 1 and the limit grows by
//! `SMOOTHING * sqrt(limit)` per window; once the extra runs only queue upstream, latency
//! rises above the baseline and the limit settles where `gradient = 1 - 1/sqrt(limit)`
//! (latency about `1 + 1/sqrt(limit)` times the baseline: 14 % above it at a limit of 64).
//! The gradient's floor halves the limit at most per window, so one slow outlier cannot
//! collapse it. Two guards from Gradient2: a window in which fewer than half the limit's runs
//! were ever running at once does not move the limit (the caller, not the handler, was the
//! bottleneck: growing would only unlock a burst later), and when the baseline is more than
//! twice the recent latency (after a long overload has passed) it decays 5 % per window rather
//! than waiting for the slow average.
//!
//! No clock is read here: samples arrive as durations, so the algorithm is tested with a fed
//! sequence.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The adaptive limit's ceiling when `max_concurrency` is 0.
pub(crate) const DEFAULT_CEILING: u32 = 1000;
/// Where the limit starts (within `[min, max]`), as Gradient2 does: low enough not to flood a
/// fragile upstream, high enough to reach a few hundred within a second of traffic.
const INITIAL_LIMIT: f64 = 20.0;
/// Fewest runs in a window: fewer make the mean latency too noisy at small limits.
const MIN_WINDOW_SAMPLES: u32 = 10;
/// How many windows the baseline averages over (an exponential average with factor
/// `2 / (LONG_WINDOW + 1)`); the first `WARMUP_WINDOWS` are a plain mean.
const LONG_WINDOW: f64 = 600.0;
/// Windows averaged plainly before the exponential average takes over.
const WARMUP_WINDOWS: u32 = 10;
/// The smallest gradient: the limit shrinks by at most half per window.
const MIN_GRADIENT: f64 = 0.5;
/// Weight of a window's target in the new limit.
const SMOOTHING: f64 = 0.2;
/// When `long / short` exceeds this, the baseline decays by `RECOVERY_DECAY` per window.
const RECOVERY_RATIO: f64 = 2.0;
/// See `RECOVERY_RATIO`.
const RECOVERY_DECAY: f64 = 0.95;

/// The limit algorithm's state: pure arithmetic on fed samples.
#[derive(Debug, Clone)]
pub(super) struct Gradient {
    /// The estimated limit (fractional; published floored).
    limit: f64,
    min: u32,
    max: u32,
    /// The baseline latency in seconds (0 until the first window closes).
    long: f64,
    /// Windows folded into `long` so far (capped at `WARMUP_WINDOWS`).
    windows: u32,
    /// Still in slow start (see the module doc).
    slow_start: bool,
    /// The open window: sum of latencies (s), sample count, most runs seen running at once.
    sum: f64,
    count: u32,
    peak_running: u32,
}

impl Gradient {
    /// A fresh estimate between `min` and `max` (`1 <= min <= max`).
    pub fn new(min: u32, max: u32) -> Self {
        let (min, max) = (min.max(1), max.max(1));
        Gradient {
            limit: INITIAL_LIMIT.clamp(f64::from(min), f64::from(max.max(min))),
            min,
            max: max.max(min),
            long: 0.0,
            windows: 0,
            slow_start: true,
            sum: 0.0,
            count: 0,
            peak_running: 0,
        }
    }

    /// The limit to enforce now.
    pub fn limit(&self) -> u32 {
        (self.limit.floor() as u32).clamp(self.min, self.max)
    }

    /// New bounds, keeping what was learned; returns the limit within them.
    pub fn rebound(&mut self, min: u32, max: u32) -> u32 {
        self.min = min.max(1);
        self.max = max.max(self.min);
        self.limit = self.limit.clamp(f64::from(self.min), f64::from(self.max));
        self.limit()
    }

    /// One run's latency, with `running` runs holding a slot as it ended (itself included).
    /// Returns the new limit when this sample closed a window and the limit changed.
    pub fn sample(&mut self, latency: Duration, running: u32) -> Option<u32> {
        self.sum += latency.as_secs_f64();
        self.count += 1;
        self.peak_running = self.peak_running.max(running);
        if self.count < MIN_WINDOW_SAMPLES.max(self.limit()) {
            return None;
        }
        let short = self.sum / f64::from(self.count);
        let peak = self.peak_running;
        (self.sum, self.count, self.peak_running) = (0.0, 0, 0);
        let before = self.limit();
        self.window(short, peak);
        let after = self.limit();
        (after != before).then_some(after)
    }

    /// Closes a window whose mean latency was `short` seconds.
    fn window(&mut self, short: f64, peak_running: u32) {
        if !short.is_finite() || short <= 0.0 {
            // Runs faster than the clock's resolution: no gradient to read; not a reason to
            // move the baseline towards 0 either.
            return;
        }
        if self.windows < WARMUP_WINDOWS {
            self.windows += 1;
            self.long += (short - self.long) / f64::from(self.windows);
        } else {
            self.long += (short - self.long) * 2.0 / (LONG_WINDOW + 1.0);
        }
        if self.long / short > RECOVERY_RATIO {
            self.long *= RECOVERY_DECAY;
        }
        if f64::from(peak_running) < self.limit / 2.0 {
            return;
        }
        let queue = self.limit.sqrt();
        if self.slow_start && short <= self.long * (1.0 + 1.0 / queue) {
            self.limit =
                (self.limit * (1.0 + SMOOTHING)).clamp(f64::from(self.min), f64::from(self.max));
            return;
        }
        self.slow_start = false;
        let gradient = (self.long / short).clamp(MIN_GRADIENT, 1.0);
        let target = self.limit * gradient + queue;
        let next = self.limit * (1.0 - SMOOTHING) + target * SMOOTHING;
        self.limit = next.clamp(f64::from(self.min), f64::from(self.max));
    }
}

/// One handler's adaptive limit: off, or a [`Gradient`] fed by the runs that end.
pub(super) struct Adaptive {
    /// Read when a permit is made, so that a handler without it never reads the clock.
    on: AtomicBool,
    inner: Mutex<Option<Gradient>>,
}

impl Adaptive {
    /// Off.
    pub fn new() -> Self {
        Adaptive {
            on: AtomicBool::new(false),
            inner: Mutex::new(None),
        }
    }

    /// True while the limit is adaptive (runs are timed).
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Turns it on within `[min, max]` (keeping what was learned if it was on already: a host
    /// changing another policy must not reset the limit) and returns the limit to enforce; or
    /// off (`None`: what was learned is dropped), returning `None`.
    pub fn set(&self, bounds: Option<(u32, u32)>) -> Option<u32> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.on.store(bounds.is_some(), Ordering::Release);
        let Some((min, max)) = bounds else {
            *g = None;
            return None;
        };
        Some(match g.as_mut() {
            Some(g) => g.rebound(min, max),
            None => g.insert(Gradient::new(min, max)).limit(),
        })
    }

    /// The current bounds, when on.
    pub fn bounds(&self) -> Option<(u32, u32)> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().filter(|_| self.is_on()).map(|g| (g.min, g.max))
    }

    /// One run's latency (see [`Gradient::sample`]); `None` when off or unchanged.
    pub fn sample(&self, latency: Duration, running: u32) -> Option<u32> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_on() {
            return None;
        }
        g.as_mut()?.sample(latency, running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `windows` full windows of `latency` with the limit saturated; the limits seen.
    fn feed(g: &mut Gradient, latency: Duration, windows: usize) -> Vec<u32> {
        let mut seen = Vec::new();
        for _ in 0..windows {
            let n = MIN_WINDOW_SAMPLES.max(g.limit());
            for _ in 0..n {
                let running = g.limit();
                g.sample(latency, running);
            }
            seen.push(g.limit());
        }
        seen
    }

    #[test]
    fn starts_at_twenty_within_its_bounds() {
        assert_eq!(Gradient::new(1, 1000).limit(), 20);
        assert_eq!(Gradient::new(1, 8).limit(), 8);
        assert_eq!(Gradient::new(50, 100).limit(), 50);
        assert_eq!(Gradient::new(0, 0).limit(), 1, "never below 1");
    }

    #[test]
    fn grows_while_latency_stays_at_the_baseline() {
        let mut g = Gradient::new(1, 1000);
        let seen = feed(&mut g, 5 * MS, 60);
        assert!(seen.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
        assert!(g.limit() > 60, "{seen:?}");
        // Slow start: 20 % per window...
        let mut g = Gradient::new(1, 1000);
        assert_eq!(feed(&mut g, 5 * MS, 3), [24, 28, 34]);
        // ...until latency rises past the allowance; then about SMOOTHING * sqrt(limit) per
        // window while it holds.
        feed(&mut g, 7 * MS, 1);
        assert!(!g.slow_start);
        let before = g.limit;
        g.window(g.long, g.limit());
        let grew = g.limit - before;
        assert!(
            (grew - SMOOTHING * before.sqrt()).abs() < 1e-9,
            "{before} + {grew}"
        );
    }

    #[test]
    fn shrinks_when_latency_rises_and_settles_above_the_baseline() {
        let mut g = Gradient::new(1, 1000);
        feed(&mut g, 5 * MS, 60);
        let high = g.limit();
        // Twice the baseline: the gradient is 1/2 until the limit has come down.
        let seen = feed(&mut g, 10 * MS, 5);
        assert!(
            seen[0] < high && seen.windows(2).all(|w| w[1] < w[0]),
            "{high} {seen:?}"
        );
        // A knee: latency grows with the limit beyond 64 (5 ms + 0.5 ms per extra run).
        let mut g = Gradient::new(1, 1000);
        for _ in 0..400 {
            let n = MIN_WINDOW_SAMPLES.max(g.limit());
            let latency = 5.0 + 0.5 * (f64::from(g.limit()) - 64.0).max(0.0);
            for _ in 0..n {
                g.sample(Duration::from_secs_f64(latency / 1e3), g.limit());
            }
        }
        let settled = g.limit();
        assert!((64..=72).contains(&settled), "{settled}");
    }

    #[test]
    fn stays_within_min_and_max() {
        let mut g = Gradient::new(4, 30);
        let seen = feed(&mut g, 5 * MS, 100);
        assert_eq!(*seen.iter().max().unwrap(), 30);
        let seen = feed(&mut g, 500 * MS, 100);
        assert_eq!(*seen.last().unwrap(), 4);
        assert!(seen.iter().all(|l| (4..=30).contains(l)));
        // New bounds keep what was learned, clamped.
        assert_eq!(g.rebound(10, 20), 10);
        assert_eq!(g.rebound(1, 5), 5);
    }

    #[test]
    fn an_idle_caller_does_not_grow_the_limit() {
        let mut g = Gradient::new(1, 1000);
        for _ in 0..100 * MIN_WINDOW_SAMPLES {
            // One run at a time: the caller, not the handler, is the bottleneck.
            assert_eq!(g.sample(5 * MS, 1), None);
        }
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn the_baseline_comes_back_down_after_a_long_overload() {
        let mut g = Gradient::new(1, 1000);
        feed(&mut g, 5 * MS, 20);
        // A long overload: the limit drops, then the baseline follows the latency up (a
        // lasting change of latency becomes the new normal)...
        let seen = feed(&mut g, 200 * MS, 2000);
        assert!(*seen.iter().min().unwrap() < 5, "{:?}", &seen[..20]);
        // ...latency comes back; the baseline decays towards it within ~100 windows (the
        // average alone would keep it above 100 ms for hundreds more), so that a new rise of
        // latency shrinks the limit again.
        feed(&mut g, 5 * MS, 150);
        let before = g.limit();
        let seen = feed(&mut g, 10 * MS, 3);
        assert!(seen.iter().all(|&l| l < before), "{before} {seen:?}");
    }

    #[test]
    fn off_ignores_samples_and_on_again_keeps_what_was_learned() {
        let a = Adaptive::new();
        assert!(!a.is_on());
        assert_eq!(a.sample(MS, 100), None);
        assert_eq!(a.set(Some((1, 1000))), Some(20));
        assert!(a.is_on());
        for _ in 0..400 {
            a.sample(MS, 40);
        }
        let learned = a.inner.lock().unwrap().as_ref().unwrap().limit();
        assert!(learned > 20, "{learned}");
        assert_eq!(a.set(Some((1, 1000))), Some(learned));
        assert_eq!(a.bounds(), Some((1, 1000)));
        assert_eq!(a.set(None), None);
        assert_eq!(a.sample(MS, 100), None);
        assert_eq!(a.bounds(), None);
        // Off forgets: on again starts afresh.
        assert_eq!(a.set(Some((1, 1000))), Some(20));
    }
}
