//! Rendering what the engine knows for humans and scrapers: the Prometheus text exposition
//! and the JSON in-flight dump (the goroutine dump that finds a stall).

use std::fmt::Write;

use super::metrics::HandlerStats;
use super::request::Request;
use super::stats::StatsSnapshot;
use crate::status::ALL;

/// Histogram bucket bounds, in seconds, shared by queue-wait and run-time histograms.
pub(crate) const BUCKETS_SECONDS: [f64; 16] = [
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
    1.0, 5.0, 10.0, 60.0,
];

/// The bucket bounds in nanoseconds.
pub(crate) fn bucket_bounds_ns() -> Vec<u64> {
    BUCKETS_SECONDS.iter().map(|s| (s * 1e9) as u64).collect()
}

/// One handler's figures for the exposition.
pub(crate) struct HandlerFigures {
    pub stats: HandlerStats,
    pub queue_buckets: Vec<u64>,
    pub run_buckets: Vec<u64>,
    /// Extra gauges or counters the handler reports (name suffix, help, type, value).
    pub extra: Vec<(&'static str, &'static str, &'static str, u64)>,
}

/// Escapes a label value for the text format.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the Prometheus text format (version 0.0.4).
pub(crate) fn prometheus(
    engine: &StatsSnapshot,
    pool_busy: u64,
    handlers: &[HandlerFigures],
) -> String {
    let mut out = String::with_capacity(4096 + handlers.len() * 4096);
    header(
        &mut out,
        "portway_requests_submitted_total",
        "counter",
        "Requests accepted, by addressed handler.",
    );
    for h in handlers {
        let _ = writeln!(
            out,
            "portway_requests_submitted_total{{handler=\"{}\"}} {}",
            label(&h.stats.name),
            h.stats.submitted
        );
    }
    header(
        &mut out,
        "portway_requests_completed_total",
        "counter",
        "Completions recorded (when polled; pipeline stages when they finish), by handler and status.",
    );
    for h in handlers {
        for s in ALL {
            let n = h.stats.completed[s as usize];
            if n > 0 {
                let _ = writeln!(
                    out,
                    "portway_requests_completed_total{{handler=\"{}\",status=\"{}\"}} {n}",
                    label(&h.stats.name),
                    s.name()
                );
            }
        }
    }
    let gauges: [(&str, &str, u64); 7] = [
        (
            "portway_in_flight",
            "Requests holding an in-flight slot (accepted, not yet released).",
            engine.in_flight,
        ),
        (
            "portway_queued",
            "Requests accepted and not yet started.",
            engine.queued,
        ),
        (
            "portway_running",
            "Requests started and not yet finished.",
            engine.running,
        ),
        (
            "portway_ready",
            "Completions waiting to be polled.",
            engine.ready,
        ),
        (
            "portway_unreleased",
            "Completions polled and not yet released.",
            engine.unreleased,
        ),
        (
            "portway_pool_workers",
            "Threads in the native worker pool.",
            engine.pool_workers,
        ),
        (
            "portway_pool_busy_workers",
            "Pool threads running a handler now.",
            pool_busy,
        ),
    ];
    for (name, help, v) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let counters: [(&str, &str, u64); 4] = [
        (
            "portway_engine_accepted_total",
            "Requests accepted by the engine.",
            engine.accepted,
        ),
        (
            "portway_engine_rejected_busy_total",
            "Requests refused with PORTWAY_BUSY.",
            engine.rejected_busy,
        ),
        (
            "portway_engine_rejected_shutdown_total",
            "Requests refused with PORTWAY_SHUTDOWN.",
            engine.rejected_shutdown,
        ),
        (
            "portway_engine_rejected_invalid_total",
            "Requests refused for bad input.",
            engine.rejected_invalid,
        ),
    ];
    for (name, help, v) in counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    header(
        &mut out,
        "portway_engine_completed_total",
        "counter",
        "Completions posted by the engine, by status.",
    );
    for s in ALL {
        let _ = writeln!(
            out,
            "portway_engine_completed_total{{status=\"{}\"}} {}",
            s.name(),
            engine.completed[s as usize]
        );
    }
    histogram(
        &mut out,
        "portway_queue_wait_seconds",
        "Time from acceptance to start, by handler.",
        handlers,
        |h| {
            (
                &h.queue_buckets,
                h.stats.queue_wait.sum_ns,
                h.stats.queue_wait.count,
            )
        },
    );
    histogram(
        &mut out,
        "portway_run_seconds",
        "Time from start to finish, by handler.",
        handlers,
        |h| (&h.run_buckets, h.stats.run.sum_ns, h.stats.run.count),
    );
    let mut extra_names: Vec<(&str, &str, &str)> = Vec::new();
    for h in handlers {
        for (name, help, kind, _) in &h.extra {
            if !extra_names.iter().any(|(n, _, _)| n == name) {
                extra_names.push((name, help, kind));
            }
        }
    }
    for (name, help, kind) in extra_names {
        let full = format!("portway_{name}");
        header(&mut out, &full, kind, help);
        for h in handlers {
            for (n, _, _, v) in &h.extra {
                if *n == name {
                    let _ = writeln!(out, "{full}{{handler=\"{}\"}} {v}", label(&h.stats.name));
                }
            }
        }
    }
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    handlers: &[HandlerFigures],
    pick: impl Fn(&HandlerFigures) -> (&Vec<u64>, u64, u64),
) {
    header(out, name, "histogram", help);
    for h in handlers {
        let (buckets, sum_ns, count) = pick(h);
        let handler = label(&h.stats.name);
        for (le, n) in BUCKETS_SECONDS.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{handler=\"{handler}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{handler=\"{handler}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{handler=\"{handler}\"}} {}",
            sum_ns as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{handler=\"{handler}\"}} {count}");
    }
}

/// Escapes a JSON string body.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders the in-flight dump: `{"total": N, "requests": [...]}`, oldest first, at most
/// `limit` entries.
pub(crate) fn inflight_json(
    mut requests: Vec<(std::sync::Arc<Request>, Option<u64>)>,
    limit: usize,
) -> String {
    requests.sort_unstable_by_key(|(r, _)| r.id);
    let now = std::time::Instant::now();
    let mut out = String::with_capacity(64 + requests.len().min(limit) * 160);
    let _ = write!(out, "{{\"total\":{},\"requests\":[", requests.len());
    for (i, (r, batch)) in requests.iter().take(limit).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let stage = r.current_stage().min(r.stage_count() - 1);
        let _ = write!(
            out,
            "{{\"id\":{},\"user_data\":{},\"handler\":",
            r.id, r.user_data
        );
        json_str(&mut out, &r.handler.name);
        let _ = write!(out, ",\"stage\":{stage},\"stage_handler\":");
        json_str(&mut out, &r.stage(stage).name);
        // A batch waiting for its items is "batch"; each of its items says which batch.
        let state = match r.is_batch() && !r.is_done() {
            true => "batch",
            false => r.state_name(),
        };
        let _ = write!(
            out,
            ",\"state\":\"{}\",\"age_ms\":{:.3}",
            state,
            r.age_ns_at(now) as f64 / 1e6
        );
        if r.is_batch() {
            let _ = write!(out, ",\"items\":{}", r.slots());
        }
        if let Some(b) = batch {
            let _ = write!(out, ",\"batch\":{b}");
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_json_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut s = String::new();
        json_str(&mut s, "q\"\u{1}");
        assert_eq!(s, "\"q\\\"\\u0001\"");
    }
}
