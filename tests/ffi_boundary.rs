//! The C boundary called directly: NULL handling, outputs written only on success, last-error
//! messages, status names and the completion record layout.

use std::ffi::{CStr, c_void};
use std::ptr;

use portway::ffi::*;
use portway::status::Status;

fn last_error() -> String {
    unsafe { CStr::from_ptr(portway_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn new_engine() -> *mut portway_engine {
    let mut eng = ptr::null_mut();
    assert_eq!(
        unsafe { portway_engine_new(ptr::null(), &mut eng) },
        Status::PORTWAY_OK
    );
    assert!(!eng.is_null());
    eng
}

#[test]
fn version_and_status_names() {
    let v = unsafe { CStr::from_ptr(portway_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(portway_abi_version(), PORTWAY_ABI_VERSION);
    let name = |s| {
        unsafe { CStr::from_ptr(portway_status_str(s)) }
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(name(2), "PORTWAY_BUSY");
    assert_eq!(name(17), "PORTWAY_INTERNAL");
    assert_eq!(name(4242), "PORTWAY_UNKNOWN_STATUS");
}

#[test]
fn null_pointers_are_invalid_arguments_with_messages() {
    unsafe {
        let mut id = 0u64;
        let req = portway_request {
            handler: 1,
            timeout_ms: 0,
            user_data: 0,
            payload: ptr::null(),
            payload_len: 0,
        };
        assert_eq!(
            portway_submit(ptr::null_mut(), &req, &mut id),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "engine is NULL");
        let eng = new_engine();
        assert_eq!(
            portway_submit(eng, ptr::null(), &mut id),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "req is NULL");
        assert_eq!(
            portway_submit(eng, &req, ptr::null_mut()),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "out_id is NULL");
        let bad = portway_request {
            payload_len: 3,
            ..req
        };
        assert_eq!(
            portway_submit(eng, &bad, &mut id),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("payload is NULL but its length is 3"),
            "{}",
            last_error()
        );
        // Outputs are untouched on failure.
        id = 99;
        let unknown = portway_request {
            handler: 500,
            ..req
        };
        assert_eq!(
            portway_submit(eng, &unknown, &mut id),
            Status::PORTWAY_UNKNOWN_HANDLER
        );
        assert_eq!(id, 99);
        assert!(last_error().contains("500"));
        let mut c = std::mem::MaybeUninit::<portway_completion>::uninit();
        let mut n = 7usize;
        assert_eq!(
            portway_poll(eng, c.as_mut_ptr(), 0, 0, &mut n),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_poll(eng, c.as_mut_ptr(), 1, -2, &mut n),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(n, 7);
        assert_eq!(
            portway_release(eng, ptr::null(), 3),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(portway_release(eng, ptr::null(), 0), Status::PORTWAY_OK);
        assert_eq!(portway_cancel(eng, 12345), Status::PORTWAY_NOT_FOUND);
        assert_eq!(
            portway_engine_shutdown(eng, 9, 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert!(last_error().contains("shutdown mode 9"));
        assert_eq!(portway_notify_fd(ptr::null_mut()), -1);
        assert_eq!(
            portway_handler_lookup(eng, ptr::null(), &mut 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_handler_lookup(eng, c"missing".as_ptr(), &mut 0),
            Status::PORTWAY_NOT_FOUND
        );
        assert_eq!(
            portway_register_handler(eng, c"x".as_ptr(), None, ptr::null_mut(), &mut 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_pipeline_new(eng, c"p".as_ptr(), ptr::null(), 0, &mut 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_stats(eng, ptr::null_mut()),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_call_respond(ptr::null_mut(), ptr::null(), 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert!(portway_call_is_cancelled(ptr::null_mut()));
        assert_eq!(portway_call_user_data(ptr::null_mut()), 0);
        portway_engine_free(eng);
        // Every free accepts NULL.
        portway_engine_free(ptr::null_mut());
        portway_config_free(ptr::null_mut());
    }
}

#[test]
fn config_setters_validate() {
    unsafe {
        let cfg = portway_config_new();
        assert_eq!(
            portway_config_set_max_in_flight(cfg, 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert!(last_error().contains("max_in_flight"));
        assert_eq!(
            portway_config_set_runtime_threads(cfg, 100_000),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(
            portway_config_set_max_payload(cfg, 0),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(portway_config_set_pool_workers(cfg, 1), Status::PORTWAY_OK);
        assert_eq!(
            portway_config_set_max_in_flight(ptr::null_mut(), 1),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        let mut eng = ptr::null_mut();
        assert_eq!(
            portway_engine_new(cfg, ptr::null_mut()),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
        portway_config_free(cfg);
        let mut s = std::mem::MaybeUninit::<portway_stats_record>::uninit();
        assert_eq!(portway_stats(eng, s.as_mut_ptr()), Status::PORTWAY_OK);
        assert_eq!(s.assume_init().pool_workers, 1);
        portway_engine_free(eng);
    }
}

unsafe extern "C-unwind" fn shout(_ctx: *mut c_void, call: *mut portway_call) {
    unsafe {
        let (mut data, mut len) = (ptr::null(), 0usize);
        assert_eq!(
            portway_call_payload(call, &mut data, &mut len),
            Status::PORTWAY_OK
        );
        let up: Vec<u8> = std::slice::from_raw_parts(data, len).to_ascii_uppercase();
        portway_call_set_code(call, 7);
        portway_call_add_meta(call, c"who".as_ptr(), c"shout".as_ptr());
        assert_eq!(
            portway_call_respond(call, up.as_ptr(), up.len()),
            Status::PORTWAY_OK
        );
        assert_eq!(
            portway_call_fail(call, c"late".as_ptr()),
            Status::PORTWAY_INVALID_ARGUMENT
        );
    }
}

#[test]
fn native_handler_round_trip_and_completion_record() {
    unsafe {
        let eng = new_engine();
        let mut id = 0u32;
        assert_eq!(
            portway_register_handler(
                eng,
                c"shout".as_ptr(),
                Some(shout),
                ptr::null_mut(),
                &mut id
            ),
            Status::PORTWAY_OK
        );
        let req = portway_request {
            handler: id,
            timeout_ms: 0,
            user_data: 5,
            payload: b"hey".as_ptr(),
            payload_len: 3,
        };
        let mut rid = 0;
        assert_eq!(portway_submit(eng, &req, &mut rid), Status::PORTWAY_OK);
        let mut c = std::mem::MaybeUninit::<portway_completion>::uninit();
        let mut n = 0;
        assert_eq!(
            portway_poll(eng, c.as_mut_ptr(), 1, 5000, &mut n),
            Status::PORTWAY_OK
        );
        assert_eq!(n, 1);
        let c = c.assume_init();
        assert_eq!((c.id, c.user_data, c.status, c.code), (rid, 5, 0, 7));
        assert_eq!(std::slice::from_raw_parts(c.data, c.len), b"HEY");
        assert_eq!(*c.data.add(c.len), 0, "data is NUL-terminated");
        assert_eq!(c.meta_len, 1);
        let m = *c.meta;
        assert_eq!(CStr::from_ptr(m.key).to_str().unwrap(), "who");
        assert_eq!(CStr::from_ptr(m.value).to_str().unwrap(), "shout");
        assert_eq!(portway_release(eng, &c, 1), Status::PORTWAY_OK);
        assert_eq!(
            portway_engine_shutdown(eng, PORTWAY_DRAIN, 0),
            Status::PORTWAY_OK
        );
        let mut c2 = std::mem::MaybeUninit::<portway_completion>::uninit();
        assert_eq!(
            portway_poll(eng, c2.as_mut_ptr(), 1, -1, &mut n),
            Status::PORTWAY_CLOSED
        );
        let req = portway_request { handler: id, ..req };
        assert_eq!(
            portway_submit(eng, &req, &mut rid),
            Status::PORTWAY_SHUTDOWN
        );
        portway_engine_free(eng);
    }
}

#[test]
fn batch_reports_the_accepted_prefix() {
    unsafe {
        let cfg = portway_config_new();
        portway_config_set_max_in_flight(cfg, 2);
        let mut eng = ptr::null_mut();
        assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
        portway_config_free(cfg);
        let mut echo = 0;
        portway_handler_lookup(eng, c"echo".as_ptr(), &mut echo);
        let req = portway_request {
            handler: echo,
            timeout_ms: 0,
            user_data: 0,
            payload: ptr::null(),
            payload_len: 0,
        };
        let reqs = [req; 3];
        let (mut ids, mut accepted) = ([0u64; 3], 0usize);
        assert_eq!(
            portway_submit_batch(eng, reqs.as_ptr(), 3, ids.as_mut_ptr(), &mut accepted),
            Status::PORTWAY_BUSY
        );
        assert_eq!(accepted, 2);
        assert!(ids[0] != 0 && ids[1] != 0 && ids[2] == 0);
        assert_eq!(
            portway_submit_batch(eng, ptr::null(), 0, ptr::null_mut(), &mut accepted),
            Status::PORTWAY_OK
        );
        assert_eq!(accepted, 0);
        assert_eq!(
            portway_submit_batch(eng, ptr::null(), 2, ptr::null_mut(), &mut accepted),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        portway_engine_free(eng);
    }
}

#[test]
fn register_http_validates_and_registers() {
    unsafe {
        let eng = new_engine();
        let mut opts = std::mem::MaybeUninit::<portway_http_options>::uninit();
        assert_eq!(
            portway_http_options_default(opts.as_mut_ptr()),
            Status::PORTWAY_OK
        );
        let mut opts = opts.assume_init();
        assert_eq!(opts.max_body_bytes, 64 << 20);
        assert!(!opts.follow_redirects && !opts.danger_accept_invalid_certs);
        let mut id = 0;
        opts.max_redirects = 1000;
        assert_eq!(
            portway_register_http(eng, c"api".as_ptr(), &opts, &mut id),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        opts.max_redirects = 3;
        opts.extra_ca_pem_path = c"/nonexistent/ca.pem".as_ptr();
        assert_eq!(
            portway_register_http(eng, c"api".as_ptr(), &opts, &mut id),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("/nonexistent/ca.pem"),
            "{}",
            last_error()
        );
        opts.extra_ca_pem_path = ptr::null();
        assert_eq!(
            portway_register_http(eng, c"api".as_ptr(), &opts, &mut id),
            Status::PORTWAY_OK
        );
        let mut found = 0;
        assert_eq!(
            portway_handler_lookup(eng, c"api".as_ptr(), &mut found),
            Status::PORTWAY_OK
        );
        assert_eq!(found, id);
        assert_eq!(
            portway_register_http(eng, c"api2".as_ptr(), ptr::null(), &mut id),
            Status::PORTWAY_OK
        );
        // The built-in validates payloads at submit time.
        let mut http = 0;
        assert_eq!(
            portway_handler_lookup(eng, c"http".as_ptr(), &mut http),
            Status::PORTWAY_OK
        );
        let head = b"GET /relative HTTP/1.1\r\n\r\n";
        let req = portway_request {
            handler: http,
            timeout_ms: 0,
            user_data: 0,
            payload: head.as_ptr(),
            payload_len: head.len(),
        };
        let mut rid = 0;
        assert_eq!(
            portway_submit(eng, &req, &mut rid),
            Status::PORTWAY_INVALID_ARGUMENT
        );
        portway_engine_free(eng);
    }
}

#[test]
fn registration_after_shutdown_is_refused_in_rust_and_in_c() {
    let eng = portway::Engine::new(portway::Config::default()).unwrap();
    let echo = eng.lookup("echo").unwrap();
    eng.shutdown(portway::ShutdownMode::Drain, None).unwrap();
    let late = eng.register_blocking("late", |c: &mut portway::handlers::Call| {
        let _ = c.respond(b"");
    });
    assert!(matches!(late, Err(portway::Error::Shutdown)), "{late:?}");
    assert!(matches!(
        eng.register_pipeline("late-pipe", &[echo]),
        Err(portway::Error::Shutdown)
    ));
    assert!(eng.lookup("late").is_err());
    drop(eng);

    unsafe extern "C-unwind" fn never(_: *mut c_void, _: *mut portway_call) {}
    let eng = new_engine();
    unsafe {
        assert_eq!(
            portway_engine_shutdown(eng, PORTWAY_CANCEL_NOW, 0),
            Status::PORTWAY_OK
        );
        let mut id = 5u32;
        assert_eq!(
            portway_register_handler(eng, c"late".as_ptr(), Some(never), ptr::null_mut(), &mut id),
            Status::PORTWAY_SHUTDOWN
        );
        assert!(last_error().contains("shutting down"), "{}", last_error());
        assert_eq!(id, 5);
        portway_engine_free(eng);
    }
}

#[test]
fn a_rust_handler_can_hand_its_cancellation_to_another_thread() {
    let eng = portway::Engine::new(portway::Config::default()).unwrap();
    let h = eng
        .register_blocking("watched", |c: &mut portway::handlers::Call| {
            let token = c.cancellation();
            let watchdog = std::thread::spawn(move || token.is_cancelled());
            let seen = watchdog.join().unwrap();
            let _ = c.respond(if seen { b"cancelled" } else { b"running" });
        })
        .unwrap();
    let id = eng
        .submit(&portway::Submission {
            handler: h,
            timeout_ms: 0,
            user_data: 0,
            payload: b"",
        })
        .unwrap();
    let (done, _) = eng
        .poll_owned(1, Some(std::time::Duration::from_secs(10)))
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].data, b"running");
}
