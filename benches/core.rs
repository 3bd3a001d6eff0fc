//! Core benchmarks through the C ABI (run with `make bench` or `cargo bench --bench core`):
//! 1. no-op `echo` throughput with batch submit and batch poll (requests/s, ns/request);
//! 2. 100,000 concurrent 10 ms `sleep` requests (wall time, peak RSS per in-flight request).
//!
//! `PORTWAY_BENCH_METRICS=off` runs it with per-handler metrics off, to measure their cost.
//!
//! `make bench` (bench/run.py) runs the built binary with `PORTWAY_BENCH_ONE="echo N BATCH"`:
//! one warm-up and one measured echo run of N requests, printed as one JSON line (the W1
//! "portway (Rust)" figure).

use std::mem::MaybeUninit;
use std::ptr;
use std::time::Instant;

use portway::ffi::*;
use portway::status::Status;

fn engine(max_in_flight: u32) -> *mut portway_engine {
    unsafe {
        let cfg = portway_config_new();
        assert_eq!(
            portway_config_set_max_in_flight(cfg, max_in_flight),
            Status::PORTWAY_OK
        );
        // PORTWAY_BENCH_METRICS=off measures the engine with per-handler metrics off.
        let metrics = std::env::var("PORTWAY_BENCH_METRICS").map_or(true, |v| v != "off");
        assert_eq!(portway_config_set_metrics(cfg, metrics), Status::PORTWAY_OK);
        let mut eng = ptr::null_mut();
        assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
        portway_config_free(cfg);
        eng
    }
}

fn lookup(eng: *mut portway_engine, name: &std::ffi::CStr) -> u32 {
    let mut id = 0;
    assert_eq!(
        unsafe { portway_handler_lookup(eng, name.as_ptr(), &mut id) },
        Status::PORTWAY_OK
    );
    id
}

/// Polls and releases until `n` completions were seen; returns how many were not OK.
fn drain(eng: *mut portway_engine, buf: &mut [MaybeUninit<portway_completion>], n: usize) -> usize {
    let (mut seen, mut failed) = (0, 0);
    while seen < n {
        let mut got = 0;
        let st = unsafe { portway_poll(eng, buf.as_mut_ptr().cast(), buf.len(), -1, &mut got) };
        assert_eq!(st, Status::PORTWAY_OK);
        let done: &[portway_completion] =
            unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), got) };
        failed += done.iter().filter(|c| c.status != 0).count();
        unsafe { portway_release(eng, done.as_ptr(), got) };
        seen += got;
    }
    failed
}

fn echo_throughput(total: usize, batch: usize) -> f64 {
    let eng = engine(65_536);
    let echo = lookup(eng, c"echo");
    let reqs: Vec<portway_request> = (0..batch)
        .map(|i| portway_request {
            handler: echo,
            timeout_ms: 0,
            user_data: i as u64,
            payload: ptr::null(),
            payload_len: 0,
        })
        .collect();
    let mut buf = vec![MaybeUninit::<portway_completion>::uninit(); batch];
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let mut accepted = 0;
        let st = unsafe {
            portway_submit_batch(eng, reqs.as_ptr(), batch, ptr::null_mut(), &mut accepted)
        };
        assert_eq!(st, Status::PORTWAY_OK);
        assert_eq!(drain(eng, &mut buf, accepted), 0);
        done += accepted;
    }
    let secs = start.elapsed().as_secs_f64();
    unsafe { portway_engine_free(eng) };
    done as f64 / secs
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn concurrent_sleeps(n: usize) -> (f64, u64, u64) {
    let eng = engine(n as u32);
    let sleep = lookup(eng, c"sleep");
    let before = current_rss_kib();
    let req = portway_request {
        handler: sleep,
        timeout_ms: 0,
        user_data: 0,
        payload: b"10".as_ptr(),
        payload_len: 2,
    };
    let reqs = vec![req; 1024];
    let mut buf = vec![MaybeUninit::<portway_completion>::uninit(); 4096];
    let start = Instant::now();
    let mut submitted = 0;
    while submitted < n {
        let k = (n - submitted).min(reqs.len());
        let mut accepted = 0;
        let st =
            unsafe { portway_submit_batch(eng, reqs.as_ptr(), k, ptr::null_mut(), &mut accepted) };
        assert_eq!(st, Status::PORTWAY_OK);
        submitted += accepted;
    }
    let peak_inflight_rss = current_rss_kib();
    assert_eq!(drain(eng, &mut buf, n), 0);
    let wall = start.elapsed().as_secs_f64();
    unsafe { portway_engine_free(eng) };
    (wall, before, peak_inflight_rss.max(before))
}

fn main() {
    if let Ok(spec) = std::env::var("PORTWAY_BENCH_ONE") {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let (n, batch) = match words.as_slice() {
            ["echo", n, batch] => (n.parse().expect("N"), batch.parse().expect("BATCH")),
            _ => panic!("PORTWAY_BENCH_ONE must be \"echo N BATCH\", not {spec:?}"),
        };
        echo_throughput(n / 10, batch);
        let rate = echo_throughput(n, batch);
        println!(
            "{{\"n\": {n}, \"secs\": {:.6}, \"rate\": {rate:.1}, \"batch\": {batch}, \"failed\": 0}}",
            n as f64 / rate
        );
        return;
    }
    let quick = std::env::var("QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { 10 } else { 1 };
    println!(
        "portway core benchmarks ({} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let total = 2_000_000 / scale;
    for batch in [64, 256, 1024] {
        let mut runs: Vec<f64> = (0..5).map(|_| echo_throughput(total, batch)).collect();
        runs.sort_by(f64::total_cmp);
        let median = runs[2];
        println!(
            "echo batch={batch:5}: median {:>10.0} req/s ({:.0} ns/req; min {:.0}, max {:.0}) over {total} requests x5",
            median,
            1e9 / median,
            runs[0],
            runs[4]
        );
    }
    let n = 100_000 / scale;
    let (wall, before, during) = concurrent_sleeps(n);
    let per_req = (during.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "sleep 10ms x{n}: wall {:.3} s, RSS before {before} KiB, with all in flight {during} KiB, {per_req:.0} bytes per in-flight request, peak RSS {} KiB",
        wall,
        peak_rss_kib()
    );
}
