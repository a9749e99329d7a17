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
//! written as JSON: encoding them is an error (use msgpack, the default). So are integers
//! beyond a float's range (about 1.8e308), which no JSON reader here could read back, and
//! values nested more than [`MAX_JSON_DEPTH`] levels, the most the reader takes.

use std::collections::HashSet;

use bytes::Bytes;
use num_bigint::BigInt;

use super::sink::{write_value, Seq, Sink};
use super::{Budget, CodecError, Limits};
use crate::callback::CallbackId;
use crate::value::{DType, Date, ObjectRef, Time, Value};

/// The deepest nesting of arrays and objects JSON text may have: what serde_json reads
/// (its recursion limit of 128 stops at the 128th level).
pub const MAX_JSON_DEPTH: usize = 127;

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
    decode_within(bytes, Limits::NONE)
}

/// [`decode`], refusing text that holds more values than `limits` allow before any is
/// built: the values are counted in one pass over the text first.
pub fn decode_within(bytes: &[u8], limits: Limits) -> Result<Value, CodecError> {
    limits.budget().spend(count_values(bytes))?;
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|json| to_value(&json))
        .map_err(|e| {
            if e.to_string().starts_with("recursion limit exceeded") {
                CodecError::new(format!(
                    "JSON nested more than {MAX_JSON_DEPTH} levels deep (at line {}, column {})",
                    e.line(),
                    e.column()
                ))
            } else {
                CodecError::new(format!("invalid JSON: {e}"))
            }
        })
}

/// The values JSON text holds inside its arrays and objects, counted as the msgpack
/// decoder counts them (an array's items, an object's keys and values), without parsing:
/// each `,` and `:` outside strings starts one more, and so does the first item of a
/// non-empty array or object. Malformed text gets some count; the parser refuses it next.
fn count_values(bytes: &[u8]) -> usize {
    let mut count = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut opened = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if std::mem::take(&mut opened) && b != b']' && b != b'}' {
            count += 1;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => opened = true,
            b',' | b':' => count += 1,
            _ => {}
        }
    }
    count
}

/// Encodes a value as JSON text (see the module doc for what is lossy or refused).
pub fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut writer = Writer::new();
    write_value(value, &mut writer)?;
    Ok(writer.into_bytes())
}

