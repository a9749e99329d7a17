//! Callbacks: Python calling functions that live in the BEAM.
//!
//! A binding (the NIF) turns an Elixir function in a call's arguments into a [`Function`]
//! (its hold on the function, under a fresh [`CallbackId`]) and the value
//! [`Value::Callback`](crate::value::Value::Callback) carrying that id, and gives the pool
//! a [`CallbackHandler`]. When Python calls the function, the worker sends a
//! `CallbackRequest` frame; the worker's supervisor hands it to the handler, which runs the
//! function somewhere that may block (a BEAM process, never the NIF) and answers through
//! [`Worker::callback_reply`](crate::worker::Worker::callback_reply). Python waits for the
//! answer on its own thread, so the function may itself call into Python again.
//!
//! An id is a capability: 128 random bits, so that no worker can guess one, and good only
//! on the connection it was sent on. Each worker connection records the functions sent on
//! it ([`Granted`]) and how long each stays callable there ([`Scope`]); a request or a
//! release for an id the connection was not given is refused without touching the
//! function, wherever else it was sent. A function lives while its call is being sent or
//! some connection holds it: the binding keeps nothing of its own.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::RngCore;

use crate::proto;
use crate::worker::Worker;

/// The id an Elixir function crosses with: 128 bits from the thread's CSPRNG, fresh each
/// time a function is sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId([u8; CallbackId::LEN]);

impl CallbackId {
    /// How many bytes an id has.
    pub const LEN: usize = 16;

    /// The id written where a function is only inspected, never sent (a config that is
    /// validated): all zeros, which [`CallbackId::random`] never returns in practice and
    /// no connection is ever given.
    pub const INERT: CallbackId = CallbackId([0; CallbackId::LEN]);

    /// A fresh, unguessable id.
    pub fn random() -> CallbackId {
        let mut bytes = [0u8; CallbackId::LEN];
        rand::rng().fill_bytes(&mut bytes);
        CallbackId(bytes)
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; CallbackId::LEN]) -> CallbackId {
        CallbackId(bytes)
    }

    /// The id in `bytes`, or `None` when they are not [`CallbackId::LEN`] long (as a
    /// frame from a worker may have them).
    pub fn from_slice(bytes: &[u8]) -> Option<CallbackId> {
        bytes.try_into().ok().map(CallbackId)
    }

    /// The id's bytes, as the frames and codecs carry them.
    pub fn as_bytes(&self) -> &[u8; CallbackId::LEN] {
        &self.0
    }
}

/// 32 lowercase hex digits.
impl std::fmt::Display for CallbackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl std::fmt::Debug for CallbackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackId({self})")
    }
}

/// How many [`Function`]s are alive, in every pool.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many Elixir functions are kept for Python now: sent with a call that has not ended,
/// or held by some worker connection (see [`Granted`]). For tests and stats.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// One Elixir function handed to Python: a fresh id and the binding's hold on the function
/// (for the NIF, the term in an environment of its own). Shared by the call that sends it
/// and by each connection it was sent on; the hold is let go when the last one drops it.
pub struct Function {
    id: CallbackId,
    hold: Box<dyn Any + Send + Sync>,
}

impl Function {
    /// Keeps `hold` for Python under a fresh [`CallbackId`].
    pub fn new(hold: impl Any + Send + Sync) -> Arc<Function> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Function {
            id: CallbackId::random(),
            hold: Box::new(hold),
        })
    }

    /// The id Python knows the function by.
    pub fn id(&self) -> CallbackId {
        self.id
    }

    /// The binding's hold on the function, if it is a `T`.
    pub fn hold<T: Any>(&self) -> Option<&T> {
        self.hold.downcast_ref()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How long a function sent on a connection stays callable there. Python dropping its
/// callable ends every scope but [`Scope::Permanent`] early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Until the call with this request id ends (its last frame, or the caller gave up).
    Call(u64),
    /// Until the session with this id ends.
    Session(String),
    /// Until Python drops its callable (a function in a callback's answer, which belongs
    /// to no call the core knows of).
    UntilDropped,
    /// For as long as the connection lives, whatever Python does: the functions among a
    /// pool's init calls (its tools among them), which every worker of that pool gets when
    /// it starts.
    Permanent,
}

