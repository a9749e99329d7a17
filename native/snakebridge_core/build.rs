//! Compiles `proto/snakebridge.proto` with protox (no system `protoc` needed).
//!
//! Maps are generated as `BTreeMap`s so that encoding a descriptor is deterministic (its
//! hash and its JSON file are stable), and the descriptor messages derive serde: for the
//! descriptor cache's JSON files, and for the descriptors the worker's agent writes as
//! JSON (with enum names). A payload's out-of-band buffers are `bytes::Bytes`.

const DESCRIPTOR_MESSAGES: [&str; 6] = [
    ".snakebridge.v1.DescribeLibraryResponse",
    ".snakebridge.v1.ClassDescriptor",
    ".snakebridge.v1.FunctionDescriptor",
    ".snakebridge.v1.ParameterDescriptor",
    ".snakebridge.v1.PropertyDescriptor",
    ".snakebridge.v1.TypeDescriptor",
];

/// The descriptor messages' enum fields, and the reader of each (see `proto::enum_names`).
const ENUM_FIELDS: [(&str, &str); 3] = [
    (".snakebridge.v1.FunctionDescriptor.kind", "function_kind"),
    (".snakebridge.v1.ParameterDescriptor.kind", "parameter_kind"),
    (".snakebridge.v1.TypeDescriptor.kind", "type_kind"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = proto_dir.join("snakebridge.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir])?;
    let mut config = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        // Out-of-band buffers (tensor data) are `Bytes`: decoding a frame slices them out
        // of the received message without copying.
        .bytes(".snakebridge.v1.Payload.buffers")
        .bytes(".snakebridge.v1.Part.data");
    for message in DESCRIPTOR_MESSAGES {
        config = config.message_attribute(
            message,
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    // Enum fields read their proto name as well as their number: the worker's agent sends
    // names, cache files hold numbers.
    for (field, kind) in ENUM_FIELDS {
        config = config.field_attribute(
            field,
            format!("#[serde(deserialize_with = \"crate::proto::enum_names::{kind}\")]"),
        );
    }
    config.compile_fds(fds)?;
    Ok(())
}
