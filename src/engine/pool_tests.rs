//! The pool's idle-wait policy, tested without timing.

use super::*;

/// An idle worker counts the host, which hands out the jobs, as busy: with the other
/// workers inside a handler that fills every CPU, it parks at once instead of yielding.
#[test]
fn an_idle_worker_parks_at_once_when_busy_threads_fill_every_cpu() {
    let gate = SpinGate::default();
    assert_eq!(
        idle_polls(&gate, 1, 2),
        0,
        "one worker hashing + the host on 2 CPUs"
    );
    assert_eq!(idle_polls(&gate, 0, 2), POLLS_BEFORE_PARKING);
    let (tx, rx) = flume::unbounded::<PoolMsg>();
    assert!(next_without_parking(&rx, || 0, &gate).is_none());
    tx.send(PoolMsg::Stop).unwrap();
    assert!(matches!(
        next_without_parking(
            &rx,
            || panic!("polled although a message was waiting"),
            &gate
        ),
        Some(PoolMsg::Stop)
    ));
}
