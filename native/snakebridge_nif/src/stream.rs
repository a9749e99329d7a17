//! Streaming NIFs: a call whose result Python iterates, delivered chunk by chunk as
//! `{tag, {:chunk, term}}` messages, then one final `{tag, :done}`, `{tag, {:error, map}}`
//! or `{tag, :cancelled}`. The consumer grants credit (`stream_credit/2`), so at most that
//! many chunks wait in its mailbox; dropping the handle or `stream_cancel/1` stops the
//! Python iterator.

use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use tokio::sync::mpsc;

use snakebridge_core::codec;
use snakebridge_core::worker::StreamEvent;
use snakebridge_core::{Error, ErrorKind};

use crate::pool::{prepare_call, PoolResource};
use crate::reply::Reply;
use crate::types::Call;
use crate::{atoms, runtime, terms};

enum Steer {
    Credit(u32),
    Cancel,
}

/// The consumer's handle on a stream. Dropping it (the consumer died) cancels the stream.
pub(crate) struct StreamResource {
    steer: mpsc::UnboundedSender<Steer>,
}

#[rustler::resource_impl]
impl rustler::Resource for StreamResource {}

/// Starts a streaming call (see the module doc). The call's timeout bounds the wait for
/// each chunk; `window` is the credit granted up front. Returns `{:ok, handle}`,
/// `{:error, {:unsupported, path, message}}` or `{:error, {:stale_ref, message}}`.
#[rustler::nif]
fn pool_stream<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    call: Call<'a>,
    window: u32,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let pool_name = call.pool_name;
    let budgets = pool.pool.budgets();
    let (request, held) = match prepare_call(env, &call, budgets)? {
        Ok(prepared) => prepared,
        Err(refusal) => return Ok(refusal),
    };
    let runtime = runtime::for_nif()?;
    let timeout = request.timeout;
    let (steer, steering) = mpsc::unbounded_channel();
    let pool = pool.pool.clone();
    let reply = Reply::new(pid, tag);
    runtime.spawn(async move {
        match pool.stream(request, window.max(1)).await {
            Ok((control, events)) => {
                let limits = budgets.from_python("a stream chunk");
                forward(control, events, steering, timeout, pool_name, limits, reply).await;
                drop(held);
            }
            Err(err) => reply.send(|env| terms::error_tuple(env, &err)),
        }
    });
    Ok((atoms::ok(), ResourceArc::new(StreamResource { steer })).encode(env))
}

async fn forward(
    control: snakebridge_core::pool::StreamControl,
    mut events: mpsc::UnboundedReceiver<StreamEvent>,
    mut steering: mpsc::UnboundedReceiver<Steer>,
    timeout: Option<Duration>,
    pool_name: Atom,
    limits: codec::Limits,
    mut reply: Reply,
) {
    loop {
        let next_event = async {
            match timeout {
                Some(limit) => tokio::time::timeout(limit, events.recv()).await.ok(),
                None => Some(events.recv().await),
            }
        };
        tokio::select! {
            biased;
            steer = steering.recv() => match steer {
                Some(Steer::Credit(chunks)) => control.credit(chunks),
                Some(Steer::Cancel) | None => {
                    control.cancel();
                    return reply.send(|env| atoms::cancelled().encode(env));
                }
            },
            event = next_event => match event {
                None => {
                    control.cancel();
                    let limit = timeout.unwrap_or_default().as_millis();
                    let err = Error::new(ErrorKind::Timeout, format!("no chunk within {limit} ms"))
                        .with_worker(control.worker().pid());
                    return reply.send(|env| terms::error_tuple(env, &err));
                }
                Some(Some(StreamEvent::Chunk(payload))) => match codec::decode_payload_within(&payload, limits) {
                    Ok(value) => {
                        let origin = terms::Origin { worker: Some(control.worker()), pool: pool_name };
                        reply.send_partial(|env| {
                            (atoms::chunk(), terms::from_value(env, &value, &origin)).encode(env)
                        });
                    }
                    Err(e) => {
                        control.cancel();
                        let err = Error::from(e).with_worker(control.worker().pid());
                        return reply.send(|env| terms::error_tuple(env, &err));
                    }
                },
                Some(Some(StreamEvent::End)) => return reply.send(|env| atoms::done().encode(env)),
                Some(Some(StreamEvent::Failed(err))) => {
                    return reply.send(|env| terms::error_tuple(env, &err))
                }
                Some(None) => {
                    let err = Error::new(ErrorKind::Internal, "the stream ended without its final chunk");
                    return reply.send(|env| terms::error_tuple(env, &err));
                }
            },
        }
    }
}

/// Lets the stream send `chunks` more chunks.
#[rustler::nif]
fn stream_credit(handle: ResourceArc<StreamResource>, chunks: u32) -> Atom {
    // A finished stream no longer listens; that is fine.
    let _ = handle.steer.send(Steer::Credit(chunks));
    atoms::ok()
}

/// Stops the stream; a final `{tag, :cancelled}` follows (unless it had already ended).
#[rustler::nif]
fn stream_cancel(handle: ResourceArc<StreamResource>) -> Atom {
    let _ = handle.steer.send(Steer::Cancel);
    atoms::ok()
}
