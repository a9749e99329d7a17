//! Erlang terms ⇄ the core's values and codecs, following the value table of the
//! `SnakeBridge` module's documentation (`lib/snakebridge.ex`).
//!
//! Encoding runs on the caller's scheduler: one walk of the term ([`write_term`]) feeds a
//! core [`Sink`], which builds a [`Value`] ([`to_value`]) or writes msgpack or JSON
//! straight from the terms ([`encode`]). It refuses what cannot cross (pids, ports,
//! references, unknown structs, improper lists) with the path of the offending part,
//! e.g. `args[1][:opts]`. Decoding runs on tokio threads into an owned env.

use rustler::types::map::MapIterator;
use rustler::types::tuple::{get_tuple, make_tuple};
use rustler::{Atom, BigInt, Binary, Encoder, Env, NewBinary, Term, TermType};

use std::sync::{Arc, Weak};

use rustler::ResourceArc;
use snakebridge_core::bytes::Bytes;
use snakebridge_core::callback::{CallbackId, Function};
use snakebridge_core::codec::sink::{self, Builder, Seq, Sink};
use snakebridge_core::codec::{json, msgpack, CodecError, Limits};
use snakebridge_core::keys::{self, KeyKind, KeyKinds, Number, PyKey};
use snakebridge_core::proto;
use snakebridge_core::value::{
    fill_pending_key, DType, Date, ObjectRef, Path, Segment, Tensor, Time, Value, MAX_DEPTH,
};
use snakebridge_core::{Error, Worker};

use crate::buffers;
use crate::refs::RefResource;
use crate::session::SessionResource;
use crate::{atoms, callbacks};

/// Why a term cannot cross the bridge, and where it is.
#[derive(Debug)]
pub(crate) struct Unsupported {
    pub path: String,
    pub message: String,
}

impl Unsupported {
    /// The error with the map key `key` rendered into its path (see
    /// [`Segment::PendingKey`]).
    fn with_key(mut self, key: Term) -> Unsupported {
        fill_pending_key(&mut self.path, &render_key(key));
        self
    }

