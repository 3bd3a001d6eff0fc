//! Seeing inside: Prometheus text, per-handler stats, the in-flight dump and the log hook.

mod common;

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{collect, engine, engine_with, sub};
use portway::engine::{LogLevel, LogSetting};
use portway::handlers::Call;
use portway::{Status, Submission};

/// Finds `name{labels} value` in the exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn exposition_counters_agree_with_stats_and_histograms_with_completions() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    for _ in 0..30 {
        eng.submit(&sub(echo, b"x")).unwrap();
    }
    for _ in 0..5 {
        eng.submit(&Submission {
            handler: sleep,
            timeout_ms: 1,
            user_data: 0,
            payload: b"1000",
        })
        .unwrap();
    }
    collect(&eng, 35);
    let text = eng.metrics_text().unwrap();
    let stats = eng.stats().unwrap();
    assert_eq!(
        sample(&text, "portway_requests_submitted_total{handler=\"echo\"}"),
        Some(30.0)
    );
    assert_eq!(
        sample(&text, "portway_requests_submitted_total{handler=\"sleep\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "portway_requests_completed_total{handler=\"sleep\",status=\"PORTWAY_TIMEOUT\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "portway_engine_completed_total{status=\"PORTWAY_OK\"}"
        ),
        Some(stats.completed_with(Status::PORTWAY_OK) as f64)
    );
    assert_eq!(sample(&text, "portway_in_flight"), Some(0.0));
    assert_eq!(
        sample(&text, "portway_run_seconds_count{handler=\"echo\"}"),
        Some(30.0)
    );
    assert_eq!(
        sample(
            &text,
            "portway_run_seconds_bucket{handler=\"echo\",le=\"+Inf\"}"
        ),
        Some(30.0)
    );
    assert_eq!(
        sample(&text, "portway_queue_wait_seconds_count{handler=\"sleep\"}"),
        Some(5.0)
    );
    // Buckets are cumulative and end at the count.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("portway_run_seconds_bucket{handler=\"sleep\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(*buckets.last().unwrap(), 5.0);
    // Every family has HELP and TYPE lines.
    for family in [
        "portway_requests_submitted_total",
        "portway_queue_wait_seconds",
        "portway_pool_busy_workers",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} has no TYPE"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
}

#[test]
fn handler_stats_report_percentiles() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    for ms in [5u32, 10, 20] {
        let p = ms.to_string();
        eng.submit(&sub(sleep, p.as_bytes())).unwrap();
        collect(&eng, 1);
    }
    let s = eng.handler_stats(sleep).unwrap();
    assert_eq!(
        (s.name.as_str(), s.submitted, s.completed_total()),
        ("sleep", 3, 3)
    );
    assert_eq!(s.run.count, 3);
    assert!(
        s.run.max_ns >= 19_000_000 && s.run.p50_ns >= 9_000_000,
        "{:?}",
        s.run
    );
    assert!(
        s.run.p50_ns <= s.run.p90_ns
            && s.run.p90_ns <= s.run.p99_ns
            && s.run.p99_ns <= s.run.max_ns
    );
    assert!(eng.handler_stats(999).is_err());
}

#[test]
fn pipeline_stages_have_their_own_figures() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let slow = eng
        .register_blocking("slow", |c: &mut Call| {
            std::thread::sleep(Duration::from_millis(5));
            c.respond(b"done").unwrap();
        })
        .unwrap();
    let p = eng.register_pipeline("p", &[echo, slow]).unwrap();
    for _ in 0..4 {
        eng.submit(&sub(p, b"")).unwrap();
    }
    collect(&eng, 4);
    let ps = eng.handler_stats(p).unwrap();
    assert_eq!((ps.submitted, ps.completed_total()), (4, 4));
    let ss = eng.handler_stats(slow).unwrap();
    assert_eq!(
        (ss.submitted, ss.completed_total()),
        (0, 4),
        "stage runs are recorded on the stage"
    );
    assert!(ss.run.p50_ns >= 4_000_000);
}