/// Writes JSON text: the [`Sink`] behind [`encode`], which a binding can also drive
/// straight from its own data (the NIF, from Erlang terms) without building a [`Value`].
/// What JSON cannot hold is refused here, and only here.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    /// The next value is a map key: it must be written as a string, then `:`.
    key: bool,
    /// Arrays and objects open around the value now written.
    depth: usize,
    /// The key texts of each object open, to refuse two keys with the same text (`1` and
    /// `"1"`), which JSON would keep as one.
    keys: Vec<HashSet<String>>,
    /// The values and bytes the text may still take (see [`Writer::within`]).
    budget: Budget,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer {
            out: Vec::with_capacity(64),
            key: false,
            depth: 0,
            keys: Vec::new(),
            budget: Budget::unlimited(),
        }
    }

    /// This writer, refusing what goes over `limits`.
    pub fn within(self, limits: Limits) -> Writer {
        Writer {
            budget: limits.budget(),
            ..self
        }
    }

    /// The JSON text written (UTF-8).
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// [`Writer::into_bytes`], refused when the text is over the writer's size limit.
    pub fn finish(self) -> Result<Vec<u8>, CodecError> {
        self.budget.check_size(self.out.len())?;
        Ok(self.out)
    }

    /// Enters an array or object; refused past [`MAX_JSON_DEPTH`].
    fn open(&mut self) -> Result<(), CodecError> {
        self.budget.check_size(self.out.len())?;
        if self.depth == MAX_JSON_DEPTH {
            return Err(CodecError::new(format!(
                "JSON may nest at most {MAX_JSON_DEPTH} levels (use msgpack for deeper values)"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    /// Whether the value now written is a map key (the value after it is not).
    fn take_key(&mut self) -> bool {
        std::mem::take(&mut self.key)
    }

    /// A scalar: `text` as a key (a string, then `:`) or as it is.
    fn scalar(&mut self, text: &str) -> Result<(), CodecError> {
        if self.take_key() {
            self.key_str(text)?;
        } else {
            self.out.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }

    fn key_str(&mut self, key: &str) -> Result<(), CodecError> {
        if let Some(keys) = self.keys.last_mut() {
            if !keys.insert(key.to_owned()) {
                return Err(CodecError::new(format!(
                    "two keys of a map are the JSON key {key:?}: make them distinct"
                )));
            }
        }
        write_str(key, &mut self.out);
        self.out.push(b':');
        Ok(())
    }

    /// A value written as a string (bytes in base64, dates and times in ISO 8601), which
    /// cannot be a key.
    fn text(&mut self, kind: &str, text: impl FnOnce() -> String) -> Result<(), CodecError> {
        if self.take_key() {
            return Err(not_a_key(kind));
        }
        write_str(&text(), &mut self.out);
        Ok(())
    }

    /// What JSON cannot hold at all.
    fn refuse(&mut self, kind: &str) -> Result<(), CodecError> {
        Err(if self.take_key() {
            not_a_key(kind)
        } else {
            CodecError::new(format!(
                "a {kind} cannot be written as JSON (use the msgpack codec)"
            ))
        })
    }
}

fn not_a_key(kind: &str) -> CodecError {
    CodecError::new(format!("a {kind} cannot be a JSON object key"))
}

impl Sink for Writer {
    type Out = ();
    const PYTHON_KEYS: bool = false;

    fn nil(&mut self) -> Result<(), CodecError> {
        self.scalar("null")
    }

    fn bool(&mut self, b: bool) -> Result<(), CodecError> {
        self.scalar(if b { "true" } else { "false" })
    }

    fn int(&mut self, n: i64) -> Result<(), CodecError> {
        self.scalar(itoa::Buffer::new().format(n))
    }

    fn big_int(&mut self, n: &BigInt) -> Result<(), CodecError> {
        // Below 2^1023 a JSON reader's float holds it (approximately); above about 2^1024
        // it reads as infinity or not at all.
        if !self.key && n.bits() > 1023 {
            return Err(CodecError::new(
                "an integer beyond a float's range cannot be written as JSON (use msgpack)",
            ));
        }
        self.scalar(&n.to_string())
    }

    fn float(&mut self, f: f64) -> Result<(), CodecError> {
        if self.take_key() {
            // Keys take any float, in Rust's notation (`1e21` is written out in full).
            self.key_str(&f.to_string())?;
        } else if f.is_finite() {
            // The shortest form that reads back as the same float (ryu, as serde_json).
            let mut buffer = ryu::Buffer::new();
            self.out
                .extend_from_slice(buffer.format_finite(f).as_bytes());
        } else {
            return Err(CodecError::new(format!(
                "{f} cannot be written as JSON (use the msgpack codec)"
            )));
        }
        Ok(())
    }

    fn str(&mut self, s: &str) -> Result<(), CodecError> {
        if self.take_key() {
            self.key_str(s)?;
        } else {
            write_str(s, &mut self.out);
        }
        Ok(())
    }

    fn bytes(&mut self, data: &[u8], _: impl FnOnce() -> Bytes) -> Result<(), CodecError> {
        self.text("bytes", || base64(data))
    }

    fn date(&mut self, d: Date) -> Result<(), CodecError> {
        self.text("date", || date_text(&d))
    }

    fn time(&mut self, t: Time) -> Result<(), CodecError> {
        self.text("time", || time_text(&t))
    }

    fn naive_datetime(&mut self, d: Date, t: Time) -> Result<(), CodecError> {
        self.text("naive datetime", || {
            format!("{}T{}", date_text(&d), time_text(&t))
        })
    }

    fn datetime(&mut self, d: Date, t: Time, offset: i32) -> Result<(), CodecError> {
        self.text("datetime", || {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            format!(
                "{}T{}{sign}{:02}:{:02}",
                date_text(&d),
                time_text(&t),
                abs / 3600,
                (abs % 3600) / 60
            )
        })
    }

    fn object_ref(&mut self, _: &ObjectRef) -> Result<(), CodecError> {
        self.refuse("object reference")
    }

    fn callback(&mut self, _: CallbackId) -> Result<(), CodecError> {
        self.refuse("callback")
    }

    fn tensor(
        &mut self,
        _: DType,
        _: &[u64],
        _: &[u8],
        _: impl FnOnce() -> Bytes,
    ) -> Result<(), CodecError> {
        self.refuse("tensor")
    }

    fn seq<E: From<CodecError>>(
        &mut self,
        kind: Seq,
        len: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.take_key() {
            return Err(not_a_key(kind.kind()).into());
        }
        self.budget.spend(len)?;
        self.open()?;
        self.out.push(b'[');
        for i in 0..len {
            if i > 0 {
                self.out.push(b',');
            }
            item(self)?;
        }
        self.out.push(b']');
        self.depth -= 1;
        Ok(())
    }

    fn map<E: From<CodecError>>(
        &mut self,
        len: usize,
        mut entry: impl FnMut(&mut Self) -> Result<((), ()), E>,
    ) -> Result<(), E> {
        if self.take_key() {
            return Err(not_a_key("map").into());
        }
        self.budget.spend_entries(len)?;
        self.open()?;
        self.out.push(b'{');
        self.keys.push(HashSet::with_capacity(len));
        for i in 0..len {
            if i > 0 {
                self.out.push(b',');
            }
            // The entry's first value is its key.
            self.key = true;
            entry(self)?;
        }
        self.keys.pop();
        self.out.push(b'}');
        self.depth -= 1;
        Ok(())
    }
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped.
fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    // Escapes are all ASCII, and no byte of a multi-byte UTF-8 character is: the text is
    // copied in runs between the bytes to escape.
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let control;
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                control = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ];
                &control
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
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
    use crate::value::Tensor;

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
            Value::Callback(CallbackId::INERT),
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
    fn refusals_name_the_kind_of_value() {
        let tensor = Tensor::new(DType::U8, vec![1], Bytes::from_static(&[1])).unwrap();
        for value in [
            Value::Ref(ObjectRef::default()),
            Value::Callback(CallbackId::INERT),
            Value::Tensor(tensor),
        ] {
            assert_eq!(
                encode(&Value::List(vec![Value::Int(1), value.clone()]))
                    .unwrap_err()
                    .to_string(),
                format!(
                    "a {} cannot be written as JSON (use the msgpack codec)",
                    value.kind()
                )
            );
        }
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                encode(&Value::Float(f)).unwrap_err().to_string(),
                format!("{f} cannot be written as JSON (use the msgpack codec)")
            );
        }
    }

    #[test]
    fn keys_are_strings_of_scalars_and_nothing_else() {
        let big = BigInt::from(1u128 << 70);
        let keys = Value::Map(vec![
            (Value::Int(-1), Value::Nil),
            (Value::integer(big), Value::Nil),
            (Value::Float(1e21), Value::Nil),
            (Value::Float(f64::NAN), Value::Nil),
            (Value::Bool(true), Value::Nil),
            (Value::Nil, Value::Nil),
            (s("a\"b"), Value::Float(1e21)),
        ]);
        assert_eq!(
            String::from_utf8(encode(&keys).unwrap()).unwrap(),
            r#"{"-1":null,"1180591620717411303424":null,"1000000000000000000000":null,"NaN":null,"true":null,"null":null,"a\"b":1e21}"#
        );
        let date = Date {
            year: 2026,
            month: 1,
            day: 2,
        };
        let time = Time {
            hour: 0,
            minute: 0,
            second: 0,
            microsecond: 0,
        };
        for key in [
            Value::List(vec![]),
            Value::Tuple(vec![]),
            Value::Set(vec![]),
            Value::Map(vec![]),
            Value::Bytes(Bytes::new()),
            Value::Date(date),
            Value::Time(time),
            Value::NaiveDateTime(date, time),
            Value::DateTime(date, time, 0),
            Value::Ref(ObjectRef::default()),
            Value::Callback(CallbackId::INERT),
        ] {
            let map = Value::Map(vec![(s("fine"), Value::Nil), (key.clone(), Value::Nil)]);
            assert_eq!(
                encode(&map).unwrap_err().to_string(),
                format!("a {} cannot be a JSON object key", key.kind())
            );
        }
    }

    #[test]
    fn values_are_counted_before_the_text_is_parsed() {
        let text = br#"[{"a": [1, 2], "b,:[": {}}, [], " \" ,", 3]"#;
        // The outer list's 4 items, the map's 2 keys and 2 values, the inner list's 2.
        assert_eq!(count_values(text), 10);
        let value = decode(text).unwrap();
        let within = |n| {
            let limits = crate::codec::Budgets {
                max_elements: n,
                ..crate::codec::Budgets::default()
            }
            .from_python("the result");
            decode_within(text, limits)
        };
        assert_eq!(within(10).unwrap(), value);
        assert!(within(9).unwrap_err().is_too_large());
        let mut writer = Writer::new().within(
            crate::codec::Budgets {
                max_elements: 9,
                ..crate::codec::Budgets::default()
            }
            .to_python("the arguments"),
        );
        assert!(write_value(&value, &mut writer).unwrap_err().is_too_large());
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        let text = s("a\"b\\c\nd\re\tf\u{1}\u{1f} \u{7f}é☃");
        assert_eq!(
            String::from_utf8(encode(&text).unwrap()).unwrap(),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001\\u001f \u{7f}é☃\""
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn keys_with_the_same_text_are_refused() {
        for other in [Value::Str("1".into()), Value::Float(1.0), Value::Int(1)] {
            let map = Value::Map(vec![(Value::Int(1), Value::Nil), (other, Value::Nil)]);
            let err = encode(&map).unwrap_err().to_string();
            assert!(err.contains("the JSON key"), "{err}");
        }
        // The same key in two maps is fine.
        let inner = Value::Map(vec![(Value::Str("a".into()), Value::Nil)]);
        let outer = Value::Map(vec![(Value::Str("a".into()), inner)]);
        assert!(encode(&outer).is_ok());
    }
}