impl Scope {
    /// The scope of functions sent in `call`, request `request_id`: its session, if it has
    /// one, else the call itself.
    pub fn of_call(request_id: u64, call: &proto::Call) -> Scope {
        if call.session_id.is_empty() {
            Scope::Call(request_id)
        } else {
            Scope::Session(call.session_id.clone())
        }
    }

    /// Which of two scopes lasts longer, for a function sent twice on one connection.
    fn rank(&self) -> u8 {
        match self {
            Scope::Call(_) => 0,
            Scope::Session(_) => 1,
            Scope::UntilDropped => 2,
            Scope::Permanent => 3,
        }
    }
}

/// The functions one worker connection was given, each with its [`Scope`]: the only ones
/// Python on that connection may call or release.
#[derive(Debug, Default)]
pub struct Granted {
    grants: HashMap<CallbackId, (Arc<Function>, Scope)>,
    by_call: HashMap<u64, Vec<CallbackId>>,
    by_session: HashMap<String, Vec<CallbackId>>,
}

impl Granted {
    /// Records that `functions` were sent on the connection, to live there for `scope`.
    /// A function sent again keeps the longer of its two scopes.
    pub fn grant(&mut self, functions: &[Arc<Function>], scope: &Scope) {
        for function in functions {
            let id = function.id();
            if let Some((_, current)) = self.grants.get(&id) {
                if current.rank() >= scope.rank() {
                    continue;
                }
                self.unindex(id);
            }
            match scope {
                Scope::Call(request) => self.by_call.entry(*request).or_default().push(id),
                Scope::Session(session) => {
                    self.by_session.entry(session.clone()).or_default().push(id)
                }
                Scope::UntilDropped | Scope::Permanent => {}
            }
            self.grants
                .insert(id, (Arc::clone(function), scope.clone()));
        }
    }

    /// The function `id` stands for on this connection, if it was given one.
    pub fn get(&self, id: &CallbackId) -> Option<Arc<Function>> {
        self.grants
            .get(id)
            .map(|(function, _)| Arc::clone(function))
    }

    /// Call `request_id` ended: the functions sent with it are not callable any more.
    /// Returns how many went.
    pub fn end_call(&mut self, request_id: u64) -> usize {
        let ids = self.by_call.remove(&request_id).unwrap_or_default();
        self.remove_all(ids)
    }

    /// Session `session` ended: the functions sent in it are not callable any more.
    /// Returns how many went.
    pub fn end_session(&mut self, session: &str) -> usize {
        let ids = self.by_session.remove(session).unwrap_or_default();
        self.remove_all(ids)
    }

    /// Python dropped its callables for `ids`: forgets those the connection was given,
    /// unless permanent. Ids it was not given are ignored (another connection's function
    /// stays untouched). Returns how many went.
    pub fn release(&mut self, ids: impl IntoIterator<Item = CallbackId>) -> usize {
        let ids = ids
            .into_iter()
            .filter(|id| {
                self.grants
                    .get(id)
                    .is_some_and(|(_, scope)| *scope != Scope::Permanent)
            })
            .collect::<Vec<_>>();
        for &id in &ids {
            self.unindex(id);
        }
        self.remove_all(ids)
    }

    /// The connection ended: forgets everything it was given.
    pub fn clear(&mut self) {
        *self = Granted::default();
    }

    /// How many functions the connection holds.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether the connection holds no function.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    fn remove_all(&mut self, ids: Vec<CallbackId>) -> usize {
        ids.into_iter()
            .filter(|id| self.grants.remove(id).is_some())
            .count()
    }

    /// Takes `id` out of the index of its call or session (not out of the grants).
    fn unindex(&mut self, id: CallbackId) {
        let index = match self.grants.get(&id) {
            Some((_, Scope::Call(request))) => self.by_call.get_mut(request),
            Some((_, Scope::Session(session))) => self.by_session.get_mut(session),
            _ => None,
        };
        if let Some(ids) = index {
            ids.retain(|other| *other != id);
        }
    }
}

/// Runs callbacks on behalf of the pool.
pub trait CallbackHandler: Send + Sync + 'static {
    /// Python called `function` (one its connection was given) with `args` (encoded
    /// `[args, kwargs]`). The handler must answer `request_id` on `worker` exactly once,
    /// and must not block.
    fn invoke(
        &self,
        worker: Arc<Worker>,
        request_id: u64,
        function: Arc<Function>,
        args: proto::Payload,
    );
}

