//! Config NIFs: the Elixir config term is checked by the core's schema, and planned into
//! the modules the generator writes.

use rustler::{Encoder, Env, Term};

use snakebridge_core::config::{self, ConfigError};
use snakebridge_core::value::Path;
use snakebridge_core::Value;

use crate::types::ModulePlan;
use crate::{atoms, terms};

/// The config as a value, or the problems that keep it from being one. Functions in it
/// (result transforms, tools) are only inspected, not kept for Python.
fn config_value(config: Term) -> Result<Value, Vec<ConfigError>> {
    let mut refs = terms::Refs {
        inert_callbacks: true,
        ..terms::Refs::default()
    };
    terms::to_value(config, &mut Path::root("config"), &mut refs).map_err(|unsupported| {
        vec![ConfigError {
            path: unsupported.path,
            message: unsupported.message,
        }]
    })
}

/// `{:error, [{path, message}]}`.
fn problems(env: Env<'_>, errors: Vec<ConfigError>) -> Term<'_> {
    let problems: Vec<(String, String)> = errors.into_iter().map(|e| (e.path, e.message)).collect();
    (atoms::error(), problems).encode(env)
}

/// The config's value, validated.
fn valid_config(config: Term) -> Result<Value, Vec<ConfigError>> {
    let value = config_value(config)?;
    let errors = config::validate(&value);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

/// `:ok`, or `{:error, [{path, message}]}` with every problem of the config.
#[rustler::nif]
fn config_validate<'a>(env: Env<'a>, config: Term<'a>) -> Term<'a> {
    match valid_config(config) {
        Ok(_) => atoms::ok().encode(env),
        Err(errors) => problems(env, errors),
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
    let value = match valid_config(config) {
        Ok(value) => value,
        Err(errors) => return problems(env, errors),
    };
    let entry = match crate::describe::cache(&dir).load(&integration, None) {
        Ok(Some(entry)) => entry,
        Ok(None) => return (atoms::error(), atoms::no_descriptor()).encode(env),
        Err(err) => {
            let error = ConfigError {
                path: "descriptor".into(),
                message: err.to_string(),
            };
            return problems(env, vec![error]);
        }
    };
    match snakebridge_core::plan::plan(&value, &entry.descriptor) {
        Ok(plan) => match plan
            .into_iter()
            .map(|module| ModulePlan::new(env, module))
            .collect::<rustler::NifResult<Vec<_>>>()
        {
            Ok(modules) => (atoms::ok(), modules).encode(env),
            Err(_) => problems(
                env,
                vec![ConfigError {
                    path: "config".into(),
                    message: "a generated name is too long to be an atom".into(),
                }],
            ),
        },
        Err(errors) => problems(env, errors),
    }
}
