//! Elixir functions handed to Python.
//!
//! Encoding an argument that is a function (or an Elixir `{module, function, arity}`)
//! stores the term here under a fresh id; Python gets a callable for the id. When Python
//! calls it, the pool's [`Handler`] sends `{:snakebridge_callback, reply, function, args}`
//! to the dispatcher process (`SnakeBridge.Callbacks`), which runs the function in a
//! supervised task and answers with `callback_reply/2`. Nothing here blocks: the Python
//! thread waits, the NIF does not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Atom, Encoder, LocalPid, ResourceArc, Term};

use snakebridge_core::callback::{self, CallbackHandler};
use snakebridge_core::codec::{self, split_call_arguments};
use snakebridge_core::proto;
use snakebridge_core::Worker;

use crate::{atoms, terms};

/// A function kept for Python, in an env of its own.
struct Entry {
    env: OwnedEnv,
    function: SavedTerm,
    /// Kept until the VM stops, whatever Python does (see `Refs::permanent_callbacks`).
    permanent: bool,
}

static FUNCTIONS: LazyLock<Mutex<HashMap<u64, Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static DISPATCHER: Mutex<Option<LocalPid>> = Mutex::new(None);

fn functions() -> std::sync::MutexGuard<'static, HashMap<u64, Entry>> {
    // Each critical section is one map operation: a poisoned lock is still consistent.
    FUNCTIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps `function` (a fun or an `{module, function, arity}` tuple) for Python and returns
/// its id.
pub(crate) fn register(function: Term, permanent: bool) -> u64 {
    let env = OwnedEnv::new();
    let saved = env.save(function);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    functions().insert(
        id,
        Entry {
            env,
            function: saved,
            permanent,
        },
    );
    id
}

/// How many functions are kept for Python (for tests and stats).
pub(crate) fn count() -> usize {
    functions().len()
}

/// Runs the callbacks of one pool (whose name goes into object references).
pub(crate) struct Handler {
    pub pool: Atom,
}

impl CallbackHandler for Handler {
    fn invoke(&self, worker: Arc<Worker>, request_id: u64, callback_id: u64, args: proto::Payload) {
        let fail = |message: String| {
            worker.callback_reply(request_id, Err(internal(message)));
        };
        let dispatcher = match *DISPATCHER.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(pid) => pid,
            None => return fail("no SnakeBridge callback dispatcher is running".to_owned()),
        };
        let args = match codec::decode_payload(&args).and_then(split_call_arguments) {
            Ok((args, _kwargs)) => args,
            Err(e) => return fail(format!("callback arguments: {e}")),
        };
        let reply = ResourceArc::new(CallbackReply {
            worker: Arc::downgrade(&worker),
            request_id,
            answered: AtomicBool::new(false),
        });
        let origin = terms::Origin {
            worker: Some(&worker),
            pool: self.pool,
        };
        let mut message_env = OwnedEnv::new();
        let sent = {
            let functions = functions();
            let Some(entry) = functions.get(&callback_id) else {
                drop(functions);
                reply.answer(Err(internal(format!(
                    "the Elixir function #{callback_id} was released"
                ))));
                return;
            };
            message_env.send_and_clear(&dispatcher, |env| {
                let function = entry.env.run(|own| entry.function.load(own).in_env(env));
                let args: Vec<Term> = args
                    .iter()
                    .map(|v| terms::from_value(env, v, &origin))
                    .collect();
                (atoms::snakebridge_callback(), reply.clone(), function, args).encode(env)
            })
        };
        if sent.is_err() {
            reply.answer(Err(internal(
                "the callback dispatcher is not running".to_owned(),
            )));
        }
    }

    fn release(&self, callback_ids: &[u64]) {
        let released: Vec<Entry> = {
            let mut functions = functions();
            let mut released = Vec::new();
            for id in callback_ids {
                if functions.get(id).is_some_and(|entry| !entry.permanent) {
                    released.extend(functions.remove(id));
                }
            }
            released
        };
        drop(released);
    }
}

/// A failure of SnakeBridge's own (not of the function): Python sees `elixir_type`
/// `SnakeBridge`.
fn internal(message: String) -> proto::Error {
    callback::raised("SnakeBridge", message, "")
}

/// The way back to the Python thread waiting for one callback. Answers exactly once; if
/// it is dropped unanswered (the task died), Python gets an error instead of waiting.
pub(crate) struct CallbackReply {
    worker: Weak<Worker>,
    request_id: u64,
    answered: AtomicBool,
}

#[rustler::resource_impl]
impl rustler::Resource for CallbackReply {}

impl CallbackReply {
    fn answer(&self, outcome: Result<proto::Payload, proto::Error>) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(worker) = self.worker.upgrade() {
            worker.callback_reply(self.request_id, outcome);
        }
        true
    }
}

impl Drop for CallbackReply {
    fn drop(&mut self) {
        self.answer(Err(internal(
            "the Elixir callback ended without answering".to_owned(),
        )));
    }
}

/// Registers the process that runs callbacks (`SnakeBridge.Callbacks`).
#[rustler::nif]
fn callbacks_init(pid: LocalPid) -> Atom {
    *DISPATCHER.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
    atoms::ok()
}

/// How many Elixir functions Python currently holds.
#[rustler::nif]
fn callbacks_count() -> usize {
    count()
}

/// Answers a callback: `{:ok, term}` or `{:error, {type, message, stacktrace}}`.
/// Returns `:ok`, `{:error, {:unsupported, path, message}}` when the result cannot be sent
/// (the callback is then still unanswered), or `{:error, :already_answered}`.
#[rustler::nif]
fn callback_reply<'a>(
    env: rustler::Env<'a>,
    reply: ResourceArc<CallbackReply>,
    result: Term<'a>,
) -> rustler::NifResult<Term<'a>> {
    let (status, value): (Atom, Term) = result.decode()?;
    let outcome = if status == atoms::ok() {
        let mut refs = terms::Refs {
            pin: Some(reply.worker.clone()),
            ..terms::Refs::default()
        };
        let codec = proto::Codec::Msgpack;
        match terms::encode(terms::Input::Term(value, "result"), &mut refs, codec, true) {
            Ok((data, buffers)) => Ok(codec::payload(codec, data, buffers)),
            Err(refused) => {
                let (path, message) = match refused {
                    terms::Refused::Unsupported(u) => (u.path, u.message),
                    terms::Refused::Codec(err) => ("result".to_owned(), err.to_string()),
                };
                return Ok((atoms::error(), (atoms::unsupported(), path, message)).encode(env));
            }
        }
    } else if status == atoms::error() {
        let (r#type, message, stacktrace): (String, String, String) = value.decode()?;
        Err(callback::raised(&r#type, message, &stacktrace))
    } else {
        return Err(rustler::Error::BadArg);
    };
    if reply.answer(outcome) {
        Ok(atoms::ok().encode(env))
    } else {
        Ok((atoms::error(), atoms::already_answered()).encode(env))
    }
}
