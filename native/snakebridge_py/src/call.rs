//! One call frame, start to finish: decode the arguments, call `dispatch.call` under the
//! GIL, encode the result. Every outcome is a frame; nothing here panics on bad input.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use snakebridge_core::codec::{self, CodecError};
use snakebridge_core::proto::{self, call::Op, error::Kind, frame::Body, Frame};
use snakebridge_core::value::{Path, Segment, Value};

use crate::convert::{self, ConvertError, Crossing};

/// The agent's dispatch module, looked up once: the functions every call goes through.
pub struct Dispatch {
    call: Py<PyAny>,
    call_method: Py<PyAny>,
    get_attr: Py<PyAny>,
    set_attr: Py<PyAny>,
    iterate: Py<PyAny>,
    describe_exception: Py<PyAny>,
    target_not_found: Py<PyType>,
    not_allowed: Py<PyType>,
}

/// Python objects only: nothing worth printing without the GIL.
impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch").finish_non_exhaustive()
    }
}

impl Dispatch {
    /// Looks up `call`, `call_method`, `get_attr`, `set_attr`, `iterate`,
    /// `describe_exception`, `TargetNotFound` and `NotAllowed` in the dispatch module.
    pub fn from_module(module: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Dispatch {
            call: module.getattr("call")?.unbind(),
            call_method: module.getattr("call_method")?.unbind(),
            get_attr: module.getattr("get_attr")?.unbind(),
            set_attr: module.getattr("set_attr")?.unbind(),
            iterate: module.getattr("iterate")?.unbind(),
            describe_exception: module.getattr("describe_exception")?.unbind(),
            target_not_found: module
                .getattr("TargetNotFound")?
                .cast_into::<PyType>()?
                .unbind(),
            not_allowed: module
                .getattr("NotAllowed")?
                .cast_into::<PyType>()?
                .unbind(),
        })
    }
}

/// A failed call, as it goes on the wire.
struct Failure {
    kind: Kind,
    message: String,
    /// Boxed: failures are rare and the common path should pass small results around.
    exception: Option<Box<proto::PythonException>>,
}

impl Failure {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            exception: None,
        }
    }

    fn into_frame(self, request_id: u64) -> Frame {
        Frame {
            request_id,
            body: Some(Body::Error(proto::Error {
                kind: self.kind as i32,
                message: self.message,
                exception: self.exception.map(|e| *e),
            })),
        }
    }
}

impl From<ConvertError> for Failure {
    fn from(err: ConvertError) -> Self {
        let kind = if err.unknown_ref {
            Kind::UnknownRef
        } else if err.too_large {
            Kind::PayloadTooLarge
        } else {
            Kind::Encoding
        };
        Failure::new(kind, err.message)
    }
}

impl Failure {
    /// A value that could not be encoded or decoded: `what` names it (`result`).
    fn codec(what: &str, err: CodecError) -> Self {
        let kind = if err.is_too_large() {
            Kind::PayloadTooLarge
        } else {
            Kind::Encoding
        };
        Failure::new(kind, format!("{what}: {err}"))
    }
}

