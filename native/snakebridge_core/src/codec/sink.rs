//! One walk, many results: a value is read as a sequence of events ("an integer", "a list
//! of 3 items", ...) that a [`Sink`] turns into something: a [`Value`] ([`Builder`]), or
//! bytes ([`msgpack::Writer`](super::msgpack::Writer), [`json::Writer`](super::json::Writer)).
//!
//! Two walks drive sinks: [`write_value`] walks a [`Value`] (how [`msgpack::encode`] and
//! [`json::encode`] work), and the NIF walks an Erlang term. So a term can be written
//! straight to msgpack or JSON without building a [`Value`] first, and both routes share
//! every byte-level rule, which lives in the writers only.
//!
//! [`msgpack::encode`]: super::msgpack::encode
//! [`json::encode`]: super::json::encode

use bytes::Bytes;
use num_bigint::BigInt;

use super::CodecError;
use crate::callback::CallbackId;
use crate::value::{DType, Date, ObjectRef, Tensor, Time, Value, MAX_DEPTH};

/// Which kind of sequence a [`Sink::seq`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// Elixir list / Python `list`.
    List,
    /// Elixir tuple / Python `tuple`.
    Tuple,
    /// Elixir `MapSet` / Python `set` (and `frozenset`).
    Set,
}

impl Seq {
    /// The kind's name, as [`Value::kind`] gives it.
    pub fn kind(self) -> &'static str {
        match self {
            Seq::List => "list",
            Seq::Tuple => "tuple",
            Seq::Set => "set",
        }
    }
}

/// What the events of one walk become. Each method takes one value (a container takes
/// its elements through a callback, called exactly `len` times) and returns what the
/// sink makes of it: a [`Value`] for [`Builder`], nothing for the writers, which append
/// to their output instead.
///
/// A sink refuses what its format cannot hold with a [`CodecError`] (JSON and NaN, ...);
/// the walk's own errors (`E`) pass through a container's callbacks untouched.
pub trait Sink {
    /// What a value becomes.
    type Out;

    /// Whether map keys reach Python as they are (msgpack, values), where keys that Python
    /// holds equal (`:a` and `"a"`, `1` and `1.0`) would be one key: a walk refuses such
    /// maps (see [`crate::keys`]). A JSON writer turns every key into text and refuses
    /// duplicate texts itself.
    const PYTHON_KEYS: bool = true;

    /// `nil` / `None`.
    fn nil(&mut self) -> Result<Self::Out, CodecError>;
    /// A boolean.
    fn bool(&mut self, b: bool) -> Result<Self::Out, CodecError>;
    /// An integer that fits in 64 bits.
    fn int(&mut self, n: i64) -> Result<Self::Out, CodecError>;
    /// An integer beyond 64 bits.
    fn big_int(&mut self, n: &BigInt) -> Result<Self::Out, CodecError>;
    /// A float, NaN and the infinities included.
    fn float(&mut self, f: f64) -> Result<Self::Out, CodecError>;
    /// Text.
    fn str(&mut self, s: &str) -> Result<Self::Out, CodecError>;
    /// Raw bytes: `data`, and `keep` to get a `Bytes` of them for a sink that keeps them
    /// beyond the call (a value, an out-of-band buffer) without copying a large one.
    fn bytes(&mut self, data: &[u8], keep: impl FnOnce() -> Bytes)
        -> Result<Self::Out, CodecError>;
    /// A calendar date.
    fn date(&mut self, d: Date) -> Result<Self::Out, CodecError>;
    /// A time of day.
    fn time(&mut self, t: Time) -> Result<Self::Out, CodecError>;
    /// A date and time without an offset.
    fn naive_datetime(&mut self, d: Date, t: Time) -> Result<Self::Out, CodecError>;
    /// A date and time (wall clock) with its `offset` from UTC in seconds.
    fn datetime(&mut self, d: Date, t: Time, offset: i32) -> Result<Self::Out, CodecError>;
    /// A reference to an object held by a worker.
    fn object_ref(&mut self, r: &ObjectRef) -> Result<Self::Out, CodecError>;
    /// An Elixir function, by the callback id the binding gave it.
    fn callback(&mut self, id: CallbackId) -> Result<Self::Out, CodecError>;
    /// A tensor whose `data` holds exactly the elements of `shape` (checked by the walk,
    /// see [`Tensor::check`]); `keep` as for [`Sink::bytes`].
    fn tensor(
        &mut self,
        dtype: DType,
        shape: &[u64],
        data: &[u8],
        keep: impl FnOnce() -> Bytes,
    ) -> Result<Self::Out, CodecError>;
    /// A list, tuple or set of `len` items, each produced by a call of `item`.
    fn seq<E: From<CodecError>>(
        &mut self,
        kind: Seq,
        len: usize,
        item: impl FnMut(&mut Self) -> Result<Self::Out, E>,
    ) -> Result<Self::Out, E>;
    /// A map of `len` entries, each produced by a call of `entry`, which walks the key and
    /// then the value.
    fn map<E: From<CodecError>>(
        &mut self,
        len: usize,
        entry: impl FnMut(&mut Self) -> Result<(Self::Out, Self::Out), E>,
    ) -> Result<Self::Out, E>;
}

