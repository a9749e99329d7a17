//! Every value either round-trips through the codecs or is refused with an error, never a
//! panic: msgpack (in band and with out-of-band buffers) gives back exactly what it was
//! given, JSON gives back what its lossy table (`codec/json.rs`) says, and what a codec
//! cannot carry is an error.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use snakebridge_core::codec::{json, msgpack};
use snakebridge_core::value::{Value, MAX_DEPTH};

// ---------------------------------------------------------------------------------------
// msgpack

/// What msgpack must give back for `v`: `v` itself with its big integers canonical, or
/// `None` when `v` must be refused (when encoding or when decoding what was encoded).
fn msgpack_expected(v: &Value) -> Option<Value> {
    let mut refused = depth(v) > MAX_DEPTH;
    visit(v, 0, &mut |part, _| {
        if let Value::Tensor(t) = part {
            refused |= is_malformed_tensor(t);
        }
    });
    (!refused).then(|| canonical(v))
}

/// How many out-of-band buffers `encode_parts` must make: one per tensor and per large
/// bytes value.
fn buffers_expected(v: &Value) -> usize {
    let mut n = 0;
    visit(v, 0, &mut |part, _| match part {
        Value::Tensor(_) => n += 1,
        Value::Bytes(b) if b.len() >= msgpack::OUT_OF_BAND_MIN => n += 1,
        _ => {}
    });
    n
}

fn check_msgpack(v: &Value) -> Result<(), TestCaseError> {
    let expected = msgpack_expected(v);
    let back = msgpack::encode(v).and_then(|bytes| msgpack::decode(&bytes));
    check_outcome("msgpack", v, expected.as_ref(), back)?;

    match msgpack::encode_parts(v) {
        Ok((data, buffers)) => {
            let back = msgpack::decode_parts(&data, &buffers);
            check_outcome("msgpack parts", v, expected.as_ref(), back)?;
            if expected.is_some() {
                prop_assert_eq!(buffers.len(), buffers_expected(v));
            }
            if let Some((_, fewer)) = buffers.split_last() {
                // Every buffer is referred to: one missing is an error, not a panic.
                prop_assert!(msgpack::decode_parts(&data, fewer).is_err());
                prop_assert!(msgpack::decode(&data).is_err());
            }
        }
        Err(_) => prop_assert!(expected.is_none(), "encode_parts refused {:?}", v),
    }
    Ok(())
}

fn check_outcome(
    codec: &str,
    v: &Value,
    expected: Option<&Value>,
    back: Result<Value, snakebridge_core::codec::CodecError>,
) -> Result<(), TestCaseError> {
    match (expected, back) {
        (Some(expected), Ok(back)) => prop_assert!(
            same(&back, expected),
            "{codec}: {v:?} came back as {back:?}"
        ),
        (Some(_), Err(err)) => prop_assert!(false, "{codec}: {v:?} was refused: {err}"),
        (None, Ok(back)) => prop_assert!(false, "{codec}: {v:?} was accepted as {back:?}"),
        (None, Err(err)) => prop_assert!(!err.to_string().is_empty()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// JSON

/// Why JSON does not give a value back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lost {
    /// Encoding refuses it (NaN, refs, tensors, a container as a key, an integer beyond
    /// 2^1023, more than `json::MAX_JSON_DEPTH` levels...).
    Refused,
}

/// The JSON document `v` must come back as, per the lossy table of `codec/json.rs`.
fn json_model(v: &Value, depth: usize) -> Result<serde_json::Value, Lost> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(Lost::Refused);
    }
    let float = |f: f64| serde_json::Number::from_f64(f).map(J::Number);
    let container = |depth: usize| {
        if depth >= json::MAX_JSON_DEPTH {
            Err(Lost::Refused)
        } else {
            Ok(())
        }
    };
    let gather = |parts: Vec<Result<J, Lost>>| -> Result<Vec<J>, Lost> {
        if parts.contains(&Err(Lost::Refused)) {
            return Err(Lost::Refused);
        }
        parts.into_iter().collect()
    };
    Ok(match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::BigInt(n) => match i64::try_from(n) {
            Ok(small) => J::from(small),
            Err(_) if n.bits() > 1023 => return Err(Lost::Refused),
            Err(_) => {
                let f: f64 = n.to_string().parse().expect("an integer's text is a float");
                float(f).ok_or(Lost::Refused)?
            }
        },
        Value::Float(f) => float(*f).ok_or(Lost::Refused)?,
        Value::Str(s) => J::String(s.clone()),
        Value::Bytes(b) => J::String(base64(b)),
        Value::Date(_) | Value::Time(_) | Value::NaiveDateTime(..) | Value::DateTime(..) => {
            J::String(iso8601(v))
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            container(depth)?;
            J::Array(gather(
                items.iter().map(|i| json_model(i, depth + 1)).collect(),
            )?)
        }
        Value::Map(pairs) => {
            container(depth)?;
            let mut parts = Vec::new();
            for (k, v) in pairs {
                parts.push(json_key(k).map(J::String));
                parts.push(json_model(v, depth + 1));
            }
            let parts = gather(parts)?;
            let mut object = serde_json::Map::new();
            for pair in parts.chunks(2) {
                let J::String(key) = &pair[0] else {
                    unreachable!()
                };
                // Keys that become the same text would be one key when read back: the
                // writer refuses them.
                if object.insert(key.clone(), pair[1].clone()).is_some() {
                    return Err(Lost::Refused);
                }
            }
            J::Object(object)
        }
        Value::Ref(_) | Value::Callback(_) | Value::Tensor(_) => return Err(Lost::Refused),
    })
}

