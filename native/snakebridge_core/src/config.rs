//! Validation of integration configs (`use SnakeBridge.Config`, `config/snakebridge/*.exs`).
//!
//! The schema below is the one place that says which keys a config may have and of which
//! type. [`validate`] checks a config (converted to a [`Value`] by the binding: atoms and
//! strings are both [`Value::Str`], functions are [`Value::Callback`]) and returns every
//! error at once, each with the path of the offending part in the config's own terms:
//! `classes[3].methods[1].timeout`.

use crate::types::Types;
use crate::value::Value;

/// What a key's value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A non-empty string or an atom.
    Name,
    /// Any string (documentation, possibly empty).
    Text,
    Bool,
    /// A non-negative integer.
    Count,
    /// A positive integer of milliseconds, or `:infinity`.
    Timeout,
    /// A list of names.
    Names,
    /// One of the given atoms.
    OneOf(&'static [&'static str]),
    /// A function (or `{module, function, arity}`).
    Function,
    /// Anything (checked where it is used).
    Any,
    /// A type (see [`crate::types::Types::config`]).
    Type,
    /// A map of parameter names to types.
    Types,
    /// A map with the given schema.
    Map(&'static Schema),
    /// A list of maps with the given schema.
    ListOf(&'static Schema),
}

/// The keys of one map: name, kind, required.
type Schema = [(&'static str, Kind, bool)];

const INTROSPECTION: &Schema = &[
    ("enabled", Kind::Bool, false),
    ("cache_path", Kind::Name, false),
    ("discovery_depth", Kind::Count, false),
    ("submodules", Kind::Names, false),
    ("exclude_patterns", Kind::Names, false),
];

const CONSTRUCTOR: &Schema = &[
    ("args", Kind::Types, false),
    ("session_aware", Kind::Bool, false),
    ("timeout", Kind::Timeout, false),
];

const METHOD: &Schema = &[
    ("name", Kind::Name, true),
    ("elixir_name", Kind::Name, false),
    ("description", Kind::Text, false),
    ("streaming", Kind::Bool, false),
    ("args", Kind::Types, false),
    ("returns", Kind::Type, false),
    ("timeout", Kind::Timeout, false),
];

const PROPERTY: &Schema = &[
    ("name", Kind::Name, true),
    ("elixir_name", Kind::Name, false),
    ("type", Kind::Type, false),
    ("readonly", Kind::Bool, false),
];

const CLASS: &Schema = &[
    ("python_path", Kind::Name, true),
    ("elixir_module", Kind::Name, false),
    ("description", Kind::Text, false),
    ("extends", Kind::Name, false),
    ("singleton", Kind::Bool, false),
    ("constructor", Kind::Map(CONSTRUCTOR), false),
    ("methods", Kind::ListOf(METHOD), false),
    ("properties", Kind::ListOf(PROPERTY), false),
    ("result_transform", Kind::Function, false),
];

const FUNCTION: &Schema = &[
    ("python_path", Kind::Name, true),
    ("elixir_name", Kind::Name, false),
    ("description", Kind::Text, false),
    ("args", Kind::Types, false),
    ("returns", Kind::Type, false),
    ("pure", Kind::Bool, false),
    ("cacheable", Kind::Bool, false),
    ("timeout", Kind::Timeout, false),
    ("streaming", Kind::Bool, false),
];

const TOOL: &Schema = &[
    ("python_name", Kind::Name, true),
    ("function", Kind::Function, true),
    ("description", Kind::Text, false),
];

const TOOLS: &Schema = &[
    ("enabled", Kind::Bool, false),
    ("export_to_python", Kind::ListOf(TOOL), false),
];

const GRPC: &Schema = &[("max_message_size", Kind::Count, false)];

const CACHING: &Schema = &[
    ("enabled", Kind::Bool, false),
    ("ttl", Kind::Timeout, false),
];

const TELEMETRY: &Schema = &[
    ("enabled", Kind::Bool, false),
    ("prefix", Kind::Names, false),
];

const CODECS: &[&str] = &["msgpack", "json"];

const SERIALIZATION: &Schema = &[
    ("args", Kind::OneOf(CODECS), false),
    ("result", Kind::OneOf(CODECS), false),
    ("tensor_passthrough", Kind::Bool, false),
];

const SESSION: &Schema = &[
    ("mode", Kind::OneOf(&["ephemeral", "pooled"]), false),
    ("timeout", Kind::Timeout, false),
];

const INIT_CALL: &Schema = &[
    ("python_path", Kind::Name, true),
    ("args", Kind::Any, false),
    ("kwargs", Kind::Any, false),
];

/// The top level of a config.
const CONFIG: &Schema = &[
    ("python_module", Kind::Name, true),
    ("integration_id", Kind::Name, false),
    // The Elixir namespace of the generated modules (default: the module camelized).
    ("elixir_module", Kind::Name, false),
    ("version", Kind::Name, false),
    ("description", Kind::Text, false),
    ("introspection", Kind::Map(INTROSPECTION), false),
    ("classes", Kind::ListOf(CLASS), false),
    ("functions", Kind::ListOf(FUNCTION), false),
    ("bidirectional_tools", Kind::Map(TOOLS), false),
    ("grpc", Kind::Map(GRPC), false),
    ("caching", Kind::Map(CACHING), false),
    ("telemetry", Kind::Map(TELEMETRY), false),
    ("serialization", Kind::Map(SERIALIZATION), false),
    ("session", Kind::Map(SESSION), false),
    ("python_deps", Kind::Names, false),
    ("init", Kind::ListOf(INIT_CALL), false),
    ("allowed_modules", Kind::Names, false),
    ("mixins", Kind::Names, false),
    ("extends", Kind::Name, false),
];

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where, e.g. `classes[3].methods[1].timeout`.
    pub path: String,
    /// What is wrong there, e.g. `is required`.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of `config`, in document order; empty when it is valid.
pub fn validate(config: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    check_map(config, CONFIG, "", &mut errors);
    if errors.is_empty() {
        check_references(config, &mut errors);
    }
    errors
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "nil".to_owned(),
        other => format!("a {}", other.kind()),
    }
}

fn map_entries(value: &Value) -> Option<&[(Value, Value)]> {
    match value {
        Value::Map(entries) => Some(entries),
        _ => None,
    }
}

fn check_map(value: &Value, schema: &Schema, path: &str, errors: &mut Vec<ConfigError>) {
    let Some(entries) = map_entries(value) else {
        errors.push(ConfigError {
            path: if path.is_empty() {
                "config".into()
            } else {
                path.into()
            },
            message: format!("expected a map, got {}", describe(value)),
        });
        return;
    };
    for (key, value) in entries {
        let Value::Str(name) = key else {
            errors.push(ConfigError {
                path: path.to_owned(),
                message: format!("keys must be atoms, got {}", describe(key)),
            });
            continue;
        };
        match schema.iter().find(|(known, _, _)| known == name) {
            Some((_, kind, _)) => check(value, *kind, &join(path, name), errors),
            None => {
                let known: Vec<&str> = schema.iter().map(|(k, _, _)| *k).collect();
                errors.push(ConfigError {
                    path: join(path, name),
                    message: format!("unknown key (known keys: {})", known.join(", ")),
                });
            }
        }
    }
    for (name, _, required) in schema {
        let present = entries
            .iter()
            .any(|(key, _)| matches!(key, Value::Str(k) if k == name));
        if *required && !present {
            errors.push(ConfigError {
                path: join(path, name),
                message: "is required".to_owned(),
            });
        }
    }
}

fn check(value: &Value, kind: Kind, path: &str, errors: &mut Vec<ConfigError>) {
    let mut fail = |expected: &str| {
        errors.push(ConfigError {
            path: path.to_owned(),
            message: format!("expected {expected}, got {}", describe(value)),
        })
    };
    match kind {
        Kind::Any => {}
        Kind::Text => {
            if !matches!(value, Value::Str(_)) {
                fail("a string");
            }
        }
        Kind::Name => {
            if !matches!(value, Value::Str(s) if !s.is_empty()) {
                fail("a non-empty string or atom");
            }
        }
        Kind::Bool => {
            if !matches!(value, Value::Bool(_)) {
                fail("a boolean");
            }
        }
        Kind::Count => {
            if !matches!(value, Value::Int(n) if *n >= 0) {
                fail("a non-negative integer");
            }
        }
        Kind::Timeout => {
            let ok = match value {
                Value::Int(n) => *n > 0,
                Value::Str(s) => s == "infinity",
                // `:infinity` reaches the core as the float infinity.
                Value::Float(f) => f.is_infinite() && *f > 0.0,
                _ => false,
            };
            if !ok {
                fail("a positive number of milliseconds or :infinity");
            }
        }
        Kind::Names => match value {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, Kind::Name, &format!("{path}[{i}]"), errors);
                }
            }
            _ => fail("a list of strings or atoms"),
        },
        Kind::OneOf(choices) => {
            if !matches!(value, Value::Str(s) if choices.contains(&s.as_str())) {
                let choices: Vec<String> = choices.iter().map(|c| format!(":{c}")).collect();
                fail(&format!("one of {}", choices.join(", ")));
            }
        }
        Kind::Function => {
            let ok = match value {
                Value::Callback(_) => true,
                Value::Tuple(items) => matches!(
                    items.as_slice(),
                    [Value::Str(_), Value::Str(_), Value::Int(_)]
                ),
                _ => false,
            };
            if !ok {
                fail("a function or a {module, function, arity} tuple");
            }
        }
        Kind::Type => {
            if let Err(message) = Types::default().config(value) {
                errors.push(ConfigError {
                    path: path.to_owned(),
                    message,
                });
            }
        }
        Kind::Types => match map_entries(value) {
            Some(entries) => {
                for (name, t) in entries {
                    match name {
                        Value::Str(name) => check(t, Kind::Type, &join(path, name), errors),
                        other => errors.push(ConfigError {
                            path: path.to_owned(),
                            message: format!(
                                "parameter names must be atoms or strings, got {}",
                                describe(other)
                            ),
                        }),
                    }
                }
            }
            None => fail("a map of parameter names to types"),
        },
        Kind::Map(schema) => check_map(value, schema, path, errors),
        Kind::ListOf(schema) => match value {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_map(item, schema, &format!("{path}[{i}]"), errors);
                }
            }
            _ => fail("a list of maps"),
        },
    }
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map_entries(map)?
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v)
}