/// The error of a value nested deeper than [`MAX_DEPTH`], walking or decoding.
pub fn too_deep() -> CodecError {
    CodecError::new(format!("value is nested more than {MAX_DEPTH} levels deep"))
}

/// Walks `value` into `sink`.
pub fn write_value<S: Sink>(value: &Value, sink: &mut S) -> Result<S::Out, CodecError> {
    walk(value, sink, 0)
}

fn walk<S: Sink>(value: &Value, sink: &mut S, depth: usize) -> Result<S::Out, CodecError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match value {
        Value::Nil => sink.nil(),
        Value::Bool(b) => sink.bool(*b),
        Value::Int(n) => sink.int(*n),
        Value::BigInt(n) => sink.big_int(n),
        Value::Float(f) => sink.float(*f),
        Value::Str(s) => sink.str(s),
        Value::Bytes(b) => sink.bytes(b, || b.clone()),
        Value::List(items) => walk_seq(sink, Seq::List, items, depth),
        Value::Tuple(items) => walk_seq(sink, Seq::Tuple, items, depth),
        Value::Set(items) => walk_seq(sink, Seq::Set, items, depth),
        Value::Map(pairs) => {
            let mut pairs_left = pairs.iter();
            sink.map(pairs.len(), |sink| {
                let (k, v) = pairs_left.next().ok_or_else(overrun)?;
                Ok((walk(k, sink, depth + 1)?, walk(v, sink, depth + 1)?))
            })
        }
        Value::Date(d) => sink.date(*d),
        Value::Time(t) => sink.time(*t),
        Value::NaiveDateTime(d, t) => sink.naive_datetime(*d, *t),
        Value::DateTime(d, t, offset) => sink.datetime(*d, *t, *offset),
        Value::Ref(r) => sink.object_ref(r),
        Value::Callback(id) => sink.callback(*id),
        Value::Tensor(t) => sink.tensor(t.dtype, &t.shape, &t.data, || t.data.clone()),
    }
}

fn walk_seq<S: Sink>(
    sink: &mut S,
    kind: Seq,
    items: &[Value],
    depth: usize,
) -> Result<S::Out, CodecError> {
    let mut items_left = items.iter();
    sink.seq(kind, items.len(), |sink| {
        walk(items_left.next().ok_or_else(overrun)?, sink, depth + 1)
    })
}

/// The error of a walk whose sink asks for more items than the container holds (a bug in
/// the sink: reported, not trusted).
pub fn overrun() -> CodecError {
    CodecError::new("a sink asked for more items than the container holds")
}

/// The sink that builds the [`Value`] of what it is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct Builder;

impl Sink for Builder {
    type Out = Value;