    #[cold]
    fn at(path: &Path, message: impl Into<String>) -> Unsupported {
        Unsupported {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// term -> value, msgpack or JSON

/// Why a term could not be encoded: a part of it cannot cross at all, or the codec cannot
/// write it (JSON and NaN, ...).
#[derive(Debug)]
pub(crate) enum Refused {
    Unsupported(Unsupported),
    Codec(CodecError),
}

impl From<Unsupported> for Refused {
    fn from(unsupported: Unsupported) -> Refused {
        Refused::Unsupported(unsupported)
    }
}

impl From<CodecError> for Refused {
    fn from(err: CodecError) -> Refused {
        Refused::Codec(err)
    }
}

impl Refused {
    #[cold]
    #[inline(never)]
    fn with_key(self, key: Term) -> Refused {
        match self {
            Refused::Unsupported(unsupported) => Refused::Unsupported(unsupported.with_key(key)),
            codec => codec,
        }
    }
}

/// What encoding learned about the object references among the arguments.
#[derive(Default, Clone)]
pub(crate) struct Refs {
    /// The worker holding the referenced objects: the call must run there.
    pub pin: Option<Weak<Worker>>,
    /// Why a reference cannot be used (released, or its worker died).
    pub stale: Option<String>,
    /// The references met, which the call keeps until it ends: the BEAM may collect its
    /// last copy of a `%SnakeBridge.Ref{}` while the call runs, and the object's release
    /// must not overtake the call that uses it.
    pub held: Vec<ResourceArc<RefResource>>,
    /// The functions met, kept for Python under fresh ids: the core gives them to the
    /// connection the call goes to (see [`snakebridge_core::callback`]).
    pub callbacks: Vec<Arc<Function>>,
    /// Functions stand for themselves without being kept for Python (a config that is
    /// only validated).
    pub inert_callbacks: bool,
}

impl Refs {
    /// The context for a call made in `session` (or none): the session pins the call.
    pub(crate) fn for_session(session: Option<&SessionResource>) -> Refs {
        match session {
            None => Refs::default(),
            Some(session) => Refs {
                pin: Some(session.worker().clone()),
                stale: session.unusable().map(str::to_owned),
                ..Refs::default()
            },
        }
    }

    fn add(
        &mut self,
        resource: ResourceArc<RefResource>,
        path: &Path,
    ) -> Result<ObjectRef, Unsupported> {
        if let Some(reason) = resource.unusable() {
            self.stale
                .get_or_insert_with(|| format!("{path}: {reason}"));
        }
        match &self.pin {
            Some(pin) if !Weak::ptr_eq(pin, resource.worker()) => {
                return Err(Unsupported::at(
                    path,
                    "objects held by different workers cannot be used in one call (use a session to keep them on one worker)",
                ))
            }
            Some(_) => {}
            None => self.pin = Some(resource.worker().clone()),
        }
        let object = ObjectRef {
            id: resource.id(),
            ..ObjectRef::default()
        };
        self.held.push(resource);
        Ok(object)
    }
}

/// What [`encode`] encodes.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A term, its parts named from `root` in errors (`value[1][:opts]`).
    Term(Term<'a>, &'static str),
    /// A call's positional arguments (a list) and keyword arguments, encoded as the call
    /// frame carries them: `[args, kwargs]` (see
    /// [`call_arguments`](snakebridge_core::codec::call_arguments)).
    Call(Term<'a>, Term<'a>),
}

impl Input<'_> {
    fn write<S: Sink>(self, refs: &mut Refs, sink: &mut S) -> Result<S::Out, Refused> {
        match self {
            Input::Term(term, root) => write_term(term, &mut Path::root(root), refs, sink),
            Input::Call(args, kwargs) => write_arguments(args, kwargs, refs, sink),
        }
    }
}

/// Encodes `input` in `codec`, straight from the terms (no [`Value`] is built): the msgpack
/// or JSON text and, when `out_of_band` (msgpack in calls), the buffers that large bytes
/// and tensor data went to instead of the msgpack.
///
/// The error is the one converting the whole input to a [`Value`] and encoding that would
/// give: a part that cannot cross at all wins over a refusal of the codec met earlier. So
/// after a codec's refusal the input is walked again, into a value with callbacks inert
/// (nothing is kept for Python), to look for such a part; except when the input is over
/// `limits` (its size, or its number of values), which is refused as soon as the writers
/// get there.
pub(crate) fn encode(
    input: Input,
    refs: &mut Refs,
    codec: proto::Codec,
    out_of_band: bool,
    limits: Limits,
) -> Result<(Vec<u8>, Vec<Bytes>), Refused> {
    let before = refs.clone();
    let encoded = match codec {
        proto::Codec::Msgpack => {
            let writer = if out_of_band {
                msgpack::Writer::out_of_band()
            } else {
                msgpack::Writer::in_band()
            };
            let mut writer = writer.within(limits);
            input
                .write(refs, &mut writer)
                .and_then(|()| Ok(writer.finish()?))
        }
        proto::Codec::Json => {
            let mut writer = json::Writer::new().within(limits);
            input
                .write(refs, &mut writer)
                .and_then(|()| Ok((writer.finish()?, Vec::new())))
        }
    };
    match encoded {
        // Over a budget: walking the whole input again is what the budget prevents.
        Err(Refused::Codec(err)) if err.is_too_large() => Err(err.into()),
        Err(Refused::Codec(err)) => {
            let mut refs = Refs {
                inert_callbacks: true,
                ..before
            };
            match input.write(&mut refs, &mut Builder) {
                Err(Refused::Unsupported(unsupported)) => Err(unsupported.into()),
                _ => Err(err.into()),
            }
        }
        other => other,
    }
}

/// Converts a term to a value; `path` names where the term sits in the caller's input.
pub(crate) fn to_value(term: Term, path: &mut Path, refs: &mut Refs) -> Result<Value, Unsupported> {
    write_term(term, path, refs, &mut Builder).map_err(|refused| match refused {
        Refused::Unsupported(unsupported) => unsupported,
        // The builder refuses nothing the walk has not checked already.
        Refused::Codec(err) => Unsupported::at(path, err.to_string()),
    })
}

/// Walks `term` into `sink`, refusing what cannot cross with where it is (`path`).
///
/// The walk recurses once per level of nesting, up to [`MAX_DEPTH`], on a dirty
/// scheduler's small stack (320 KB by default): the functions on the recursion (this one
/// and the containers') keep their frames small, and everything else is out of line.
pub(crate) fn write_term<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    if path.depth() > MAX_DEPTH {
        return Err(too_deep(path).into());
    }
    match term.get_type() {
        TermType::Atom => write_atom(term, path, sink),
        TermType::Integer => write_integer(term, path, sink),
        TermType::Float => write_float(term, path, sink),
        TermType::Binary => write_binary(term, path, sink),
        TermType::List => write_list(term, path, refs, sink),
        TermType::Tuple => write_tuple(term, path, refs, sink),
        TermType::Map => write_map(term, path, refs, sink),
        TermType::Fun => write_function(term, refs, sink),
        other => Err(refuse_type(other, path).into()),
    }
}

#[cold]
#[inline(never)]
fn too_deep(path: &Path) -> Unsupported {
    Unsupported::at(path, sink::too_deep().to_string())
}

/// A term of a type that cannot cross at all.
#[cold]
#[inline(never)]
fn refuse_type(ty: TermType, path: &Path) -> Unsupported {
    let message = match ty {
        TermType::Pid => "a pid cannot be sent to Python",
        TermType::Port => "a port cannot be sent to Python",
        TermType::Ref => "a reference cannot be sent to Python",
        _ => "a term of unknown type",
    };
    Unsupported::at(path, message)
}

/// A function among the arguments: the id of its callable in Python
/// ([`CallbackId::INERT`] when the value is only being inspected).
fn function_id(term: Term, refs: &mut Refs) -> CallbackId {
    if refs.inert_callbacks {
        CallbackId::INERT
    } else {
        let function = callbacks::keep(term);
        let id = function.id();
        refs.callbacks.push(function);
        id
    }
}

#[inline(never)]
fn write_function<S: Sink>(term: Term, refs: &mut Refs, sink: &mut S) -> Result<S::Out, Refused> {
    Ok(sink.callback(function_id(term, refs))?)
}

/// `{Module, :function, arity}` with an Elixir module: a function reference, not data.
fn is_elixir_mfa(items: &[Term]) -> bool {
    match items {
        [module, function, arity] => {
            module
                .atom_to_string()
                .is_ok_and(|m| m.starts_with("Elixir."))
                && function.get_type() == TermType::Atom
                && arity.decode::<u8>().is_ok()
        }
        _ => false,
    }
}

