//! The core's cross-language rules and constants (`snakebridge_core::contract`, the Python
//! naming rule of `snakebridge_core::plan`), for Elixir: it reads them here rather than
//! keeping copies.

use rustler::types::atom::Atom;
use rustler::{Encoder, Env, Term};

use snakebridge_core::contract;

/// `%{default_threads:, default_max_message_size:, default_max_payload_size:,
/// default_max_result_size:, default_max_elements:, default_shared_min_size:, nested_call_key:, call_nested:, register_tool:,
/// tensor_types: [{numpy_name, {kind, bits}}]}`.
#[rustler::nif]
fn contract(env: Env<'_>) -> rustler::NifResult<Term<'_>> {
    let tensor_types: Vec<Term> = contract::tensor_types()
        .map(|(name, (kind, bits))| {
            let kind = Atom::from_str(env, kind)?;
            Ok((name, (kind, bits)).encode(env))
        })
        .collect::<rustler::NifResult<_>>()?;
    let pairs: Vec<(Term, Term)> = vec![
        (
            key(env, "default_threads")?,
            contract::DEFAULT_THREADS.encode(env),
        ),
        (
            key(env, "default_max_message_size")?,
            contract::DEFAULT_MAX_MESSAGE_SIZE.encode(env),
        ),
        (
            key(env, "default_max_payload_size")?,
            contract::DEFAULT_MAX_PAYLOAD_SIZE.encode(env),
        ),
        (
            key(env, "default_max_result_size")?,
            contract::DEFAULT_MAX_RESULT_SIZE.encode(env),
        ),
        (
            key(env, "default_max_elements")?,
            contract::DEFAULT_MAX_ELEMENTS.encode(env),
        ),
        (
            key(env, "default_shared_min_size")?,
            contract::DEFAULT_SHARED_MIN_SIZE.encode(env),
        ),
        (
            key(env, "nested_call_key")?,
            contract::NESTED_CALL_KEY.encode(env),
        ),
        (key(env, "call_nested")?, contract::CALL_NESTED.encode(env)),
        (
            key(env, "register_tool")?,
            contract::REGISTER_TOOL.encode(env),
        ),
        (key(env, "tensor_types")?, tensor_types.encode(env)),
    ];
    Term::map_from_pairs(env, &pairs)
}

fn key<'a>(env: Env<'a>, name: &str) -> rustler::NifResult<Term<'a>> {
    Ok(Atom::from_str(env, name)?.encode(env))
}

/// The Elixir-safe snake_case name SnakeBridge gives the Python name `python`.
#[rustler::nif]
fn naming_elixir_name(python: String) -> String {
    snakebridge_core::plan::elixir_name(&python)
}

/// `dspy.chain_of_thought` as Elixir's module segments: `Dspy.ChainOfThought`.
#[rustler::nif]
fn naming_camelize(dotted: String) -> String {
    snakebridge_core::plan::camelize(&dotted)
}