/// Told when a call's Python code starts and stops running on the current thread, so
/// that the call can be interrupted meanwhile (see `snakebridge_core::serve::Control`). Both run with the
/// GIL held.
pub trait Running {
    /// The call's Python code starts running on the current thread.
    fn enter(&self, py: Python<'_>);
    /// The call's Python code stopped running on the current thread.
    fn leave(&self, py: Python<'_>);
}

/// Runs `call` and returns the frame that answers it.
/// `queue_us` is how long the call waited for a thread (reported with the result).
pub fn run(
    dispatch: &Dispatch,
    request_id: u64,
    call: proto::Call,
    crossing: &Crossing,
    queue_us: u64,
    running: &dyn Running,
) -> Frame {
    match execute(dispatch, call, crossing, running) {
        Ok(value) => Frame {
            request_id,
            body: Some(Body::Result(proto::Result {
                value: Some(value),
                queue_us,
            })),
        },
        Err(failure) => failure.into_frame(request_id),
    }
}

/// An error frame answering `request_id` (the core's).
pub use snakebridge_core::serve::error_frame;

fn execute(
    dispatch: &Dispatch,
    call: proto::Call,
    crossing: &Crossing,
    running: &dyn Running,
) -> Result<proto::Payload, Failure> {
    let result_codec = result_codec(&call)?;
    let decoded = Decoded::new(&call, crossing)?;
    let request = decoded.request(&call, crossing);
    let limits = crossing.link.budgets().from_python("the result");
    let result = Python::attach(|py| -> Result<Value, Failure> {
        running.enter(py);
        let obj = invoke(py, dispatch, &request);
        running.leave(py);
        let obj = obj?;
        if request.return_ref {
            Ok(convert::to_ref(&obj, request.crossing))
        } else {
            Ok(convert::from_python(
                &obj,
                &mut Path::root("result"),
                request.crossing,
                &mut limits.budget(),
            )?)
        }
    })?;
    drop(decoded);
    codec::encode_payload_within(result_codec, &result, limits)
        .map_err(|e| Failure::codec("result", e))
}

fn result_codec(call: &proto::Call) -> Result<proto::Codec, Failure> {
    proto::Codec::try_from(call.result_codec).map_err(|_| {
        Failure::new(
            Kind::BadRequest,
            format!("unknown result codec number {}", call.result_codec),
        )
    })
}

/// A call's arguments, decoded without the GIL (only conversions and the call hold it).
struct Decoded {
    op: Op,
    args: Vec<Value>,
    kwargs: Vec<(Value, Value)>,
}

impl Decoded {
    fn new(call: &proto::Call, crossing: &Crossing) -> Result<Decoded, Failure> {
        let (args, kwargs) = match &call.args {
            Some(payload) => {
                let limits = crossing.link.budgets().to_python("the arguments");
                let decoded = codec::decode_payload_within(payload, limits)
                    .map_err(|e| Failure::codec("args", e))?;
                codec::split_call_arguments(decoded)
                    .map_err(|e| Failure::new(Kind::Encoding, format!("args: {e}")))?
            }
            None => (Vec::new(), Vec::new()),
        };
        let op = Op::try_from(call.op).map_err(|_| {
            Failure::new(Kind::BadRequest, format!("unknown op number {}", call.op))
        })?;
        Ok(Decoded { op, args, kwargs })
    }

    fn request<'a>(&'a self, call: &'a proto::Call, crossing: &'a Crossing) -> Request<'a> {
        Request {
            op: self.op,
            target: &call.target,
            args: &self.args,
            kwargs: &self.kwargs,
            return_ref: call.return_ref,
            crossing,
        }
    }
}

/// How a stream's producer waits for the consumer.
pub trait Credit {
    /// Blocks (without the GIL) until one more chunk may be sent; `false` when the stream
    /// was cancelled instead.
    fn acquire(&self) -> bool;
}

/// Runs a streaming call: calls the target, iterates what it returned and sends one chunk
/// frame per element as credit allows, then a final chunk, or an error frame.
pub fn stream(
    dispatch: &Dispatch,
    request_id: u64,
    call: proto::Call,
    crossing: &Crossing,
    credit: &impl Credit,
    send: &dyn Fn(Frame),
) {
    let started = result_codec(&call).and_then(|codec| {
        let decoded = Decoded::new(&call, crossing)?;
        let request = decoded.request(&call, crossing);
        Python::attach(|py| {
            let obj = invoke(py, dispatch, &request)?;
            let iterator = dispatch
                .iterate
                .bind(py)
                .call1((obj,))
                .map_err(|e| describe(py, dispatch, e))?;
            Ok((codec, iterator.unbind()))
        })
    });
    let (codec, iterator) = match started {
        Ok(started) => started,
        Err(failure) => return send(failure.into_frame(request_id)),
    };
    let limits = crossing.link.budgets().from_python("a stream chunk");
    let mut chunk_id: u64 = 0;
    loop {
        if !credit.acquire() {
            // The consumer stopped: let the generator run its cleanup (`finally`).
            Python::attach(|py| {
                let iterator = iterator.bind(py);
                if let Ok(close) = iterator.getattr(pyo3::intern!(py, "close")) {
                    let _ = close.call0();
                }
            });
            return;
        }
        let step = Python::attach(|py| -> Result<Option<Value>, Failure> {
            let iterator = iterator.bind(py);
            match iterator.call_method0(pyo3::intern!(py, "__next__")) {
                Ok(item) => {
                    let mut path = Path::root("chunk");
                    path.push(Segment::Index(chunk_id as usize));
                    let mut budget = limits.budget();
                    Ok(Some(convert::from_python(
                        &item,
                        &mut path,
                        crossing,
                        &mut budget,
                    )?))
                }
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => Ok(None),
                Err(err) => Err(describe(py, dispatch, err)),
            }
        });
        let frame = match step {
            Ok(Some(value)) => match codec::encode_payload_within(codec, &value, limits) {
                Ok(payload) => chunk_frame(request_id, chunk_id, Some(payload), false),
                Err(e) => {
                    let failure = Failure::codec(&format!("chunk[{chunk_id}]"), e);
                    return send(failure.into_frame(request_id));
                }
            },
            Ok(None) => return send(chunk_frame(request_id, chunk_id, None, true)),
            Err(failure) => return send(failure.into_frame(request_id)),
        };
        send(frame);
        chunk_id += 1;
    }
}

fn chunk_frame(
    request_id: u64,
    chunk_id: u64,
    payload: Option<proto::Payload>,
    is_final: bool,
) -> Frame {
    Frame {
        request_id,
        body: Some(Body::Chunk(proto::Chunk {
            chunk_id,
            payload,
            is_final,
        })),
    }
}

