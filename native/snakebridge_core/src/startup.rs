//! Why a worker could not start, said so that a user can act on it: the interpreter, what
//! went wrong in one line, and what fixes it.
//!
//! A failed start is reported by the pool's start (when it is strict), logged once by the
//! Elixir side, and repeated by every call that finds no live worker, so the explanation
//! is made once, here, from the error the worker's start returned.

use std::path::Path;

use crate::error::Error;

/// The error of a failed worker start, explained: `cannot start a Python worker with
/// `python`: <cause>. <hint>`. The cause is the start error's message, completed (unless an
/// init call raised) by the decisive line of the worker's stderr (a Python exception's last
/// line) when the message does not already say it. The exit status, stderr tail and Python exception are kept.
pub fn explain(python: &Path, err: &Error, hint: Option<&str>) -> Error {
    let mut cause = err.message.clone();
    // (An init call that raised says why in its message; its stderr is the user's.)
    let tail = err.stderr_tail.as_deref().filter(|_| err.python.is_none());
    if let Some(line) = tail.and_then(decisive_line) {
        if !cause.contains(&line) {
            cause = format!("{cause}: {line}");
        }
    }
    let mut message = format!(
        "cannot start a Python worker with `{}`: {}",
        python.display(),
        cause.trim_end_matches('.')
    );
    if let Some(hint) = hint.filter(|h| !h.is_empty()) {
        message.push_str(". ");
        message.push_str(hint);
    }
    Error {
        message,
        ..err.clone()
    }
}

/// The line of a worker's stderr that says why it stopped: the last non-empty one, which
/// for a Python traceback is the exception (`ModuleNotFoundError: No module named 'x'`).
/// The wrapper `python -m` puts around an import error of the package itself
/// (`python: Error while finding module specification for 'm' (ImportError: why)`) is
/// taken off.
fn decisive_line(tail: &str) -> Option<String> {
    let line = tail.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    const WRAPPER: &str = "Error while finding module specification for ";
    if let Some(at) = line.find(WRAPPER) {
        let rest = &line[at + WRAPPER.len()..];
        if let (Some(open), Some(close)) = (rest.find(" ("), rest.rfind(')')) {
            if open + 2 < close {
                return Some(rest[open + 2..close].to_owned());
            }
        }
    }
    Some(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn failed(message: &str, tail: Option<&str>) -> Error {
        let mut err = Error::new(ErrorKind::WorkerStartFailed, message);
        err.stderr_tail = tail.map(str::to_owned);
        err.exit_status = Some(1);
        err
    }

    #[test]
    fn a_missing_interpreter_is_named_with_the_hint() {
        let err = failed("the interpreter `/no/python` was not found", None);
        let explained = explain(Path::new("/no/python"), &err, Some("Run `mix x`."));
        assert_eq!(
            explained.message,
            "cannot start a Python worker with `/no/python`: the interpreter `/no/python` \
             was not found. Run `mix x`."
        );
        assert_eq!(explained.kind, ErrorKind::WorkerStartFailed);
        assert_eq!(explained.exit_status, Some(1));
    }

    #[test]
    fn the_exception_of_a_traceback_completes_the_cause() {
        let tail = "Traceback (most recent call last):\n  File \"x.py\", line 1\n\
                    ModuleNotFoundError: No module named 'numpy'\n\n";
        let err = failed("Python worker `py` exited before it was ready", Some(tail));
        let explained = explain(Path::new("py"), &err, None);
        assert!(
            explained.message.ends_with(
                "exited before it was ready: ModuleNotFoundError: No module named 'numpy'"
            ),
            "{}",
            explained.message
        );
        assert_eq!(explained.stderr_tail.as_deref(), Some(tail));
    }

    #[test]
    fn the_module_spec_wrapper_is_taken_off() {
        let tail = "/usr/bin/python3.9: Error while finding module specification for \
                    'snakebridge_agent.__main__' (ImportError: snakebridge_agent needs CPython \
                    3.10 or newer, and /usr/bin/python3.9 is 3.9.18)";
        let err = failed("Python worker `p` exited before it was ready", Some(tail));
        let explained = explain(Path::new("p"), &err, None);
        assert!(
            explained.message.ends_with(
                ": ImportError: snakebridge_agent needs CPython 3.10 or newer, and \
                 /usr/bin/python3.9 is 3.9.18"
            ),
            "{}",
            explained.message
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = failed(
            "the worker's init call m.f failed: No module named 'dspy'",
            Some("No module named 'dspy'"),
        );
        let explained = explain(Path::new("p"), &err, None);
        assert_eq!(
            explained.message,
            "cannot start a Python worker with `p`: the worker's init call m.f failed: \
             No module named 'dspy'"
        );
    }
}
