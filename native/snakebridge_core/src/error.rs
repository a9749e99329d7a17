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
    /// A payload is over one of the pool's budgets: `max_payload_size` (sent),
    /// `max_result_size` (received) or `max_elements` (see [`crate::codec::budget`]).
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

    /// Builds the core error from an error frame sent by a worker (cut to size, see
    /// [`clip_frame`], and with secrets redacted from its texts, see [`crate::secrets`]).
    /// A frame describing a Python exception carries its message once, in the exception:
    /// the error's message is made here (`ValueError: bad`).
    pub fn from_frame(mut frame: proto::Error, worker_pid: u32) -> Self {
        use crate::secrets::scrub_in_place;
        clip_frame(&mut frame);
        if let Some(exception) = &mut frame.exception {
            if frame.message.is_empty() {
                frame.message = exception_message(frame.kind, exception);
            }
            restore_last_line(exception);
        }
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
            Ok(Kind::PayloadTooLarge) => ErrorKind::PayloadTooLarge,
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

/// The message of an error frame that carries a Python exception: `Type: message` for an
/// exception raised by the call, the exception's own message for a lookup or an allowlist
/// refusal (which say what was not found or allowed).
fn exception_message(kind: i32, exception: &proto::PythonException) -> String {
    use proto::error::Kind;
    match Kind::try_from(kind) {
        Ok(Kind::TargetNotFound) | Ok(Kind::NotAllowed) => exception.message.clone(),
        _ if exception.message.is_empty() => exception.r#type.clone(),
        _ => format!("{}: {}", exception.r#type, exception.message),
    }
}

/// Puts back the last line of an exception's traceback, `Type: message` as Python prints
/// it, which the worker leaves out to send the message once: a traceback that is empty or
/// ends with a frame's line (indented) lacks it. (One that ends otherwise, such as a
/// `SyntaxError`'s, was sent whole.)
fn restore_last_line(exception: &mut proto::PythonException) {
    let last = exception
        .traceback
        .trim_end_matches('\n')
        .rsplit('\n')
        .next();
    if !matches!(last, None | Some("")) && !last.is_some_and(|line| line.starts_with(' ')) {
        return;
    }
    let module = exception.module.as_str();
    if !matches!(module, "" | "builtins" | "__main__") {
        exception.traceback.push_str(module);
        exception.traceback.push('.');
    }
    exception.traceback.push_str(&exception.r#type);
    if !exception.message.is_empty() {
        exception.traceback.push_str(": ");
        exception.traceback.push_str(&exception.message);
    }
    exception.traceback.push('\n');
}

/// Cuts an error frame's texts to [`MAX_ERROR_TEXT`](crate::contract::MAX_ERROR_TEXT)
/// bytes each: its message, the exception's message and traceback, and the exception's
/// class names together (the most derived are kept).
pub fn clip_frame(frame: &mut proto::Error) {
    use crate::contract::MAX_ERROR_TEXT;
    clip_text(&mut frame.message, MAX_ERROR_TEXT);
    if let Some(exception) = &mut frame.exception {
        clip_text(&mut exception.r#type, MAX_ERROR_TEXT);
        clip_text(&mut exception.module, MAX_ERROR_TEXT);
        clip_text(&mut exception.message, MAX_ERROR_TEXT);
        clip_text(&mut exception.traceback, MAX_ERROR_TEXT);
        let mut budget = MAX_ERROR_TEXT;
        let keep = exception
            .mro
            .iter()
            .take_while(|name| match budget.checked_sub(name.len()) {
                Some(left) => {
                    budget = left;
                    true
                }
                None => false,
            })
            .count();
        exception.mro.truncate(keep);
    }
}

/// Cuts `text` to at most `limit` bytes, at a character boundary, ending it with how many
/// bytes were cut.
pub fn clip_text(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let total = text.len();
    let note_room = 48;
    let mut end = limit.saturating_sub(note_room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… ({} of {total} bytes cut)", total - end));
}

impl From<CodecError> for Error {
    fn from(err: CodecError) -> Self {
        let kind = if err.is_too_large() {
            ErrorKind::PayloadTooLarge
        } else {
            ErrorKind::Encoding
        };
        Error::new(kind, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::MAX_ERROR_TEXT;

    fn exception(message: &str) -> proto::PythonException {
        proto::PythonException {
            r#type: "ValueError".into(),
            module: "builtins".into(),
            mro: vec!["builtins.ValueError".into(), "builtins.Exception".into()],
            message: message.into(),
            traceback: "Traceback (most recent call last):\n".into(),
        }
    }

    #[test]
    fn texts_are_cut_at_a_character_boundary_saying_how_much() {
        let mut text = "é".repeat(100);
        clip_text(&mut text, 99);
        assert!(text.len() <= 99, "{}", text.len());
        assert!(text.ends_with("bytes cut)"), "{text}");
        let mut short = "fine".to_owned();
        clip_text(&mut short, 4);
        assert_eq!(short, "fine");
    }

    #[test]
    fn a_huge_exception_costs_a_bounded_frame() {
        let mut huge = exception(&"x".repeat(100 << 20));
        huge.traceback = "y".repeat(10 << 20);
        huge.mro = (0..100_000).map(|i| format!("m.Class{i}")).collect();
        let mut frame = proto::Error {
            kind: proto::error::Kind::PythonException as i32,
            message: String::new(),
            exception: Some(huge),
        };
        clip_frame(&mut frame);
        let exception = frame.exception.as_ref().unwrap();
        assert!(exception.message.len() <= MAX_ERROR_TEXT);
        assert!(exception.traceback.len() <= MAX_ERROR_TEXT);
        let names: usize = exception.mro.iter().map(String::len).sum();
        assert!(names <= MAX_ERROR_TEXT && !exception.mro.is_empty());
        assert_eq!(
            exception.mro[0], "m.Class0",
            "the most derived classes are kept"
        );
        let error = Error::from_frame(frame, 7);
        assert!(error.message.starts_with("ValueError: xxx"));
        assert!(error.message.len() <= MAX_ERROR_TEXT + "ValueError: ".len());
    }

    #[test]
    fn the_tracebacks_last_line_is_put_back_once() {
        let restored = |module: &str, traceback: &str| {
            let mut exception = exception("bad");
            exception.module = module.into();
            exception.traceback = traceback.into();
            restore_last_line(&mut exception);
            exception.traceback
        };
        let frames = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n";
        assert_eq!(
            restored("builtins", frames),
            format!("{frames}ValueError: bad\n")
        );
        assert_eq!(
            restored("yaml", frames),
            format!("{frames}yaml.ValueError: bad\n")
        );
        assert_eq!(restored("builtins", ""), "ValueError: bad\n");
        let whole = "  File \"<string>\", line 1\n    x y\n      ^\nSyntaxError: invalid syntax\n";
        assert_eq!(restored("builtins", whole), whole);
    }

    #[test]
    fn the_message_is_made_from_the_exception_it_was_sent_in() {
        use proto::error::Kind;
        let frame = |kind: Kind, message: &str| proto::Error {
            kind: kind as i32,
            message: String::new(),
            exception: Some(exception(message)),
        };
        let raised = Error::from_frame(frame(Kind::PythonException, "bad"), 1);
        assert_eq!(raised.message, "ValueError: bad");
        assert_eq!(raised.python.unwrap().message, "bad");
        let bare = Error::from_frame(frame(Kind::PythonException, ""), 1);
        assert_eq!(bare.message, "ValueError");
        let missing = Error::from_frame(frame(Kind::TargetNotFound, "no module x"), 1);
        assert_eq!(missing.message, "no module x");
        let said = proto::Error {
            message: "as sent".into(),
            ..frame(Kind::PythonException, "bad")
        };
        assert_eq!(Error::from_frame(said, 1).message, "as sent");
    }
}
