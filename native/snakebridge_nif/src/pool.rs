//! Pool NIFs: start, call, cancel, observe, stop. Each returns at once; `pool_start` and
//! `pool_call` answer later with a `{tag, result}` message from a tokio thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use tokio::sync::oneshot;

use snakebridge_core::agent::Agent;
use snakebridge_core::allow::Allowlist;
use snakebridge_core::callback::{Callbacks, Function};
use snakebridge_core::codec::{self, Budgets};
use snakebridge_core::framing;
use snakebridge_core::pool::{CachePolicy, Declined, DirectCall, Done, EveryWorker};
use snakebridge_core::proto;
use snakebridge_core::transport::Carrier;
use snakebridge_core::{CallRequest, Error, Pool, PoolConfig, Value, Worker};

use crate::refs::RefResource;
use crate::reply::Reply;
use crate::session::SessionResource;
use crate::types::{Call, OnHang, PoolOptions, PoolStats, WorkerInfo};
use crate::{atoms, callbacks, runtime, terms};

/// A running pool, owned by a `SnakeBridge.Pool` process. Dropping the last handle (the
/// owner died) stops its workers.
pub(crate) struct PoolResource {
    pub(crate) pool: Pool,
}

#[rustler::resource_impl]
impl rustler::Resource for PoolResource {}

impl Drop for PoolResource {
    fn drop(&mut self) {
        self.pool.close();
    }
}

/// One call in flight. When the caller's process dies the handle is garbage collected and
/// the call is cancelled in the core and the worker.
pub(crate) struct CallHandle {
    steer: Mutex<Steer>,
}

/// How a call in flight is given up on.
enum Steer {
    /// A task waits for the reply and keeps the deadline: it stops when told.
    Task(oneshot::Sender<()>),
    /// The reply goes to the caller from where it is read: the call is given up on
    /// through the core, on a runtime thread.
    Direct(DirectCall),
    /// Answered, or nothing to steer.
    Done,
}

#[rustler::resource_impl]
impl rustler::Resource for CallHandle {}

impl CallHandle {
    fn new(steer: Steer) -> ResourceArc<CallHandle> {
        ResourceArc::new(CallHandle {
            steer: Mutex::new(steer),
        })
    }

    fn take(&self) -> Steer {
        match self.steer.lock() {
            Ok(mut steer) => std::mem::replace(&mut *steer, Steer::Done),
            Err(_) => Steer::Done,
        }
    }

    /// The caller stopped waiting.
    fn cancel(&self) {
        match self.take() {
            Steer::Task(sender) => {
                let _ = sender.send(());
            }
            Steer::Direct(call) => on_runtime(move || call.cancel()),
            Steer::Done => {}
        }
    }

    /// The caller's deadline passed: a direct call is answered with a timeout error (a
    /// task keeps its own deadline, which passes at the same time).
    fn expire(&self) {
        let mut steer = match self.steer.lock() {
            Ok(steer) => steer,
            Err(_) => return,
        };
        if matches!(*steer, Steer::Direct(_)) {
            if let Steer::Direct(call) = std::mem::replace(&mut *steer, Steer::Done) {
                on_runtime(move || call.expire());
            }
        }
    }
}

