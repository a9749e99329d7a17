//! Elixir functions as Python callables.
//!
//! An Elixir function among a call's arguments arrives as a callback id (128 random bits,
//! good only on the connection it came on) and becomes an [`ElixirFunction`]. Calling it sends a `CallbackRequest` frame on the connection it came
//! from and waits (without the GIL) for the `CallbackResult` with the same request id; the
//! function runs in the BEAM meanwhile and may itself call into this worker again. Dropping
//! the callable tells the core the function can be forgotten.

use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use snakebridge_core::callback::CallbackId;
use snakebridge_core::codec::{self, call_arguments, Budgets};
use snakebridge_core::proto;
use snakebridge_core::serve::{CallbackOutcome, Callbacks};
use snakebridge_core::value::{Path, Segment, Value};

use crate::convert;
use crate::threads::{ReplySender, Threads};

create_exception!(
    snakebridge_agent,
    ElixirError,
    PyException,
    "An Elixir function called from Python raised (or could not be called)."
);

/// One connection's way back to the BEAM, shared by the callables that arrived on it:
/// the core's bookkeeping of callback requests ([`Callbacks`]), and the Python threads,
/// which get room for re-entrant calls before one of them blocks on the BEAM.
#[derive(Debug)]
pub struct Link {
    callbacks: Callbacks,
    python_threads: Threads,
    budgets: Budgets,
}

impl Link {
    /// A link sending on the connection's reply stream; `python_threads` run the
    /// connection's calls; what crosses on it keeps within `budgets` (the client's).
    pub fn new(sender: ReplySender, python_threads: Threads, budgets: Budgets) -> Link {
        Link {
            callbacks: Callbacks::new(sender),
            python_threads,
            budgets,
        }
    }

    /// The client's budgets for what crosses on this connection.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The connection's callback requests (for the frame router to deliver answers).
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// Asks the core to run callback `callback_id` and blocks until it answers. Must be
    /// called without the GIL.
    fn request(&self, callback_id: CallbackId, args: proto::Payload) -> CallbackOutcome {
        self.callbacks
            .request(callback_id, args, || self.python_threads.before_blocking())
    }
}

/// A Python callable that runs an Elixir function in the BEAM.
///
/// Positional arguments become the function's arguments; keyword arguments, if any, are
/// passed as one more argument (a map).
#[pyclass(module = "snakebridge_agent", frozen)]
#[derive(Debug)]
pub struct ElixirFunction {
    id: CallbackId,
    /// How the values of the call it came with cross (its connection among them): its
    /// arguments and result cross the same way.
    crossing: convert::Crossing,
}

impl ElixirFunction {
    /// The callable for callback `id`, crossing as the call it came with.
    pub fn new(id: CallbackId, crossing: convert::Crossing) -> ElixirFunction {
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
        let budgets = *self.crossing.link.budgets();
        let limits = budgets.from_python("the callback's arguments");
        let mut budget = limits.budget();
        let mut values = Vec::with_capacity(args.len() + 1);
        let mut path = Path::root("callback_args");
        for (index, arg) in args.iter().enumerate() {
            path.push(Segment::Index(index));
            let value = convert::from_python(&arg, &mut path, &self.crossing, &mut budget);
            values.push(value.map_err(to_py_error)?);
            path.pop();
        }
        if let Some(kwargs) = kwargs.filter(|k| !k.is_empty()) {
            let mut path = Path::root("callback_kwargs");
            let value =
                convert::from_python(kwargs.as_any(), &mut path, &self.crossing, &mut budget);
            values.push(value.map_err(to_py_error)?);
        }
        let arguments = call_arguments(values, Vec::new());
        let payload = codec::encode_payload_within(proto::Codec::Msgpack, &arguments, limits)
            .map_err(|e| ElixirError::new_err(format!("callback arguments: {e}")))?;
        let id = self.id;
        let link = Arc::clone(&self.crossing.link);
        let outcome = py.detach(move || link.request(id, payload));
        match outcome {
            Ok(payload) => {
                let limits = budgets.to_python("the callback's result");
                let value: Value = codec::decode_payload_within(&payload, limits)
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
        self.crossing.link.callbacks.release(self.id);
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
