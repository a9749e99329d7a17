//! A million levels of nesting overflow no stack: decoders refuse input nested deeper than
//! [`MAX_DEPTH`] with an error naming the limit, encoders refuse such values, and the
//! deepest value the limit allows is decoded, encoded and dropped on a small stack.
//!
//! `Value`'s drop is recursive (a derived `Drop`), so a value nested a million levels deep
//! must never be built from input; these tests show that no decoder builds one. The value
//! built by hand below is taken apart iteratively.

mod common;

use std::path::Path;

use common::same;
use snakebridge_core::bytes::Bytes;
use snakebridge_core::callback::CallbackId;
use snakebridge_core::codec::{json, msgpack};
use snakebridge_core::value::{DType, ObjectRef, Tensor, Value, MAX_DEPTH};
use snakebridge_core::{config, descriptor};

const LEVELS: usize = 1_000_000;

/// Stack small enough that recursion a million levels deep would overflow it, and large
/// enough for [`MAX_DEPTH`] levels (a BEAM dirty scheduler has 320 KiB; debug builds use
/// far larger frames than release builds).
const STACK: usize = if cfg!(debug_assertions) {
    8 << 20
} else {
    320 << 10
};

/// Runs `f` on a thread with a [`STACK`]-sized stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("no panic")
}

fn assert_names_the_limit(err: impl std::fmt::Display) {
    let message = err.to_string();
    assert!(
        message.contains(&format!("nested more than {MAX_DEPTH} levels")),
        "{message}"
    );
}

/// `prefix` repeated `LEVELS` times, then `leaf`.
fn repeated(prefix: &[u8], leaf: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(prefix.len() * LEVELS + leaf.len());
    for _ in 0..LEVELS {
        bytes.extend_from_slice(prefix);
    }
    bytes.extend_from_slice(leaf);
    bytes
}

#[test]
fn a_million_nested_msgpack_containers_are_an_error_naming_the_limit() {
    on_small_stack(|| {
        let nil = [0xc0];
        let inputs = [
            ("fixarray", repeated(&[0x91], &nil)),
            ("array16", repeated(&[0xdc, 0, 1], &nil)),
            ("array32", repeated(&[0xdd, 0, 0, 0, 1], &nil)),
            ("map value", repeated(&[0x81, 0xc0], &nil)),
            ("map key", repeated(&[0x81], &nil)),
            ("tuple tag", repeated(&[0xc7, 0, 2, 0x91], &nil)),
            ("set tag", repeated(&[0xc7, 0, 3, 0x91], &nil)),
            // Tags followed by tags: each must still count as a level.
            ("tuple tags", repeated(&[0xc7, 0, 2], &nil)),
            ("reference tags", repeated(&[0xc7, 0, 8], &nil)),
            ("buffer tags", repeated(&[0xc7, 0, 11], &nil)),
            ("tensor tags", repeated(&[0xc7, 0, 10], &nil)),
            ("tensors in tensors", repeated(&[0xc7, 0, 10, 0x93], &nil)),
            (
                "references in references",
                repeated(&[0xc7, 0, 8, 0x93], &nil),
            ),
        ];
        let buffers = [Bytes::from_static(b"abcd")];
        for (what, bytes) in inputs {
            let err = msgpack::decode(&bytes).expect_err(what);
            assert!(
                err.to_string().contains("nested more than"),
                "{what}: {err}"
            );
            assert!(msgpack::decode_parts(&bytes, &buffers).is_err(), "{what}");
        }
    });
}

#[test]
fn a_million_nested_json_arrays_and_objects_are_an_error_naming_the_limit() {
    on_small_stack(|| {
        let arrays = [repeated(b"[", b"1"), vec![b']'; LEVELS]].concat();
        let objects = [repeated(b"{\"a\":", b"1"), vec![b'}'; LEVELS]].concat();
        let mixed = repeated(b"[{\"a\":", b"");
        for (what, text) in [("arrays", arrays), ("objects", objects), ("mixed", mixed)] {
            // serde_json's own limit (127 levels, json::MAX_JSON_DEPTH).
            let err = json::decode(&text).expect_err(what).to_string();
            assert!(
                err.contains("JSON nested more than 127 levels"),
                "{what}: {err}"
            );

            let file = Path::new("/schemas/deep.json");
            let err = descriptor::parse(file, &text).expect_err(what).to_string();
            assert!(err.starts_with("/schemas/deep.json: "), "{what}: {err}");
        }
    });
}

