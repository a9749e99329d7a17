#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
//! `snakebridge_agent._native`: the Rust half of a SnakeBridge Python worker.
//!
//! - [`server`]: the tokio runtime, the Unix socket, the readiness line.
//! - [`service`]: the gRPC `Worker` service and its token check.
//! - [`threads`]: the Python threads that run call frames.
//! - [`leader`]: local-carrier connections read by the thread that then runs their call.
//! - [`call`]: one call, from frame to frame, through the agent's `dispatch` module.
//! - [`callback`]: Elixir functions as Python callables.
//! - [`convert`]: values ⇄ Python objects.
//! - [`describe`]: `DescribeLibrary`, through the agent's `introspect` module.
//! - [`registry`]: the Python objects the BEAM holds references to.
//! - [`tensor`]: tensors ⇄ numpy arrays, without copying their data.
//! - [`lifecycle`]: exiting when standard input closes or the parent dies.

pub mod call;
pub mod callback;
pub mod convert;
pub mod describe;
pub mod leader;
pub mod lifecycle;
pub mod registry;
pub mod server;
pub mod service;
pub mod tensor;
pub mod threads;

use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFrozenSet, PyTuple};
use snakebridge_core::contract;
use snakebridge_core::transport::Carrier;

/// Serves the worker protocol on the Unix socket `socket_path` until the process ends.
///
/// Releases the GIL while it runs. Writes the readiness line to file descriptor 1 once the
/// socket listens. `dispatch` is the agent's dispatch module (`call`,
/// `describe_exception`, `TargetNotFound`). `carrier` is how the socket is served:
/// `"grpc"`, or `"local"` (the core's local carrier, length-prefixed frames).
#[pyfunction]
#[pyo3(signature = (socket_path, token, threads, dispatch, carrier = "grpc"))]
fn serve(
    py: Python<'_>,
    socket_path: PathBuf,
    token: String,
    threads: usize,
    dispatch: &Bound<'_, PyAny>,
    carrier: &str,
) -> PyResult<()> {
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    let carrier = Carrier::from_name(carrier).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown carrier {carrier:?}: use \"local\" or \"grpc\""
        ))
    })?;
    let config = server::Config {
        socket_path,
        token,
        carrier,
        threads,
        python_version: py.import("sys")?.getattr("version")?.extract()?,
        dispatch: call::Dispatch::from_module(dispatch)?,
    };
    py.detach(move || server::run(config))
        .map_err(|err| match err {
            server::ServeError::Os(..) => PyOSError::new_err(err.to_string()),
            server::ServeError::Transport(_) => PyRuntimeError::new_err(err.to_string()),
        })
}

/// How many objects the worker's registry holds for the BEAM.
#[pyfunction]
fn registry_size() -> usize {
    registry::len()
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(serve, module)?)?;
    module.add_function(wrap_pyfunction!(registry_size, module)?)?;
    module.add_class::<callback::ElixirFunction>()?;
    module.add_class::<tensor::TensorBuffer>()?;
    module.add(
        "ElixirError",
        module.py().get_type::<callback::ElixirError>(),
    )?;
    // The core's cross-language constants (`snakebridge_core::contract`): Python reads them
    // here rather than keeping copies.
    module.add("DEFAULT_THREADS", contract::DEFAULT_THREADS)?;
    module.add("NESTED_CALL_KEY", contract::NESTED_CALL_KEY)?;
    module.add("MAX_ERROR_TEXT", contract::MAX_ERROR_TEXT)?;
    module.add(
        "ALWAYS_ALLOWED",
        PyTuple::new(module.py(), contract::ALWAYS_ALLOWED)?,
    )?;
    let dtypes: Vec<&str> = contract::tensor_types().map(|(name, _)| name).collect();
    module.add("DTYPES", PyFrozenSet::new(module.py(), &dtypes)?)?;
    Ok(())
}
