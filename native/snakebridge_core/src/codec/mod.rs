//! Codecs: [`Value`] ⇄ bytes in the codec negotiated for a payload: msgpack (the
//! default, lossless, tensors out of band) or JSON (see [`json`] for what it loses).
//! Both write through a [`sink::Sink`], which a binding can also drive from its own data
//! (the NIF writes Erlang terms straight to bytes, without building a [`Value`]).

pub mod json;
pub mod msgpack;
pub mod sink;

use crate::proto;
use crate::value::Value;

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// An error with the given description.
    pub fn new(message: impl Into<String>) -> Self {
        CodecError {
            message: message.into(),
        }
    }

    fn io(err: impl std::fmt::Display) -> Self {
        CodecError::new(format!("write failed: {err}"))
    }
}

/// Encodes `value` into a wire payload using `codec`; tensor data goes into the payload's
/// out-of-band buffers.
pub fn encode_payload(codec: proto::Codec, value: &Value) -> Result<proto::Payload, CodecError> {
    let (data, buffers) = match codec {
        proto::Codec::Msgpack => msgpack::encode_parts(value)?,
        proto::Codec::Json => (json::encode(value)?, Vec::new()),
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
    match proto::Codec::try_from(payload.codec) {
        Ok(proto::Codec::Msgpack) => msgpack::decode_parts(&payload.data, &payload.buffers),
        Ok(proto::Codec::Json) => json::decode(&payload.data),
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
