//! Reading a response: the whole body within the handler's limit (decoded when portway asked
//! for an encoding), each wait bounded by the read timeout of the exchange.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::decode::{DecodeError, Decoder};
use super::errors::{self, HttpError, Kind};
use super::request::Origin;

/// Most bytes reserved up front for a body of announced length.
const PREALLOC_MAX: u64 = 1 << 20;

/// A complete response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The HTTP version the response came with.
    pub version: Version,
}

/// Reads the whole body of `resp` within `limit` bytes (the decoded size when `decode` and the
/// response is encoded); the announced length is checked first, and each read waits at most
/// the read timeout of `watch`. (Also the response fuzz target's reader.)
pub(crate) async fn read_response(
    resp: hyper::Response<Incoming>,
    limit: u64,
    decode: bool,
    watch: &mut ReadWatch<'_>,
) -> Result<Response, HttpError> {
    let origin = watch.origin;
    let (parts, mut body) = resp.into_parts();
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = announced
        && len > limit
    {
        return Err(HttpError::new(
            Kind::BodyTooLarge,
            format!(
                "the response from {origin} announces a body of {len} bytes, over \
                 max_body_bytes ({limit} bytes)"
            ),
        ));
    }
    // Room for the announced length (within reason) and the NUL the completion adds.
    let capacity = announced.unwrap_or(0).min(limit).min(PREALLOC_MAX) as usize + 1;
    let mut decoder = if decode {
        Decoder::for_headers(&parts.headers, limit, capacity)
    } else {
        None
    };
    let mut data = Vec::with_capacity(if decoder.is_some() { 0 } else { capacity });
    let mut encoded_len = 0;
    while let Some(frame) = watch.step("body", body.frame()).await? {
        let frame = frame.map_err(|e| errors::body_failed(origin, &e))?;
        if let Ok(chunk) = frame.into_data() {
            if let Some(d) = &mut decoder {
                encoded_len += chunk.len();
                d.write(&chunk)
                    .map_err(|e| decode_failed(origin, d.name, limit, e))?;
                continue;
            }
            if (data.len() + chunk.len()) as u64 > limit {
                return Err(HttpError::new(
                    Kind::BodyTooLarge,
                    format!(
                        "the response body from {origin} is longer than max_body_bytes \
                         ({limit} bytes); reading stopped there"
                    ),
                ));
            }
            data.extend_from_slice(&chunk);
        }
    }
    if let Some(d) = decoder
        && encoded_len > 0
    {
        let name = d.name;
        data = d
            .finish()
            .map_err(|e| decode_failed(origin, name, limit, e))?;
    }
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: data,
        version: parts.version,
    })
}

/// The read timeout of one exchange: each step (the response head, then each piece of the
/// body) may wait at most `read_timeout` for its data. On expiry the caller drops the exchange,
/// which closes an HTTP/1 connection or resets an HTTP/2 stream.
///
/// Why one timer per exchange rather than `tokio::time::timeout` per step: a timer that is
/// registered and then dropped costs two trips through the runtime's timer wheel (under its
/// lock), and most body pieces of a small response would register one. Here the timer is made
/// the first time a step has to wait, keeps the deadline it was armed with, and is re-armed
/// only when it fires while the current step is younger than the limit; a step that is ready
/// at once touches no timer and reads no clock.
///
/// An HTTP/1 connection keeps the timer of its last exchange for the next one
/// ([`ReadWatch::resume`], [`ReadWatch::into_timer`]): its deadline is never later than the
/// new step's (same limit, armed earlier), so the loop above re-arms it when it fires early,
/// and an exchange that never waits as long as the limit neither makes nor removes a timer.
pub(crate) struct ReadWatch<'a> {
    limit: Option<Duration>,
    origin: &'a Origin,
    timer: Option<Timer>,
}

/// The timer a [`ReadWatch`] arms, kept by an HTTP/1 connection between exchanges.
pub(crate) type Timer = Pin<Box<tokio::time::Sleep>>;

impl<'a> ReadWatch<'a> {
    /// A watch for one exchange with `origin`; `None` waits without limit.
    pub(crate) fn new(limit: Option<Duration>, origin: &'a Origin) -> Self {
        Self::resume(limit, origin, None)
    }

    /// A watch that reuses `timer`, left by an earlier exchange with the same limit.
    pub(crate) fn resume(
        limit: Option<Duration>,
        origin: &'a Origin,
        timer: Option<Timer>,
    ) -> Self {
        ReadWatch {
            limit,
            origin,
            timer,
        }
    }

    /// The timer, for the connection's next exchange.
    pub(crate) fn into_timer(self) -> Option<Timer> {
        self.timer
    }