    fn nil(&mut self) -> Result<Value, CodecError> {
        Ok(Value::Nil)
    }
    fn bool(&mut self, b: bool) -> Result<Value, CodecError> {
        Ok(Value::Bool(b))
    }
    fn int(&mut self, n: i64) -> Result<Value, CodecError> {
        Ok(Value::Int(n))
    }
    fn big_int(&mut self, n: &BigInt) -> Result<Value, CodecError> {
        Ok(Value::integer(n.clone()))
    }
    fn float(&mut self, f: f64) -> Result<Value, CodecError> {
        Ok(Value::Float(f))
    }
    fn str(&mut self, s: &str) -> Result<Value, CodecError> {
        Ok(Value::Str(s.to_owned()))
    }
    fn bytes(&mut self, _: &[u8], keep: impl FnOnce() -> Bytes) -> Result<Value, CodecError> {
        Ok(Value::Bytes(keep()))
    }
    fn date(&mut self, d: Date) -> Result<Value, CodecError> {
        Ok(Value::Date(d))
    }
    fn time(&mut self, t: Time) -> Result<Value, CodecError> {
        Ok(Value::Time(t))
    }
    fn naive_datetime(&mut self, d: Date, t: Time) -> Result<Value, CodecError> {
        Ok(Value::NaiveDateTime(d, t))
    }
    fn datetime(&mut self, d: Date, t: Time, offset: i32) -> Result<Value, CodecError> {
        Ok(Value::DateTime(d, t, offset))
    }
    fn object_ref(&mut self, r: &ObjectRef) -> Result<Value, CodecError> {
        Ok(Value::Ref(r.clone()))
    }
    fn callback(&mut self, id: CallbackId) -> Result<Value, CodecError> {
        Ok(Value::Callback(id))
    }
    fn tensor(
        &mut self,
        dtype: DType,
        shape: &[u64],
        _: &[u8],
        keep: impl FnOnce() -> Bytes,
    ) -> Result<Value, CodecError> {
        Tensor::new(dtype, shape.to_vec(), keep())
            .map(Value::Tensor)
            .map_err(CodecError::new)
    }
    fn seq<E: From<CodecError>>(
        &mut self,
        kind: Seq,
        len: usize,
        mut item: impl FnMut(&mut Self) -> Result<Value, E>,
    ) -> Result<Value, E> {
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(item(self)?);
        }
        Ok(match kind {
            Seq::List => Value::List(items),
            Seq::Tuple => Value::Tuple(items),
            Seq::Set => Value::Set(items),
        })
    }
    fn map<E: From<CodecError>>(
        &mut self,
        len: usize,
        mut entry: impl FnMut(&mut Self) -> Result<(Value, Value), E>,
    ) -> Result<Value, E> {
        let mut pairs = Vec::with_capacity(len);
        for _ in 0..len {
            pairs.push(entry(self)?);
        }
        Ok(Value::Map(pairs))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{json, msgpack};
    use super::*;
    use proptest::prelude::*;

    /// Values of every kind a codec can write, nested (no NaN: it is not equal to itself).
    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let date = (any::<i32>(), 1u8..=12, 1u8..=28).prop_map(|(year, month, day)| Date {
            year,
            month,
            day,
        });
        let time = (
            0u8..24,
            0u8..60,
            0u8..60,
            prop_oneof![Just(0u32), 0u32..1_000_000],
        )
            .prop_map(|(hour, minute, second, microsecond)| Time {
                hour,
                minute,
                second,
                microsecond,
            });
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<i128>().prop_map(|n| Value::integer(BigInt::from(n))),
            any::<f64>()
                .prop_filter("nan is checked apart", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".*".prop_map(Value::Str),
            "[\"\\\\\u{0}-\u{1f}a-z\u{7f}\u{e9}\u{2603}]*".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..32)
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
            date.clone().prop_map(Value::Date),
            time.clone().prop_map(Value::Time),
            (date.clone(), time.clone()).prop_map(|(d, t)| Value::NaiveDateTime(d, t)),
            (date, time, -86_399i32..86_400).prop_map(|(d, t, o)| Value::DateTime(d, t, o)),
            (any::<u64>(), ".{0,8}", ".{0,8}").prop_map(|(id, type_name, repr)| {
                Value::Ref(ObjectRef {
                    id,
                    type_name,
                    repr,
                })
            }),
            any::<[u8; 16]>().prop_map(|id| Value::Callback(CallbackId::from_bytes(id))),
            (
                0..DType::ALL.len(),
                proptest::collection::vec(0u64..4, 0..3)
            )
                .prop_map(|(d, shape)| {
                    let dtype = DType::ALL[d];
                    let n = shape.iter().product::<u64>() as usize * dtype.size();
                    let data = Bytes::from((0..n).map(|i| i as u8).collect::<Vec<u8>>());
                    Value::Tensor(Tensor::new(dtype, shape, data).expect("sized to fit"))
                }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Tuple),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Set),
                proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(Value::Map),
            ]
        })
    }

    fn msgpack_direct(v: &Value) -> Result<Vec<u8>, CodecError> {
        let mut writer = msgpack::Writer::in_band();
        write_value(v, &mut writer)?;
        Ok(writer.into_parts().0)
    }

    fn json_direct(v: &Value) -> Result<Vec<u8>, CodecError> {
        let mut writer = json::Writer::new();
        write_value(v, &mut writer)?;
        Ok(writer.into_bytes())
    }

    proptest! {
        #[test]
        fn building_a_walked_value_gives_it_back(v in arb_value()) {
            prop_assert_eq!(write_value(&v, &mut Builder).unwrap(), v);
        }

        /// What a binding's walk writes straight into a writer is what building the value
        /// from the same events and encoding it writes, bytes and refusals alike.
        #[test]
        fn writing_directly_equals_encoding_the_built_value(v in arb_value()) {
            let built = write_value(&v, &mut Builder).unwrap();
            prop_assert_eq!(msgpack_direct(&v), msgpack::encode(&built));
            prop_assert_eq!(json_direct(&v), json::encode(&built));
        }
    }

    /// A source of values other than [`Value`], walked the way the NIF walks terms: its
    /// own refusals (here a pid) pass through the containers of any sink untouched.
    #[derive(Debug)]
    enum Term {
        Int(i64),
        Atom(&'static str),
        Pid,
        List(Vec<Term>),
        Map(Vec<(Term, Term)>),
    }

    #[derive(Debug, PartialEq)]
    enum Refused {
        Unsupported(String),
        Codec(CodecError),
    }

    impl From<CodecError> for Refused {
        fn from(err: CodecError) -> Refused {
            Refused::Codec(err)
        }
    }

    fn walk_term<S: Sink>(term: &Term, sink: &mut S) -> Result<S::Out, Refused> {
        Ok(match term {
            Term::Int(n) => sink.int(*n)?,
            Term::Atom("nan") => sink.float(f64::NAN)?,
            Term::Atom(name) => sink.str(name)?,
            Term::Pid => return Err(Refused::Unsupported("a pid".into())),
            Term::List(items) => {
                let mut items_left = items.iter();
                sink.seq(Seq::List, items.len(), |sink| {
                    walk_term(items_left.next().ok_or_else(overrun)?, sink)
                })?
            }
            Term::Map(pairs) => {
                let mut pairs_left = pairs.iter();
                sink.map(pairs.len(), |sink| {
                    let (k, v) = pairs_left.next().ok_or_else(overrun)?;
                    Ok::<_, Refused>((walk_term(k, sink)?, walk_term(v, sink)?))
                })?
            }
        })
    }

    #[test]
    fn another_walk_drives_every_sink_alike() {
        let term = Term::List(vec![
            Term::Int(1),
            Term::Map(vec![
                (Term::Atom("a"), Term::List(vec![])),
                (Term::Int(2), Term::Atom("b")),
            ]),
        ]);
        let value = walk_term(&term, &mut Builder).unwrap();
        let mut writer = msgpack::Writer::in_band();
        walk_term(&term, &mut writer).unwrap();
        assert_eq!(writer.into_parts().0, msgpack::encode(&value).unwrap());
        let mut writer = json::Writer::new();
        walk_term(&term, &mut writer).unwrap();
        assert_eq!(writer.into_bytes(), br#"[1,{"a":[],"2":"b"}]"#);
    }

    #[test]
    fn a_walks_own_refusal_and_a_codecs_come_out_as_they_went_in() {
        let term = Term::List(vec![Term::Map(vec![(Term::Int(1), Term::Pid)])]);
        let mut writer = msgpack::Writer::in_band();
        assert_eq!(
            walk_term(&term, &mut writer).unwrap_err(),
            Refused::Unsupported("a pid".into())
        );
        let term = Term::List(vec![Term::Atom("nan"), Term::Pid]);
        let mut writer = json::Writer::new();
        assert_eq!(
            walk_term(&term, &mut writer).unwrap_err(),
            Refused::Codec(CodecError::new(
                "NaN cannot be written as JSON (use the msgpack codec)"
            ))
        );
    }

    #[test]
    fn walking_past_the_depth_limit_is_refused() {
        let mut v = Value::Nil;
        for _ in 0..MAX_DEPTH {
            v = Value::List(vec![v]);
        }
        assert!(write_value(&v, &mut Builder).is_ok());
        let v = Value::Map(vec![(Value::Nil, v)]);
        assert!(write_value(&v, &mut Builder)
            .unwrap_err()
            .to_string()
            .contains("nested more than 256"));
    }
}
