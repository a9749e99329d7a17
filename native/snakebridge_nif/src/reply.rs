//! Sending `{tag, message}` back to a waiting process: once for a call, several times for a
//! stream, always ending with exactly one final message.

use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Encoder, Env, LocalPid, Term};

use crate::terms;
use snakebridge_core::{Error, ErrorKind};

/// Owns the way back to the caller. It must be used from a tokio thread (sending from a
/// scheduler thread panics). If it is dropped before its final message was sent (a panic
/// in the task, a runtime shutdown), the caller still gets an `internal` error instead of
/// waiting forever.
pub(crate) struct Reply {
    /// Holds the tag for the reply's whole life (never cleared).
    tag_env: OwnedEnv,
    tag: SavedTerm,
    /// Where each message is built; cleared by every send.
    message_env: OwnedEnv,
    pid: LocalPid,
    finished: bool,
}

impl Reply {
    /// Prepares replies to `pid` tagged with `tag` (copied out of the calling env).
    pub(crate) fn new(pid: LocalPid, tag: Term<'_>) -> Reply {
        let tag_env = OwnedEnv::new();
        let tag = tag_env.save(tag);
        Reply {
            tag_env,
            tag,
            message_env: OwnedEnv::new(),
            pid,
            finished: false,
        }
    }

    /// Sends the final message `{tag, build(env)}`.
    pub(crate) fn send<F>(mut self, build: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        self.finished = true;
        self.deliver(build);
    }

    /// Sends `{tag, build(env)}` with more to come.
    pub(crate) fn send_partial<F>(&mut self, build: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        self.deliver(build);
    }

    fn deliver<F>(&mut self, build: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        let (tag_env, tag) = (&self.tag_env, &self.tag);
        // A dead recipient is not an error: nobody is waiting any more.
        let _ = self.message_env.send_and_clear(&self.pid, |env| {
            let tag = tag_env.run(|own| tag.load(own).in_env(env));
            let body = build(env);
            (tag, body).encode(env)
        });
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.finished && !rustler::thread::is_scheduler_thread() {
            let err = Error::new(
                ErrorKind::Internal,
                "the call's task ended without a reply (this is a SnakeBridge bug)",
            );
            self.deliver(|env| terms::error_tuple(env, &err));
        }
    }
}
