//! What the bad-input tests share: values of every kind (including the awkward ones), and
//! comparisons that treat NaN as equal to itself.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use snakebridge_core::bytes::Bytes;
use snakebridge_core::callback::CallbackId;
use snakebridge_core::codec::msgpack::OUT_OF_BAND_MIN;
use snakebridge_core::num_bigint::{BigInt, Sign};
use snakebridge_core::value::{DType, Date, ObjectRef, Tensor, Time, Value};

/// `cases` cases, without failure files (proptest looks for them next to `src/lib.rs`,
/// which an integration test does not have): a failure prints its seed instead.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Integers of any size: small, 64-bit edges, and big ones up to a few hundred bytes.
pub fn arb_integer() -> impl Strategy<Value = BigInt> {
    let edges = [
        BigInt::from(i64::MIN),
        BigInt::from(i64::MAX),
        BigInt::from(i64::MIN) - 1,
        BigInt::from(i64::MAX) + 1,
        BigInt::from(u64::MAX),
        BigInt::from(u64::MAX) + 1,
        BigInt::from(2).pow(200),
        -BigInt::from(2).pow(200),
        BigInt::from(2).pow(1100),
        -BigInt::from(2).pow(1100),
    ];
    prop_oneof![
        any::<i64>().prop_map(BigInt::from),
        proptest::sample::select(edges.to_vec()),
        (any::<bool>(), vec(any::<u8>(), 0..300)).prop_map(|(negative, magnitude)| {
            let sign = if negative { Sign::Minus } else { Sign::Plus };
            BigInt::from_bytes_be(sign, &magnitude)
        }),
    ]
}

/// Floats, with NaN (quiet, signalling, with payloads), the infinities, -0.0, subnormals.
pub fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        proptest::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE / 4.0,
            f64::MAX,
            f64::MIN,
            1e21,
            0.1,
        ]),
    ]
}

/// Text, including what tends to break escaping and display.
pub fn arb_string() -> impl Strategy<Value = String> {
    let odd = [
        "",
        "\u{0}",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "\"\\/\u{8}\u{c}\n\r\t",
        "\u{feff}bom",
        "\u{10ffff}",
        "e\u{301}\u{301}\u{301}",
        "\u{202e}rtl\u{202c}",
        "\u{2028}\u{2029}",
        "🐍日本語",
        "nan",
        "null",
        "Elixir.Foo",
        "with space",
        "ünïcode",
    ];
    prop_oneof![
        4 => ".{0,24}",
        2 => proptest::sample::select(odd.to_vec()).prop_map(str::to_owned),
        1 => (proptest::sample::select(odd.to_vec()), 1usize..2000)
            .prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Bytes: random (mostly not UTF-8), classic invalid UTF-8, and large enough to travel
/// out of band.
pub fn arb_bytes() -> impl Strategy<Value = Bytes> {
    let invalid: Vec<&'static [u8]> = vec![
        b"\xff",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf0\x9f\x90",
        b"abc\xfe",
        b"\xf4\x90\x80\x80",
    ];
    prop_oneof![
        4 => vec(any::<u8>(), 0..48).prop_map(Bytes::from),
        2 => proptest::sample::select(invalid).prop_map(Bytes::from_static),
        1 => (any::<u8>(), 0usize..64).prop_map(|(b, extra)| {
            Bytes::from(vec![b; OUT_OF_BAND_MIN + extra])
        }),
    ]
}

/// Dates and times with any field values, valid or not (the codecs carry them as they are).
pub fn arb_date() -> impl Strategy<Value = Date> {
    prop_oneof![
        (any::<i32>(), any::<u8>(), any::<u8>()),
        (-9999i32..10_000, 1u8..=12, 1u8..=31),
    ]
    .prop_map(|(year, month, day)| Date { year, month, day })
}

pub fn arb_time() -> impl Strategy<Value = Time> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>()),
        (0u8..24, 0u8..60, 0u8..60, 0u32..1_000_000),
    ]
    .prop_map(|(hour, minute, second, microsecond)| Time {
        hour,
        minute,
        second,
        microsecond,
    })
}

