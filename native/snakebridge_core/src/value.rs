//! The value model shared by both sides of the bridge.
//!
//! A [`Value`] is what crosses between the BEAM and Python, and the codecs turn it into
//! bytes and back. The worker builds one from a Python object; the NIF decodes results
//! into one, but writes arguments straight from Erlang terms to bytes through the codecs'
//! [`crate::codec::sink::Sink`], which follows the same rules without building a `Value`.
//! The variants are the rows of the value table of the `SnakeBridge` module's
//! documentation (`lib/snakebridge.ex`).

use bytes::Bytes;
use num_bigint::BigInt;

use crate::callback::CallbackId;

/// Deepest nesting a value may have. Deeper values are refused with an error naming the
/// path rather than risking the stack of the thread that converts them.
pub const MAX_DEPTH: usize = 256;

/// A value that can cross the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Elixir `nil` / Python `None`.
    Nil,
    /// Elixir `true`/`false` / Python `True`/`False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An integer of any size that does not fit in 64 bits.
    BigInt(BigInt),
    /// A float, including NaN and the infinities (atoms on the BEAM side).
    Float(f64),
    /// Text: Elixir UTF-8 binary or atom / Python `str`.
    Str(String),
    /// Raw bytes: `%SnakeBridge.Bytes{}` or a non-UTF-8 binary / Python `bytes`. Large
    /// ones travel out of band, like tensor data.
    Bytes(Bytes),
    /// Elixir list / Python `list`.
    List(Vec<Value>),
    /// Elixir tuple / Python `tuple`.
    Tuple(Vec<Value>),
    /// Elixir map / Python `dict`; keys keep their types, order is preserved.
    Map(Vec<(Value, Value)>),
    /// Elixir `MapSet` / Python `set` (and `frozenset`).
    Set(Vec<Value>),
    /// Elixir `Date` / Python `datetime.date`.
    Date(Date),
    /// Elixir `Time` / Python `datetime.time`.
    Time(Time),
    /// Elixir `NaiveDateTime` / Python naive `datetime.datetime`.
    NaiveDateTime(Date, Time),
    /// Elixir `DateTime` / Python aware `datetime.datetime`: wall-clock fields plus the
    /// offset from UTC in seconds.
    DateTime(Date, Time, i32),
    /// `%SnakeBridge.Ref{}` / a live Python object held in its worker's registry.
    Ref(ObjectRef),
    /// An Elixir function (towards Python only): a callable that runs it in the BEAM, by
    /// the id it was sent with (see [`crate::callback`]).
    Callback(CallbackId),
    /// `%SnakeBridge.Tensor{}` (or `Nx.Tensor`) / `numpy.ndarray`: a dense array whose data
    /// travels out of band, beside the encoded value.
    Tensor(Tensor),
}

/// The element type of a [`Tensor`]: the types numpy and Nx share, plus `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// Booleans, one byte each.
    Bool,
    /// Unsigned 8-bit integers.
    U8,
    /// Unsigned 16-bit integers.
    U16,
    /// Unsigned 32-bit integers.
    U32,
    /// Unsigned 64-bit integers.
    U64,
    /// Signed 8-bit integers.
    S8,
    /// Signed 16-bit integers.
    S16,
    /// Signed 32-bit integers.
    S32,
    /// Signed 64-bit integers.
    S64,
    /// 16-bit (half-precision) floats.
    F16,
    /// bfloat16 floats: 16 bits, the exponent range of a 32-bit float.
    BF16,
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
    /// Complex numbers of two 32-bit floats.
    C64,
    /// Complex numbers of two 64-bit floats.
    C128,
}

impl DType {
    /// Every dtype, for tests and listings.
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::S8,
        DType::S16,
        DType::S32,
        DType::S64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::C64,
        DType::C128,
    ];

    /// numpy's name of the dtype (`"float32"`), also its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::S8 => "int8",
            DType::S16 => "int16",
            DType::S32 => "int32",
            DType::S64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    /// The dtype numpy names `name`.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Nx's type of the dtype: kind and bits (`{:f, 32}`); `bool` is `{:bool, 8}`.
    pub fn nx(self) -> (&'static str, u32) {
        let kind = match self {
            DType::Bool => "bool",
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => "u",
            DType::S8 | DType::S16 | DType::S32 | DType::S64 => "s",
            DType::F16 | DType::F32 | DType::F64 => "f",
            DType::BF16 => "bf",
            DType::C64 | DType::C128 => "c",
        };
        (kind, self.size() as u32 * 8)
    }

    /// The dtype of Nx's type `{kind, bits}`.
    pub fn from_nx(kind: &str, bits: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.nx() == (kind, bits))
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::S8 => 1,
            DType::U16 | DType::S16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::S32 | DType::F32 => 4,
            DType::U64 | DType::S64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }
}

/// A dense, C-ordered (row-major) array in the machine's byte order, as Nx lays out its
/// binaries and numpy its contiguous arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The type of the elements.
    pub dtype: DType,
    /// The size of each dimension; empty for a single element.
    pub shape: Vec<u64>,
    /// `shape`'s product times the dtype's size bytes.
    pub data: Bytes,
}

impl Tensor {
    /// A tensor, or an error when `data` does not hold exactly the elements of `shape`.
    pub fn new(dtype: DType, shape: Vec<u64>, data: Bytes) -> Result<Tensor, String> {
        Tensor::check(dtype, &shape, data.len())?;
        Ok(Tensor { dtype, shape, data })
    }