fn name_of(value: Option<&Value>) -> Option<&str> {
    match value {
        Some(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Cross-references: `extends` must name another class of the config, and names that
/// become Elixir modules or functions must not collide.
fn check_references(config: &Value, errors: &mut Vec<ConfigError>) {
    let classes: &[Value] = match field(config, "classes") {
        Some(Value::List(classes)) => classes,
        _ => &[],
    };
    let known: Vec<&str> = classes
        .iter()
        .flat_map(|c| {
            [
                name_of(field(c, "python_path")),
                name_of(field(c, "elixir_module")),
            ]
        })
        .flatten()
        .collect();
    let mut modules: Vec<(&str, usize)> = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        if let Some(parent) = name_of(field(class, "extends")) {
            if !known.contains(&parent) {
                errors.push(ConfigError {
                    path: format!("classes[{i}].extends"),
                    message: format!("{parent:?} is not a class of this config"),
                });
            }
        }
        if let Some(module) = name_of(field(class, "elixir_module")) {
            if let Some((_, first)) = modules.iter().find(|(m, _)| *m == module) {
                errors.push(ConfigError {
                    path: format!("classes[{i}].elixir_module"),
                    message: format!("{module:?} is already the module of classes[{first}]"),
                });
            } else {
                modules.push((module, i));
            }
        }
        let methods: &[Value] = match field(class, "methods") {
            Some(Value::List(methods)) => methods,
            _ => &[],
        };
        let mut names: Vec<(&str, usize)> = Vec::new();
        for (j, method) in methods.iter().enumerate() {
            let name = name_of(field(method, "elixir_name")).or(name_of(field(method, "name")));
            if let Some(name) = name {
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                    errors.push(ConfigError {
                        path: format!("classes[{i}].methods[{j}]"),
                        message: format!(
                            "the Elixir name {name:?} is already used by classes[{i}].methods[{first}]"
                        ),
                    });
                } else {
                    names.push((name, j));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::Str(text.to_owned())
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
    }

    fn paths(config: &Value) -> Vec<String> {
        validate(config)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_seed_style_config_is_valid() {
        let config = map(vec![
            ("python_module", s("dspy")),
            ("version", s("2.6")),
            (
                "introspection",
                map(vec![
                    ("enabled", Value::Bool(true)),
                    ("discovery_depth", Value::Int(2)),
                ]),
            ),
            (
                "classes",
                Value::List(vec![map(vec![
                    ("python_path", s("dspy.Predict")),
                    ("elixir_module", s("Elixir.DSPy.Predict")),
                    (
                        "constructor",
                        map(vec![
                            ("args", Value::Map(vec![])),
                            ("timeout", Value::Int(30_000)),
                        ]),
                    ),
                    (
                        "methods",
                        Value::List(vec![map(vec![
                            ("name", s("__call__")),
                            ("elixir_name", s("call")),
                            ("streaming", Value::Bool(false)),
                        ])]),
                    ),
                ])]),
            ),
            (
                "functions",
                Value::List(vec![map(vec![
                    ("python_path", s("dspy.configure")),
                    ("pure", Value::Bool(false)),
                    ("timeout", s("infinity")),
                ])]),
            ),
            (
                "serialization",
                map(vec![("args", s("msgpack")), ("result", s("json"))]),
            ),
        ]);
        assert_eq!(paths(&config), Vec::<String>::new());
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_path() {
        let config = map(vec![
            ("version", Value::Int(2)),
            ("colour", s("blue")),
            (
                "classes",
                Value::List(vec![
                    map(vec![("python_path", s("a.B"))]),
                    map(vec![
                        ("python_path", s("a.C")),
                        (
                            "methods",
                            Value::List(vec![
                                map(vec![("name", s("f"))]),
                                map(vec![("name", s("g")), ("timeout", Value::Int(-5))]),
                            ]),
                        ),
                    ]),
                ]),
            ),
            ("serialization", map(vec![("args", s("xml"))])),
        ]);
        let errors = paths(&config);
        assert!(errors.contains(&"version: expected a non-empty string or atom, got 2".into()));
        assert!(errors.iter().any(|e| e.starts_with("colour: unknown key")));
        assert!(errors.contains(
            &"classes[1].methods[1].timeout: expected a positive number of milliseconds or :infinity, got -5"
                .into()
        ));
        assert!(errors
            .contains(&"serialization.args: expected one of :msgpack, :json, got \"xml\"".into()));
        assert!(errors.contains(&"python_module: is required".into()));
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn bad_references_and_collisions_are_errors() {
        let config = map(vec![
            ("python_module", s("a")),
            (
                "classes",
                Value::List(vec![
                    map(vec![
                        ("python_path", s("a.B")),
                        ("elixir_module", s("Elixir.A.B")),
                        ("extends", s("a.Missing")),
                    ]),
                    map(vec![
                        ("python_path", s("a.C")),
                        ("elixir_module", s("Elixir.A.B")),
                        (
                            "methods",
                            Value::List(vec![
                                map(vec![("name", s("run"))]),
                                map(vec![("name", s("go")), ("elixir_name", s("run"))]),
                            ]),
                        ),
                    ]),
                ]),
            ),
        ]);
        let errors = paths(&config);
        assert!(errors
            .iter()
            .any(|e| e.starts_with("classes[0].extends: \"a.Missing\"")));
        assert!(errors
            .iter()
            .any(|e| e.starts_with("classes[1].elixir_module:")));
        assert!(errors
            .iter()
            .any(|e| e.starts_with("classes[1].methods[1]: the Elixir name \"run\"")));
    }

    #[test]
    fn a_config_that_is_not_a_map() {
        assert_eq!(
            paths(&Value::List(vec![])),
            vec!["config: expected a map, got a list"]
        );
    }
}