/// A map key as JSON writes it: a string as it is, another scalar as its text.
fn json_key(k: &Value) -> Result<String, Lost> {
    Ok(match k {
        Value::Str(s) => s.clone(),
        Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::BigInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        _ => return Err(Lost::Refused),
    })
}

fn iso8601(v: &Value) -> String {
    use snakebridge_core::value::{Date, Time};
    let date = |d: &Date| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day);
    let time = |t: &Time| {
        let hms = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
        match t.microsecond {
            0 => hms,
            us => format!("{hms}.{us:06}"),
        }
    };
    match v {
        Value::Date(d) => date(d),
        Value::Time(t) => time(t),
        Value::NaiveDateTime(d, t) => format!("{}T{}", date(d), time(t)),
        Value::DateTime(d, t, offset) => {
            let sign = if *offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            let (h, m) = (abs / 3600, abs % 3600 / 60);
            format!("{}T{}{sign}{h:02}:{m:02}", date(d), time(t))
        }
        _ => unreachable!(),
    }
}

/// Standard base64 with padding (written here again, so that the codec's is checked).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn check_json(v: &Value) -> Result<(), TestCaseError> {
    let written = json::encode(v);
    match json_model(v, 0) {
        Err(Lost::Refused) => {
            prop_assert!(written.is_err(), "JSON wrote {:?}", v);
        }
        Ok(model) => {
            let text = match written {
                Ok(text) => text,
                Err(err) => return Err(TestCaseError::fail(format!("JSON refused {v:?}: {err}"))),
            };
            prop_assert!(std::str::from_utf8(&text).is_ok());
            match json::decode(&text) {
                Ok(back) => {
                    let expected = json::to_value(&model);
                    prop_assert!(same(&back, &expected), "{:?} came back as {:?}", v, back);
                }
                Err(err) => {
                    return Err(TestCaseError::fail(format!(
                        "JSON could not read back {v:?}: {err}"
                    )))
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

/// A chain of `kinds.len()` containers around `leaf`: list, tuple, set, map value, map key.
fn chain(kinds: &[u8], leaf: Value) -> Value {
    kinds.iter().fold(leaf, |inner, kind| match kind % 5 {
        0 => Value::List(vec![inner]),
        1 => Value::Tuple(vec![Value::Nil, inner]),
        2 => Value::Set(vec![inner]),
        3 => Value::Map(vec![(Value::Str("k".into()), inner)]),
        _ => Value::Map(vec![(inner, Value::Int(1))]),
    })
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn every_value_round_trips_through_msgpack_or_is_refused(v in arb_value()) {
        check_msgpack(&v)?;
    }

    #[test]
    fn every_value_comes_back_from_json_as_its_table_says_or_is_refused(v in arb_value()) {
        check_json(&v)?;
    }
}

/// Around the depth limit, with every container kind: within it a value round-trips,
/// beyond it the error names the limit.
#[test]
fn nesting_up_to_the_limit_round_trips_and_beyond_it_is_refused() {
    // On a thread of its own: a debug build's frames need more than a test thread's stack
    // for 256 levels.
    let stack = if cfg!(debug_assertions) {
        64 << 20
    } else {
        4 << 20
    };
    let run = || {
        let strategy = (
            proptest::collection::vec(any::<u8>(), 100..=MAX_DEPTH + 8),
            arb_leaf(),
        );
        TestRunner::new(config(200))
            .run(&strategy, |(kinds, leaf)| check_chain(&kinds, leaf))
            .unwrap_or_else(|failure| panic!("{failure}"));
    };
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(run)
        .expect("thread starts")
        .join()
        .expect("no failure");
}

fn check_chain(kinds: &[u8], leaf: Value) -> Result<(), TestCaseError> {
    let v = chain(kinds, leaf.clone());
    prop_assert_eq!(depth(&v), kinds.len());
    let leaf_ok = msgpack_expected(&leaf).is_some();
    let encoded = msgpack::encode(&v);
    let back = encoded.clone().and_then(|bytes| msgpack::decode(&bytes));
    if kinds.len() > MAX_DEPTH {
        let err = encoded.unwrap_err().to_string();
        prop_assert!(
            err.contains(&format!("nested more than {MAX_DEPTH}")),
            "{}",
            err
        );
        prop_assert!(json::encode(&v).is_err());
    } else if leaf_ok {
        let back = back.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&back, &canonical(&v)));
    } else {
        prop_assert!(back.is_err());
    }
    check_msgpack(&v)?;
    check_json(&v)
}

#[test]
fn json_reads_back_what_it_writes_up_to_its_own_depth_and_refuses_deeper() {
    let v = chain(&[0; json::MAX_JSON_DEPTH], Value::Int(1));
    assert!(same(&json::decode(&json::encode(&v).unwrap()).unwrap(), &v));
    let deeper = chain(&[0; json::MAX_JSON_DEPTH + 1], Value::Int(1));
    let err = json::encode(&deeper).unwrap_err().to_string();
    assert!(err.contains("JSON may nest at most 127 levels"), "{err}");
}
