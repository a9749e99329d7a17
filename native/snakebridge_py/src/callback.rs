//! Elixir functions as Python callables.
//!
//! An Elixir function among a call's arguments arrives as a callback id and becomes an
//! [`ElixirFunction`]. Calling it sends a `CallbackRequest` frame on the connection it came
//! from and waits (without the GIL) for the `CallbackResult` with the same request id; the
//! function runs in the BEAM meanwhile and may itself call into this worker again. Dropping
//! the callable tells the core the function can be forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use snakebridge_core::codec::{self, call_arguments};
use snakebridge_core::proto::{self, frame::Body, Frame};
use snakebridge_core::value::{Path, Segment, Value};

use crate::convert;
use crate::threads::{ReplySender, Threads};

create_exception!(
    snakebridge_agent,
    ElixirError,
    PyException,
    "An Elixir function called from Python raised (or could not be called)."
);

/// The core's answer; errors are rare and large, so they are boxed.
type Outcome = Result<proto::Payload, Box<proto::Error>>;

#[derive(Default)]
struct Waiter {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

/// One connection's way back to the core, shared by the callables that arrived on it.
pub struct Link {
    sender: ReplySender,
    python_threads: Threads,
    waiters: Mutex<HashMap<u64, Arc<Waiter>>>,
    next_request: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("next_request", &self.next_request)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link sending on the connection's reply stream; `python_threads` run the connection's calls.
    pub fn new(sender: ReplySender, python_threads: Threads) -> Link {
        Link {
            sender,
            python_threads,
            waiters: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    fn closed_error() -> Box<proto::Error> {
        Box::new(proto::Error {
            kind: proto::error::Kind::CallbackFailed as i32,
            message: "the connection to the BEAM is gone".to_owned(),
            exception: None,
        })
    }

    /// Asks the core to run callback `callback_id` and blocks until it answers. Must be
    /// called without the GIL.
    fn request(&self, callback_id: u64, args: proto::Payload) -> Outcome {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter::default());
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Acquire) {
                return Err(Link::closed_error());
            }
            waiters.insert(request_id, Arc::clone(&waiter));
        }
        let frame = Frame {
            request_id,
            body: Some(Body::CallbackRequest(proto::CallbackRequest {
                callback_id,
                args: Some(args),
            })),
        };
        if self.sender.send(Ok(frame)).is_err() {
            self.take(request_id);
            return Err(Link::closed_error());
        }
        self.python_threads.before_blocking();
        let mut outcome = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = outcome.take() {
                return outcome;
            }
            outcome = waiter
                .ready
                .wait(outcome)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn take(&self, request_id: u64) -> Option<Arc<Waiter>> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.remove(&request_id)
    }

    /// Delivers the core's answer to the waiting Python thread.
    pub fn deliver(&self, request_id: u64, result: proto::CallbackResult) {
        use proto::callback_result::Outcome as Wire;
        let outcome = match result.outcome {
            Some(Wire::Value(value)) => Ok(value),
            Some(Wire::Error(error)) => Err(Box::new(error)),
            None => Err(Box::new(proto::Error {
                kind: proto::error::Kind::CallbackFailed as i32,
                message: "the callback's answer was empty".to_owned(),
                exception: None,
            })),
        };
        if let Some(waiter) = self.take(request_id) {
            let mut slot = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(outcome);
            waiter.ready.notify_all();
        }
    }

    /// The connection ended: every waiting callback fails, later ones fail at once.
    pub fn close(&self) {
        let waiters: Vec<Arc<Waiter>> = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Release);
            waiters.drain().map(|(_, w)| w).collect()
        };
        for waiter in waiters {
            let mut slot = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(Err(Link::closed_error()));
            waiter.ready.notify_all();
        }
    }

    fn release(&self, callback_id: u64) {
        // If the connection is gone, so is the core's interest in the function.
        let _ = self.sender.send(Ok(Frame {
            request_id: 0,
            body: Some(Body::Release(proto::Release {
                callback_ids: vec![callback_id],
                ..proto::Release::default()
            })),
        }));
    }
}

/// A Python callable that runs an Elixir function in the BEAM.
///
/// Positional arguments become the function's arguments; keyword arguments, if any, are
/// passed as one more argument (a map).
#[pyclass(module = "snakebridge_agent", frozen)]
#[derive(Debug)]
pub struct ElixirFunction {
    id: u64,
    /// How the values of the call it came with cross (its connection among them): its
    /// arguments and result cross the same way.
    crossing: convert::Crossing,
}

impl ElixirFunction {
    /// The callable for callback `id`, crossing as the call it came with.
    pub fn new(id: u64, crossing: convert::Crossing) -> ElixirFunction {
        ElixirFunction { id, crossing }
    }
}

#[pymethods]
impl ElixirFunction {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut values = Vec::with_capacity(args.len() + 1);
        let mut path = Path::root("callback_args");
        for (index, arg) in args.iter().enumerate() {
            path.push(Segment::Index(index));
            values
                .push(convert::from_python(&arg, &mut path, &self.crossing).map_err(to_py_error)?);
            path.pop();
        }
        if let Some(kwargs) = kwargs.filter(|k| !k.is_empty()) {
            let mut path = Path::root("callback_kwargs");
            values.push(
                convert::from_python(kwargs.as_any(), &mut path, &self.crossing)
                    .map_err(to_py_error)?,
            );
        }
        let payload =
            codec::encode_payload(proto::Codec::Msgpack, &call_arguments(values, Vec::new()))
                .map_err(|e| ElixirError::new_err(format!("callback arguments: {e}")))?;
        let id = self.id;
        let link = Arc::clone(&self.crossing.link);
        let outcome = py.detach(move || link.request(id, payload));
        match outcome {
            Ok(payload) => {
                let value: Value = codec::decode_payload(&payload)
                    .map_err(|e| ElixirError::new_err(format!("callback result: {e}")))?;
                convert::to_python(
                    py,
                    &value,
                    &mut Path::root("callback_result"),
                    &self.crossing,
                )
                .map_err(to_py_error)
            }
            Err(error) => Err(elixir_error(py, *error)),
        }
    }

    fn __repr__(&self) -> String {
        format!("<Elixir function #{}>", self.id)
    }
}

impl Drop for ElixirFunction {
    fn drop(&mut self) {
        self.crossing.link.release(self.id);
    }
}

fn to_py_error(err: convert::ConvertError) -> PyErr {
    ElixirError::new_err(err.message)
}

/// `ElixirError(message)` with the Elixir exception's module and stacktrace attached as
/// `elixir_type` and `elixir_stacktrace`.
fn elixir_error(py: Python<'_>, error: proto::Error) -> PyErr {
    let err = ElixirError::new_err(error.message);
    if let Some(exception) = error.exception {
        let value = err.value(py);
        let _ = value.setattr("elixir_type", exception.r#type);
        let _ = value.setattr("elixir_stacktrace", exception.traceback);
    }
    err
}