#[inline(never)]
fn write_atom<S: Sink>(term: Term, path: &Path, sink: &mut S) -> Result<S::Out, Refused> {
    Ok(if atoms::nil() == term {
        sink.nil()?
    } else if let Ok(b) = term.decode::<bool>() {
        sink.bool(b)?
    } else if atoms::nan() == term {
        sink.float(f64::NAN)?
    } else if atoms::infinity() == term {
        sink.float(f64::INFINITY)?
    } else if atoms::neg_infinity() == term {
        sink.float(f64::NEG_INFINITY)?
    } else {
        let name = atom_name(term)
            .ok_or_else(|| Unsupported::at(path, "the atom's name could not be read"))?;
        sink.str(&name)?
    })
}

#[inline(never)]
fn write_integer<S: Sink>(term: Term, path: &Path, sink: &mut S) -> Result<S::Out, Refused> {
    if let Ok(n) = term.decode::<i64>() {
        return Ok(sink.int(n)?);
    }
    let n = term
        .decode::<BigInt>()
        .map_err(|_| Unsupported::at(path, "integer could not be read"))?;
    // rustler and the core use different num-bigint releases: convert via bytes.
    let n = snakebridge_core::num_bigint::BigInt::from_signed_bytes_be(&n.to_signed_bytes_be());
    Ok(match i64::try_from(&n) {
        Ok(small) => sink.int(small)?,
        Err(_) => sink.big_int(&n)?,
    })
}

#[inline(never)]
fn write_float<S: Sink>(term: Term, path: &Path, sink: &mut S) -> Result<S::Out, Refused> {
    let f = term
        .decode::<f64>()
        .map_err(|_| Unsupported::at(path, "float could not be read"))?;
    Ok(sink.float(f)?)
}

/// A binary: text when it is UTF-8, else bytes.
#[inline(never)]
fn write_binary<S: Sink>(term: Term, path: &Path, sink: &mut S) -> Result<S::Out, Refused> {
    let bin = Binary::from_term(term)
        .map_err(|_| Unsupported::at(path, "a bitstring that is not a whole number of bytes"))?;
    Ok(match std::str::from_utf8(bin.as_slice()) {
        Ok(s) => sink.str(s)?,
        Err(_) => sink.bytes(bin.as_slice(), || buffers::bytes_of(term, &bin))?,
    })
}

#[inline(never)]
fn write_tuple<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let items = get_tuple(term).map_err(|_| Unsupported::at(path, "bad tuple"))?;
    if is_elixir_mfa(&items) {
        return write_function(term, refs, sink);
    }
    write_items(Seq::Tuple, &items, path, refs, sink)
}

/// A tuple's items.
#[inline(never)]
fn write_items<S: Sink>(
    kind: Seq,
    items: &[Term],
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let mut items_left = items.iter().enumerate();
    sink.seq(kind, items.len(), |sink| {
        let (i, item) = items_left.next().ok_or_else(sink::overrun)?;
        path.push(Segment::Index(i));
        let written = write_term(*item, path, refs, sink);
        path.pop();
        written
    })
}

/// A list. Its length comes first (msgpack writes it before the items); an improper
/// list's items are walked up to its tail before it is refused, so that an item that
/// cannot cross is reported first, as converting it item by item would.
#[inline(never)]
fn write_list<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let (len, proper) = match term.list_length() {
        Ok(len) => (len, true),
        Err(_) => (proper_prefix(term), false),
    };
    let mut rest = term;
    let mut index = 0;
    let written = sink.seq(Seq::List, len, |sink| {
        let (head, tail) = rest.list_get_cell().map_err(|_| sink::overrun())?;
        rest = tail;
        path.push(Segment::Index(index));
        index += 1;
        let item = write_term(head, path, refs, sink);
        path.pop();
        item
    })?;
    if proper {
        Ok(written)
    } else {
        Err(Unsupported::at(path, "an improper list cannot be sent to Python").into())
    }
}

/// How many cells an improper list has before its tail.
#[cold]
fn proper_prefix(term: Term) -> usize {
    let mut len = 0;
    let mut rest = term;
    while let Ok((_, tail)) = rest.list_get_cell() {
        len += 1;
        rest = tail;
    }
    len
}

#[inline(never)]
fn write_map<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    match struct_name(term).as_deref() {
        None => {}
        Some("Elixir.MapSet") => return write_set(term, path, refs, sink),
        Some(name) => return write_struct(term, name, path, refs, sink),
    }
    let pairs = map_pairs(term).ok_or_else(|| Unsupported::at(path, "bad map"))?;
    if S::PYTHON_KEYS {
        check_keys(&pairs, path, "keys")?;
    }
    let mut pairs_left = pairs.iter();
    sink.map(pairs.len(), |sink| {
        let &(k, v) = pairs_left.next().ok_or_else(sink::overrun)?;
        write_entry(k, v, path, refs, sink)
    })
}

/// The entries of a map. (Collected rather than iterated during the walk: a map iterator
/// is large, and would sit in every level's frame of a nested walk.)
#[inline(never)]
fn map_pairs(term: Term) -> Option<Vec<(Term, Term)>> {
    let mut pairs = Vec::with_capacity(term.map_size().ok()?);
    pairs.extend(MapIterator::new(term)?);
    Some(pairs)
}