/// A callback that could not run or answer: the `CallbackFailed` error Python raises as
/// `ElixirError(message)`.
pub fn failed(message: impl Into<String>) -> proto::Error {
    proto::Error {
        kind: proto::error::Kind::CallbackFailed as i32,
        message: message.into(),
        exception: None,
    }
}

/// A callback whose function raised: [`failed`], with the exception's type and stacktrace
/// attached (Python's `ElixirError` carries them as `elixir_type` and `elixir_stacktrace`).
pub fn raised(exception_type: &str, message: String, stacktrace: &str) -> proto::Error {
    proto::Error {
        exception: Some(proto::PythonException {
            r#type: exception_type.to_owned(),
            module: "elixir".to_owned(),
            mro: Vec::new(),
            message: message.clone(),
            traceback: stacktrace.to_owned(),
        }),
        ..failed(message)
    }
}

/// A callback SnakeBridge itself could not run (not a failure of the function): Python's
/// `ElixirError` has `elixir_type` `"SnakeBridge"`.
pub fn refused(message: impl Into<String>) -> proto::Error {
    raised("SnakeBridge", message.into(), "")
}

/// The refusal of a callback request for an id the connection was not given (`id` as the
/// worker sent it).
pub fn unknown(id: &[u8]) -> proto::Error {
    let shown = match CallbackId::from_slice(id) {
        Some(id) => id.to_string(),
        None => format!("of {} bytes (ids have {})", id.len(), CallbackId::LEN),
    };
    refused(format!(
        "the Elixir function {shown} is unknown on this worker: it was never sent to this \
         worker, or the call or session it came with has ended"
    ))
}

