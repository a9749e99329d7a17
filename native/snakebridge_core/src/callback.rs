//! Callbacks: Python calling functions that live in the BEAM.
//!
//! A binding (the NIF) turns an Elixir function in a call's arguments into
//! [`Value::Callback`](crate::value::Value::Callback) with an id of its own choosing, and
//! gives the pool a [`CallbackHandler`]. When Python calls the function, the worker sends a
//! `CallbackRequest` frame; the worker's supervisor hands it to the handler, which runs the
//! function somewhere that may block (a BEAM process, never the NIF) and answers through
//! [`Worker::callback_reply`](crate::worker::Worker::callback_reply). Python waits for the
//! answer on its own thread, so the function may itself call into Python again.

use std::sync::Arc;

use crate::proto;
use crate::worker::Worker;

/// Runs callbacks on behalf of the pool.
pub trait CallbackHandler: Send + Sync + 'static {
    /// Python called callback `callback_id` with `args` (encoded `[args, kwargs]`). The
    /// handler must answer `request_id` on `worker` exactly once, and must not block.
    fn invoke(&self, worker: Arc<Worker>, request_id: u64, callback_id: u64, args: proto::Payload);

    /// Python dropped these callables; their functions can be forgotten.
    fn release(&self, callback_ids: &[u64]);
}

/// A callback that could not run or answer: the `CallbackFailed` error Python raises as
/// `ElixirError(message)`.
pub fn failed(message: impl Into<String>) -> proto::Error {
    proto::Error {
        kind: proto::error::Kind::CallbackFailed as i32,
        message: message.into(),
        exception: None,
    }
}

/// A callback whose function raised: [`failed`], with the exception's type and stacktrace
/// attached (Python's `ElixirError` carries them as `elixir_type` and `elixir_stacktrace`).
pub fn raised(exception_type: &str, message: String, stacktrace: &str) -> proto::Error {
    proto::Error {
        exception: Some(proto::PythonException {
            r#type: exception_type.to_owned(),
            module: "elixir".to_owned(),
            mro: Vec::new(),
            message: message.clone(),
            traceback: stacktrace.to_owned(),
        }),
        ..failed(message)
    }
}

/// The handler a pool uses; `None` refuses every callback with a clear error.
#[derive(Clone, Default)]
pub struct Callbacks(pub Option<Arc<dyn CallbackHandler>>);

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Callbacks(handler)"
        } else {
            "Callbacks(none)"
        })
    }
}
