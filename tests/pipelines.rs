//! Pipelines: stage order, payload hand-off, failures, deadlines and per-stage limits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{collect, engine, one, sub};
use portway::handlers::Call;
use portway::{Error, Status, Submission};

fn append(eng: &portway::Engine, name: &str, suffix: &'static str) -> u32 {
    eng.register_blocking(name, move |c: &mut Call| {
        let mut v = c.payload().to_vec();
        v.extend_from_slice(suffix.as_bytes());
        c.respond(&v).unwrap();
    })
    .unwrap()
}

#[test]
fn stages_run_in_order_each_feeding_the_next() {
    let eng = engine();
    let a = append(&eng, "a", "-a");
    let b = append(&eng, "b", "-b");
    let echo = eng.lookup("echo").unwrap();
    let p = eng.register_pipeline("ab", &[a, echo, b]).unwrap();
    eng.submit(&sub(p, b"x")).unwrap();
    let c = one(&eng);
    assert_eq!(
        (c.status, c.data.as_slice()),
        (Status::PORTWAY_OK, &b"x-a-b"[..])
    );
}

#[test]
fn nested_pipelines_are_flattened() {
    let eng = engine();
    let a = append(&eng, "a", "1");
    let inner = eng.register_pipeline("inner", &[a, a]).unwrap();
    let outer = eng.register_pipeline("outer", &[inner, a, inner]).unwrap();
    eng.submit(&sub(outer, b"")).unwrap();
    assert_eq!(one(&eng).data, b"11111");
}

#[test]
fn first_failure_ends_the_pipeline() {
    let eng = engine();
    let ran_after = Arc::new(AtomicU32::new(0));
    let r = ran_after.clone();
    let fail = eng
        .register_blocking("fail", |c: &mut Call| c.fail("stage two broke").unwrap())
        .unwrap();
    let after = eng
        .register_blocking("after", move |c: &mut Call| {
            r.fetch_add(1, Ordering::SeqCst);
            c.respond(b"").unwrap();
        })
        .unwrap();
    let a = append(&eng, "a", "a");
    let p = eng.register_pipeline("p", &[a, fail, after]).unwrap();
    eng.submit(&sub(p, b"")).unwrap();
    let c = one(&eng);
    assert_eq!(
        (c.status, c.data.as_slice()),
        (Status::PORTWAY_HANDLER_ERROR, &b"stage two broke"[..])
    );
    assert_eq!(ran_after.load(Ordering::SeqCst), 0);
}

#[test]
fn deadline_covers_the_whole_pipeline() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let echo = eng.lookup("echo").unwrap();
    // Each sleep stage's response is empty, so later sleep stages would fail validation:
    // use a native stage that re-emits the delay.
    let delay = eng
        .register_blocking("delay", |c: &mut Call| {
            std::thread::sleep(Duration::from_millis(40));
            c.respond(b"40").unwrap();
        })
        .unwrap();
    let p = eng
        .register_pipeline("slow", &[delay, delay, delay, echo])
        .unwrap();
    eng.submit(&Submission {
        handler: p,
        timeout_ms: 60,
        user_data: 0,
        payload: b"",
    })
    .unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_TIMEOUT);
    let _ = sleep;
}

#[test]
fn first_stage_validates_the_payload_at_submit() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let echo = eng.lookup("echo").unwrap();
    let p = eng.register_pipeline("sleepy", &[sleep, echo]).unwrap();
    assert_eq!(
        eng.submit(&sub(p, b"never")).unwrap_err().status(),
        Status::PORTWAY_INVALID_ARGUMENT
    );
    eng.submit(&sub(p, b"5")).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
}

#[test]
fn bad_pipeline_definitions_are_refused() {
    let eng = engine();
    assert_eq!(
        eng.register_pipeline("empty", &[]).unwrap_err().status(),
        Status::PORTWAY_INVALID_ARGUMENT
    );
    assert_eq!(
        eng.register_pipeline("ghost", &[1, 99]).unwrap_err(),
        Error::UnknownHandler(99)
    );
    let echo = eng.lookup("echo").unwrap();
    let long = vec![echo; 65];
    assert_eq!(
        eng.register_pipeline("long", &long).unwrap_err().status(),
        Status::PORTWAY_INVALID_ARGUMENT
    );
}

#[test]
fn per_stage_and_whole_pipeline_limits_hold() {
    let eng = common::engine_with(|c| c.set_pool_workers(4).unwrap());
    let (now, peak) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (n2, p2) = (now.clone(), peak.clone());
    let narrow = eng
        .register_blocking("narrow", move |c: &mut Call| {
            let cur = n2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(cur, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(3));
            n2.fetch_sub(1, Ordering::SeqCst);
            c.respond(c.payload().to_vec().as_slice()).unwrap();
        })
        .unwrap();
    let wide = append(&eng, "wide", "");
    eng.set_concurrency(narrow, 2).unwrap();
    let p = eng.register_pipeline("p", &[wide, narrow, wide]).unwrap();
    for _ in 0..60 {
        eng.submit(&sub(p, b"ok")).unwrap();
    }
    let all = collect(&eng, 60);
    assert!(
        all.iter()
            .all(|c| c.status == Status::PORTWAY_OK && c.data == b"ok")
    );
    assert_eq!(peak.load(Ordering::SeqCst), 2);

    // A limit on the pipeline itself bounds requests inside it.
    now.store(0, Ordering::SeqCst);
    peak.store(0, Ordering::SeqCst);
    eng.set_concurrency(narrow, 0).unwrap();
    eng.set_concurrency(p, 1).unwrap();
    for _ in 0..20 {
        eng.submit(&sub(p, b"ok")).unwrap();
    }
    assert_eq!(collect(&eng, 20).len(), 20);
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}
