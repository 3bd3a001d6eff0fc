//! Policy operations of a program: set a handler's policies, read their state against the
//! model, lift them all before the end.

use std::time::{Duration, Instant};

use super::model::*;
use super::{Input, Run, STUCK};
use crate::ffi::*;
use crate::status::Status;

impl Run {
    /// One of our handlers, for a policy call.
    pub(super) fn policy_target(&self, input: &mut Input<'_>) -> u32 {
        [self.echo, self.sleep, self.native, self.pipeline][usize::from(input.below(4))]
    }

    /// `portway_handler_set_policy` with small figures (rates of a few tokens per second up
    /// to a few per ms, so tokens run out; cooldowns of a few ms, so the breaker cycles), and
    /// sometimes a field not supported yet or an invalid one (hedging on a handler that is not
    /// idempotent, a budget above 100 %): refused, and nothing changes. The native handler is
    /// registered idempotent, so hedging it runs for real. With the adaptive limit on, its live
    /// figure is checked within its bounds.
    pub(super) fn set_policy(&mut self, input: &mut Input<'_>) {
        let handler = self.policy_target(input);
        let mut p = blank_policy();
        let shape = input.byte();
        p.max_concurrency = [0, 0, 1, 2, 3, 8][usize::from(shape % 6)];
        if shape & 0x40 != 0 {
            p.rate_per_s = [2.0, 50.0, 500.0, 5000.0, 0.5][usize::from(input.below(5))];
            p.burst = u32::from(input.below(4));
        }
        if shape & 0x80 != 0 {
            p.breaker_failures = 1 + u32::from(input.below(3));
            p.breaker_cooldown_ms = [1, 2, 5][usize::from(input.below(3))];
        }
        // Hedging after a ms or two (the native handler's slow mode waits 2 ms for its
        // cancellation), a budget from a trickle to every request.
        if shape & 0x20 != 0 {
            p.hedge_after_ms = 1 + u32::from(input.below(2));
            p.hedge_after_p95 = input.below(2) == 1;
            p.hedge_budget_percent = [0, 1, 50, 100][usize::from(input.below(4))];
        }
        if shape & 0x10 != 0 {
            p.adaptive = true;
            p.min_concurrency = u32::from(input.below(3));
        }
        // Invalid settings: a field not supported yet, or a figure out of range.
        let invalid = match input.below(12) {
            0 => {
                // An adaptive floor above its ceiling.
                p.adaptive = true;
                p.max_concurrency = p.max_concurrency.max(1);
                p.min_concurrency = p.max_concurrency + 1 + u32::from(input.byte());
                true
            }
            1 => {
                // A floor without the adaptive limit it is the floor of.
                p.adaptive = false;
                p.min_concurrency = 2 + u32::from(input.byte());
                true
            }
            // Hedging on any handler (only the native one, registered idempotent, takes it),
            // or a budget above 100 %: judged below, on the final settings.
            2 => {
                p.hedge_after_ms = 1 + u32::from(input.below(4));
                false
            }
            3 => {
                p.hedge_after_p95 = true;
                p.hedge_after_ms = u32::from(input.below(3));
                false
            }
            4 => {
                p.hedge_budget_percent = [1, 4, 6, 100, 101][usize::from(input.below(5))];
                false
            }
            5 => {
                p.rate_per_s = [-1.0, f64::NAN, f64::INFINITY, 2e9][usize::from(input.below(4))];
                true
            }
            6 => {
                p.rate_per_s = 0.0;
                p.burst = 1 + u32::from(input.below(4));
                true
            }
            _ => false,
        };
        // A breaker or an adaptive limit is refused on a pipeline (they belong on the stages),
        // so is an adaptive floor above its ceiling, and hedging on all but the native handler.
        let invalid = invalid
            || (handler == self.pipeline && (p.breaker_failures != 0 || p.adaptive))
            || (p.adaptive && p.max_concurrency != 0 && p.min_concurrency > p.max_concurrency)
            || ((p.hedge_after_ms != 0 || p.hedge_after_p95) && handler != self.native)
            || p.hedge_budget_percent > 100;
        let before = self.policy_state(handler);
        // SAFETY: a live engine and a readable policy.
        let status = unsafe { portway_handler_set_policy(self.eng, handler, &p) };
        if invalid {
            refused(status, &[Status::PORTWAY_INVALID_ARGUMENT], "set_policy");
            let after = self.policy_state(handler);
            // An adaptive limit may move on its own between the two reads (within its
            // bounds, which policy_state checks).
            if self.policies[&handler].adaptive.is_none() {
                assert_eq!(
                    after.concurrency_limit, before.concurrency_limit,
                    "a refused policy changed the limit"
                );
            }
            return;
        }
        assert_eq!(status, Status::PORTWAY_OK, "set_policy: {}", last_error());
        let model = self.policies.get_mut(&handler).expect("one of ours");
        let limit = p.max_concurrency;
        let adaptive = p.adaptive.then(|| {
            (
                p.min_concurrency.max(1),
                if limit == 0 { 1000 } else { limit },
            )
        });
        let cap = adaptive.map_or(limit, |(_, max)| max);
        model.bound = if cap == 0 || model.cap() == 0 {
            u32::MAX
        } else {
            model.bound.max(cap)
        };
        model.limit = limit;
        model.adaptive = adaptive;
        model.burst = if p.rate_per_s == 0.0 {
            0
        } else if p.burst == 0 {
            p.rate_per_s.max(1.0) as u32
        } else {
            p.burst
        };
        model.breaker_ever |= p.breaker_failures != 0;
        model.hedge_ever |= p.hedge_after_ms != 0 || p.hedge_after_p95;
        self.policy_state(handler);
    }