    /// Awaits `step` for at most the limit, counted from the step's first wait.
    pub(crate) async fn step<F: Future>(
        &mut self,
        what: &str,
        step: F,
    ) -> Result<F::Output, HttpError> {
        let Some(limit) = self.limit else {
            return Ok(step.await);
        };
        let mut step = pin!(step);
        let mut deadline = None;
        let timer = &mut self.timer;
        let expired = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = step.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limit);
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // A timer armed for an earlier step may fire first: move it to this step's
            // deadline then, and wait on.
            while timer.as_mut().poll(cx).is_ready() {
                if timer.deadline() >= deadline {
                    return Poll::Ready(Err(()));
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await;
        expired.map_err(|()| {
            HttpError::new(
                Kind::Timeout,
                format!(
                    "no data received from {} for {} ms while waiting for the response \
                     {what} (read_timeout_ms)",
                    self.origin,
                    limit.as_millis()
                ),
            )
        })
    }
}

fn decode_failed(origin: &Origin, coding: &str, limit: u64, e: DecodeError) -> HttpError {
    match e {
        DecodeError::TooLarge => HttpError::new(
            Kind::BodyTooLarge,
            format!(
                "the decoded ({coding}) response body from {origin} is longer than \
                 max_body_bytes ({limit} bytes); decoding stopped there"
            ),
        ),
        DecodeError::Corrupt(why) => HttpError::protocol(format!(
            "the {coding} response body from {origin} cannot be decoded: {why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_step_that_is_ready_at_once_arms_no_timer() {
        let origin = origin();
        runtime().block_on(async {
            let mut watch = ReadWatch::new(Some(Duration::from_secs(30)), &origin);
            assert_eq!(watch.step("head", async { 7 }).await.unwrap(), 7);
            assert!(watch.timer.is_none());
        });
    }

    #[test]
    fn every_step_of_an_exchange_shares_one_timer() {
        let origin = origin();
        runtime().block_on(async {
            let mut watch = ReadWatch::new(Some(Duration::from_secs(30)), &origin);
            // yield_now is pending once, so each step waits and needs the timer.
            watch.step("head", tokio::task::yield_now()).await.unwrap();
            // The shared timer keeps the deadline it was armed with until it fires.
            let armed = watch.timer.as_ref().unwrap().deadline();
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                watch.step("body", tokio::task::yield_now()).await.unwrap();
                let now = watch.timer.as_ref().unwrap().deadline();
                assert_eq!(armed, now, "a step armed a timer of its own");
            }
        });
    }

    #[test]
    fn a_step_that_stalls_after_others_still_times_out() {
        let origin = origin();
        runtime().block_on(async {
            let mut watch = ReadWatch::new(Some(Duration::from_millis(20)), &origin);
            watch.step("head", tokio::task::yield_now()).await.unwrap();
            let e = watch
                .step("body", std::future::pending::<()>())
                .await
                .unwrap_err();
            assert_eq!(e.kind, Kind::Timeout);
            assert!(e.message.contains("response body"), "{}", e.message);
            assert!(e.message.contains("read_timeout_ms"), "{}", e.message);
        });
    }

    #[test]
    fn a_timer_left_by_an_earlier_exchange_is_reused_and_re_armed_only_when_it_fires() {
        let origin = origin();
        let limit = Some(Duration::from_millis(40));
        runtime().block_on(async {
            let mut first = ReadWatch::new(limit, &origin);
            first.step("head", tokio::task::yield_now()).await.unwrap();
            let timer = first.into_timer().unwrap();
            let (at, armed) = (&*timer as *const _, timer.deadline());
            // The next exchange keeps it as it is: no timer made, none re-armed.
            let mut next = ReadWatch::resume(limit, &origin, Some(timer));
            next.step("head", tokio::task::yield_now()).await.unwrap();
            let timer = next.into_timer().unwrap();
            assert_eq!(&*timer as *const _, at, "a new timer was made");
            assert_eq!(timer.deadline(), armed, "the timer was re-armed");
            // Once its deadline has passed, a later exchange's step still gets its own full
            // limit: the stale timer fires at once and is moved to the step's deadline.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut late = ReadWatch::resume(limit, &origin, Some(timer));
            let waited = late.step("head", tokio::time::sleep(Duration::from_millis(10)));
            waited.await.unwrap();
            assert!(late.into_timer().unwrap().deadline() > armed);
        });
    }

    #[test]
    fn no_limit_waits_without_a_timer() {
        let origin = origin();
        runtime().block_on(async {
            let mut watch = ReadWatch::new(None, &origin);
            watch.step("head", tokio::task::yield_now()).await.unwrap();
            assert!(watch.timer.is_none());
        });
    }
}
