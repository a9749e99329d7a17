//! Sessions: a group of calls pinned to one worker, whose objects all end with it.
//!
//! `session_checkout` picks the least-loaded worker and returns a [`SessionResource`];
//! calls made with it run on that worker and tag the objects they create with the
//! session's id. Releasing the session (explicitly, or when the resource is collected)
//! tells the worker to drop every one of those objects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use tokio::time::Instant;

use snakebridge_core::{auth, Worker};

use crate::pool::PoolResource;
use crate::refs::worker_alive;
use crate::reply::Reply;
use crate::{atoms, runtime, terms};

/// One session, pinned to one worker.
pub struct SessionResource {
    id: String,
    worker: Weak<Worker>,
    released: AtomicBool,
}

#[rustler::resource_impl]
impl rustler::Resource for SessionResource {}

impl SessionResource {
    /// The session's id (what the worker tags objects with).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The worker the session is pinned to.
    pub fn worker(&self) -> &Weak<Worker> {
        &self.worker
    }

    /// Why the session cannot be used any more, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        if self.released.load(Ordering::Acquire) {
            return Some("the session was released");
        }
        if !worker_alive(&self.worker) {
            return Some("the session's worker died; its objects are gone");
        }
        None
    }

    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            if let Some(worker) = self.worker.upgrade() {
                worker.queue_session_release(&self.id);
            }
        }
    }
}

impl Drop for SessionResource {
    fn drop(&mut self) {
        self.release();
    }
}

/// Starts a session on the least-loaded worker, waiting up to `timeout_ms` (0 = no limit)
/// for one to be alive. Replies `{tag, {:ok, session, worker_pid}}` or
/// `{tag, {:error, error_map}}`.
#[rustler::nif]
fn session_checkout<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    timeout_ms: u64,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let runtime = runtime::for_nif()?;
    let pool = pool.pool.clone();
    let reply = Reply::new(pid, tag);
    let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
    runtime.spawn(async move {
        match pool.checkout(deadline).await {
            Ok(worker) => {
                let session = ResourceArc::new(SessionResource {
                    id: auth::new_token()[..24].to_owned(),
                    worker: Arc::downgrade(&worker),
                    released: AtomicBool::new(false),
                });
                reply.send(|env| (atoms::ok(), session, worker.pid()).encode(env));
            }
            Err(err) => reply.send(|env| terms::error_tuple(env, &err)),
        }
    });
    Ok(atoms::ok().encode(env))
}

/// Ends a session: the worker drops every object created in it. Idempotent.
#[rustler::nif]
fn session_release(session: ResourceArc<SessionResource>) -> Atom {
    session.release();
    atoms::ok()
}

/// Whether the session can still be used.
#[rustler::nif]
fn session_alive(session: ResourceArc<SessionResource>) -> bool {
    session.unusable().is_none()
}
