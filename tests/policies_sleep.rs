//! The built-in `sleep` (a delay the engine timer ends, no task or thread) reports each run's
//! outcome to its handler's policies as pool and async handlers do: a finished sleep is a
//! success for the breaker (it resets the consecutive failures, and a half-open trial that
//! finishes closes the breaker), a latency sample for the adaptive limit and a run time for the
//! rate limit. A sleep cut off by its deadline is a failure (a timeout).
//!
//! No timing is asserted: the tests wait for figures to change, with generous bounds.

mod common;

use std::time::{Duration, Instant};

use common::{engine, one};
use portway::engine::PolicySettings;
use portway::{Engine, Status, Submission};

fn sleep_for(handler: u32, payload: &'static [u8], timeout_ms: u32) -> Submission<'static> {
    Submission {
        handler,
        timeout_ms,
        user_data: 0,
        payload,
    }
}

/// A sleep of 60 ms cut off by a 5 ms deadline: TIMEOUT at once; its permit gives the breaker
/// the failure when the sleep ends, which this waits for (`failures` or `trips` moving).
fn time_out(eng: &Engine, h: u32) {
    let before = eng.policy_state(h).unwrap();
    eng.submit(&sleep_for(h, b"60", 5)).unwrap();
    assert_eq!(one(eng).status, Status::PORTWAY_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = eng.policy_state(h).unwrap();
        if s.breaker_failures > before.breaker_failures || s.breaker_trips > before.breaker_trips {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the timeout never reached the breaker: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An engine whose `sleep` has `policy`, and the handler's id.
fn sleep_with(policy: PolicySettings) -> (Engine, u32) {
    let eng = engine();
    let h = eng.lookup("sleep").unwrap();
    eng.set_policy(h, &policy).unwrap();
    (eng, h)
}

fn finish_one(eng: &Engine, h: u32) {
    eng.submit(&sleep_for(h, b"1", 0)).unwrap();
    assert_eq!(one(eng).status, Status::PORTWAY_OK);
}

#[test]
fn a_finished_sleep_resets_the_breakers_consecutive_failures() {
    let (eng, h) = sleep_with(PolicySettings {
        breaker_failures: 2,
        breaker_cooldown: Duration::from_secs(3600),
        ..PolicySettings::default()
    });
    for _ in 0..3 {
        time_out(&eng, h);
        assert_eq!(eng.policy_state(h).unwrap().breaker_failures, 1);
        finish_one(&eng, h);
        // Told before the completion was posted: already counted.
        assert_eq!(eng.policy_state(h).unwrap().breaker_failures, 0);
    }
    let s = eng.policy_state(h).unwrap();
    assert_eq!((s.breaker_state, s.breaker_trips), (0, 0), "{s:?}");
}

#[test]
fn timeouts_open_a_breaker_on_sleep_and_a_finished_trial_closes_it() {
    let cooldown = Duration::from_millis(50);
    let (eng, h) = sleep_with(PolicySettings {
        breaker_failures: 1,
        breaker_cooldown: cooldown,
        ..PolicySettings::default()
    });
    time_out(&eng, h);
    let s = eng.policy_state(h).unwrap();
    assert_eq!(
        (s.breaker_state, s.breaker_trips),
        (portway::ffi::PORTWAY_BREAKER_OPEN, 1)
    );
    std::thread::sleep(cooldown + Duration::from_millis(20));
    // The half-open trial finishes: the breaker closes.
    finish_one(&eng, h);
    let s = eng.policy_state(h).unwrap();
    assert_eq!((s.breaker_state, s.breaker_trips), (0, 1), "{s:?}");
    finish_one(&eng, h);
}

#[test]
fn finished_sleeps_teach_the_rate_limit_how_long_a_run_takes() {
    let (eng, h) = sleep_with(PolicySettings {
        rate_per_s: 10.0,
        burst: 1,
        ..PolicySettings::default()
    });
    // One run of 200 ms: the estimate (mean + 4 deviations) is then well above 300 ms.
    eng.submit(&sleep_for(h, b"200", 0)).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
    // The bucket is full again (one token); the first takes it, the second's token is 100 ms
    // away, and with the run time after it, past its 300 ms deadline: refused at once.
    let (n, r) = eng.submit_batch(&[sleep_for(h, b"1", 0), sleep_for(h, b"1", 300)], None);
    r.unwrap();
    assert_eq!(n, 2);
    let mut statuses: Vec<Status> = common::collect(&eng, 2).iter().map(|c| c.status).collect();
    statuses.sort_by_key(|s| *s as u32);
    assert_eq!(statuses, [Status::PORTWAY_OK, Status::PORTWAY_TIMEOUT]);
    assert_eq!(eng.policy_state(h).unwrap().rate_timeouts, 1);
}

#[test]
fn finished_sleeps_are_latency_samples_for_the_adaptive_limit() {
    let (eng, h) = sleep_with(PolicySettings {
        adaptive: true,
        min_concurrency: 1,
        max_concurrency: 60,
        ..PolicySettings::default()
    });
    assert_eq!(eng.policy_state(h).unwrap().concurrency_limit, 20);
    let batch: Vec<Submission<'_>> = (0..1000).map(|_| sleep_for(h, b"2", 0)).collect();
    let (n, r) = eng.submit_batch(&batch, None);
    r.unwrap();
    let mut highest = 20;
    let mut got = 0;
    while got < n {
        let (cs, _) = eng.poll_owned(256, Some(Duration::from_secs(10))).unwrap();
        assert!(!cs.is_empty(), "stalled after {got} of {n}");
        got += cs.len();
        highest = highest.max(eng.policy_state(h).unwrap().concurrency_limit);
    }
    // A sleep's latency holds whatever the load: the limit grew (it never moves without
    // samples).
    assert!(highest > 20, "the limit stayed at {highest}");
}