#[test]
fn a_descriptor_whose_type_annotation_nests_a_million_levels_is_an_error_naming_file_and_field() {
    let fixture = include_str!("../../../test/fixtures/schemas/json.json");
    assert!(descriptor::parse(Path::new("json.json"), fixture.as_bytes()).is_ok());
    // Type descriptors nest through their `args`.
    let empty_args = "\"args\": []";
    let at = fixture
        .find(empty_args)
        .expect("an annotation without args");
    let deep = [
        &fixture[..at],
        "\"args\": [",
        &"{\"args\": [".repeat(LEVELS),
        &"]}".repeat(LEVELS),
        "]",
        &fixture[at + empty_args.len()..],
    ]
    .concat();
    on_small_stack(move || {
        let err = descriptor::parse(Path::new("/schemas/json.json"), deep.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/schemas/json.json: descriptor."), "{err}");
        assert!(err.contains(".annotation.args[0].args[0]"), "{err}");
        assert!(err.contains("recursion limit exceeded"), "{err}");
    });
}

/// Takes `value` apart without recursion (its own drop would recurse once per level).
fn dismantle(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => pending.extend(items),
            Value::Map(pairs) => pending.extend(pairs.into_iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
}

/// `levels` containers, cycling through every kind, around `leaf`.
fn nested(levels: usize, leaf: Value) -> Value {
    (0..levels).fold(leaf, |inner, level| match level % 5 {
        0 => Value::List(vec![inner]),
        1 => Value::Tuple(vec![inner, Value::Int(1)]),
        2 => Value::Set(vec![inner]),
        3 => Value::Map(vec![(Value::Str("k".into()), inner)]),
        _ => Value::Map(vec![(inner, Value::Nil)]),
    })
}

#[test]
fn encoders_refuse_a_value_nested_a_million_levels_deep() {
    on_small_stack(|| {
        let deep = nested(LEVELS, Value::Nil);
        let refused = [
            msgpack::encode(&deep).err(),
            msgpack::encode_parts(&deep).err(),
        ];
        dismantle(deep);
        refused
            .into_iter()
            .for_each(|err| assert_names_the_limit(err.expect("refused")));

        // JSON refuses a map key that is a container before looking deeper: lists only.
        // It stops at its own limit, json::MAX_JSON_DEPTH.
        let deep = (0..LEVELS).fold(Value::Nil, |inner, _| Value::List(vec![inner]));
        let refused = json::encode(&deep).expect_err("refused").to_string();
        dismantle(deep);
        assert!(
            refused.contains("JSON may nest at most 127 levels"),
            "{refused}"
        );
    });
}

#[test]
fn the_deepest_value_allowed_is_decoded_encoded_and_dropped_on_a_small_stack() {
    let leaves = [
        Value::Str("leaf".into()),
        Value::Ref(ObjectRef {
            id: u64::MAX,
            type_name: "t".into(),
            repr: "r".into(),
        }),
        Value::Callback(CallbackId::random()),
        Value::Bytes(Bytes::from(vec![1u8; msgpack::OUT_OF_BAND_MIN])),
        Value::Tensor(Tensor::new(DType::F32, vec![1, 2], Bytes::from(vec![0u8; 8])).unwrap()),
    ];
    on_small_stack(move || {
        for leaf in leaves {
            let value = nested(MAX_DEPTH, leaf);
            let bytes = msgpack::encode(&value).expect("encodes");
            let back = msgpack::decode(&bytes).expect("decodes");
            assert!(same(&back, &value));
            let (data, buffers) = msgpack::encode_parts(&value).expect("encodes");
            assert!(same(
                &msgpack::decode_parts(&data, &buffers).unwrap(),
                &value
            ));
            drop((back, value));

            // One level more is refused both ways.
            let too_deep = nested(MAX_DEPTH + 1, Value::Nil);
            assert_names_the_limit(msgpack::encode(&too_deep).unwrap_err());
            let mut bytes = vec![0x91];
            bytes.extend_from_slice(&msgpack::encode(&nested(MAX_DEPTH, Value::Nil)).unwrap());
            assert_names_the_limit(msgpack::decode(&bytes).unwrap_err());
        }
    });
}

#[test]
fn a_config_with_types_nested_to_the_limit_is_validated_on_a_small_stack() {
    on_small_stack(|| {
        let s = |text: &str| Value::Str(text.into());
        // {:list, {:optional, {:list, ... :string}}}: two levels per type.
        let deep_type = (0..MAX_DEPTH / 2 - 4).fold(s("string"), |inner, level| {
            let tag = if level % 2 == 0 { "list" } else { "optional" };
            Value::Tuple(vec![s(tag), inner])
        });
        let function = Value::Map(vec![
            (s("python_path"), s("json.dumps")),
            (s("returns"), deep_type),
        ]);
        let config = Value::Map(vec![
            (s("python_module"), s("json")),
            (s("functions"), Value::List(vec![function])),
        ]);
        assert_eq!(config::validate(&config), vec![]);
    });
}