/// Tensors of every dtype: data that fits the shape, data that does not, and shapes whose
/// size overflows. Built field by field, as a binding could, so nothing checks them here.
pub fn arb_tensor() -> impl Strategy<Value = Tensor> {
    let dtype = proptest::sample::select(DType::ALL.to_vec());
    let shape = prop_oneof![
        8 => vec(0u64..5, 0..4),
        1 => vec(
            proptest::sample::select(vec![0, 1, i64::MAX as u64, 1 << 63, u64::MAX]),
            1..3,
        ),
    ];
    // 0: the size the shape needs; else that size plus or minus a few bytes.
    let skew = prop_oneof![6 => Just(0i64), 1 => -3i64..=3];
    (dtype, shape, skew).prop_map(|(dtype, shape, skew)| {
        let needed = shape
            .iter()
            .try_fold(dtype.size() as u64, |n, d| n.checked_mul(*d))
            .filter(|n| *n <= 4096)
            .unwrap_or(0);
        let len = (needed as i64 + skew).max(0) as usize;
        let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
        Tensor { dtype, shape, data }
    })
}

/// A leaf value of any kind.
pub fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        arb_integer().prop_map(Value::integer),
        // Not canonical when it fits 64 bits: comes back as `Value::Int`.
        arb_integer().prop_map(Value::BigInt),
        arb_float().prop_map(Value::Float),
        arb_string().prop_map(Value::Str),
        arb_bytes().prop_map(Value::Bytes),
        arb_date().prop_map(Value::Date),
        arb_time().prop_map(Value::Time),
        (arb_date(), arb_time()).prop_map(|(d, t)| Value::NaiveDateTime(d, t)),
        (arb_date(), arb_time(), any::<i32>()).prop_map(|(d, t, o)| Value::DateTime(d, t, o)),
        (any::<u64>(), arb_string(), arb_string()).prop_map(|(id, type_name, repr)| {
            Value::Ref(ObjectRef {
                id,
                type_name,
                repr,
            })
        }),
        any::<[u8; 16]>().prop_map(|id| Value::Callback(CallbackId::from_bytes(id))),
        arb_tensor().prop_map(Value::Tensor),
    ]
}

/// Values of every kind, nested in lists, tuples, sets and maps (keys of any kind).
pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::List),
            vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            vec(inner.clone(), 0..6).prop_map(Value::Set),
            vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

/// Equality where a float equals a float of the same bits (so NaN equals itself).
pub fn same(a: &Value, b: &Value) -> bool {
    fn all(a: &[Value], b: &[Value]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
    }
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        (Value::List(a), Value::List(b))
        | (Value::Tuple(a), Value::Tuple(b))
        | (Value::Set(a), Value::Set(b)) => all(a, b),
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        _ => a == b,
    }
}

/// `v` with its big integers in canonical form (`Value::Int` when they fit 64 bits), as
/// every decoder gives them.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::BigInt(n) => Value::integer(n.clone()),
        Value::List(items) => Value::List(items.iter().map(canonical).collect()),
        Value::Tuple(items) => Value::Tuple(items.iter().map(canonical).collect()),
        Value::Set(items) => Value::Set(items.iter().map(canonical).collect()),
        Value::Map(pairs) => Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Nesting depth as the encoders count it: the top value is at depth 0, the elements,
/// keys and values of a container at its depth plus one.
pub fn depth(v: &Value) -> usize {
    let deepest = |items: &mut dyn Iterator<Item = &Value>| items.map(depth).max().map(|d| d + 1);
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            deepest(&mut items.iter()).unwrap_or(0)
        }
        Value::Map(pairs) => deepest(&mut pairs.iter().flat_map(|(k, v)| [k, v])).unwrap_or(0),
        _ => 0,
    }
}

/// Every part of `v`, depth-first, with its depth.
pub fn visit(v: &Value, at: usize, f: &mut dyn FnMut(&Value, usize)) {
    f(v, at);
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            items.iter().for_each(|item| visit(item, at + 1, f))
        }
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            visit(k, at + 1, f);
            visit(v, at + 1, f);
        }),
        _ => {}
    }
}

/// A tensor whose data does not hold exactly its shape's elements.
pub fn is_malformed_tensor(t: &Tensor) -> bool {
    Tensor::new(t.dtype, t.shape.clone(), t.data.clone()).is_err()
}