#[test]
fn inflight_dump_shows_a_stuck_request_with_a_growing_age_then_nothing() {
    let eng = engine();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let stuck = eng
        .register_blocking("stuck", move |c: &mut Call| {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            c.respond(b"").unwrap();
        })
        .unwrap();
    let id = eng
        .submit(&Submission {
            handler: stuck,
            timeout_ms: 0,
            user_data: 77,
            payload: b"",
        })
        .unwrap();
    let age = |json: &str| -> f64 {
        let at = json.find("\"age_ms\":").unwrap() + 9;
        json[at..].trim_end_matches(['}', ']']).parse().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let j = eng.inflight_json(10).unwrap();
        if j.contains("\"state\":\"running\"") || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(first.starts_with("{\"total\":1,"), "{first}");
    assert!(
        first.contains(&format!(
            "\"id\":{id},\"user_data\":77,\"handler\":\"stuck\""
        )),
        "{first}"
    );
    assert!(first.contains("\"state\":\"running\""), "{first}");
    let busy =
        |eng: &portway::Engine| sample(&eng.metrics_text().unwrap(), "portway_pool_busy_workers");
    let deadline = Instant::now() + Duration::from_secs(5);
    while busy(&eng) != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(busy(&eng), Some(1.0), "the stuck worker counts as busy");
    std::thread::sleep(Duration::from_millis(30));
    let second = eng.inflight_json(10).unwrap();
    assert!(age(&second) >= age(&first) + 25.0, "{first} then {second}");
    assert_eq!(
        eng.inflight_json(0).unwrap(),
        "{\"total\":1,\"requests\":[]}"
    );
    release.store(true, Ordering::SeqCst);
    collect(&eng, 1);
    assert_eq!(
        eng.inflight_json(10).unwrap(),
        "{\"total\":0,\"requests\":[]}"
    );
    assert_eq!(busy(&eng), Some(0.0), "a worker that returned is idle");
}

/// Events a log hook received, in order.
type Events = Arc<Mutex<Vec<(LogLevel, String)>>>;

/// An engine whose log hook (set in its config, at `min` and above) records every event.
fn logging_engine(min: LogLevel) -> (portway::Engine, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let eng = engine_with(|c| {
        c.set_log(Some(LogSetting {
            hook: Arc::new(move |level, msg: &str| {
                sink.lock().unwrap().push((level, msg.to_owned()))
            }),
            min,
        }))
    });
    (eng, events)
}

#[test]
fn log_hook_sees_start_shutdown_and_a_handler_panic() {
    let (eng, events) = logging_engine(LogLevel::Info);
    let boom = eng
        .register_blocking("boom", |_c: &mut Call| panic!("kaboom"))
        .unwrap();
    eng.submit(&sub(boom, b"")).unwrap();
    collect(&eng, 1);
    eng.shutdown(portway::ShutdownMode::Drain, None).unwrap();
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter()
            .any(|(l, m)| *l == LogLevel::Info && m.starts_with("engine started")),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(l, m)| *l == LogLevel::Error && m.contains("kaboom") && m.contains("boom")),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(l, m)| *l == LogLevel::Info && m.starts_with("shutdown")),
        "{ev:?}"
    );
}

#[test]
fn log_hook_hears_of_a_connection_that_could_not_be_made() {
    let (eng, events) = logging_engine(LogLevel::Warn);
    let http = eng.lookup("http").unwrap();
    // A port that was just free: nothing listens there, so the connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let head = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n");
    let id = eng.submit(&sub(http, head.as_bytes())).unwrap();
    let c = collect(&eng, 1);
    assert_eq!(c[0].status, Status::PORTWAY_CONNECT_ERROR);
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter().any(|(l, m)| *l == LogLevel::Warn
            && m.starts_with(&format!("request {id}: "))
            && m.contains("refused")),
        "{ev:?}"
    );
}

#[test]
fn log_reports_requests_leaked_past_free() {
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = events.clone();
    let eng = engine();
    eng.set_log(
        Some(Arc::new(move |_l, msg: &str| {
            sink.lock().unwrap().push(msg.to_owned())
        })),
        LogLevel::Warn,
    )
    .unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"60000")).unwrap();
    drop(eng);
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter().any(|m| m.contains("1 request(s) not released")),
        "{ev:?}"
    );
}

