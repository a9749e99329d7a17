//! Elixir functions handed to Python.
//!
//! Encoding an argument that is a function (or an Elixir `{module, function, arity}`)
//! keeps the term for Python as a core [`Function`] under a fresh random id (see
//! [`snakebridge_core::callback`]: the core records which worker connection it was sent on
//! and for how long, and refuses every other connection). When Python calls it, the
//! pool's [`Handler`] sends `{:snakebridge_callback, reply, function, args}` to the
//! dispatcher process (`SnakeBridge.Callbacks`), which runs the function in a supervised
//! task and answers with `callback_reply/2`. Nothing here blocks: the Python thread waits,
//! the NIF does not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Atom, Encoder, LocalPid, ResourceArc, Term};

use snakebridge_core::callback::{self, CallbackHandler, Function};
use snakebridge_core::codec::{self, split_call_arguments, Budgets};
use snakebridge_core::proto;
use snakebridge_core::Worker;

use crate::{atoms, terms};

/// A function kept for Python, in an env of its own (behind a lock: an env is not `Sync`).
struct Kept(Mutex<(OwnedEnv, SavedTerm)>);

static DISPATCHER: Mutex<Option<LocalPid>> = Mutex::new(None);

/// Keeps `function` (a fun or an `{module, function, arity}` tuple) for Python; the
/// caller sends its id and hands it to the core with the call.
pub(crate) fn keep(function: Term) -> Arc<Function> {
    let env = OwnedEnv::new();
    let saved = env.save(function);
    Function::new(Kept(Mutex::new((env, saved))))
}

/// Runs the callbacks of one pool (whose name goes into object references), whose
/// arguments and results keep within the pool's budgets.
pub(crate) struct Handler {
    pub pool: Atom,
    pub budgets: Budgets,
}

impl CallbackHandler for Handler {
    fn invoke(
        &self,
        worker: Arc<Worker>,
        request_id: u64,
        function: Arc<Function>,
        args: proto::Payload,
    ) {
        let fail = |message: String| {
            worker.callback_reply(request_id, Err(internal(message)), &[]);
        };
        let dispatcher = match *DISPATCHER.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(pid) => pid,
            None => return fail("no SnakeBridge callback dispatcher is running".to_owned()),
        };
        let Some(Kept(kept)) = function.hold::<Kept>() else {
            return fail(format!(
                "the Elixir function {} is not a term",
                function.id()
            ));
        };
        let limits = self.budgets.from_python("the callback's arguments");
        let decoded = codec::decode_payload_within(&args, limits).and_then(split_call_arguments);
        let args = match decoded {
            Ok((args, _kwargs)) => args,
            Err(e) => return fail(format!("callback arguments: {e}")),
        };
        let reply = ResourceArc::new(CallbackReply {
            worker: Arc::downgrade(&worker),
            request_id,
            answered: AtomicBool::new(false),
            budgets: self.budgets,
        });
        let origin = terms::Origin {
            worker: Some(&worker),
            pool: self.pool,
        };
        let mut message_env = OwnedEnv::new();
        let sent = {
            let kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            let (own_env, saved) = &*kept;
            message_env.send_and_clear(&dispatcher, |env| {
                let function = own_env.run(|own| saved.load(own).in_env(env));
                let args: Vec<Term> = args
                    .iter()
                    .map(|v| terms::from_value(env, v, &origin))
                    .collect();
                (atoms::snakebridge_callback(), reply.clone(), function, args).encode(env)
            })
        };
        if sent.is_err() {
            reply.answer(
                Err(internal(
                    "the callback dispatcher is not running".to_owned(),
                )),
                &[],
            );
        }
    }
}

/// A failure of SnakeBridge's own (not of the function): Python sees `elixir_type`
/// `SnakeBridge`.
fn internal(message: String) -> proto::Error {
    callback::refused(message)
}

/// The way back to the Python thread waiting for one callback. Answers exactly once; if
/// it is dropped unanswered (the task died), Python gets an error instead of waiting.
pub(crate) struct CallbackReply {
    worker: Weak<Worker>,
    request_id: u64,
    answered: AtomicBool,
    /// The pool's budgets, which the function's result keeps within.
    budgets: Budgets,
}

#[rustler::resource_impl]
impl rustler::Resource for CallbackReply {}

impl CallbackReply {
    /// Answers with `outcome`, which holds `functions` (Elixir functions in a result);
    /// `false` when it was answered already.
    fn answer(
        &self,
        outcome: Result<proto::Payload, proto::Error>,
        functions: &[Arc<Function>],
    ) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(worker) = self.worker.upgrade() {
            worker.callback_reply(self.request_id, outcome, functions);
        }
        true
    }
}

impl Drop for CallbackReply {
    fn drop(&mut self) {
        self.answer(
            Err(internal(
                "the Elixir callback ended without answering".to_owned(),
            )),
            &[],
        );
    }
}

/// Registers the process that runs callbacks (`SnakeBridge.Callbacks`).
#[rustler::nif]
fn callbacks_init(pid: LocalPid) -> Atom {
    *DISPATCHER.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
    atoms::ok()
}

/// How many Elixir functions are kept for Python: sent with calls that have not ended,
/// or held by worker connections (see [`callback::live`]).
#[rustler::nif]
fn callbacks_count() -> usize {
    callback::live()
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
    let mut functions = Vec::new();
    let outcome = if status == atoms::ok() {
        let mut refs = terms::Refs {
            pin: Some(reply.worker.clone()),
            ..terms::Refs::default()
        };
        let codec = proto::Codec::Msgpack;
        let limits = reply.budgets.to_python("the callback's result");
        let input = terms::Input::Term(value, "result");
        match terms::encode(input, &mut refs, codec, true, limits) {
            Ok((data, buffers)) => {
                functions = refs.callbacks;
                Ok(codec::payload(codec, data, buffers))
            }
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
    if reply.answer(outcome, &functions) {
        Ok(atoms::ok().encode(env))
    } else {
        Ok((atoms::error(), atoms::already_answered()).encode(env))
    }
}
