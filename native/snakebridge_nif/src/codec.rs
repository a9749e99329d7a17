//! Values ⇄ encoded bytes for users (`SnakeBridge.TypeConverter`): the same conversion a
//! call's arguments and results go through, in either codec. Both run on a dirty CPU
//! scheduler: a large term never blocks a normal one.

use rustler::{Binary, Encoder, Env, NifResult, Term};
use snakebridge_core::codec::{json, msgpack, Limits};
use snakebridge_core::proto;

use crate::types::Codec;
use crate::{atoms, buffers, terms};

/// `{:ok, binary}`, `{:error, {:unsupported, path, message}}` for a term that cannot
/// cross, or `{:error, message}` for one the codec cannot write. The bytes are written
/// straight from the term (see [`terms::encode`]), large binaries in band.
#[rustler::nif(schedule = "DirtyCpu")]
fn codec_encode<'a>(env: Env<'a>, term: Term<'a>, codec: Codec) -> NifResult<Term<'a>> {
    let codec = proto::Codec::from(codec);
    let mut refs = terms::Refs {
        inert_callbacks: true,
        ..terms::Refs::default()
    };
    Ok(
        match terms::encode(
            terms::Input::Term(term, "value"),
            &mut refs,
            codec,
            false,
            Limits::NONE,
        ) {
            // A large result becomes a binary over the encoder's own buffer (no copy).
            Ok((bytes, _)) => (atoms::ok(), buffers::binary_term(env, &bytes.into())).encode(env),
            Err(terms::Refused::Unsupported(unsupported)) => (
                atoms::error(),
                (atoms::unsupported(), unsupported.path, unsupported.message),
            )
                .encode(env),
            Err(terms::Refused::Codec(err)) => (atoms::error(), err.to_string()).encode(env),
        },
    )
}

/// `{:ok, term}` or `{:error, message}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn codec_decode<'a>(env: Env<'a>, bytes: Binary<'a>, codec: Codec) -> NifResult<Term<'a>> {
    let decoded = match codec {
        Codec::Msgpack => msgpack::decode(bytes.as_slice()),
        Codec::Json => json::decode(bytes.as_slice()),
    };
    Ok(match decoded {
        Ok(value) => (
            atoms::ok(),
            terms::from_value(env, &value, &terms::Origin::none()),
        )
            .encode(env),
        Err(err) => (atoms::error(), err.to_string()).encode(env),
    })
}
