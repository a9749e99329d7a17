//! Config validation NIF: the Elixir config term is checked by the core's schema.

use rustler::{Encoder, Env, Term};

use snakebridge_core::config;
use snakebridge_core::value::Path;

use crate::{atoms, terms};

/// `:ok`, or `{:error, [{path, message}]}` with every problem of the config.
#[rustler::nif]
fn config_validate<'a>(env: Env<'a>, config: Term<'a>) -> Term<'a> {
    let mut refs = terms::Refs {
        inert_callbacks: true,
        ..terms::Refs::default()
    };
    let value = match terms::to_value(config, &mut Path::root("config"), &mut refs) {
        Ok(value) => value,
        Err(unsupported) => {
            let problem = (unsupported.path, unsupported.message);
            return (atoms::error(), vec![problem]).encode(env);
        }
    };
    let errors = config::validate(&value);
    if errors.is_empty() {
        atoms::ok().encode(env)
    } else {
        let problems: Vec<(String, String)> =
            errors.into_iter().map(|e| (e.path, e.message)).collect();
        (atoms::error(), problems).encode(env)
    }
}

/// The module plan of `config` (see `snakebridge_core::plan`) against the descriptor of
/// `integration` cached in `dir`: `{:ok, plan}`, `{:error, [{path, message}]}` (invalid
/// config, or references the descriptor lacks) or `{:error, :no_descriptor}`.
#[rustler::nif(schedule = "DirtyIo")]
fn generator_plan<'a>(
    env: Env<'a>,
    config: Term<'a>,
    dir: String,
    integration: String,
) -> Term<'a> {
    let mut refs = terms::Refs {
        inert_callbacks: true,
        ..terms::Refs::default()
    };
    let value = match terms::to_value(config, &mut Path::root("config"), &mut refs) {
        Ok(value) => value,
        Err(unsupported) => {
            return (
                atoms::error(),
                vec![(unsupported.path, unsupported.message)],
            )
                .encode(env)
        }
    };
    let problems = |errors: Vec<config::ConfigError>| {
        let problems: Vec<(String, String)> =
            errors.into_iter().map(|e| (e.path, e.message)).collect();
        (atoms::error(), problems).encode(env)
    };
    let errors = config::validate(&value);
    if !errors.is_empty() {
        return problems(errors);
    }
    let entry = match crate::describe::cache(&dir).load(&integration, None) {
        Ok(Some(entry)) => entry,
        Ok(None) => return (atoms::error(), atoms::no_descriptor()).encode(env),
        Err(err) => {
            return problems(vec![config::ConfigError {
                path: "descriptor".into(),
                message: err.to_string(),
            }])
        }
    };
    match snakebridge_core::plan::plan(&value, &entry.descriptor) {
        Ok(plan) => (
            atoms::ok(),
            terms::from_value(env, &plan, &terms::Origin::none()),
        )
            .encode(env),
        Err(errors) => problems(errors),
    }
}
