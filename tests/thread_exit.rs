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

/// Ends its thread when the payload is "exit", counting it in `EXITS` (or in the
/// `AtomicUsize` `ctx` points to, when not NULL); echoes anything else.
unsafe extern "C-unwind" fn maybe_exit(ctx: *mut c_void, call: *mut portway_call) {
    let (mut data, mut len) = (ptr::null(), 0);
    // SAFETY: `call` is the live call; the payload stays valid until the handler returns.
    unsafe {
        assert_eq!(
            portway_call_payload(call, &mut data, &mut len),
            Status::PORTWAY_OK
        );
        if std::slice::from_raw_parts(data, len) == b"exit" {
            // SAFETY: a non-NULL `ctx` is a live `AtomicUsize` (the test's own).
            let exits = match ctx.is_null() {
                true => &EXITS,
                false => &*ctx.cast::<AtomicUsize>(),
            };
            exits.fetch_add(1, Ordering::SeqCst);
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

/// An engine with one pool worker, and `maybe_exit` registered on it with `ctx`.
unsafe fn one_worker_with_maybe_exit(ctx: *mut c_void) -> (*mut portway_engine, u32) {
    // SAFETY: plain use of the C ABI with live pointers.
    unsafe {
        let cfg = portway_config_new();
        assert_eq!(portway_config_set_pool_workers(cfg, 1), Status::PORTWAY_OK);
        let mut eng = ptr::null_mut();
        assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
        portway_config_free(cfg);
        let mut h = 0;
        let name = c"maybe_exit".as_ptr();
        let status = portway_register_handler(eng, name, Some(maybe_exit), ctx, &mut h);
        assert_eq!(status, Status::PORTWAY_OK);
        (eng, h)
    }
}

/// Issue 17: the thread exits inside the second job of a chunk (a submit batch on one worker):
/// the first job's completion, held to be queued with the chunk's, is not lost, and the jobs
/// after it (the batch's last) run on the replacement worker. Each request completes once.
#[test]
fn a_handler_thread_that_exits_inside_a_chunk_loses_none_of_its_jobs() {
    // SAFETY: plain use of the C ABI with live pointers.
    unsafe {
        let exits = AtomicUsize::new(0);
        let (eng, h) = one_worker_with_maybe_exit((&raw const exits).cast_mut().cast());
        // A first call, so that the batch's calls are quick ones (whose completions a worker
        // holds to queue with the rest of its chunk).
        let ok = (Status::PORTWAY_OK as u32, b"ok".to_vec());
        assert_eq!(run(eng, h, b"ok"), ok);
        // 8 requests on one worker: chunks of 4; the second request of the last chunk exits.
        const EXIT: usize = 5;
        let payloads: Vec<&[u8]> = (0..8)
            .map(|i| if i == EXIT { &b"exit"[..] } else { &b"ok"[..] })
            .collect();
        let reqs: Vec<portway_request> = payloads
            .iter()
            .map(|p| portway_request {
                handler: h,
                timeout_ms: 0,
                user_data: 0,
                payload: p.as_ptr(),
                payload_len: p.len(),
            })
            .collect();
        let (mut ids, mut accepted) = ([0u64; 8], 0);
        assert_eq!(
            portway_submit_batch(eng, reqs.as_ptr(), 8, ids.as_mut_ptr(), &mut accepted),
            Status::PORTWAY_OK
        );
        assert_eq!(accepted, 8);
        let mut seen = std::collections::HashMap::new();
        while seen.len() < 8 {
            let mut c = [const { std::mem::MaybeUninit::<portway_completion>::uninit() }; 8];
            let mut n = 0;
            assert_eq!(
                portway_poll(eng, c[0].as_mut_ptr(), 8, 10_000, &mut n),
                Status::PORTWAY_OK
            );
            assert!(n > 0, "only {} of 8 completed", seen.len());
            for c in &c[..n] {
                let c = c.assume_init_ref();
                assert!(
                    seen.insert(c.id, c.status).is_none(),
                    "{} completed twice",
                    c.id
                );
                assert_eq!(portway_release(eng, c, 1), Status::PORTWAY_OK);
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let want = if i == EXIT {
                Status::PORTWAY_HANDLER_ERROR
            } else {
                Status::PORTWAY_OK
            };
            assert_eq!(seen[id], want as u32, "request {i}");
        }
        assert_eq!(exits.load(Ordering::SeqCst), 1);
        portway_engine_free(eng);
    }
}

#[test]
fn a_handler_thread_that_exits_completes_its_request_and_is_replaced() {
    // SAFETY: plain use of the C ABI with live pointers.
    unsafe {
        let (eng, h) = one_worker_with_maybe_exit(ptr::null_mut());
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
