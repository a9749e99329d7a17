//! The JSON codec: [`Value`] ⇄ JSON text, for integrations that ask for it
//! (`serialization: %{args: :json, result: :json}`), and JSON documents (descriptors,
//! configs) as plain values.
//!
//! JSON has fewer kinds than SnakeBridge's values, so some crossings are lossy:
//!
//! | value | JSON | comes back as |
//! |---|---|---|
//! | tuple, set | array | list |
//! | bytes | base64 string | string |
//! | map key that is not a string | its text (`1` → `"1"`, `nil` → `"null"`) | string key |
//! | date, time, datetime | ISO 8601 string | string |
//! | integer beyond 64 bits | number | float |
//!
//! NaN and the infinities, object references, Elixir functions and tensors cannot be
//! written as JSON: encoding them is an error (use msgpack, the default).

use std::fmt::Write as _;

use super::CodecError;
use crate::value::{Date, Time, Value, MAX_DEPTH};

/// Converts a JSON document into a value. Numbers that fit `i64` stay integers; larger
/// ones and fractions become floats.
pub fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(to_value).collect()),
        serde_json::Value::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), to_value(v)))
                .collect(),
        ),
    }
}

/// Decodes JSON text into a value.
pub fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|json| to_value(&json))
        .map_err(|e| CodecError::new(format!("invalid JSON: {e}")))
}

/// Encodes a value as JSON text (see the module doc for what is lossy or refused).
pub fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut out = String::with_capacity(64);
    write_value(value, &mut out, 0)?;
    Ok(out.into_bytes())
}

fn write_value(value: &Value, out: &mut String, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::new(format!(
            "value is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    match value {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::BigInt(n) => {
            let _ = write!(out, "{n}");
        }
        // The shortest form that reads back as the same float (ryu, as serde_json).
        Value::Float(f) if f.is_finite() => out.push_str(ryu::Buffer::new().format_finite(*f)),
        Value::Float(f) => {
            return Err(CodecError::new(format!(
                "{f} cannot be written as JSON (use the msgpack codec)"
            )))
        }
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => write_str(&base64(b), out),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Map(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&key_text(k)?, out);
                out.push(':');
                write_value(v, out, depth + 1)?;
            }
            out.push('}');
        }
        Value::Date(d) => write_str(&date_text(d), out),
        Value::Time(t) => write_str(&time_text(t), out),
        Value::NaiveDateTime(d, t) => write_str(&format!("{}T{}", date_text(d), time_text(t)), out),
        Value::DateTime(d, t, offset) => {
            let sign = if *offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            write_str(
                &format!(
                    "{}T{}{sign}{:02}:{:02}",
                    date_text(d),
                    time_text(t),
                    abs / 3600,
                    (abs % 3600) / 60
                ),
                out,
            )
        }
        other => {
            return Err(CodecError::new(format!(
                "a {} cannot be written as JSON (use the msgpack codec)",
                other.kind()
            )))
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escaping: copy them whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A map key as JSON object keys must be: a string.
fn key_text(key: &Value) -> Result<String, CodecError> {
    Ok(match key {
        Value::Str(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::BigInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "null".to_owned(),
        other => {
            return Err(CodecError::new(format!(
                "a {} cannot be a JSON object key",
                other.kind()
            )))
        }
    })
}

fn date_text(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

fn time_text(t: &Time) -> String {
    if t.microsecond == 0 {
        format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)
    } else {
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            t.hour, t.minute, t.second, t.microsecond
        )
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    #[test]
    fn objects_become_maps_with_string_keys() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"a": [1, 2.5, null, true], "b": "x"}"#).unwrap();
        assert_eq!(
            to_value(&json),
            Value::Map(vec![
                (
                    s("a"),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Float(2.5),
                        Value::Nil,
                        Value::Bool(true)
                    ])
                ),
                (s("b"), s("x")),
            ])
        );
    }

    #[test]
    fn plain_values_round_trip() {
        // (Keys in sorted order: objects decode with sorted keys.)
        let value = Value::Map(vec![
            (
                s("flags"),
                Value::List(vec![Value::Bool(true), Value::Bool(false)]),
            ),
            (
                s("list"),
                Value::List(vec![Value::Int(-3), Value::Float(0.1), Value::Nil]),
            ),
            (
                s("text"),
                s("quote \" backslash \\ newline \n tab \t \u{2603} \u{1}"),
            ),
            (s("whole float"), Value::Float(2.0)),
        ]);
        assert_eq!(decode(&encode(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn lossy_kinds_come_back_as_documented() {
        let date = Date {
            year: 2026,
            month: 11,
            day: 25,
        };
        let time = Time {
            hour: 1,
            minute: 2,
            second: 3,
            microsecond: 40,
        };
        let value = Value::Map(vec![
            (
                Value::Int(1),
                Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
            ),
            (Value::Nil, Value::Set(vec![s("a")])),
            (s("bytes"), Value::Bytes(vec![0, 255, 104, 105].into())),
            (s("date"), Value::Date(date)),
            (s("at"), Value::DateTime(date, time, -5400)),
        ]);
        let text = String::from_utf8(encode(&value).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"1":[1,2],"null":["a"],"bytes":"AP9oaQ==","date":"2026-11-25","at":"2026-11-25T01:02:03.000040-01:30"}"#
        );
    }

    #[test]
    fn what_json_cannot_hold_is_refused() {
        for value in [
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Callback(1),
            Value::Map(vec![(Value::List(vec![]), Value::Nil)]),
        ] {
            assert!(encode(&value).is_err(), "{value:?}");
        }
        assert!(decode(b"{")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
