//! The handler contract as a handler sees it: the narrow call context (id, the host's tag,
//! deadline, cancellation) a blocking handler gets instead of the engine's request record.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{engine, one};
use portway::handlers::Call;
use portway::{Status, Submission};

/// What the handler saw of its context: (id, user_data, deadline, cancelled).
type Seen = Arc<Mutex<Vec<(u64, u64, Option<Instant>, bool)>>>;

fn recording(seen: &Seen) -> impl Fn(&mut Call) + Send + Sync + 'static {
    let seen = seen.clone();
    move |c: &mut Call| {
        let ctx = c.context();
        assert_eq!((ctx.id(), ctx.user_data()), (c.id(), c.user_data()));
        assert_eq!(ctx.deadline(), c.deadline());
        seen.lock()
            .unwrap()
            .push((c.id(), c.user_data(), c.deadline(), c.is_cancelled()));
        c.respond(b"").unwrap();
    }
}

#[test]
fn a_blocking_handler_sees_its_id_tag_and_deadline() {
    let eng = engine();
    let seen: Seen = Arc::default();
    let h = eng.register_blocking("ctx", recording(&seen)).unwrap();
    let before = Instant::now();
    let id = eng
        .submit(&Submission {
            handler: h,
            timeout_ms: 5_000,
            user_data: 77,
            payload: b"",
        })
        .unwrap();
    let after = Instant::now();
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
    let (seen_id, tag, deadline, cancelled) = seen.lock().unwrap()[0];
    assert_eq!((seen_id, tag, cancelled), (id, 77, false));
    // The deadline is the submit time plus the timeout: between the two clock reads around
    // the submit call, each plus 5 s (a bound, not a timing).
    let deadline = deadline.expect("a request with a timeout has a deadline");
    let limit = Duration::from_millis(5_000);
    assert!(before + limit <= deadline && deadline <= after + limit);
}

#[test]
fn a_request_without_a_timeout_has_no_deadline() {
    let eng = engine();
    let seen: Seen = Arc::default();
    let h = eng.register_blocking("ctx", recording(&seen)).unwrap();
    eng.submit(&common::sub(h, b"")).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_OK);
    assert_eq!(seen.lock().unwrap()[0].2, None);
}