#[test]
fn c_buffers_too_small_get_the_size_needed_and_nothing_written() {
    use portway::ffi::*;
    unsafe {
        let mut eng = std::ptr::null_mut();
        assert_eq!(
            portway_engine_new(std::ptr::null(), &mut eng),
            Status::PORTWAY_OK
        );
        let mut needed = 0usize;
        assert_eq!(
            portway_metrics_text(eng, std::ptr::null_mut(), 0, &mut needed),
            Status::PORTWAY_BUFFER_TOO_SMALL
        );
        assert!(needed > 100);
        let mut small = vec![b'#' as c_char; 10];
        let mut needed2 = 0;
        assert_eq!(
            portway_metrics_text(eng, small.as_mut_ptr(), 10, &mut needed2),
            Status::PORTWAY_BUFFER_TOO_SMALL
        );
        assert_eq!(needed2, needed);
        assert!(
            small.iter().all(|&c| c == b'#' as c_char),
            "nothing written"
        );
        let mut buf = vec![0 as c_char; needed];
        assert_eq!(
            portway_metrics_text(eng, buf.as_mut_ptr(), needed, &mut needed2),
            Status::PORTWAY_OK
        );
        let text = std::ffi::CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
        assert_eq!(text.len() + 1, needed);
        assert_eq!(
            portway_metrics_text(eng, buf.as_mut_ptr(), needed, std::ptr::null_mut()),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        let mut json = [0 as c_char; 64];
        assert_eq!(
            portway_inflight_json(eng, 5, json.as_mut_ptr(), 64, &mut needed),
            Status::PORTWAY_OK
        );
        assert_eq!(
            std::ffi::CStr::from_ptr(json.as_ptr()).to_str().unwrap(),
            "{\"total\":0,\"requests\":[]}"
        );
        let mut hs = std::mem::MaybeUninit::<portway_handler_stats_record>::uninit();
        assert_eq!(
            portway_handler_stats(eng, 1, hs.as_mut_ptr()),
            Status::PORTWAY_OK
        );
        assert_eq!(hs.assume_init().id, 1);
        assert_eq!(
            portway_handler_stats(eng, 99, hs.as_mut_ptr()),
            Status::PORTWAY_UNKNOWN_HANDLER
        );
        assert_eq!(
            portway_set_log(eng, None, std::ptr::null_mut(), 9),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        portway_engine_free(eng);
    }
}

#[test]
fn metrics_can_be_turned_off() {
    let eng = engine_with(|c| c.set_metrics(false).unwrap());
    let echo = eng.lookup("echo").unwrap();
    for _ in 0..10 {
        eng.submit(&sub(echo, b"x")).unwrap();
    }
    collect(&eng, 10);
    let s = eng.handler_stats(echo).unwrap();
    assert_eq!((s.submitted, s.completed_total(), s.run.count), (0, 0, 0));
    // Engine-wide stats stay on.
    assert_eq!(eng.stats().unwrap().completed_total(), 10);
}

#[test]
fn inflight_dump_of_one_batch_shows_one_age_for_all() {
    // Requests accepted by one submit_batch call share their acceptance instant; the dump
    // takes one `now` for the whole snapshot, so they show one age (oldest first stays true).
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let n = 2000;
    let subs: Vec<Submission> = (0..n)
        .map(|_| Submission {
            handler: sleep,
            timeout_ms: 0,
            user_data: 1,
            payload: b"60000",
        })
        .collect();
    let mut ids = vec![0u64; n];
    let (accepted, result) = eng.submit_batch(&subs, Some(&mut ids));
    result.unwrap();
    assert_eq!(accepted, n);
    let json = eng.inflight_json(n).unwrap();
    let ages: Vec<&str> = json
        .split("\"age_ms\":")
        .skip(1)
        .map(|s| s.split(['}', ',']).next().unwrap())
        .collect();
    assert_eq!(ages.len(), n);
    assert!(
        ages.iter().all(|a| *a == ages[0]),
        "{:?} .. {:?}",
        ages[0],
        ages[n - 1]
    );
    eng.cancel_all().unwrap();
    collect(&eng, n);
}
