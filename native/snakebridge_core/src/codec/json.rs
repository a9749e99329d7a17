//! JSON ⇄ [`Value`]: JSON documents (descriptors, configs) become plain values (objects
//! become maps with string keys) that a binding turns into its own terms.

use crate::value::Value;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_become_maps_with_string_keys() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"a": [1, 2.5, null, true], "b": "x"}"#).unwrap();
        assert_eq!(
            to_value(&json),
            Value::Map(vec![
                (
                    Value::Str("a".into()),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Float(2.5),
                        Value::Nil,
                        Value::Bool(true)
                    ])
                ),
                (Value::Str("b".into()), Value::Str("x".into())),
            ])
        );
    }
}