/// One decoded request.
struct Request<'a> {
    op: Op,
    target: &'a str,
    args: &'a [Value],
    kwargs: &'a [(Value, Value)],
    return_ref: bool,
    crossing: &'a Crossing,
}

/// Makes the call the request describes and returns what Python returned.
fn invoke<'py>(
    py: Python<'py>,
    dispatch: &Dispatch,
    request: &Request<'_>,
) -> Result<Bound<'py, PyAny>, Failure> {
    let py_args = positional_to_python(py, request.args, request.crossing)?;
    let py_kwargs = keywords_to_python(py, request.kwargs, request.crossing)?;
    let target = PyString::new(py, request.target);
    let returned = match request.op {
        Op::Call => dispatch.call.bind(py).call1((target, py_args, py_kwargs)),
        op => {
            let wanted = match op {
                Op::SetAttr => 2,
                _ => 1,
            };
            if py_args.len() < wanted {
                return Err(Failure::new(
                    Kind::BadRequest,
                    format!(
                        "{} needs the object as its first argument",
                        op.as_str_name()
                    ),
                ));
            }
            let receiver = py_args.get_item(0).map_err(|e| internal(py, e))?;
            let rest = py_args.get_slice(1, py_args.len());
            match op {
                Op::CallMethod => dispatch
                    .call_method
                    .bind(py)
                    .call1((receiver, target, rest, py_kwargs)),
                Op::GetAttr => dispatch.get_attr.bind(py).call1((receiver, target)),
                _ => {
                    let value = rest.get_item(0).map_err(|e| internal(py, e))?;
                    dispatch.set_attr.bind(py).call1((receiver, target, value))
                }
            }
        }
    };
    returned.map_err(|err| describe(py, dispatch, err))
}

fn internal(py: Python<'_>, err: PyErr) -> Failure {
    Failure::new(Kind::Internal, err.value(py).to_string())
}

fn positional_to_python<'py>(
    py: Python<'py>,
    args: &[Value],
    crossing: &Crossing,
) -> Result<Bound<'py, PyTuple>, Failure> {
    let mut path = Path::root("args");
    let mut converted = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        path.push(Segment::Index(index));
        converted.push(convert::to_python(py, arg, &mut path, crossing)?);
        path.pop();
    }
    PyTuple::new(py, converted).map_err(|e| Failure::new(Kind::Internal, format!("args: {e}")))
}

fn keywords_to_python<'py>(
    py: Python<'py>,
    kwargs: &[(Value, Value)],
    crossing: &Crossing,
) -> Result<Bound<'py, PyDict>, Failure> {
    if let Some((key, _)) = kwargs.iter().find(|(key, _)| !matches!(key, Value::Str(_))) {
        return Err(Failure::new(
            Kind::Encoding,
            format!(
                "kwargs: keyword argument names must be strings or atoms, found a {}",
                key.kind()
            ),
        ));
    }
    Ok(convert::map_to_python(
        py,
        kwargs,
        &mut Path::root("kwargs"),
        0,
        crossing,
    )?)
}

/// Turns an exception raised by `dispatch.call` into a failure, described by the agent.
fn describe(py: Python<'_>, dispatch: &Dispatch, err: PyErr) -> Failure {
    let kind = if err.is_instance(py, dispatch.target_not_found.bind(py).as_any()) {
        Kind::TargetNotFound
    } else if err.is_instance(py, dispatch.not_allowed.bind(py).as_any()) {
        Kind::NotAllowed
    } else {
        Kind::PythonException
    };
    // PyO3 keeps the traceback beside the exception value; attach it so that the agent
    // formats the frames (a failure here only loses the frames, not the exception).
    let value = err.value(py);
    if let Some(traceback) = err.traceback(py) {
        let _ = value.setattr("__traceback__", traceback);
    }
    let described = dispatch
        .describe_exception
        .bind(py)
        .call1((value,))
        .and_then(|d| d.extract::<(String, String, Vec<String>, String, String)>());
    let exception = match described {
        Ok((r#type, module, mro, message, traceback)) => proto::PythonException {
            r#type,
            module,
            mro,
            message,
            traceback,
        },
        // describe_exception itself failed: fall back to what PyO3 can tell.
        Err(_) => proto::PythonException {
            r#type: err
                .get_type(py)
                .qualname()
                .map(|q| q.to_string_lossy().into_owned())
                .unwrap_or_default(),
            module: String::new(),
            mro: Vec::new(),
            message: err.value(py).to_string(),
            traceback: String::new(),
        },
    };
    // The message travels once, in the exception: the core makes the error's message
    // from it (`snakebridge_core::Error::from_frame`).
    Failure {
        kind,
        message: String::new(),
        exception: Some(Box::new(exception)),
    }
}
