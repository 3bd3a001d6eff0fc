//! The view a blocking (native) handler gets of one call: its payload, a narrow context (id,
//! the host's tag, deadline, cancellation) and the response it builds.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

use super::outcome::{Meta, Outcome};
use crate::engine::lend::Payload;
use crate::error::{Error, Result};
use crate::status::Status;

/// What a running call may ask about its request. The engine's request record implements it,
/// so handing a call its context costs one reference count and no allocation; handlers never
/// see the record itself.
pub(crate) trait CallState: Send + Sync + 'static {
    /// True once the request was cancelled, timed out or shut down.
    fn is_cancelled(&self) -> bool;
    /// When the request times out, if it has a time limit.
    fn deadline(&self) -> Option<Instant>;
}

/// The narrow context of one call: the request's id and the host's tag (copied, so reading
/// them costs nothing), and its deadline and cancellation (read live from the request).
#[derive(Clone)]
pub struct CallContext {
    id: u64,
    user_data: u64,
    state: Arc<dyn CallState>,
}

impl CallContext {
    /// The context of request `id` tagged `user_data`, whose live state is `state`.
    pub(crate) fn new(id: u64, user_data: u64, state: Arc<dyn CallState>) -> Self {
        CallContext {
            id,
            user_data,
            state,
        }
    }

    /// The engine-assigned request id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The host's `user_data` for this request.
    pub fn user_data(&self) -> u64 {
        self.user_data
    }

    /// When the request times out (None: it has no time limit). A handler may use it to bound
    /// its own waits; the engine completes the request with `PORTWAY_TIMEOUT` at that moment
    /// whatever the handler does.
    pub fn deadline(&self) -> Option<Instant> {
        self.state.deadline()
    }

    /// True once the request was cancelled, timed out or shut down; the handler should stop.
    pub fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("id", &self.id)
            .field("user_data", &self.user_data)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Responses up to this many bytes are kept in the call itself until the handler returns: no
/// allocation on the worker for the common small answer (a digest, a status, nothing at all).
const INLINE_RESPONSE: usize = 64;

/// One invocation of a blocking handler. Valid only while the handler runs.
pub struct Call {
    context: CallContext,
    payload: Payload,
    code: u32,
    meta: Vec<(CString, CString)>,
    result: Option<std::result::Result<Response, String>>,
}

/// The cancellation state of one call, shareable across threads (see [`Call::cancellation`]).
#[derive(Clone)]
pub struct Cancellation(Arc<dyn CallState>);

impl Cancellation {
    /// True once the request was cancelled, timed out or shut down.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancellation")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The bytes a handler responded with.
enum Response {
    Inline {
        len: u8,
        bytes: [u8; INLINE_RESPONSE],
    },
    Heap(Vec<u8>),
}

impl Response {
    fn copy_from(data: &[u8]) -> Self {
        if data.len() <= INLINE_RESPONSE {
            let mut bytes = [0; INLINE_RESPONSE];
            bytes[..data.len()].copy_from_slice(data);
            Response::Inline {
                len: data.len() as u8,
                bytes,
            }
        } else {
            // Room for the NUL the completion adds, so taking the bytes never reallocates.
            let mut bytes = Vec::with_capacity(data.len() + 1);
            bytes.extend_from_slice(data);
            Response::Heap(bytes)
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Response::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Response::Heap(bytes) => bytes,
        }
    }

    /// The response as the completion's buffer. The spent payload buffer is reused when the
    /// response fits it without pinning much more memory than it needs: the payload was
    /// allocated by the host thread and is then freed there at release, and the worker neither
    /// allocates nor frees (with glibc, a buffer freed on another thread than the one that
    /// allocated it takes that thread's arena lock, which workers and host then fight over).
    fn into_vec(self, mut spent: Vec<u8>) -> Vec<u8> {
        let data = self.as_slice();
        if data.is_empty() {
            return Vec::new();
        }
        let needed = data.len() + 1; // the NUL the completion adds
        let mut target = if spent.capacity() >= needed && spent.capacity() <= needed.max(1024) * 4 {
            spent.clear();
            spent
        } else if let Response::Heap(bytes) = self {
            return bytes;
        } else {
            Vec::with_capacity(needed)
        };
        target.extend_from_slice(data);
        target
    }
}

impl Call {
    /// A call of a handler with `payload`.
    ///
    /// # Safety
    /// A lent payload must stay readable for the call's whole life: the caller holds its
    /// request's pin (`LendPin`) until the call is consumed by [`Call::into_outcome`].
    pub(crate) unsafe fn new(context: CallContext, payload: Payload) -> Self {
        Call {
            context,
            payload,
            code: 0,
            meta: Vec::new(),
            result: None,
        }
    }

    /// The request payload (for a pipeline stage: the previous stage's response).
    pub fn payload(&self) -> &[u8] {
        // SAFETY: a lent payload is pinned for the call's life (see `Call::new`).
        unsafe { self.payload.bytes() }
    }

    /// The call's context: id, the host's tag, deadline and cancellation.
    pub fn context(&self) -> &CallContext {
        &self.context
    }

    /// The host's `user_data` for this request.
    pub fn user_data(&self) -> u64 {
        self.context.user_data
    }

    /// The engine-assigned request id.
    pub fn id(&self) -> u64 {
        self.context.id
    }

    /// When the request times out (None: it has no time limit).
    pub fn deadline(&self) -> Option<Instant> {
        self.context.deadline()
    }

    /// True once the request was cancelled, timed out or shut down; the handler should stop.
    pub fn is_cancelled(&self) -> bool {
        self.context.is_cancelled()
    }

    /// A handle on this call's cancellation state that another thread (a watchdog) may hold
    /// and read while the handler keeps `&mut Call`.
    pub fn cancellation(&self) -> Cancellation {
        Cancellation(self.context.state.clone())
    }

    /// Sets the response bytes (copied). Fails if the call already responded or failed.
    pub fn respond(&mut self, data: &[u8]) -> Result<()> {
        self.settle(Ok(Response::copy_from(data)))
    }

    /// Fails the call with `message`; the completion's status is `PORTWAY_HANDLER_ERROR`.
    pub fn fail(&mut self, message: &str) -> Result<()> {
        self.settle(Err(message.to_owned()))
    }

    /// Sets the handler-defined code reported in the completion.
    pub fn set_code(&mut self, code: u32) {
        self.code = code;
    }

    /// Appends a metadata pair. Keys and values must not contain NUL bytes.
    pub fn add_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let k = CString::new(key).map_err(|_| Error::invalid("meta key contains a NUL byte"))?;
        let v =
            CString::new(value).map_err(|_| Error::invalid("meta value contains a NUL byte"))?;
        self.meta.push((k, v));
        Ok(())
    }

    fn settle(&mut self, result: std::result::Result<Response, String>) -> Result<()> {
        if self.result.is_some() {
            return Err(Error::invalid(
                "this call already has a response (respond or fail was called before)",
            ));
        }
        self.result = Some(result);
        Ok(())
    }

    /// Turns what the handler did into the stage outcome.
    pub(crate) fn into_outcome(self) -> Outcome {
        let base = match self.result {
            Some(Ok(response)) => Outcome::ok(response.into_vec(self.payload.into_spent())),
            Some(Err(msg)) => Outcome::failed(Status::PORTWAY_HANDLER_ERROR, msg),
            None => Outcome::failed(
                Status::PORTWAY_HANDLER_ERROR,
                "handler returned without responding",
            ),
        };
        base.with_code(self.code).with_meta(Meta::new(self.meta))
    }
}