    /// Whether `len` bytes hold exactly the elements of a `dtype` tensor of `shape`; the
    /// error says what is wrong.
    pub fn check(dtype: DType, shape: &[u64], len: usize) -> Result<(), String> {
        let expected = shape
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(*d))
            .and_then(|n| n.checked_mul(dtype.size() as u64));
        match expected {
            Some(n) if n == len as u64 => Ok(()),
            Some(n) => Err(format!(
                "a {} tensor of shape {:?} needs {n} bytes of data, got {len}",
                dtype.name(),
                shape,
            )),
            None => Err(format!("shape {shape:?} is too large")),
        }
    }
}

/// A reference to a Python object that stays in its worker. From Python the type name and
/// `repr()` come along for display; towards Python only the id matters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    /// The id under which the worker's registry holds the object.
    pub id: u64,
    /// `module.qualname` of the object's type.
    pub type_name: String,
    /// The object's `repr()`, shortened.
    pub repr: String,
}

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// The year.
    pub year: i32,
    /// The month, from 1 (January) to 12.
    pub month: u8,
    /// The day of the month, from 1.
    pub day: u8,
}

/// A time of day with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// The hour, from 0 to 23.
    pub hour: u8,
    /// The minute, from 0 to 59.
    pub minute: u8,
    /// The second, from 0 to 59.
    pub second: u8,
    /// Microseconds past the second, from 0 to 999 999.
    pub microsecond: u32,
}

impl Value {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::BigInt(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::NaiveDateTime(..) => "naive datetime",
            Value::DateTime(..) => "datetime",
            Value::Ref(_) => "object reference",
            Value::Callback(_) => "callback",
            Value::Tensor(_) => "tensor",
        }
    }

    /// Builds an integer value, choosing the compact form when it fits in 64 bits.
    pub fn integer(n: BigInt) -> Value {
        match i64::try_from(&n) {
            Ok(small) => Value::Int(small),
            Err(_) => Value::BigInt(n),
        }
    }
}

/// A location inside a value, rendered in Elixir access syntax (`args[1][:opts]`), so that
/// an error can say exactly which part of a caller's term was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<Segment>);

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A named root such as `args` or `kwargs`.
    Root(String),
    /// A list or tuple position.
    Index(usize),
    /// A map key, already rendered (`:opts`, `"name"`, `1`).
    Key(String),
    /// A map key not rendered yet: rendering every key of a large map costs more than
    /// the conversion, so a binding renders one only when an error's path needs it (see
    /// [`fill_pending_key`]).
    PendingKey,
}

/// How a [`Segment::PendingKey`] appears in a rendered path until it is filled.
const PENDING_KEY: &str = "[\u{0}]";

/// Puts `key` into a rendered path in place of its innermost pending key (deeper ones were
/// filled first, as the error travelled out).
pub fn fill_pending_key(path: &mut String, key: &str) {
    if let Some(at) = path.rfind(PENDING_KEY) {
        path.replace_range(at..at + PENDING_KEY.len(), &format!("[{key}]"));
    }
}

impl Path {
    /// A path starting at a named root.
    pub fn root(name: &str) -> Path {
        Path(vec![Segment::Root(name.to_owned())])
    }

    /// Pushes a segment; pair with [`Path::pop`]. (Inline: the walks of large terms call
    /// this for every element.)
    #[inline]
    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    /// Removes the last segment.
    #[inline]
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// How many segments below the root the path is.
    #[inline]
    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("value");
        }
        for segment in &self.0 {
            match segment {
                Segment::Root(name) => f.write_str(name)?,
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(k) => write!(f, "[{k}]")?,
                Segment::PendingKey => f.write_str(PENDING_KEY)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_in_elixir_access_syntax() {
        let mut path = Path::root("args");
        path.push(Segment::Index(1));
        path.push(Segment::Key(":opts".into()));
        assert_eq!(path.to_string(), "args[1][:opts]");
        path.pop();
        assert_eq!(path.to_string(), "args[1]");
        assert_eq!(Path::default().to_string(), "value");
    }

    #[test]
    fn pending_keys_are_filled_innermost_first() {
        let mut path = Path::root("args");
        path.push(Segment::PendingKey);
        path.push(Segment::Index(0));
        path.push(Segment::PendingKey);
        let mut text = path.to_string();
        fill_pending_key(&mut text, ":inner");
        fill_pending_key(&mut text, "\"outer\"");
        assert_eq!(text, "args[\"outer\"][0][:inner]");
    }

    #[test]
    fn tensors_check_their_data_against_their_shape() {
        let data = Bytes::from(vec![0u8; 24]);
        assert!(Tensor::new(DType::F32, vec![2, 3], data.clone()).is_ok());
        assert!(Tensor::new(DType::F64, vec![2, 3], data.clone())
            .unwrap_err()
            .contains("needs 48 bytes"));
        assert!(Tensor::new(DType::U8, vec![u64::MAX, 2], data).is_err());
        for dtype in DType::ALL {
            assert_eq!(DType::from_name(dtype.name()), Some(dtype));
            let (kind, bits) = dtype.nx();
            assert_eq!(DType::from_nx(kind, bits), Some(dtype));
        }
    }

    #[test]
    fn integers_pick_the_compact_form_when_they_fit() {
        assert_eq!(Value::integer(BigInt::from(5)), Value::Int(5));
        let big: BigInt = BigInt::from(i64::MAX) + 1;
        assert_eq!(Value::integer(big.clone()), Value::BigInt(big));
    }
}