/// Who runs the Elixir functions a pool's workers call, and the functions every one of
/// them may call for as long as it lives.
#[derive(Clone, Default)]
pub struct Callbacks {
    /// The handler; `None` refuses every callback with a clear error.
    pub handler: Option<Arc<dyn CallbackHandler>>,
    /// The functions among the pool's init calls (its tools among them), given to every
    /// worker of the pool as [`Scope::Permanent`] when it starts.
    pub permanent: Vec<Arc<Function>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("handler", &self.handler.is_some())
            .field("permanent", &self.permanent.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Weak;

    fn function() -> Arc<Function> {
        Function::new("an Elixir fun")
    }

    #[test]
    fn ids_are_128_random_bits_shown_as_hex() {
        let (a, b) = (CallbackId::random(), CallbackId::random());
        assert_ne!(a, b);
        assert_ne!(a, CallbackId::INERT);
        let shown = a.to_string();
        assert_eq!(shown.len(), 32);
        assert!(shown.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(CallbackId::from_slice(a.as_bytes()), Some(a));
        assert_eq!(CallbackId::from_slice(&a.as_bytes()[1..]), None);
        assert_eq!(CallbackId::from_slice(&[0; 17]), None);
        assert_ne!(function().id(), function().id());
    }

    #[test]
    fn a_function_keeps_its_binding_hold() {
        let f = Function::new(42u32);
        assert_eq!(f.hold::<u32>(), Some(&42));
        assert_eq!(f.hold::<String>(), None);
        assert!(live() >= 1);
    }

    #[test]
    fn a_connection_can_call_only_what_it_was_given() {
        let (mine, theirs) = (function(), function());
        let mut granted = Granted::default();
        granted.grant(std::slice::from_ref(&mine), &Scope::Call(1));
        assert!(Arc::ptr_eq(&granted.get(&mine.id()).unwrap(), &mine));
        assert!(granted.get(&theirs.id()).is_none());
        assert!(granted.get(&CallbackId::INERT).is_none());
        assert!(granted
            .get(&CallbackId::from_bytes([
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
            ]))
            .is_none());
    }

    #[test]
    fn a_release_of_another_connections_id_changes_nothing() {
        let victim = function();
        let mut owner = Granted::default();
        let mut attacker = Granted::default();
        owner.grant(std::slice::from_ref(&victim), &Scope::Session("s".into()));
        attacker.grant(&[function()], &Scope::Call(7));
        assert_eq!(attacker.release([victim.id()]), 0);
        assert_eq!(attacker.len(), 1);
        assert!(owner.get(&victim.id()).is_some());
        // Ending a call or session of the attacker's with the victim's names is no help.
        assert_eq!(attacker.end_session("s"), 0);
        assert!(owner.get(&victim.id()).is_some());
    }

    #[test]
    fn a_function_lives_until_its_call_ends() {
        let f = function();
        let weak = Arc::downgrade(&f);
        let mut granted = Granted::default();
        granted.grant(std::slice::from_ref(&f), &Scope::Call(3));
        drop(f);
        assert_eq!(granted.end_call(4), 0);
        assert!(weak.upgrade().is_some());
        assert_eq!(granted.end_call(3), 1);
        assert!(granted.is_empty());
        assert!(weak.upgrade().is_none(), "the last holder let go");
        assert_eq!(granted.end_call(3), 0);
    }

    #[test]
    fn a_function_sent_in_a_session_lives_until_the_session_ends() {
        let (a, b) = (function(), function());
        let mut granted = Granted::default();
        granted.grant(&[a.clone(), b.clone()], &Scope::Session("s1".into()));
        granted.grant(&[function()], &Scope::Session("s2".into()));
        assert_eq!(granted.end_call(1), 0);
        assert_eq!(granted.end_session("s1"), 2);
        assert!(granted.get(&a.id()).is_none() && granted.get(&b.id()).is_none());
        assert_eq!(granted.len(), 1);
    }

    #[test]
    fn python_dropping_a_callable_ends_all_but_permanent_scopes() {
        let scopes = [
            Scope::Call(1),
            Scope::Session("s".into()),
            Scope::UntilDropped,
            Scope::Permanent,
        ];
        let functions: Vec<Arc<Function>> = scopes.iter().map(|_| function()).collect();
        let mut granted = Granted::default();
        for (f, scope) in functions.iter().zip(&scopes) {
            granted.grant(std::slice::from_ref(f), scope);
        }
        assert_eq!(granted.release(functions.iter().map(|f| f.id())), 3);
        assert_eq!(granted.len(), 1);
        assert!(granted.get(&functions[3].id()).is_some());
        // Released ids left their call's and session's index too.
        assert_eq!(granted.end_call(1) + granted.end_session("s"), 0);
    }

    #[test]
    fn a_dead_connection_drops_everything_it_held() {
        let weak: Vec<Weak<Function>> = {
            let mut granted = Granted::default();
            let functions = [function(), function()];
            granted.grant(&functions[..1], &Scope::Permanent);
            granted.grant(&functions[1..], &Scope::UntilDropped);
            let weak = functions.iter().map(Arc::downgrade).collect();
            drop(functions);
            granted.clear();
            assert!(granted.is_empty());
            weak
        };
        assert!(weak.iter().all(|w| w.upgrade().is_none()));
    }

    #[test]
    fn a_function_sent_twice_keeps_its_longer_scope() {
        let f = function();
        let mut granted = Granted::default();
        granted.grant(std::slice::from_ref(&f), &Scope::Call(1));
        granted.grant(std::slice::from_ref(&f), &Scope::Session("s".into()));
        granted.grant(std::slice::from_ref(&f), &Scope::Call(2));
        assert_eq!(granted.end_call(1) + granted.end_call(2), 0);
        assert!(granted.get(&f.id()).is_some());
        assert_eq!(granted.end_session("s"), 1);
    }

    #[test]
    fn the_scope_of_a_call_is_its_session_if_it_has_one() {
        let call = proto::Call::default();
        assert_eq!(Scope::of_call(5, &call), Scope::Call(5));
        let call = proto::Call {
            session_id: "abc".into(),
            ..call
        };
        assert_eq!(Scope::of_call(5, &call), Scope::Session("abc".into()));
    }

    #[test]
    fn an_unknown_id_is_refused_in_words() {
        let id = CallbackId::random();
        let error = unknown(id.as_bytes());
        assert_eq!(error.kind, proto::error::Kind::CallbackFailed as i32);
        assert!(error.message.contains(&id.to_string()), "{}", error.message);
        assert!(error.message.contains("unknown on this worker"));
        assert_eq!(error.exception.unwrap().r#type, "SnakeBridge");
        assert!(unknown(&[1, 2, 3])
            .message
            .contains("of 3 bytes (ids have 16)"));
    }
}
