//! Erlang terms ⇄ core [`Value`]s, following the value table of `DESIGN.md`.
//!
//! Encoding runs on the caller's scheduler and refuses what cannot cross (pids, ports,
//! references, functions, unknown structs, improper lists) with the path of the offending
//! part, e.g. `args[1][:opts]`. Decoding runs on tokio threads into an owned env.

use rustler::types::map::MapIterator;
use rustler::types::tuple::{get_tuple, make_tuple};
use rustler::{Atom, BigInt, Binary, Encoder, Env, NewBinary, Term, TermType};

use std::sync::{Arc, Weak};

use rustler::ResourceArc;
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
pub struct Unsupported {
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

    fn at(path: &Path, message: impl Into<String>) -> Unsupported {
        Unsupported {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// term -> value

/// What encoding learned about the object references among the arguments.
#[derive(Default)]
pub struct Refs {
    /// The worker holding the referenced objects: the call must run there.
    pub pin: Option<Weak<Worker>>,
    /// Why a reference cannot be used (released, or its worker died).
    pub stale: Option<String>,
    /// Functions are kept for as long as the pool lives (worker init calls: every worker
    /// gets a callable for the same function), not until Python drops them.
    pub permanent_callbacks: bool,
    /// Functions stand for themselves without being kept for Python (a config that is
    /// only validated).
    pub inert_callbacks: bool,
}

impl Refs {
    /// The context for a call made in `session` (or none): the session pins the call.
    pub fn for_session(session: Option<&SessionResource>) -> Refs {
        match session {
            None => Refs::default(),
            Some(session) => Refs {
                pin: Some(session.worker().clone()),
                stale: session.unusable().map(str::to_owned),
                ..Refs::default()
            },
        }
    }

    fn add(&mut self, resource: &RefResource, path: &Path) -> Result<ObjectRef, Unsupported> {
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
        Ok(ObjectRef {
            id: resource.id(),
            ..ObjectRef::default()
        })
    }
}

/// Converts a term to a value; `path` names where the term sits in the caller's input.
pub fn to_value(term: Term, path: &mut Path, refs: &mut Refs) -> Result<Value, Unsupported> {
    if path.depth() > MAX_DEPTH {
        return Err(Unsupported::at(
            path,
            format!("value is nested more than {MAX_DEPTH} levels deep"),
        ));
    }
    match term.get_type() {
        TermType::Atom => Ok(atom_value(term)),
        TermType::Integer => match term.decode::<i64>() {
            Ok(n) => Ok(Value::Int(n)),
            Err(_) => term
                .decode::<BigInt>()
                // rustler and the core use different num-bigint releases: convert via bytes.
                .map(|n| {
                    Value::integer(snakebridge_core::num_bigint::BigInt::from_signed_bytes_be(
                        &n.to_signed_bytes_be(),
                    ))
                })
                .map_err(|_| Unsupported::at(path, "integer could not be read")),
        },
        TermType::Float => term
            .decode::<f64>()
            .map(Value::Float)
            .map_err(|_| Unsupported::at(path, "float could not be read")),
        TermType::Binary => {
            let bin = Binary::from_term(term).map_err(|_| {
                Unsupported::at(path, "a bitstring that is not a whole number of bytes")
            })?;
            Ok(match std::str::from_utf8(bin.as_slice()) {
                Ok(s) => Value::Str(s.to_owned()),
                Err(_) => Value::Bytes(buffers::bytes_of(term, &bin)),
            })
        }
        TermType::List => list_items(term, path, refs).map(Value::List),
        TermType::Tuple => {
            let items = get_tuple(term).map_err(|_| Unsupported::at(path, "bad tuple"))?;
            if is_elixir_mfa(&items) {
                return Ok(function_value(term, refs));
            }
            seq(&items, path, refs).map(Value::Tuple)
        }
        TermType::Map => map_value(term, path, refs),
        TermType::Pid => Err(Unsupported::at(path, "a pid cannot be sent to Python")),
        TermType::Port => Err(Unsupported::at(path, "a port cannot be sent to Python")),
        TermType::Ref => Err(Unsupported::at(
            path,
            "a reference cannot be sent to Python",
        )),
        TermType::Fun => Ok(function_value(term, refs)),
        TermType::Unknown => Err(Unsupported::at(path, "a term of unknown type")),
    }
}

/// A function among the arguments: kept for Python to call (unless the value is only
/// being inspected).
fn function_value(term: Term, refs: &Refs) -> Value {
    if refs.inert_callbacks {
        Value::Callback(0)
    } else {
        Value::Callback(callbacks::register(term, refs.permanent_callbacks))
    }
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

fn atom_value(term: Term) -> Value {
    if term == atoms::nil().to_term(term.get_env()) {
        return Value::Nil;
    }
    if let Ok(b) = term.decode::<bool>() {
        return Value::Bool(b);
    }
    let name = term.atom_to_string().unwrap_or_else(|_| String::from("?"));
    match name.as_str() {
        "nan" => Value::Float(f64::NAN),
        "infinity" => Value::Float(f64::INFINITY),
        "neg_infinity" => Value::Float(f64::NEG_INFINITY),
        _ => Value::Str(name),
    }
}

fn seq(items: &[Term], path: &mut Path, refs: &mut Refs) -> Result<Vec<Value>, Unsupported> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        path.push(Segment::Index(i));
        let value = to_value(*item, path, refs);
        path.pop();
        out.push(value?);
    }
    Ok(out)
}

fn list_items(term: Term, path: &mut Path, refs: &mut Refs) -> Result<Vec<Value>, Unsupported> {
    let mut out = Vec::new();
    let mut rest = term;
    loop {
        if rest.is_empty_list() {
            return Ok(out);
        }
        let (head, tail) = rest
            .list_get_cell()
            .map_err(|_| Unsupported::at(path, "an improper list cannot be sent to Python"))?;
        path.push(Segment::Index(out.len()));
        let value = to_value(head, path, refs);
        path.pop();
        out.push(value?);
        rest = tail;
    }
}

/// Renders a map key the way Elixir would show it in an access path.
pub fn render_key(key: Term) -> String {
    match key.get_type() {
        TermType::Atom => match key.atom_to_string() {
            Ok(name) => format!(":{name}"),
            Err(_) => ":?".to_owned(),
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

fn map_value(term: Term, path: &mut Path, refs: &mut Refs) -> Result<Value, Unsupported> {
    if let Some(name) = struct_name(term) {
        return struct_value(term, &name, path, refs);
    }
    let iter = MapIterator::new(term).ok_or_else(|| Unsupported::at(path, "bad map"))?;
    let mut pairs = Vec::with_capacity(term.map_size().unwrap_or(0));
    for (k, v) in iter {
        path.push(Segment::PendingKey);
        let pair = to_value(k, path, refs).and_then(|key| Ok((key, to_value(v, path, refs)?)));
        path.pop();
        pairs.push(pair.map_err(|err| err.with_key(k))?);
    }
    Ok(Value::Map(pairs))
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

fn struct_value(
    term: Term,
    name: &str,
    path: &mut Path,
    refs: &mut Refs,
) -> Result<Value, Unsupported> {
    match name {
        "Elixir.SnakeBridge.Ref" => {
            let resource: ResourceArc<RefResource> = field(term, atoms::resource(), path)?
                .decode()
                .map_err(|_| Unsupported::at(path, "%SnakeBridge.Ref{} without its resource"))?;
            refs.add(&resource, path).map(Value::Ref)
        }
        "Elixir.SnakeBridge.Bytes" => {
            let data = field(term, atoms::data(), path)?;
            Binary::from_term(data)
                .map(|bin| Value::Bytes(buffers::bytes_of(data, &bin)))
                .map_err(|_| Unsupported::at(path, "%SnakeBridge.Bytes{} data must be a binary"))
        }
        "Elixir.SnakeBridge.Tensor" => {
            let data = field(term, atoms::data(), path)?;
            tensor_value(term, data, path)
        }
        "Elixir.Nx.Tensor" => {
            // Only the binary backend's data is in the BEAM; other backends (EXLA, ...)
            // must transfer first.
            let backend = field(term, atoms::data(), path)?;
            match struct_name(backend).as_deref() {
                Some("Elixir.Nx.BinaryBackend") => {
                    let data = field(backend, atoms::state(), path)?;
                    tensor_value(term, data, path)
                }
                other => Err(Unsupported::at(
                    path,
                    format!(
                        "an Nx tensor on the {} backend cannot be sent to Python: call Nx.backend_transfer(tensor, Nx.BinaryBackend) first",
                        other.unwrap_or("unknown").trim_start_matches("Elixir.")
                    ),
                )),
            }
        }
        "Elixir.MapSet" => {
            let map = field(term, atoms::map(), path)?;
            let iter =
                MapIterator::new(map).ok_or_else(|| Unsupported::at(path, "malformed MapSet"))?;
            let mut items = Vec::new();
            for (k, _) in iter {
                path.push(Segment::PendingKey);
                let item = to_value(k, path, refs);
                path.pop();
                items.push(item.map_err(|err| err.with_key(k))?);
            }
            Ok(Value::Set(items))
        }
        "Elixir.Date" => {
            iso_calendar(term, path)?;
            Ok(Value::Date(date_of(term, path)?))
        }
        "Elixir.Time" => {
            iso_calendar(term, path)?;
            Ok(Value::Time(time_of(term, path)?))
        }
        "Elixir.NaiveDateTime" => {
            iso_calendar(term, path)?;
            Ok(Value::NaiveDateTime(
                date_of(term, path)?,
                time_of(term, path)?,
            ))
        }
        "Elixir.DateTime" => {
            iso_calendar(term, path)?;
            let utc: i32 = int_field(term, atoms::utc_offset(), path)?;
            let std: i32 = int_field(term, atoms::std_offset(), path)?;
            Ok(Value::DateTime(
                date_of(term, path)?,
                time_of(term, path)?,
                utc + std,
            ))
        }
        other => Err(Unsupported::at(
            path,
            format!(
                "struct %{}{{}} cannot be sent to Python (convert it to a map first)",
                other.trim_start_matches("Elixir.")
            ),
        )),
    }
}

/// A tensor from the `type` (`{:f, 32}`) and `shape` (`{2, 3}`) fields of `term` and its
/// data binary; a large binary is not copied.
fn tensor_value(term: Term, data: Term, path: &Path) -> Result<Value, Unsupported> {
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
    Tensor::new(dtype, shape, buffers::bytes_of(data, &bin))
        .map(Value::Tensor)
        .map_err(|message| Unsupported::at(path, message))
}

/// Converts keyword arguments (a keyword list or a map with atom or string keys).
pub fn kwargs_to_values(
    term: Term,
    path: &mut Path,
    refs: &mut Refs,
) -> Result<Vec<(Value, Value)>, Unsupported> {
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
                    _ => return Err(bad(path)),
                }
                rest = tail;
            }
            pairs
        }
        TermType::Map if struct_name(term).is_none() => {
            MapIterator::new(term).ok_or_else(|| bad(path))?.collect()
        }
        _ => return Err(bad(path)),
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let name = match k.get_type() {
            TermType::Atom => k.atom_to_string().map_err(|_| bad(path))?,
            TermType::Binary => k.decode::<String>().map_err(|_| bad(path))?,
            _ => return Err(bad(path)),
        };
        path.push(Segment::Key(render_key(k)));
        let value = to_value(v, path, refs);
        path.pop();
        out.push((Value::Str(name), value?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// value -> term

/// Where decoded object references come from: the worker that answered and the name of
/// its pool (kept in `%SnakeBridge.Ref{}` so that later calls find the pool).
pub struct Origin<'w> {
    /// `None` for values that cannot hold references (descriptors, configs).
    pub worker: Option<&'w Arc<Worker>>,
    pub pool: Atom,
}

impl Origin<'_> {
    /// The origin of plain data; a reference in it decodes to `nil`.
    pub fn none() -> Origin<'static> {
        Origin {
            worker: None,
            pool: atoms::nil(),
        }
    }
}

/// Builds the term for a value.
pub fn from_value<'a>(env: Env<'a>, value: &Value, origin: &Origin) -> Term<'a> {
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
fn map_from<'a>(env: Env<'a>, keys: &[Term<'a>], values: &[Term<'a>]) -> Term<'a> {
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
pub fn error_tuple<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    (atoms::error(), error_map(env, err)).encode(env)
}

fn error_map<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
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