#[inline(never)]
fn write_entry<S: Sink>(
    k: Term,
    v: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<(S::Out, S::Out), Refused> {
    path.push(Segment::PendingKey);
    let entry =
        write_term(k, path, refs, sink).and_then(|key| Ok((key, write_term(v, path, refs, sink)?)));
    path.pop();
    entry.map_err(|err| err.with_key(k))
}

/// A `MapSet`: a set of its map's keys.
#[inline(never)]
fn write_set<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let map = field(term, atoms::map(), path)?;
    let members = map_pairs(map).ok_or_else(|| Unsupported::at(path, "malformed MapSet"))?;
    if S::PYTHON_KEYS {
        check_keys(&members, path, "members")?;
    }
    let mut members_left = members.iter();
    sink.seq(Seq::Set, members.len(), |sink| {
        let &(k, _) = members_left.next().ok_or_else(sink::overrun)?;
        write_member(k, path, refs, sink)
    })
}

#[inline(never)]
fn write_member<S: Sink>(
    k: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    path.push(Segment::PendingKey);
    let item = write_term(k, path, refs, sink);
    path.pop();
    item.map_err(|err| err.with_key(k))
}

/// Refuses the keys of a map (or the members of a set, `what`) when two of them would be
/// one key in Python, such as `:a` and `"a"` or `1` and `1.0` (see
/// [`snakebridge_core::keys`]).
#[cold]
#[inline(never)]
fn check_keys(pairs: &[(Term, Term)], path: &Path, what: &str) -> Result<(), Unsupported> {
    let mut kinds = KeyKinds::default();
    for (k, _) in pairs {
        kinds.add(key_kind(*k));
    }
    if !kinds.may_collide() {
        return Ok(());
    }
    let Some((i, j)) = keys::first_collision(pairs.iter().map(|(k, _)| py_key(*k))) else {
        return Ok(());
    };
    let (first, second) = (pairs[i].0, pairs[j].0);
    Err(Unsupported::at(
        path,
        format!(
            "the {what} {} and {} would be the same {} in Python ({}): make them distinct",
            render_key(first),
            render_key(second),
            what.trim_end_matches('s'),
            keys::python_repr(&py_key(first)),
        ),
    ))
}

/// The type of a key, as far as collisions in Python go.
fn key_kind(key: Term) -> KeyKind {
    match key.get_type() {
        TermType::Atom if key.decode::<bool>().is_ok() => KeyKind::Bool,
        TermType::Atom if is_special_atom(key) => KeyKind::Other,
        TermType::Atom => KeyKind::Atom,
        TermType::Binary => KeyKind::Binary,
        TermType::Integer => KeyKind::Int,
        TermType::Float => KeyKind::Float,
        TermType::Tuple => KeyKind::Tuple,
        TermType::Map if struct_name(key).as_deref() == Some("Elixir.SnakeBridge.Bytes") => {
            KeyKind::Binary
        }
        _ => KeyKind::Other,
    }
}

/// `nil` and the atoms that stand for floats: they do not cross as strings.
fn is_special_atom(atom: Term) -> bool {
    atoms::nil() == atom
        || atoms::nan() == atom
        || atoms::infinity() == atom
        || atoms::neg_infinity() == atom
}

/// A key's identity in Python (its value as `write_term` converts it).
fn py_key(key: Term) -> PyKey {
    let opaque = || PyKey::Opaque(key.to_binary().as_slice().to_vec());
    match key.get_type() {
        TermType::Atom => {
            if atoms::nil() == key {
                PyKey::None
            } else if let Ok(b) = key.decode::<bool>() {
                PyKey::Num(Number::bool(b))
            } else if atoms::nan() == key {
                PyKey::Num(Number::float(f64::NAN))
            } else if atoms::infinity() == key {
                PyKey::Num(Number::float(f64::INFINITY))
            } else if atoms::neg_infinity() == key {
                PyKey::Num(Number::float(f64::NEG_INFINITY))
            } else {
                atom_name(key).map(PyKey::Str).unwrap_or_else(opaque)
            }
        }
        TermType::Binary => match Binary::from_term(key) {
            Ok(bin) => match std::str::from_utf8(bin.as_slice()) {
                Ok(s) => PyKey::Str(s.to_owned()),
                Err(_) => PyKey::Bytes(bin.as_slice().to_vec()),
            },
            Err(_) => opaque(),
        },
        TermType::Integer => match key.decode::<i64>() {
            Ok(n) => PyKey::Num(Number::Int(n)),
            Err(_) => match key.decode::<BigInt>() {
                Ok(n) => PyKey::Num(Number::big(
                    &snakebridge_core::num_bigint::BigInt::from_signed_bytes_be(
                        &n.to_signed_bytes_be(),
                    ),
                )),
                Err(_) => opaque(),
            },
        },
        TermType::Float => match key.decode::<f64>() {
            Ok(f) => PyKey::Num(Number::float(f)),
            Err(_) => opaque(),
        },
        TermType::Tuple => match get_tuple(key) {
            Ok(items) if !is_elixir_mfa(&items) => {
                PyKey::Tuple(items.iter().map(|item| py_key(*item)).collect())
            }
            _ => opaque(),
        },
        TermType::Map if struct_name(key).as_deref() == Some("Elixir.SnakeBridge.Bytes") => {
            match key.map_get(atoms::data()).map(Binary::from_term) {
                Ok(Ok(bin)) => PyKey::Bytes(bin.as_slice().to_vec()),
                _ => opaque(),
            }
        }
        _ => opaque(),
    }
}

