//! Codecs: [`Value`] ⇄ bytes in the codec negotiated for a payload: msgpack (the
//! default, lossless, tensors out of band) or JSON (see [`json`] for what it loses).
//! Both write through a [`sink::Sink`], which a binding can also drive from its own data
//! (the NIF writes Erlang terms straight to bytes, without building a [`Value`]).

pub mod budget;
pub mod json;
pub mod msgpack;
pub mod sink;

pub use budget::{Budget, Budgets, Limits};

use crate::proto;
use crate::value::Value;

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    message: String,
    too_large: bool,
}

impl CodecError {
    /// An error with the given description.
    pub fn new(message: impl Into<String>) -> Self {
        CodecError {
            message: message.into(),
            too_large: false,
        }
    }

    /// A payload over one of its [`Limits`]: its size or its number of values.
    pub fn too_large(message: impl Into<String>) -> Self {
        CodecError {
            message: message.into(),
            too_large: true,
        }
    }

    /// Whether the payload was refused for going over one of its [`Limits`].
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }

    fn io(err: impl std::fmt::Display) -> Self {
        CodecError::new(format!("write failed: {err}"))
    }
}

/// Encodes `value` into a wire payload using `codec`; tensor data goes into the payload's
/// out-of-band buffers.
pub fn encode_payload(codec: proto::Codec, value: &Value) -> Result<proto::Payload, CodecError> {
    encode_payload_within(codec, value, Limits::NONE)
}

/// [`encode_payload`], refusing a payload over `limits` as soon as the writer gets there.
pub fn encode_payload_within(
    codec: proto::Codec,
    value: &Value,
    limits: Limits,
) -> Result<proto::Payload, CodecError> {
    let (data, buffers) = match codec {
        proto::Codec::Msgpack => {
            let mut writer = msgpack::Writer::out_of_band().within(limits);
            sink::write_value(value, &mut writer)?;
            writer.finish()?
        }
        proto::Codec::Json => {
            let mut writer = json::Writer::new().within(limits);
            sink::write_value(value, &mut writer)?;
            (writer.finish()?, Vec::new())
        }
    };
    Ok(payload(codec, data, buffers))
}

/// The wire payload of bytes encoded in `codec` and the out-of-band buffers they refer to.
pub fn payload(codec: proto::Codec, data: Vec<u8>, buffers: Vec<bytes::Bytes>) -> proto::Payload {
    proto::Payload {
        codec: codec as i32,
        data,
        buffers,
        ..proto::Payload::default()
    }
}

/// Decodes a wire payload into a value, in whatever codec the payload names.
pub fn decode_payload(payload: &proto::Payload) -> Result<Value, CodecError> {
    decode_payload_within(payload, Limits::NONE)
}

/// [`decode_payload`], refusing a payload over `limits`: its size before anything is
/// read, its values as each container's header announces them, before they are built.
pub fn decode_payload_within(
    payload: &proto::Payload,
    limits: Limits,
) -> Result<Value, CodecError> {
    limits.check_size(crate::framing::payload_size(payload))?;
    match proto::Codec::try_from(payload.codec) {
        Ok(proto::Codec::Msgpack) => {
            msgpack::decode_within(&payload.data, &payload.buffers, limits)
        }
        Ok(proto::Codec::Json) => json::decode_within(&payload.data, limits),
        Err(_) => Err(CodecError::new(format!(
            "unknown codec number {}",
            payload.codec
        ))),
    }
}

/// Keyword arguments: name (a [`Value::Str`]) and value pairs, in call order.
pub type Kwargs = Vec<(Value, Value)>;

/// The value a call frame carries: `[positional args, keyword args]`.
pub fn call_arguments(args: Vec<Value>, kwargs: Kwargs) -> Value {
    Value::List(vec![Value::List(args), Value::Map(kwargs)])
}

/// Splits a decoded call payload back into positional and keyword arguments.
pub fn split_call_arguments(value: Value) -> Result<(Vec<Value>, Kwargs), CodecError> {
    match value {
        Value::List(mut parts) if parts.len() == 2 => {
            let kwargs = parts.pop();
            let args = parts.pop();
            match (args, kwargs) {
                (Some(Value::List(args)), Some(Value::Map(kwargs))) => Ok((args, kwargs)),
                _ => Err(CodecError::new(
                    "call arguments must be [list of args, map of kwargs]",
                )),
            }
        }
        other => Err(CodecError::new(format!(
            "call arguments must be a two-element list, found {}",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_arguments_split_back_into_their_parts() {
        let args = vec![Value::Int(1)];
        let kwargs = vec![(Value::Str("sep".into()), Value::Str(",".into()))];
        let payload = encode_payload(
            proto::Codec::Msgpack,
            &call_arguments(args.clone(), kwargs.clone()),
        )
        .unwrap();
        let decoded = decode_payload(&payload).unwrap();
        assert_eq!(split_call_arguments(decoded).unwrap(), (args, kwargs));
    }

    #[test]
    fn a_payload_in_an_unknown_codec_is_an_error() {
        let payload = proto::Payload {
            codec: 42,
            ..Default::default()
        };
        assert!(decode_payload(&payload)
            .unwrap_err()
            .to_string()
            .contains("42"));
    }
}