/// Runs `work` on the runtime (it answers callers, which only a runtime thread may do).
fn on_runtime(work: impl FnOnce() + Send + 'static) {
    if let Ok(runtime) = runtime::get() {
        runtime.spawn(async move { work() });
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The core's pool config from the options `SnakeBridge.Pool` resolved and validated.
fn pool_config(options: PoolOptions) -> NifResult<PoolConfig> {
    let allowed_modules = options
        .allowed_modules
        .map(Allowlist::new)
        .transpose()
        .map_err(|err| {
            rustler::Error::Term(Box::new(format!("invalid pool option {}", err.message)))
        })?;
    let budgets = Budgets {
        max_payload_size: options.max_payload_size,
        max_result_size: options.max_result_size,
        max_elements: options.max_elements,
    };
    let (init, permanent) = init_calls(options.init, budgets)?;
    let carrier = Carrier::from_name(&options.carrier).ok_or_else(|| {
        rustler::Error::Term(Box::new(format!(
            "invalid pool option carrier: {:?}",
            options.carrier
        )))
    })?;
    Ok(PoolConfig {
        python: PathBuf::from(options.python),
        agent: Some(Agent::in_priv(Path::new(&options.priv_dir))),
        size: options.size,
        threads: options.threads,
        env: options.env,
        python_path: options.python_path.into_iter().map(PathBuf::from).collect(),
        startup_timeout: Duration::from_millis(options.startup_timeout_ms),
        max_message_size: options.max_message_size,
        max_payload_size: options.max_payload_size,
        max_result_size: options.max_result_size,
        max_elements: options.max_elements,
        carrier,
        shared_memory: options.shared_memory,
        max_queue: options.max_queue,
        hang_grace: Duration::from_millis(options.hang_grace_ms),
        replace_hung_workers: options.on_hang == OnHang::Replace,
        allowed_modules,
        secrets: options.secrets,
        callbacks: Callbacks {
            handler: Some(Arc::new(callbacks::Handler {
                pool: options.name,
                budgets,
            })),
            permanent,
        },
        init,
        strict: options.strict,
        start_hint: options.start_hint,
        ..PoolConfig::default()
    })
}

/// The encoded init calls, and the functions among their arguments.
type InitCalls = (Vec<(String, proto::Payload)>, Vec<Arc<Function>>);

/// Encodes the pool's init calls, `[{target, args, kwargs}]`. Functions among their
/// arguments are kept for the pool's life: every worker gets a callable for them, for as
/// long as it lives (see [`Callbacks::permanent`]).
fn init_calls<'a>(
    calls: Vec<(String, Term<'a>, Term<'a>)>,
    budgets: Budgets,
) -> NifResult<InitCalls> {
    let mut permanent = Vec::new();
    let init = calls
        .into_iter()
        .map(|(target, args, kwargs)| {
            let mut refs = terms::Refs::default();
            let limits = budgets.to_python("the arguments");
            let payload = encode_arguments(args, kwargs, &mut refs, proto::Codec::Msgpack, limits)
                .map_err(|refused| {
                    let (path, message) = match refused {
                        terms::Refused::Unsupported(u) => (u.path, u.message),
                        terms::Refused::Codec(err) => ("args".to_owned(), err.to_string()),
                    };
                    rustler::Error::Term(Box::new(format!(
                        "init call {target}: cannot send {path}: {message}"
                    )))
                })?;
            EveryWorker::Init { target: &target }
                .check_unpinned(refs.pin.is_some())
                .map_err(|err| rustler::Error::Term(Box::new(err.message)))?;
            permanent.append(&mut refs.callbacks);
            Ok((target, payload))
        })
        .collect::<NifResult<_>>()?;
    Ok((init, permanent))
}

/// A call's value, decoded, with the worker holding the objects it refers to.
type Decoded = Result<(Value, Arc<Worker>), Error>;

/// Decodes a reply within the pool's `budgets`: a result over them is refused before its
/// values are built.
fn decode_reply(outcome: Result<snakebridge_core::Reply, Error>, budgets: Budgets) -> Decoded {
    let reply = outcome?;
    let limits = budgets.from_python("the result");
    let value = codec::decode_payload_within(&reply.payload, limits)
        .map_err(|err| Error::from(err).with_worker(reply.worker.pid()))?;
    Ok((value, reply.worker))
}

/// `{:ok, term}` or `{:error, error_map}`.
fn result_term<'a>(env: Env<'a>, outcome: &Decoded, pool: Atom) -> Term<'a> {
    match outcome {
        Ok((value, worker)) => {
            let origin = terms::Origin {
                worker: Some(worker),
                pool,
            };
            (atoms::ok(), terms::from_value(env, value, &origin)).encode(env)
        }
        Err(err) => terms::error_tuple(env, err),
    }
}