/// The name of atom `term`, whatever its characters. `enif_get_atom` reads only Latin-1
/// names before NIF 2.17 (OTP 26); other names are read from the atom's external format
/// (`ATOM_UTF8_EXT` / `SMALL_ATOM_UTF8_EXT`), as `:"🐍"` must cross as `"🐍"`, not be lost.
pub(crate) fn atom_name(term: Term) -> Option<String> {
    if let Ok(name) = term.atom_to_string() {
        return Some(name);
    }
    if term.get_type() != TermType::Atom {
        return None;
    }
    let external = term.to_binary();
    let name = match external.as_slice() {
        [131, 119, len, name @ ..] if name.len() == usize::from(*len) => name,
        [131, 118, hi, lo, name @ ..]
            if name.len() == usize::from(u16::from_be_bytes([*hi, *lo])) =>
        {
            name
        }
        _ => return None,
    };
    String::from_utf8(name.to_vec()).ok()
}

/// Renders a map key the way Elixir would show it in an access path.
pub(crate) fn render_key(key: Term) -> String {
    match key.get_type() {
        TermType::Atom => match atom_name(key) {
            Some(name) if matches!(name.as_str(), "true" | "false" | "nil") => name,
            Some(name) => format!(":{name}"),
            None => ":?".to_owned(),
        },
        TermType::Float => key
            .decode::<f64>()
            .map(|f| format!("{f:?}"))
            .unwrap_or_else(|_| "<float>".to_owned()),
        TermType::Tuple => match get_tuple(key) {
            Ok(items) => {
                let items: Vec<String> = items.iter().map(|item| render_key(*item)).collect();
                format!("{{{}}}", items.join(", "))
            }
            Err(_) => "<tuple>".to_owned(),
        },
        TermType::Binary => match key.decode::<String>() {
            Ok(s) => format!("{s:?}"),
            Err(_) => "<<binary>>".to_owned(),
        },
        TermType::Integer => key
            .decode::<i64>()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "<integer>".to_owned()),
        other => format!("<{other:?}>").to_lowercase(),
    }
}

fn struct_name(term: Term) -> Option<String> {
    let name = term.map_get(atoms::__struct__()).ok()?;
    name.atom_to_string().ok()
}

fn field<'a>(term: Term<'a>, key: Atom, path: &Path) -> Result<Term<'a>, Unsupported> {
    term.map_get(key)
        .map_err(|_| Unsupported::at(path, format!("struct field {key:?} is missing")))
}

fn int_field<'a, T: rustler::Decoder<'a>>(
    term: Term<'a>,
    key: Atom,
    path: &Path,
) -> Result<T, Unsupported> {
    field(term, key, path)?
        .decode::<T>()
        .map_err(|_| Unsupported::at(path, format!("struct field {key:?} is out of range")))
}

fn date_of(term: Term, path: &Path) -> Result<Date, Unsupported> {
    Ok(Date {
        year: int_field(term, atoms::year(), path)?,
        month: int_field(term, atoms::month(), path)?,
        day: int_field(term, atoms::day(), path)?,
    })
}

fn time_of(term: Term, path: &Path) -> Result<Time, Unsupported> {
    let (microsecond, _precision): (u32, u8) = field(term, atoms::microsecond(), path)?
        .decode()
        .map_err(|_| Unsupported::at(path, "struct field microsecond is malformed"))?;
    Ok(Time {
        hour: int_field(term, atoms::hour(), path)?,
        minute: int_field(term, atoms::minute(), path)?,
        second: int_field(term, atoms::second(), path)?,
        microsecond,
    })
}

fn iso_calendar(term: Term, path: &Path) -> Result<(), Unsupported> {
    let calendar = field(term, atoms::calendar(), path)?
        .atom_to_string()
        .unwrap_or_default();
    if calendar == "Elixir.Calendar.ISO" {
        Ok(())
    } else {
        Err(Unsupported::at(
            path,
            format!("only Calendar.ISO dates can be sent to Python, found {calendar}"),
        ))
    }
}

