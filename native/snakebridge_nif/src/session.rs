//! Sessions: the core's [`Session`] (calls pinned to one worker, whose objects all end
//! with it) as a resource. Releasing the session, explicitly or when the resource is
//! collected, tells the worker to drop every one of those objects.

use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use tokio::time::Instant;

use snakebridge_core::pinned::Session;

use crate::pool::PoolResource;
use crate::reply::Reply;
use crate::{atoms, runtime, terms};

/// One session, pinned to one worker.
pub(crate) struct SessionResource(Session);

#[rustler::resource_impl]
impl rustler::Resource for SessionResource {}

impl std::ops::Deref for SessionResource {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

/// Starts a session on the least-loaded worker, waiting up to `timeout_ms` (0 = no limit)
/// for one to be alive. Replies `{tag, {:ok, session, worker_pid, session_id}}` or
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
        match Session::checkout(&pool, deadline).await {
            Ok(session) => {
                let (worker_pid, id) = (session.worker_pid(), session.id().to_owned());
                let resource = ResourceArc::new(SessionResource(session));
                reply.send(|env| (atoms::ok(), resource, worker_pid, id).encode(env));
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
