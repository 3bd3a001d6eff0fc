//! The connection pool: per origin, idle HTTP/1 connections, at most one shared HTTP/2
//! connection, and a semaphore that caps how many connections exist at once.
//!
//! A connection is a hyper connection task plus its handle. The task holds one permit of its
//! origin's semaphore for as long as the socket is open, so the cap counts real sockets. The
//! handle aborts the task when dropped: a connection that is not explicitly put back idle
//! (cancelled request, error, unread body) is closed, never reused.
//!
//! Cold bursts: while the first connection to an https origin is being opened, nobody knows
//! whether ALPN will pick h2 or http/1.1. One request opens it (the probe); the others wait.
//! If it speaks h2 they all share it; if HTTP/1.1 they open their own connections up to the
//! cap; if it fails they fail with its error (as Go's transport shares one dial). The origin
//! then keeps one HTTP/2 connection (RFC 9113 section 9.1): requests beyond the server's
//! MAX_CONCURRENT_STREAMS queue on it rather than opening more connections.
//!
//! Narrow and wide HTTP/1 connections: a narrow one takes hyper's default of 100 header lines
//! per response head, parsed on the stack; a wide one takes the handler's full count (see
//! `connect::h1_builder`), at the price of two heap arrays per response. An origin's
//! connections are narrow until the origin needs wide ones, and wide from then on: when a head
//! was too large for a narrow connection (the request, idempotent, is sent again on a wide one;
//! see the client), or when a request that may not be sent twice (POST, PATCH) goes to it, so
//! that such a request never meets a head it cannot read. Narrow connections of a wide origin
//! are closed rather than reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;

use super::errors::HttpError;
use super::request::Origin;
use super::response::Timer;

/// The request body type on every connection.
pub(crate) type ReqBody = Full<Bytes>;

/// Aborts a connection task when dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(pub AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An HTTP/1 connection, used by one request at a time.
pub(crate) struct H1Conn {
    pub sender: http1::SendRequest<ReqBody>,
    pub _task: TaskGuard,
    /// Ends (`changed()` fails) once the connection task has ended.
    pub ended: tokio::sync::watch::Receiver<()>,
    /// Takes the handler's full count of header lines per response, not hyper's default.
    pub wide: bool,
    /// The read timer of its last exchange, reused by the next (see `ReadWatch`).
    pub timer: Option<Timer>,
}

/// An HTTP/2 connection, shared by all requests to its origin.
#[derive(Clone)]
pub(crate) struct H2Conn {
    pub sender: http2::SendRequest<ReqBody>,
    pub _task: Arc<TaskGuard>,
    /// Ends (`changed()` fails) once the connection task has ended.
    pub ended: tokio::sync::watch::Receiver<()>,
}

