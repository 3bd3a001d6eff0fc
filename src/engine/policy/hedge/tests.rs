//! Unit tests of hedging: the budget, the live p95 and its samples.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::*;
use crate::status::Status;

fn on(pct: u32) -> Hedging {
    let h = Hedging::new();
    h.set(&HedgeSettings {
        after: Duration::from_millis(1),
        after_p95: false,
        budget_percent: pct,
    });
    h
}

#[test]
fn the_budget_allows_one_then_pct_per_hundred_runs_capped() {
    let h = on(5);
    let mut hedges = 0;
    for _ in 0..1000 {
        h.earn_one();
        if h.spend() {
            hedges += 1;
        }
    }
    // One banked at the start, then 5 per 100 runs.
    assert_eq!(hedges, 1 + 50);
    // A quiet stretch banks at most 5.
    let h = on(5);
    for _ in 0..10_000 {
        h.earn_one();
    }
    let banked = (0..100).take_while(|_| h.spend()).count();
    assert_eq!(banked, 5);
}

#[test]
fn the_p95_needs_twenty_samples_then_follows_the_window() {
    let h = Hedging::new();
    h.set(&HedgeSettings {
        after: Duration::ZERO,
        after_p95: true,
        budget_percent: 0,
    });
    assert!(h.is_on());
    for i in 1..MIN_SAMPLES as u64 {
        h.record(Duration::from_millis(i));
    }
    assert_eq!(h.delay(), None, "no fixed delay and too few samples");
    h.record(Duration::from_millis(20));
    assert_eq!(h.delay(), Some(Duration::from_millis(19)));
    for _ in 0..WINDOW {
        h.record(Duration::from_millis(3));
    }
    assert_eq!(h.delay(), Some(Duration::from_millis(3)));
}

fn p95_on() -> Arc<Hedging> {
    let h = Arc::new(Hedging::new());
    h.set(&HedgeSettings {
        after: Duration::from_millis(1),
        after_p95: true,
        budget_percent: 100,
    });
    h
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn ready(outcome: Outcome) -> Attempt {
    Box::pin(std::future::ready(outcome))
}

/// A hedge's slot without a concurrency limit.
fn free() -> Option<()> {
    Some(())
}

fn never() -> Attempt {
    Box::pin(std::future::pending())
}

fn samples(h: &Hedging) -> Vec<u64> {
    h.window.lock().unwrap().ns.clone()
}

#[test]
fn successes_and_timeouts_are_samples_other_failures_are_not() {
    let (h, rt) = (p95_on(), runtime());
    let race = |outcome: Outcome| {
        let h = h.clone();
        rt.block_on(async move { race_with(&h, || false, None, free, ready(outcome), never).await })
    };
    race(Outcome::ok(Vec::new()));
    race(Outcome::failed(Status::PORTWAY_TIMEOUT, "slow"));
    // A refused connection is fast because nothing ran: it would drag the p95 down.
    race(Outcome::failed(Status::PORTWAY_CONNECT_ERROR, "refused"));
    race(Outcome::failed(Status::PORTWAY_HANDLER_ERROR, "failed"));
    assert_eq!(samples(&h).len(), 2);
}

#[test]
fn a_hedge_that_wins_after_the_first_failed_counts_from_the_start() {
    let (h, rt) = (p95_on(), runtime());
    let (first_tx, first_rx) = oneshot::channel::<Outcome>();
    let (hedge_tx, hedge_rx) = oneshot::channel::<Outcome>();
    let gap = Duration::from_millis(100);
    let outcome = rt.block_on(async {
        let first: Attempt = Box::pin(async move { first_rx.await.unwrap() });
        let hedge: Attempt = Box::pin(async move { hedge_rx.await.unwrap() });
        let race = tokio::spawn({
            let h = h.clone();
            async move { race_with(&h, || false, None, free, first, || hedge).await }
        });
        while h.figures().0 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first_tx
            .send(Outcome::failed(Status::PORTWAY_HANDLER_ERROR, "no"))
            .unwrap();
        tokio::time::sleep(gap).await;
        hedge_tx.send(Outcome::ok(b"hedge".to_vec())).unwrap();
        race.await.unwrap()
    });
    assert!(outcome.is_ok());
    assert_eq!(h.figures(), (1, 1, 0, 0));
    // The winner's time from the run's start, not the first attempt's failure.
    let took = samples(&h);
    assert_eq!(took.len(), 1);
    assert!(took[0] >= gap.as_nanos() as u64, "{took:?}");
}

#[test]
fn a_run_the_deadline_cut_off_is_a_sample_a_cancelled_one_is_not() {
    let (h, rt) = (p95_on(), runtime());
    let past = Instant::now();
    for deadline in [None, Some(past + Duration::from_secs(3600)), Some(past)] {
        // Dropped unfinished, as the request's end aborts the run's task.
        let race = race_with(&h, || false, deadline, free, never(), never);
        let cut = rt.block_on(async { tokio::time::timeout(Duration::from_millis(5), race).await });
        assert!(cut.is_err());
    }
    assert_eq!(samples(&h).len(), 1, "only the run past its deadline");
}

#[test]
fn the_p95_settles_at_the_first_attempts_p95_however_often_hedges_win() {
    // Synthetic runs: first attempts take `first` ms, a hedge `hedge` ms, the delay is
    // the live p95 (10 ms to start with), and the sample is the winner's time from the
    // start, as `race_with` takes it.
    let h = p95_on();
    for _ in 0..MIN_SAMPLES {
        h.record(Duration::from_millis(10));
    }
    let run = |first: u64, hedge: u64| {
        let d = h.delay().unwrap().as_millis() as u64;
        let took = if first <= d {
            first
        } else {
            first.min(d + hedge)
        };
        h.record(Duration::from_millis(took));
    };
    // 3 % of first attempts are slow (500 ms): the p95 is the fast ones', 10 ms.
    for i in 0..4 * WINDOW {
        run(if i % 33 == 0 { 500 } else { 10 }, 10);
    }
    assert_eq!(h.delay(), Some(Duration::from_millis(10)));
    // The upstream slows down to 50 ms: every run is hedged at 10 ms and the hedge, as
    // slow, never wins early; the p95 follows the first attempts to 50 ms.
    for _ in 0..2 * WINDOW {
        run(50, 50);
    }
    assert_eq!(h.delay(), Some(Duration::from_millis(50)));
    // 10 % of first attempts hang (1 s) and every hedge of them wins at the delay plus
    // 10 ms: hedges win on 10 % of runs, and the p95 moves up to the first attempts' p95
    // instead of staying at the fast runs'.
    for i in 0..4 * WINDOW {
        run(if i % 10 == 0 { 1000 } else { 50 }, 10);
    }
    let d = h.delay().unwrap();
    assert!(d > Duration::from_millis(50), "{d:?}");
}

#[test]
fn a_hedge_without_a_free_slot_is_skipped_and_its_budget_kept() {
    let rt = runtime();
    let h = on(5);
    let outcome = rt.block_on(async {
        let first: Attempt = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Outcome::ok(b"first".to_vec())
        });
        race_with(&h, || false, None, || None::<()>, first, never).await
    });
    assert_eq!(outcome.data.as_slice(), b"first");
    assert_eq!(h.figures(), (0, 0, 0, 1));
    assert!(h.spend(), "the banked hedge is still there");
}