/// A struct other than `MapSet` (the structs that can cross hold no other values).
#[inline(never)]
fn write_struct<S: Sink>(
    term: Term,
    name: &str,
    path: &Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    Ok(match name {
        "Elixir.SnakeBridge.Ref" => {
            let resource: ResourceArc<RefResource> = field(term, atoms::resource(), path)?
                .decode()
                .map_err(|_| Unsupported::at(path, "%SnakeBridge.Ref{} without its resource"))?;
            let object = refs.add(resource, path)?;
            sink.object_ref(&object)?
        }
        "Elixir.SnakeBridge.Bytes" => {
            let data = field(term, atoms::data(), path)?;
            let bin = Binary::from_term(data)
                .map_err(|_| Unsupported::at(path, "%SnakeBridge.Bytes{} data must be a binary"))?;
            sink.bytes(bin.as_slice(), || buffers::bytes_of(data, &bin))?
        }
        "Elixir.SnakeBridge.Tensor" => {
            let data = field(term, atoms::data(), path)?;
            return write_tensor(term, data, path, sink);
        }
        "Elixir.Nx.Tensor" => {
            // Only the binary backend's data is in the BEAM; other backends (EXLA, ...)
            // must transfer first.
            let backend = field(term, atoms::data(), path)?;
            match struct_name(backend).as_deref() {
                Some("Elixir.Nx.BinaryBackend") => {
                    let data = field(backend, atoms::state(), path)?;
                    return write_tensor(term, data, path, sink);
                }
                other => {
                    return Err(Unsupported::at(
                        path,
                        format!(
                            "an Nx tensor on the {} backend cannot be sent to Python: call Nx.backend_transfer(tensor, Nx.BinaryBackend) first",
                            other.unwrap_or("unknown").trim_start_matches("Elixir.")
                        ),
                    )
                    .into())
                }
            }
        }
        "Elixir.Date" => {
            iso_calendar(term, path)?;
            sink.date(date_of(term, path)?)?
        }
        "Elixir.Time" => {
            iso_calendar(term, path)?;
            sink.time(time_of(term, path)?)?
        }
        "Elixir.NaiveDateTime" => {
            iso_calendar(term, path)?;
            sink.naive_datetime(date_of(term, path)?, time_of(term, path)?)?
        }
        "Elixir.DateTime" => {
            iso_calendar(term, path)?;
            let utc: i32 = int_field(term, atoms::utc_offset(), path)?;
            let std: i32 = int_field(term, atoms::std_offset(), path)?;
            sink.datetime(date_of(term, path)?, time_of(term, path)?, utc + std)?
        }
        other => {
            return Err(Unsupported::at(
                path,
                format!(
                    "struct %{}{{}} cannot be sent to Python (convert it to a map first)",
                    other.trim_start_matches("Elixir.")
                ),
            )
            .into())
        }
    })
}

/// A tensor from the `type` (`{:f, 32}`) and `shape` (`{2, 3}`) fields of `term` and its
/// data binary; a large binary is not copied.
fn write_tensor<S: Sink>(
    term: Term,
    data: Term,
    path: &Path,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let ty = field(term, atoms::r#type(), path)?;
    let dtype = get_tuple(ty)
        .ok()
        .and_then(|parts| match parts.as_slice() {
            [kind, bits] => Some((kind.atom_to_string().ok()?, bits.decode::<u32>().ok()?)),
            _ => None,
        })
        .and_then(|(kind, bits)| DType::from_nx(&kind, bits))
        .ok_or_else(|| {
            Unsupported::at(
                path,
                "tensor type must be one of {:u, 8..64}, {:s, 8..64}, {:f, 16 | 32 | 64}, {:bf, 16}, {:c, 64 | 128}, {:bool, 8}",
            )
        })?;
    let shape = field(term, atoms::shape(), path)?;
    let shape: Vec<u64> = get_tuple(shape)
        .ok()
        .and_then(|dims| dims.iter().map(|d| d.decode::<u64>().ok()).collect())
        .ok_or_else(|| {
            Unsupported::at(
                path,
                "tensor shape must be a tuple of non-negative integers",
            )
        })?;
    let bin = Binary::from_term(data)
        .map_err(|_| Unsupported::at(path, "tensor data must be a binary"))?;
    Tensor::check(dtype, &shape, bin.len()).map_err(|message| Unsupported::at(path, message))?;
    Ok(sink.tensor(dtype, &shape, bin.as_slice(), || {
        buffers::bytes_of(data, &bin)
    })?)
}

/// A call's arguments as the call frame carries them: `[args, kwargs]`.
fn write_arguments<S: Sink>(
    args: Term,
    kwargs: Term,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let mut parts = 0;
    sink.seq(Seq::List, 2, |sink| {
        parts += 1;
        match parts {
            1 if args.get_type() == TermType::List => {
                write_term(args, &mut Path::root("args"), refs, sink)
            }
            1 => Err(not_a_list(args, refs).into()),
            2 => write_kwargs(kwargs, &mut Path::root("kwargs"), refs, sink),
            _ => Err(sink::overrun().into()),
        }
    })
}

/// Why positional arguments that are not a list are refused: a part of them that cannot
/// cross, else their kind.
#[cold]
fn not_a_list(args: Term, refs: &mut Refs) -> Unsupported {
    match to_value(args, &mut Path::root("args"), refs) {
        Err(unsupported) => unsupported,
        Ok(other) => Unsupported {
            path: "args".into(),
            message: format!(
                "positional arguments must be a list, got a {}",
                other.kind()
            ),
        },
    }
}

/// Keyword arguments (a keyword list or a map with atom or string keys), as a map with
/// string keys.
fn write_kwargs<S: Sink>(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
    sink: &mut S,
) -> Result<S::Out, Refused> {
    let bad = |path: &Path| {
        Unsupported::at(
            path,
            "keyword arguments must be a keyword list or a map with atom or string keys",
        )
    };
    let pairs: Vec<(Term, Term)> = match term.get_type() {
        TermType::List => {
            let mut pairs = Vec::new();
            let mut rest = term;
            while !rest.is_empty_list() {
                let (head, tail) = rest.list_get_cell().map_err(|_| bad(path))?;
                match get_tuple(head).as_deref() {
                    Ok([k, v]) => pairs.push((*k, *v)),
                    _ => return Err(bad(path).into()),
                }
                rest = tail;
            }
            pairs
        }
        TermType::Map if struct_name(term).is_none() => {
            MapIterator::new(term).ok_or_else(|| bad(path))?.collect()
        }
        _ => return Err(bad(path).into()),
    };
    let names = pairs
        .iter()
        .map(|(k, _)| match k.get_type() {
            TermType::Atom => atom_name(*k).ok_or_else(|| bad(path)),
            TermType::Binary => k.decode::<String>().map_err(|_| bad(path)),
            _ => Err(bad(path)),
        })
        .collect::<Result<Vec<String>, Unsupported>>()?;
    if let Some((i, j)) = keys::first_collision(names.iter().map(|n| PyKey::Str(n.clone()))) {
        return Err(Unsupported::at(
            path,
            format!(
                "the keyword argument {} is given twice ({} and {})",
                names[i],
                render_key(pairs[i].0),
                render_key(pairs[j].0)
            ),
        )
        .into());
    }
    let mut pairs_left = pairs.iter().zip(&names);
    sink.map(pairs.len(), |sink| {
        let ((k, v), name) = pairs_left.next().ok_or_else(sink::overrun)?;
        let key = sink.str(name)?;
        path.push(Segment::Key(render_key(*k)));
        let value = write_term(*v, path, refs, sink);
        path.pop();
        Ok((key, value?))
    })
}

// ---------------------------------------------------------------------------------------
// value -> term

/// Where decoded object references come from: the worker that answered and the name of
/// its pool (kept in `%SnakeBridge.Ref{}` so that later calls find the pool).
pub(crate) struct Origin<'w> {
    /// `None` for values that cannot hold references (descriptors, configs).
    pub worker: Option<&'w Arc<Worker>>,
    pub pool: Atom,
}

