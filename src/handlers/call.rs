//! The view a blocking (native) handler gets of one call: its payload, its cancellation flag,
//! and the response it builds.

use std::ffi::CString;
use std::sync::Arc;

use crate::engine::request::Request;
use crate::engine::{Meta, Outcome};
use crate::error::{Error, Result};
use crate::status::Status;

/// One invocation of a blocking handler. Valid only while the handler runs.
pub struct Call {
    request: Arc<Request>,
    payload: Vec<u8>,
    code: u32,
    meta: Vec<(CString, CString)>,
    result: Option<std::result::Result<Vec<u8>, String>>,
}

impl Call {
    pub(crate) fn new(request: Arc<Request>, payload: Vec<u8>) -> Self {
        Call {
            request,
            payload,
            code: 0,
            meta: Vec::new(),
            result: None,
        }
    }

    /// The request payload (for a pipeline stage: the previous stage's response).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The host's `user_data` for this request.
    pub fn user_data(&self) -> u64 {
        self.request.user_data
    }

    /// The engine-assigned request id.
    pub fn id(&self) -> u64 {
        self.request.id
    }

    /// True once the request was cancelled, timed out or shut down; the handler should stop.
    pub fn is_cancelled(&self) -> bool {
        self.request.is_done()
    }

    /// Sets the response bytes (copied). Fails if the call already responded or failed.
    pub fn respond(&mut self, data: &[u8]) -> Result<()> {
        // Room for the NUL the completion adds, so taking the bytes never reallocates.
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.extend_from_slice(data);
        self.settle(Ok(bytes))
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

    fn settle(&mut self, result: std::result::Result<Vec<u8>, String>) -> Result<()> {
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
            Some(Ok(data)) => Outcome::ok(data),
            Some(Err(msg)) => Outcome::failed(Status::PORTWAY_HANDLER_ERROR, msg),
            None => Outcome::failed(
                Status::PORTWAY_HANDLER_ERROR,
                "handler returned without responding",
            ),
        };
        base.with_code(self.code).with_meta(Meta::new(self.meta))
    }
}