/// Pool state for one origin.
pub(crate) struct Host {
    idle: Mutex<Vec<(H1Conn, Instant)>>,
    h2: Mutex<Option<H2Conn>>,
    h2_known: AtomicBool,
    /// The origin answered ALPN with http/1.1 (or without ALPN): no probing needed.
    h1_known: AtomicBool,
    /// New HTTP/1 connections are wide (see the module doc); never unset.
    wide: AtomicBool,
    /// The probe of an origin whose protocol is not known yet.
    probe: Mutex<ProbeState>,
    /// Held while opening an HTTP/2 connection, so that concurrent requests wait for it
    /// instead of each opening their own.
    pub h2_connecting: tokio::sync::Mutex<()>,
    /// Signalled when a connection is put back idle or an HTTP/2 connection appears.
    pub notify: Notify,
    /// One permit per open connection.
    pub permits: Arc<Semaphore>,
    max: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    fn new(max: usize, h2_known: bool) -> Self {
        Host {
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            h2_known: AtomicBool::new(h2_known),
            h1_known: AtomicBool::new(false),
            wide: AtomicBool::new(false),
            probe: Mutex::new(ProbeState::default()),
            h2_connecting: tokio::sync::Mutex::new(()),
            notify: Notify::new(),
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// True once this origin is known to speak HTTP/2.
    pub fn h2_known(&self) -> bool {
        self.h2_known.load(Ordering::Acquire)
    }

    /// The origin answered with HTTP/1 (at first, or after all when ALPN changed).
    pub fn set_h1(&self) {
        self.h2_known.store(false, Ordering::Release);
        self.h1_known.store(true, Ordering::Release);
    }

    /// True once a connection to this origin spoke HTTP/1.
    pub fn h1_known(&self) -> bool {
        self.h1_known.load(Ordering::Acquire)
    }

    /// True once new HTTP/1 connections to this origin are wide.
    pub fn wide(&self) -> bool {
        self.wide.load(Ordering::Acquire)
    }

    /// Makes every later HTTP/1 connection to this origin wide; its narrow ones are closed
    /// when next met, idle or put back.
    pub fn set_wide(&self) {
        if !self.wide() {
            self.wide.store(true, Ordering::Release);
        }
    }

    /// Joins the probe of this origin: the first caller leads it (opens the connection), the
    /// others get the generation to wait for. Call with the host's `notify` already enabled.
    pub fn join_probe(self: &Arc<Self>) -> Probe {
        let mut p = lock(&self.probe);
        if p.running {
            return Probe::Wait(p.generation);
        }
        p.running = true;
        p.generation += 1;
        Probe::Lead(ProbeGuard {
            host: self.clone(),
            generation: p.generation,
        })
    }

    /// The error of probe `generation`, when it failed.
    pub fn probe_error(&self, generation: u64) -> Option<HttpError> {
        match &lock(&self.probe).failed {
            Some((g, e)) if *g == generation => Some(e.clone()),
            _ => None,
        }
    }

    /// The shared HTTP/2 connection, if it is still open.
    pub fn live_h2(&self) -> Option<H2Conn> {
        let mut slot = lock(&self.h2);
        match &*slot {
            Some(c) if !c.sender.is_closed() => Some(c.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Makes `conn` the shared HTTP/2 connection and wakes waiting requests.
    pub fn set_h2(&self, conn: H2Conn) {
        *lock(&self.h2) = Some(conn);
        self.h1_known.store(false, Ordering::Release);
        self.h2_known.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Drops a dead HTTP/2 connection (only if it is still the shared one).
    pub fn drop_h2(&self, dead: &H2Conn) {
        let mut slot = lock(&self.h2);
        if slot
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c._task, &dead._task))
        {
            *slot = None;
        }
    }

    /// The most recently used idle connection that is still open and not expired (and wide,
    /// once the origin is).
    pub fn take_idle(&self, idle_timeout: Option<Duration>) -> Option<H1Conn> {
        let narrow_ok = !self.wide();
        let mut idle = lock(&self.idle);
        while let Some((conn, since)) = idle.pop() {
            let expired = idle_timeout.is_some_and(|t| since.elapsed() >= t);
            if !expired && !conn.sender.is_closed() && (conn.wide || narrow_ok) {
                return Some(conn);
            }
        }
        None
    }

    /// Puts a connection back after a complete exchange and wakes one waiting request. A
    /// narrow connection of a wide origin is closed instead, which frees its permit.
    pub fn put_idle(&self, conn: H1Conn) {
        if conn.sender.is_closed() || (!conn.wide && self.wide()) {
            return;
        }
        lock(&self.idle).push((conn, Instant::now()));
        self.notify.notify_one();
    }

    /// Closes every idle connection (to free permits for an HTTP/2 connection).
    pub fn clear_idle(&self) {
        let drained: Vec<_> = lock(&self.idle).drain(..).collect();
        drop(drained);
    }

    /// Closes idle connections that are closed or expired; true when nothing is left.
    fn prune(&self, idle_timeout: Option<Duration>) -> bool {
        let stale: Vec<_> = {
            let mut idle = lock(&self.idle);
            let (keep, stale): (Vec<_>, Vec<_>) = idle.drain(..).partition(|(conn, since)| {
                !conn.sender.is_closed() && idle_timeout.is_none_or(|t| since.elapsed() < t)
            });
            *idle = keep;
            stale
        };
        drop(stale);
        self.live_h2();
        self.is_unused()
    }

    /// No connection open, idle or shared.
    fn is_unused(&self) -> bool {
        lock(&self.h2).is_none()
            && lock(&self.idle).is_empty()
            && self.permits.available_permits() == self.max
    }
}

/// The probe of one origin (see the module doc).
#[derive(Default)]
struct ProbeState {
    running: bool,
    /// Counts probes, so that a waiter can tell whether the probe it waited for failed.
    generation: u64,
    /// The last failed probe and its error, given to the requests that waited for it.
    failed: Option<(u64, HttpError)>,
}

/// What a request does while the protocol of its origin is not known.
pub(crate) enum Probe {
    /// Open the first connection; finish the guard with the outcome.
    Lead(ProbeGuard),
    /// Wait on the host's `notify` for the probe of this generation to end.
    Wait(u64),
}

/// Ends a probe and wakes its waiters; dropped without `finish` (the leading request was
/// cancelled) it ends the probe without an error, so that a waiter leads the next one.
pub(crate) struct ProbeGuard {
    host: Arc<Host>,
    generation: u64,
}

impl ProbeGuard {
    /// Ends the probe; `error` is handed to the requests that waited for it.
    pub fn finish(self, error: Option<&HttpError>) {
        if let Some(e) = error {
            lock(&self.host.probe).failed = Some((self.generation, e.clone()));
        }
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        lock(&self.host.probe).running = false;
        self.host.notify.notify_waiters();
    }
}

/// All origins of one http handler.
pub(crate) struct Pool {
    hosts: Mutex<HashMap<Origin, Arc<Host>>>,
    max_per_host: usize,
    pub idle_timeout: Option<Duration>,
    h2_prior_knowledge: bool,
    reaper_started: AtomicBool,
    /// Requests that opened a new connection.
    pub opened_total: AtomicU64,
    /// Requests served on a connection that was already open.
    pub reused_total: AtomicU64,
}

impl Pool {
    /// `max_per_host` 0 = no limit.
    pub fn new(
        max_per_host: u32,
        idle_timeout: Option<Duration>,
        h2_prior_knowledge: bool,
    ) -> Self {
        let max_per_host = match max_per_host {
            0 => Semaphore::MAX_PERMITS,
            n => n as usize,
        };
        Pool {
            hosts: Mutex::new(HashMap::new()),
            max_per_host,
            idle_timeout,
            h2_prior_knowledge,
            reaper_started: AtomicBool::new(false),
            opened_total: AtomicU64::new(0),
            reused_total: AtomicU64::new(0),
        }
    }

    /// Connections open now, idle or busy, over all origins.
    pub fn open_connections(&self) -> u64 {
        lock(&self.hosts)
            .values()
            .map(|h| (h.max - h.permits.available_permits()) as u64)
            .sum()
    }

    /// The state of `origin`, created on first use.
    pub fn host(&self, origin: &Origin) -> Arc<Host> {
        let mut hosts = lock(&self.hosts);
        if let Some(h) = hosts.get(origin) {
            return h.clone();
        }
        let h2 = self.h2_prior_knowledge;
        let host = Arc::new(Host::new(self.max_per_host, h2));
        hosts.insert(origin.clone(), host.clone());
        host
    }

    /// Starts the task that closes expired idle connections and forgets unused origins.
    /// Must be called on the runtime; only the first call spawns.
    pub fn start_reaper(self: &Arc<Self>) {
        // A load first: every request calls this, and a swap would write the shared line.
        if self.reaper_started.load(Ordering::Acquire)
            || self.reaper_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let every = self.idle_timeout.map_or(Duration::from_secs(30), |t| {
            (t / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
        });
        let weak: Weak<Pool> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.reap();
            }
        });
    }

    fn reap(&self) {
        let hosts: Vec<(Origin, Arc<Host>)> = lock(&self.hosts)
            .iter()
            .map(|(o, h)| (o.clone(), h.clone()))
            .collect();
        let mut unused = Vec::new();
        for (origin, host) in hosts {
            if host.prune(self.idle_timeout) {
                unused.push(origin);
            }
        }
        let mut map = lock(&self.hosts);
        for origin in unused {
            // Forget an origin only when nothing else holds its state (no request in
            // progress), so that its connection cap can never be split across two states.
            if map
                .get(&origin)
                .is_some_and(|h| Arc::strong_count(h) == 1 && h.is_unused())
            {
                map.remove(&origin);
            }
        }
    }
}