impl Origin<'_> {
    /// The origin of plain data; a reference in it decodes to `nil`.
    pub(crate) fn none() -> Origin<'static> {
        Origin {
            worker: None,
            pool: atoms::nil(),
        }
    }
}

/// Builds the term for a value.
pub(crate) fn from_value<'a>(env: Env<'a>, value: &Value, origin: &Origin) -> Term<'a> {
    match value {
        Value::Nil => atoms::nil().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Int(n) => n.encode(env),
        Value::BigInt(n) => BigInt::from_signed_bytes_be(&n.to_signed_bytes_be()).encode(env),
        Value::Float(f) if f.is_nan() => atoms::nan().encode(env),
        Value::Float(f) if f.is_infinite() && *f > 0.0 => atoms::infinity().encode(env),
        Value::Float(f) if f.is_infinite() => atoms::neg_infinity().encode(env),
        Value::Float(f) => f.encode(env),
        Value::Str(s) => binary(env, s.as_bytes()),
        Value::Bytes(b) => buffers::binary_term(env, b),
        Value::List(items) => {
            let terms: Vec<Term> = items.iter().map(|v| from_value(env, v, origin)).collect();
            terms.encode(env)
        }
        Value::Tuple(items) => {
            let terms: Vec<Term> = items.iter().map(|v| from_value(env, v, origin)).collect();
            make_tuple(env, &terms)
        }
        Value::Map(pairs) => {
            let (keys, values): (Vec<Term>, Vec<Term>) = pairs
                .iter()
                .map(|(k, v)| (from_value(env, k, origin), from_value(env, v, origin)))
                .unzip();
            map_from(env, &keys, &values)
        }
        Value::Set(items) => {
            let keys: Vec<Term> = items.iter().map(|v| from_value(env, v, origin)).collect();
            let empty = Vec::<Term>::new().encode(env);
            let values = vec![empty; keys.len()];
            let inner = map_from(env, &keys, &values);
            elixir_struct(
                env,
                "Elixir.MapSet",
                &[(atoms::map(), inner), (atoms::version(), 2.encode(env))],
            )
        }
        Value::Date(d) => {
            let fields = date_fields(env, d);
            elixir_struct(env, "Elixir.Date", &fields)
        }
        Value::Time(t) => {
            let fields = time_fields(env, t);
            elixir_struct(env, "Elixir.Time", &fields)
        }
        Value::NaiveDateTime(d, t) => {
            let mut fields = date_fields(env, d);
            fields.extend(time_fields(env, t));
            elixir_struct(env, "Elixir.NaiveDateTime", &fields)
        }
        Value::DateTime(d, t, offset) => {
            let mut fields = date_fields(env, d);
            fields.extend(time_fields(env, t));
            let zone = if *offset == 0 {
                ("Etc/UTC".to_owned(), "UTC".to_owned())
            } else {
                let sign = if *offset < 0 { '-' } else { '+' };
                let abs = offset.unsigned_abs();
                let name = format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60);
                (name.clone(), name)
            };
            fields.push((atoms::time_zone(), binary(env, zone.0.as_bytes())));
            fields.push((atoms::zone_abbr(), binary(env, zone.1.as_bytes())));
            fields.push((atoms::utc_offset(), offset.encode(env)));
            fields.push((atoms::std_offset(), 0.encode(env)));
            elixir_struct(env, "Elixir.DateTime", &fields)
        }
        // Python never sends callbacks back (its callables of Elixir functions cross as
        // references); a malformed payload's callback decodes to nil.
        Value::Callback(_) => atoms::nil().encode(env),
        Value::Tensor(t) => {
            let (kind, bits) = t.dtype.nx();
            let kind = Atom::from_str(env, kind)
                .map(|a| a.encode(env))
                .unwrap_or_else(|_| atoms::nil().encode(env));
            let dims: Vec<Term> = t.shape.iter().map(|d| d.encode(env)).collect();
            let fields = [
                (atoms::r#type(), make_tuple(env, &[kind, bits.encode(env)])),
                (atoms::shape(), make_tuple(env, &dims)),
                (atoms::data(), buffers::binary_term(env, &t.data)),
            ];
            elixir_struct(env, "Elixir.SnakeBridge.Tensor", &fields)
        }
        Value::Ref(r) => {
            let Some(worker) = origin.worker else {
                return atoms::nil().encode(env);
            };
            let resource = ResourceArc::new(RefResource::new(worker, r.id));
            let fields = [
                (atoms::resource(), resource.encode(env)),
                (atoms::r#type(), binary(env, r.type_name.as_bytes())),
                (atoms::repr(), binary(env, r.repr.as_bytes())),
                (atoms::worker_pid(), worker.pid().encode(env)),
                (atoms::pool(), origin.pool.encode(env)),
            ];
            elixir_struct(env, "Elixir.SnakeBridge.Ref", &fields)
        }
    }
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    Binary::from(bin).to_term(env)
}