/// Starts a pool; replies `{tag, {:ok, pool, shared_memory, start_error}}` (the smallest
/// buffer that crosses through shared memory, or `false`; why a worker could not start, as
/// an error map, or nil, for a pool that is not strict) or `{tag, {:error, error_map}}`.
#[rustler::nif]
fn pool_start<'a>(
    env: Env<'a>,
    options: PoolOptions<'a>,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let config = pool_config(options)?;
    let runtime = runtime::for_nif()?;
    let reply = Reply::new(pid, tag);
    runtime.spawn(async move {
        match Pool::start(config).await {
            Ok(pool) => {
                // The smallest buffer shared, or false.
                let shared = pool.shared_memory();
                let start_error = pool.start_error();
                let resource = ResourceArc::new(PoolResource { pool });
                reply.send(|env| {
                    let shared = match shared {
                        Some(min_size) => min_size.encode(env),
                        None => false.encode(env),
                    };
                    let start_error = match &start_error {
                        Some(err) => terms::error_map(env, err),
                        None => atoms::nil().encode(env),
                    };
                    (atoms::ok(), resource, shared, start_error).encode(env)
                });
            }
            Err(err) => reply.send(|env| terms::error_tuple(env, &err)),
        }
    });
    Ok(atoms::ok().encode(env))
}

/// Starts a call. Encodes the arguments here, on the caller's scheduler; returns
/// `{:ok, handle, args_bytes}` (keep the handle until the reply arrives: dropping it
/// cancels), `{:error, {:unsupported, path, message}}` or `{:error, {:stale_ref,
/// message}}`. Replies `{tag, {:ok, term, {result_bytes, queue_us, cache_hit}}}` or
/// `{tag, {:error, error_map}}`.
#[rustler::nif]
fn pool_call<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    call: Call<'a>,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let pool_name = call.pool_name;
    let (return_ref, cache) = (call.as_ref, call.cache.clone());
    let budgets = pool.pool.budgets();
    let (base, held) = match prepare_call(env, &call, budgets)? {
        Ok(prepared) => prepared,
        Err(refusal) => return Ok(refusal),
    };
    let runtime = runtime::for_nif()?;
    let request = CallRequest {
        return_ref,
        cache: cache.map(|(integration, ttl_ms)| CachePolicy {
            integration,
            ttl: (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms)),
        }),
        ..base
    };
    let args_bytes = request.args.data.len();
    let reply = Reply::new(pid, tag);
    let done: Done = Box::new(move |outcome| {
        drop(held);
        answer_call(reply, outcome, budgets, pool_name);
    });
    let steer = match pool.pool.try_call_direct(request, done, runtime.handle()) {
        Ok(call) => Steer::Direct(call),
        Err(Declined::Queue(request, done)) => {
            let mut request = *request;
            let (cancel_tx, cancel_rx) = oneshot::channel();
            request.cancel = Some(cancel_rx);
            let pool = pool.pool.clone();
            runtime.spawn(async move { done(pool.call(request).await) });
            Steer::Task(cancel_tx)
        }
        Err(Declined::Failed(err, done)) => {
            runtime.spawn(async move { done(Err(err)) });
            Steer::Done
        }
    };
    Ok((atoms::ok(), CallHandle::new(steer), args_bytes).encode(env))
}

/// Results larger than this are decoded on a blocking thread, not where the reply was
/// read: a runtime thread decoding a large result would hold up every reply behind it.
const DECODE_INLINE_BYTES: usize = 256 << 10;

