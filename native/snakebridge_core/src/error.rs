//! The one error type of the core. The NIF turns it into `%SnakeBridge.Error{}` (or
//! `SnakeBridge.PythonError`) in one place.

use crate::codec::CodecError;
use crate::proto;

/// What went wrong, as a closed set the Elixir side maps to atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Python call raised.
    PythonException,
    /// The module or attribute named by the target does not exist.
    TargetNotFound,
    /// A value could not be encoded or decoded.
    Encoding,
    /// A payload is larger than the pool's `max_payload_size`.
    PayloadTooLarge,
    /// The request was malformed.
    BadRequest,
    /// The call was cancelled (its caller went away or asked).
    Cancelled,
    /// An object reference whose worker died, or that was released.
    StaleRef,
    /// The call's deadline passed.
    Timeout,
    /// The worker running the call died.
    WorkerCrashed,
    /// A worker could not be started.
    WorkerStartFailed,
    /// No live worker could take the call before its deadline.
    NoWorkers,
    /// The pool already has as many calls running or queued as it may take.
    Overloaded,
    /// The target lies outside the pool's `allowed_modules`.
    NotAllowed,
    /// The pool was stopped.
    PoolClosed,
    /// The connection to a worker failed.
    Transport,
    /// An invariant of SnakeBridge itself broke.
    Internal,
}

impl ErrorKind {
    /// The snake_case name used as the Elixir `reason` atom.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::PythonException => "python_exception",
            ErrorKind::TargetNotFound => "target_not_found",
            ErrorKind::Encoding => "encoding",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotAllowed => "not_allowed",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::StaleRef => "stale_ref",
            ErrorKind::Timeout => "timeout",
            ErrorKind::WorkerCrashed => "worker_crashed",
            ErrorKind::WorkerStartFailed => "worker_start_failed",
            ErrorKind::NoWorkers => "no_workers",
            ErrorKind::PoolClosed => "pool_closed",
            ErrorKind::Transport => "transport",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with everything known about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct Error {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// Set for [`ErrorKind::PythonException`] (and when a lookup raised).
    pub python: Option<Box<proto::PythonException>>,
    /// OS pid of the worker involved, when one was.
    pub worker_pid: Option<u32>,
    /// How the worker exited (`WorkerCrashed`): exit code, or minus the signal number.
    pub exit_status: Option<i32>,
    /// The last lines the worker wrote to stderr (`WorkerCrashed`, `WorkerStartFailed`).
    pub stderr_tail: Option<String>,
}

impl Error {
    /// An error of `kind` with a message and nothing else.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            python: None,
            worker_pid: None,
            exit_status: None,
            stderr_tail: None,
        }
    }

    /// Records the worker involved.
    pub fn with_worker(mut self, pid: u32) -> Self {
        self.worker_pid = Some(pid);
        self
    }

    /// Builds the core error from an error frame sent by a worker (secrets redacted from
    /// its texts, see [`crate::secrets`]).
    pub fn from_frame(mut frame: proto::Error, worker_pid: u32) -> Self {
        use crate::secrets::scrub_in_place;
        scrub_in_place(&mut frame.message);
        if let Some(exception) = &mut frame.exception {
            scrub_in_place(&mut exception.message);
            scrub_in_place(&mut exception.traceback);
        }
        use proto::error::Kind;
        let kind = match Kind::try_from(frame.kind) {
            Ok(Kind::PythonException) => ErrorKind::PythonException,
            Ok(Kind::TargetNotFound) => ErrorKind::TargetNotFound,
            Ok(Kind::Encoding) => ErrorKind::Encoding,
            Ok(Kind::BadRequest) => ErrorKind::BadRequest,
            Ok(Kind::Cancelled) => ErrorKind::Cancelled,
            Ok(Kind::UnknownRef) => ErrorKind::StaleRef,
            Ok(Kind::NotAllowed) => ErrorKind::NotAllowed,
            Ok(Kind::Internal) | Ok(Kind::CallbackFailed) | Err(_) => ErrorKind::Internal,
        };
        Error {
            kind,
            message: frame.message,
            python: frame.exception.map(Box::new),
            worker_pid: Some(worker_pid),
            exit_status: None,
            stderr_tail: None,
        }
    }
}

impl From<CodecError> for Error {
    fn from(err: CodecError) -> Self {
        Error::new(ErrorKind::Encoding, err.to_string())
    }
}
