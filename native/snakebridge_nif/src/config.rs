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