/// Sends a call's outcome to its caller: `{tag, {:ok, term, {result_bytes, queue_us,
/// cache_hit}}}` or `{tag, {:error, error_map}}`. Runs on a runtime thread.
fn answer_call(
    reply: Reply,
    outcome: Result<snakebridge_core::Reply, Error>,
    budgets: Budgets,
    pool_name: Atom,
) {
    let size = outcome
        .as_ref()
        .map_or(0, |r| framing::payload_size(&r.payload));
    let answer = move || {
        let facts = outcome
            .as_ref()
            .map(|r| (r.payload.data.len(), r.queue_us, r.cache_hit))
            .unwrap_or_default();
        match decode_reply(outcome, budgets) {
            Ok((value, worker)) => reply.send(|env| {
                let origin = terms::Origin {
                    worker: Some(&worker),
                    pool: pool_name,
                };
                (atoms::ok(), terms::from_value(env, &value, &origin), facts).encode(env)
            }),
            Err(err) => reply.send(|env| terms::error_tuple(env, &err)),
        }
    };
    if size > DECODE_INLINE_BYTES {
        // Off the runtime's threads; `answer` itself sends from the blocking thread, which
        // is not a scheduler.
        tokio::task::spawn_blocking(answer);
    } else {
        answer();
    }
}

/// The references a call's arguments hold: keep them until the call ends, so that no
/// object it uses is released under it.
pub(crate) type Held = Vec<ResourceArc<RefResource>>;

/// The parts of a call request that calls and streams share: the target and operation,
/// the arguments encoded in their codec, the deadline, the worker the arguments' refs (or
/// the session) pin it to, and the result codec; with the references to hold. `Ok(Err(term))`
/// is the refusal to return to the caller (an argument that cannot cross, a stale ref).
pub(crate) fn prepare_call<'a>(
    env: Env<'a>,
    call: &Call<'a>,
    budgets: Budgets,
) -> NifResult<Result<(CallRequest, Held), Term<'a>>> {
    let session = call.session.as_deref();
    let encoding = call.encoding;
    let codec = encoding.args.into();
    let (args, refs) = match encode_call(env, call.args, call.kwargs, session, codec, budgets) {
        Ok(encoded) => encoded,
        Err(refusal) => return Ok(Err(refusal)),
    };
    Ok(Ok((
        CallRequest {
            target: call.target.clone(),
            op: call.op.into(),
            args,
            timeout: call.timeout_ms.map(Duration::from_millis),
            pin: refs.pin,
            session: session.map(|s| s.id().to_owned()),
            result_codec: encoding.result.into(),
            tensors_as_lists: encoding.tensors_as_lists,
            callbacks: refs.callbacks,
            ..CallRequest::default()
        },
        refs.held,
    )))
}

/// Encodes a call's arguments within the pool's `budgets`; the refusal to return to the
/// caller is `{:error, {:unsupported, path, message}}`, `{:error, {:payload_too_large,
/// message}}` or `{:error, {:stale_ref, message}}`.
pub(crate) fn encode_call<'a>(
    env: Env<'a>,
    positional: Term<'a>,
    kwargs: Term<'a>,
    session: Option<&SessionResource>,
    codec: proto::Codec,
    budgets: Budgets,
) -> Result<(proto::Payload, terms::Refs), Term<'a>> {
    let mut refs = terms::Refs::for_session(session);
    let limits = budgets.to_python("the arguments");
    match encode_arguments(positional, kwargs, &mut refs, codec, limits) {
        Err(terms::Refused::Unsupported(unsupported)) => Err((
            atoms::error(),
            (atoms::unsupported(), unsupported.path, unsupported.message),
        )
            .encode(env)),
        Err(terms::Refused::Codec(err)) if err.is_too_large() => Err((
            atoms::error(),
            (atoms::payload_too_large(), err.to_string()),
        )
            .encode(env)),
        Err(terms::Refused::Codec(err)) => Err((
            atoms::error(),
            (atoms::unsupported(), "args", err.to_string()),
        )
            .encode(env)),
        Ok(_) if refs.stale.is_some() => {
            let reason = refs.stale.take().unwrap_or_default();
            Err((atoms::error(), (atoms::stale_ref(), reason)).encode(env))
        }
        Ok(payload) => Ok((payload, refs)),
    }
}

