//! Sending `{tag, result}` back to a waiting process, exactly once.

use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Encoder, Env, LocalPid, Term};

use crate::terms;
use snakebridge_core::{Error, ErrorKind};

/// Owns the way back to the caller. It must be used from a tokio thread (sending from a
/// scheduler thread panics). If it is dropped without [`Reply::send`] having run (a panic
/// in the task, a runtime shutdown), the caller still gets an `internal` error instead of
/// waiting forever.
pub struct Reply {
    env: OwnedEnv,
    tag: SavedTerm,
    pid: LocalPid,
    sent: bool,
}

impl Reply {
    /// Prepares a reply to `pid` tagged with `tag` (copied out of the calling env).
    pub fn new(pid: LocalPid, tag: Term<'_>) -> Reply {
        let env = OwnedEnv::new();
        let tag = env.save(tag);
        Reply {
            env,
            tag,
            pid,
            sent: false,
        }
    }

    /// Sends `{tag, build(env)}`.
    pub fn send<F>(mut self, build: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        self.sent = true;
        self.deliver(build);
    }

    fn deliver<F>(&mut self, build: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        let tag = &self.tag;
        // A dead recipient is not an error: nobody is waiting any more.
        let _ = self.env.send_and_clear(&self.pid, |env| {
            let body = build(env);
            (tag.load(env), body).encode(env)
        });
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent && !rustler::thread::is_scheduler_thread() {
            let err = Error::new(
                ErrorKind::Internal,
                "the call's task ended without a reply (this is a SnakeBridge bug)",
            );
            self.deliver(|env| terms::error_tuple(env, &err));
        }
    }
}