    /// `portway_handler_policy_state`, checked against the model: the limit set, `running`
    /// within it (see `Policy::bound`), tokens within the bucket, a known breaker state.
    pub(super) fn policy_state(&mut self, handler: u32) -> portway_policy_state {
        let mut s = portway_policy_state::default();
        // SAFETY: a live engine and a writable record.
        let status = unsafe { portway_handler_policy_state(self.eng, handler, &mut s) };
        assert_eq!(status, Status::PORTWAY_OK, "policy_state: {}", last_error());
        let model = self.policies.get_mut(&handler).expect("one of ours");
        match model.adaptive {
            Some((min, max)) => assert!(
                (min..=max).contains(&s.concurrency_limit),
                "adaptive limit outside {min}..={max}: {s:?}"
            ),
            None => assert_eq!(s.concurrency_limit, model.limit, "limit in force: {s:?}"),
        }
        assert!(s.running <= model.bound, "running beyond the limit: {s:?}");
        let cap = model.cap();
        if cap != 0 && s.running <= cap {
            model.bound = cap;
        }
        assert!(
            [
                PORTWAY_BREAKER_CLOSED,
                PORTWAY_BREAKER_OPEN,
                PORTWAY_BREAKER_HALF_OPEN
            ]
            .contains(&s.breaker_state),
            "breaker state: {s:?}"
        );
        if !model.breaker_ever {
            assert_eq!(s.breaker_state, PORTWAY_BREAKER_CLOSED, "{s:?}");
            assert_eq!((s.breaker_trips, s.breaker_rejected), (0, 0), "{s:?}");
        }
        assert!(
            s.tokens >= 0.0 && s.tokens <= f64::from(model.burst),
            "tokens: {s:?}"
        );
        assert!(
            s.hedges_won <= s.hedges_started && s.hedges_cancelled <= s.hedges_started,
            "hedges: {s:?}"
        );
        if !model.hedge_ever {
            assert_eq!(
                (s.hedges_started, s.hedges_won, s.hedges_cancelled),
                (0, 0, 0),
                "{s:?}"
            );
        }
        // No handler here names breaker keys: one breaker each, open or not.
        assert!(
            s.breaker_open <= u32::from(model.breaker_ever),
            "breakers open: {s:?}"
        );
        s
    }

    /// Lifts every policy (the final fill must not wait for tokens) and checks that nothing
    /// is left running or waiting behind them.
    pub(super) fn lift_policies(&mut self) {
        let handlers: Vec<u32> = self.policies.keys().copied().collect();
        // Every request the breaker refused completed UNAVAILABLE, and only those (all are
        // collected now).
        let rejected: u64 = handlers
            .iter()
            .map(|&h| self.policy_state(h).breaker_rejected)
            .sum();
        let unavailable = self
            .released
            .iter()
            .filter(|c| c.status == Status::PORTWAY_UNAVAILABLE as u32)
            .count();
        assert_eq!(
            rejected, unavailable as u64,
            "breaker refusals vs UNAVAILABLE completions"
        );
        for h in handlers {
            let p = blank_policy();
            // SAFETY: a live engine and a readable policy.
            let status = unsafe { portway_handler_set_policy(self.eng, h, &p) };
            assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
            let model = self.policies.get_mut(&h).expect("one of ours");
            model.limit = 0;
            model.adaptive = None;
            model.bound = u32::MAX;
            model.burst = 0;
            let start = Instant::now();
            loop {
                let s = self.policy_state(h);
                if s.running == 0 && s.waiting == 0 {
                    break;
                }
                assert!(start.elapsed() < STUCK, "policy gauges stuck: {s:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