/// A map from parallel key/value arrays; on duplicate keys the last one wins.
///
/// Maps of more than 32 keys (hash maps in the VM) are built key by key:
/// `enif_make_map_from_arrays` sorts them with scheduler-owned scratch memory and crashes
/// the VM when called from a thread that is not a scheduler (OTP 25), which is where
/// replies are built.
pub(crate) fn map_from<'a>(env: Env<'a>, keys: &[Term<'a>], values: &[Term<'a>]) -> Term<'a> {
    const FLATMAP_LIMIT: usize = 32;
    if keys.len() <= FLATMAP_LIMIT {
        if let Ok(map) = Term::map_from_term_arrays(env, keys, values) {
            return map;
        }
    }
    let mut map = Term::map_new(env);
    for (k, v) in keys.iter().zip(values) {
        map = map.map_put(*k, *v).unwrap_or(map);
    }
    map
}

fn date_fields<'a>(env: Env<'a>, d: &Date) -> Vec<(Atom, Term<'a>)> {
    vec![
        (atoms::year(), d.year.encode(env)),
        (atoms::month(), d.month.encode(env)),
        (atoms::day(), d.day.encode(env)),
    ]
}

fn time_fields<'a>(env: Env<'a>, t: &Time) -> Vec<(Atom, Term<'a>)> {
    vec![
        (atoms::hour(), t.hour.encode(env)),
        (atoms::minute(), t.minute.encode(env)),
        (atoms::second(), t.second.encode(env)),
        (atoms::microsecond(), (t.microsecond, 6u8).encode(env)),
    ]
}

fn elixir_struct<'a>(env: Env<'a>, module: &str, fields: &[(Atom, Term<'a>)]) -> Term<'a> {
    let module = Atom::from_str(env, module)
        .map(|a| a.encode(env))
        .unwrap_or_else(|_| atoms::nil().encode(env));
    let mut keys = vec![atoms::__struct__().encode(env)];
    let mut values = vec![module];
    if fields
        .iter()
        .any(|(k, _)| *k == atoms::year() || *k == atoms::hour())
    {
        keys.push(atoms::calendar().encode(env));
        values.push(
            Atom::from_str(env, "Elixir.Calendar.ISO")
                .map(|a| a.encode(env))
                .unwrap_or_else(|_| atoms::nil().encode(env)),
        );
    }
    for (k, v) in fields {
        keys.push(k.encode(env));
        values.push(*v);
    }
    map_from(env, &keys, &values)
}

/// `{:error, %{reason: atom, message: …, python: …, …}}` for a core error; the Elixir side
/// turns the map into `%SnakeBridge.Error{}` or `SnakeBridge.PythonError` in one place.
pub(crate) fn error_tuple<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    (atoms::error(), error_map(env, err)).encode(env)
}

/// The map `SnakeBridge.Error.from_native/2` reads.
pub(crate) fn error_map<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    let reason = Atom::from_str(env, err.kind.as_str())
        .map(|a| a.encode(env))
        .unwrap_or_else(|_| atoms::nil().encode(env));
    let python = match &err.python {
        Some(exc) => {
            let mro: Vec<Term> = exc.mro.iter().map(|m| binary(env, m.as_bytes())).collect();
            let keys = [
                atoms::r#type().encode(env),
                atoms::module().encode(env),
                atoms::mro().encode(env),
                atoms::message().encode(env),
                atoms::traceback().encode(env),
            ];
            let values = [
                binary(env, exc.r#type.as_bytes()),
                binary(env, exc.module.as_bytes()),
                mro.encode(env),
                binary(env, exc.message.as_bytes()),
                binary(env, exc.traceback.as_bytes()),
            ];
            map_from(env, &keys, &values)
        }
        None => atoms::nil().encode(env),
    };
    let opt = |v: Option<Term<'a>>| v.unwrap_or_else(|| atoms::nil().encode(env));
    let keys = [
        atoms::reason().encode(env),
        atoms::message().encode(env),
        atoms::python().encode(env),
        atoms::worker_pid().encode(env),
        atoms::exit_status().encode(env),
        atoms::stderr_tail().encode(env),
    ];
    let values = [
        reason,
        binary(env, err.message.as_bytes()),
        python,
        opt(err.worker_pid.map(|p| p.encode(env))),
        opt(err.exit_status.map(|s| s.encode(env))),
        opt(err.stderr_tail.as_ref().map(|s| binary(env, s.as_bytes()))),
    ];
    map_from(env, &keys, &values)
}