fn encode_arguments<'a>(
    args: Term<'a>,
    kwargs: Term<'a>,
    refs: &mut terms::Refs,
    codec: proto::Codec,
    limits: codec::Limits,
) -> Result<proto::Payload, terms::Refused> {
    let (data, buffers) =
        terms::encode(terms::Input::Call(args, kwargs), refs, codec, true, limits)?;
    Ok(codec::payload(codec, data, buffers))
}

/// Runs a call on every live worker; replies `{tag, {:ok, [{worker_pid, result}]}}` where
/// each result is `{:ok, term}` or `{:error, error_map}`. Object references cannot be
/// broadcast: they live on one worker.
#[rustler::nif]
fn pool_broadcast<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    call: Call<'a>,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let pool_name = call.pool_name;
    let encoding = call.encoding;
    let budgets = pool.pool.budgets();
    let codec = encoding.args.into();
    let (payload, refs) = match encode_call(env, call.args, call.kwargs, None, codec, budgets) {
        Ok(encoded) => encoded,
        Err(refusal) => return Ok(refusal),
    };
    if let Err(err) = EveryWorker::Broadcast.check_unpinned(refs.pin.is_some()) {
        return Ok((atoms::error(), (atoms::unsupported(), "args", err.message)).encode(env));
    }
    let runtime = runtime::for_nif()?;
    let request = CallRequest {
        target: call.target,
        op: call.op.into(),
        args: payload,
        timeout: call.timeout_ms.map(Duration::from_millis),
        result_codec: encoding.result.into(),
        tensors_as_lists: encoding.tensors_as_lists,
        callbacks: refs.callbacks,
        ..CallRequest::default()
    };
    let pool = pool.pool.clone();
    let reply = Reply::new(pid, tag);
    runtime.spawn(async move {
        let outcomes: Vec<(u32, Decoded)> = pool
            .broadcast(request)
            .await
            .into_iter()
            .map(|(worker_pid, outcome)| (worker_pid, decode_reply(outcome, budgets)))
            .collect();
        reply.send(|env| {
            let results: Vec<Term> = outcomes
                .iter()
                .map(|(worker_pid, outcome)| {
                    (*worker_pid, result_term(env, outcome, pool_name)).encode(env)
                })
                .collect();
            (atoms::ok(), results).encode(env)
        });
    });
    Ok(atoms::ok().encode(env))
}

/// Cancels a call in flight (the caller stopped waiting). Idempotent.
#[rustler::nif]
fn call_cancel(handle: ResourceArc<CallHandle>) -> rustler::Atom {
    handle.cancel();
    atoms::ok()
}

/// The caller's deadline for a call passed: it is answered with a `timeout` error (unless
/// its answer is on its way). Idempotent.
#[rustler::nif]
fn call_expire(handle: ResourceArc<CallHandle>) -> rustler::Atom {
    handle.expire();
    atoms::ok()
}

/// The pool's live workers: `[%{slot:, pid:, in_flight:, python_version:}]`.
#[rustler::nif]
fn pool_workers(pool: ResourceArc<PoolResource>) -> Vec<WorkerInfo> {
    pool.pool
        .workers()
        .into_iter()
        .map(WorkerInfo::from)
        .collect()
}

/// The pool's counters (see [`PoolStats`]).
#[rustler::nif]
fn pool_stats(env: Env, pool: ResourceArc<PoolResource>) -> PoolStats {
    PoolStats::new(env, pool.pool.stats())
}

/// Drops the pool's cached answers of `integration` (all when `nil`); returns how many.
#[rustler::nif]
fn pool_clear_cache(pool: ResourceArc<PoolResource>, integration: Option<String>) -> usize {
    pool.pool.clear_cache(integration.as_deref())
}

/// Stops every worker of the pool now. Idempotent.
#[rustler::nif]
fn pool_stop(pool: ResourceArc<PoolResource>) -> rustler::Atom {
    pool.pool.close();
    atoms::ok()
}
