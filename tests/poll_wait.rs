//! How a poll waits (issue 17): a poll that finds nothing spins briefly without a syscall and
//! then sleeps; it never loops on `sched_yield` (which burned a core's worth of syscalls and
//! context switches per completion in W3). The poller thread runs under a seccomp filter that
//! traps `sched_yield`, so each one it makes is counted, whatever the timing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{engine, sub};
use portway::{Engine, Polled};

/// `sched_yield` calls trapped on threads running under [`trap_sched_yield`].
static YIELDS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigsys(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // The trapped call is skipped; yielding is only a hint, so the caller carries on.
    YIELDS.fetch_add(1, Ordering::SeqCst);
}

/// Installs, on the calling thread only (and threads it starts later), a seccomp filter that
/// turns every `sched_yield` into a SIGSYS counted in [`YIELDS`]. False when the kernel or the
/// container refuses seccomp filters (the test is then skipped, saying so).
fn trap_sched_yield() -> bool {
    // SAFETY: a zeroed sigaction with our handler; SIGSYS is not used by anything else here.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()), 0);
    }
    let stmt = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // seccomp_data.nr is the first field (offset 0).
    let mut filter = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        stmt(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_sched_yield as u32,
            0,
            1,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_TRAP, 0, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with a valid filter program that outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            eprintln!(
                "skipped: seccomp filters unavailable ({})",
                std::io::Error::last_os_error()
            );
            return false;
        }
    }
    true
}

/// Runs `polls` on a thread of its own under the `sched_yield` trap and returns how many
/// `sched_yield` calls it made (None when seccomp is unavailable).
fn yields_while(polls: impl FnOnce() + Send) -> Option<usize> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if !trap_sched_yield() {
                return None;
            }
            let before = YIELDS.load(Ordering::SeqCst);
            polls();
            Some(YIELDS.load(Ordering::SeqCst) - before)
        })
        .join()
        .unwrap()
    })
}

/// One poll of up to 16 completions, released at once; returns how many it got.
fn poll_one(eng: &Engine, timeout: Option<Duration>) -> usize {
    let mut ids = Vec::new();
    match eng.poll(16, timeout, |_, c| ids.push(c.id())).unwrap() {
        Polled::Ready(n) => assert_eq!(n, ids.len()),
        Polled::Closed => panic!("closed"),
    }
    eng.release(ids.iter().copied()).unwrap();
    ids.len()
}

/// W3's pattern: a poll for one completion while requests are in flight that take a while
/// (here `sleep` of 2 ms, completed on runtime threads). Each poll waits, and none yields.
#[test]
fn a_poll_waiting_for_requests_in_flight_never_yields() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let yields = yields_while(|| {
        for _ in 0..20 {
            eng.submit(&sub(sleep, b"2")).unwrap();
            assert_eq!(poll_one(&eng, Some(Duration::from_secs(10))), 1);
        }
    });
    if let Some(yields) = yields {
        assert_eq!(yields, 0, "the poller called sched_yield {yields} times");
    }
}

/// A poll with nothing in flight (waiting for a wake or a timeout) neither spins nor yields.
#[test]
fn a_poll_with_nothing_in_flight_never_yields() {
    let eng = engine();
    let yields = yields_while(|| {
        for _ in 0..5 {
            assert_eq!(poll_one(&eng, Some(Duration::from_millis(2))), 0);
        }
        eng.wake().unwrap();
        assert_eq!(poll_one(&eng, None), 0, "the wake ends the poll");
    });
    if let Some(yields) = yields {
        assert_eq!(yields, 0, "the poller called sched_yield {yields} times");
    }
}
