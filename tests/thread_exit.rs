//! A native handler whose thread ends under it (`pthread_exit`, a forced unwind): the process
//! goes on, the request completes once with `PORTWAY_HANDLER_ERROR`, the pool replaces the
//! thread and the engine frees cleanly (issue 12, point 3). Rust handlers' panics still
//! become `PORTWAY_PANIC` (`tests/engine_basics.rs`).

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use portway::ffi::*;
use portway::status::Status;

unsafe extern "C-unwind" {
    // "C-unwind": the forced unwind it starts passes through the handler's frame.
    fn pthread_exit(value: *mut c_void) -> !;
}

static EXITS: AtomicUsize = AtomicUsize::new(0);

/// Ends its thread when the payload is "exit"; echoes anything else.
unsafe extern "C-unwind" fn maybe_exit(_ctx: *mut c_void, call: *mut portway_call) {
    let (mut data, mut len) = (ptr::null(), 0);
    // SAFETY: `call` is the live call; the payload stays valid until the handler returns.
    unsafe {
        assert_eq!(
            portway_call_payload(call, &mut data, &mut len),
            Status::PORTWAY_OK
        );
        if std::slice::from_raw_parts(data, len) == b"exit" {
            EXITS.fetch_add(1, Ordering::SeqCst);
            pthread_exit(ptr::null_mut());
        }
        portway_call_respond(call, data, len);
    }
}

/// Submits `payload` to `handler` and polls its completion; returns (status, data).
unsafe fn run(eng: *mut portway_engine, handler: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let req = portway_request {
        handler,
        timeout_ms: 0,
        user_data: 0,
        payload: payload.as_ptr(),
        payload_len: payload.len(),
    };
    let mut id = 0;
    // SAFETY: a live engine and valid pointers.
    unsafe {
        assert_eq!(portway_submit(eng, &req, &mut id), Status::PORTWAY_OK);
        let mut c = std::mem::MaybeUninit::<portway_completion>::uninit();
        let mut n = 0;
        assert_eq!(
            portway_poll(eng, c.as_mut_ptr(), 1, 20_000, &mut n),
            Status::PORTWAY_OK
        );
        assert_eq!(n, 1);
        let c = c.assume_init();
        assert_eq!(c.id, id);
        let out = (c.status, std::slice::from_raw_parts(c.data, c.len).to_vec());
        assert_eq!(portway_release(eng, &c, 1), Status::PORTWAY_OK);
        out
    }
}

#[test]
fn a_handler_thread_that_exits_completes_its_request_and_is_replaced() {
    // SAFETY: plain use of the C ABI with live pointers.
    unsafe {
        let cfg = portway_config_new();
        assert_eq!(portway_config_set_pool_workers(cfg, 1), Status::PORTWAY_OK);
        let mut eng = ptr::null_mut();
        assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
        portway_config_free(cfg);
        let mut h = 0;
        assert_eq!(
            portway_register_handler(
                eng,
                c"maybe_exit".as_ptr(),
                Some(maybe_exit),
                ptr::null_mut(),
                &mut h
            ),
            Status::PORTWAY_OK
        );
        // The only worker exits three times; each time the request completes and a new
        // worker runs the next one.
        for _ in 0..3 {
            let (status, data) = run(eng, h, b"exit");
            assert_eq!(status, Status::PORTWAY_HANDLER_ERROR as u32);
            let msg = String::from_utf8_lossy(&data);
            assert!(msg.contains("thread exited"), "{msg}");
            let ok = (Status::PORTWAY_OK as u32, b"still here".to_vec());
            assert_eq!(run(eng, h, b"still here"), ok);
        }
        assert_eq!(EXITS.load(Ordering::SeqCst), 3);
        let mut st = std::mem::MaybeUninit::<portway_stats_record>::uninit();
        assert_eq!(portway_stats(eng, st.as_mut_ptr()), Status::PORTWAY_OK);
        let st = st.assume_init();
        assert_eq!(st.in_flight, 0);
        assert_eq!(st.completed[Status::PORTWAY_HANDLER_ERROR as usize], 3);
        portway_engine_free(eng);
    }
}
