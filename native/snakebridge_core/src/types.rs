//! Elixir typespecs (as source text) for the generated `@spec`s: from the type descriptors
//! of introspection, and from the types a config writes in `args`, `returns` and a
//! property's `type`.
//!
//! A Python class that the config generates a module for is that module's `t()`; other
//! classes are `SnakeBridge.Ref.t()`, except the ones values convert to (`datetime`).

use crate::proto::{type_descriptor::Kind as TypeKind, TypeDescriptor};
use crate::value::Value;

/// The names a config may use for a type, with their typespecs.
const CONFIG_NAMES: &[(&str, &str)] = &[
    ("string", "String.t()"),
    ("integer", "integer()"),
    ("float", "float()"),
    ("number", "number()"),
    ("boolean", "boolean()"),
    ("binary", "binary()"),
    ("atom", "atom()"),
    ("map", "map()"),
    ("list", "list()"),
    ("any", "term()"),
    ("term", "term()"),
    ("none", "nil"),
];

/// Python classes whose instances cross as Elixir values rather than refs.
const VALUE_CLASSES: &[(&str, &str)] = &[
    ("datetime.datetime", "DateTime.t() | NaiveDateTime.t()"),
    ("datetime.date", "Date.t()"),
    ("datetime.time", "Time.t()"),
];

/// Maps Python classes to the Elixir modules generated for them.
#[derive(Debug, Default, Clone)]
pub struct Types {
    /// `(python_path, elixir module without "Elixir.")`.
    classes: Vec<(String, String)>,
}

impl Types {
    /// Types for a config whose classes are generated as `(python_path, module)`.
    pub fn new(classes: impl IntoIterator<Item = (String, String)>) -> Self {
        let classes = classes
            .into_iter()
            .map(|(path, module)| {
                let module = module.strip_prefix("Elixir.").unwrap_or(&module).to_owned();
                (path, module)
            })
            .collect();
        Types { classes }
    }

    /// The typespec of an introspected type (`term()` when unknown).
    pub fn spec(&self, t: Option<&TypeDescriptor>) -> String {
        let Some(t) = t else {
            return "term()".into();
        };
        let arg = |i: usize| self.spec(t.args.get(i));
        match TypeKind::try_from(t.kind).unwrap_or(TypeKind::Any) {
            TypeKind::Any => "term()".into(),
            TypeKind::Literal => literals(&t.literals),
            TypeKind::Primitive => primitive(&t.name).unwrap_or("term()").into(),
            TypeKind::List if t.args.is_empty() => "list()".into(),
            TypeKind::List => format!("[{}]", arg(0)),
            TypeKind::Dict if t.args.len() < 2 => "map()".into(),
            TypeKind::Dict => format!("%{{optional({}) => {}}}", arg(0), arg(1)),
            TypeKind::Tuple => {
                let variadic = t.args.iter().any(|a| a.name == "...");
                if t.args.is_empty() || variadic {
                    "tuple()".into()
                } else {
                    let parts: Vec<String> = t.args.iter().map(|a| self.spec(Some(a))).collect();
                    format!("{{{}}}", parts.join(", "))
                }
            }
            TypeKind::Set => "MapSet.t()".into(),
            TypeKind::Optional => format!("{} | nil", arg(0)),
            TypeKind::Union => {
                let mut parts: Vec<String> = Vec::new();
                for a in &t.args {
                    let part = self.spec(Some(a));
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                if parts.is_empty() || parts.iter().any(|p| p == "term()") {
                    "term()".into()
                } else {
                    parts.join(" | ")
                }
            }
            TypeKind::Class => self.class(&t.name),
        }
    }

    /// The typespec of a Python class: its generated module's `t()`, a value type, or a
    /// ref. The class may be named by the path the config uses (`json.JSONEncoder`) or by
    /// where it is defined (`json.encoder.JSONEncoder`): the package and the class name
    /// must then match one generated class only.
    pub fn class(&self, path: &str) -> String {
        if let Some((_, spec)) = VALUE_CLASSES.iter().find(|(p, _)| *p == path) {
            return (*spec).into();
        }
        if let Some((_, module)) = self.classes.iter().find(|(p, _)| p == path) {
            return format!("{module}.t()");
        }
        let (package, name) = (head(path), tail(path));
        let mut candidates = self
            .classes
            .iter()
            .filter(|(p, _)| head(p) == package && tail(p) == name);
        match (candidates.next(), candidates.next()) {
            (Some((_, module)), None) => format!("{module}.t()"),
            _ => "SnakeBridge.Ref.t()".into(),
        }
    }

    /// The typespec of a type written in a config: a name (`:string`, ...), a Python class
    /// path, an Elixir module (its `t()`), or `{:list, t}`, `{:map, k, v}`,
    /// `{:optional, t}`, `{:union, [t, ...]}`. The error says what is wrong.
    pub fn config(&self, value: &Value) -> Result<String, String> {
        match value {
            Value::Str(name) => {
                if let Some((_, spec)) = CONFIG_NAMES.iter().find(|(n, _)| n == name) {
                    Ok((*spec).into())
                } else if let Some(module) = name.strip_prefix("Elixir.") {
                    Ok(format!("{module}.t()"))
                } else if let Some(spec) = primitive(name) {
                    Ok(spec.into())
                } else if name.contains('.') && name.split('.').all(is_identifier) {
                    Ok(self.class(name))
                } else {
                    let names: Vec<String> =
                        CONFIG_NAMES.iter().map(|(n, _)| format!(":{n}")).collect();
                    Err(format!(
                        "unknown type {name:?} (expected one of {}, a Python class path, a module, or {{:list, t}}, {{:map, k, v}}, {{:optional, t}}, {{:union, [t]}})",
                        names.join(", ")
                    ))
                }
            }
            Value::Tuple(items) => match items.as_slice() {
                [Value::Str(tag), t] if tag == "list" => Ok(format!("[{}]", self.config(t)?)),
                [Value::Str(tag), t] if tag == "optional" => {
                    Ok(format!("{} | nil", self.config(t)?))
                }
                [Value::Str(tag), k, v] if tag == "map" => Ok(format!(
                    "%{{optional({}) => {}}}",
                    self.config(k)?,
                    self.config(v)?
                )),
                [Value::Str(tag), Value::List(options)]
                    if tag == "union" && !options.is_empty() =>
                {
                    let parts: Result<Vec<String>, String> =
                        options.iter().map(|o| self.config(o)).collect();
                    Ok(parts?.join(" | "))
                }
                _ => Err(
                    "expected {:list, t}, {:map, k, v}, {:optional, t} or {:union, [t, ...]}"
                        .into(),
                ),
            },
            other => Err(format!("expected a type, got a {}", other.kind())),
        }
    }
}

fn primitive(name: &str) -> Option<&'static str> {
    Some(match name {
        "int" => "integer()",
        "float" => "float()",
        "str" => "String.t()",
        "bool" => "boolean()",
        "bytes" | "bytearray" => "binary()",
        "None" | "NoneType" => "nil",
        "dict" => "map()",
        "list" => "list()",
        _ => return None,
    })
}

/// `Literal['a', 1, True, None]` -> `String.t() | 1 | true | nil`.
fn literals(reprs: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for repr in reprs {
        let part = match repr.as_str() {
            "True" => "true".to_owned(),
            "False" => "false".to_owned(),
            "None" => "nil".to_owned(),
            r if r.starts_with('\'') || r.starts_with('"') => "String.t()".to_owned(),
            r if r.parse::<i64>().is_ok() => r.to_owned(),
            _ => return "term()".into(),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "term()".into()
    } else {
        parts.join(" | ")
    }
}

fn head(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

fn tail(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TypeKind, name: &str, args: Vec<TypeDescriptor>) -> TypeDescriptor {
        TypeDescriptor {
            kind: kind as i32,
            name: name.into(),
            args,
            literals: vec![],
        }
    }

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    fn types() -> Types {
        Types::new([
            ("json.JSONEncoder".into(), "Elixir.JSON.Encoder".into()),
            ("dspy.Prediction".into(), "Elixir.DSPy.Prediction".into()),
        ])
    }

    #[test]
    fn type_descriptors_become_typespecs() {
        let types = types();
        let int = t(TypeKind::Primitive, "int", vec![]);
        let list = t(TypeKind::List, "", vec![int.clone()]);
        assert_eq!(
            types.spec(Some(&t(TypeKind::Optional, "", vec![list]))),
            "[integer()] | nil"
        );
        assert_eq!(types.spec(None), "term()");
        let pair = t(
            TypeKind::Tuple,
            "",
            vec![int.clone(), t(TypeKind::Primitive, "str", vec![])],
        );
        assert_eq!(types.spec(Some(&pair)), "{integer(), String.t()}");
        let variadic = t(
            TypeKind::Tuple,
            "",
            vec![int, t(TypeKind::Any, "...", vec![])],
        );
        assert_eq!(types.spec(Some(&variadic)), "tuple()");
        let mut literal = t(TypeKind::Literal, "", vec![]);
        literal.literals = vec!["'a'".into(), "'b'".into(), "3".into(), "None".into()];
        assert_eq!(types.spec(Some(&literal)), "String.t() | 3 | nil");
        assert_eq!(
            types.spec(Some(&t(TypeKind::Class, "datetime.date", vec![]))),
            "Date.t()"
        );
    }

    #[test]
    fn generated_classes_are_their_modules_t() {
        let types = types();
        assert_eq!(types.class("json.JSONEncoder"), "JSON.Encoder.t()");
        // Named where it is defined: same package, same class name.
        assert_eq!(types.class("json.encoder.JSONEncoder"), "JSON.Encoder.t()");
        assert_eq!(
            types.class("dspy.primitives.prediction.Prediction"),
            "DSPy.Prediction.t()"
        );
        assert_eq!(types.class("numpy.ndarray"), "SnakeBridge.Ref.t()");
    }

    #[test]
    fn config_types_become_typespecs_or_errors() {
        let types = types();
        assert_eq!(types.config(&s("string")).unwrap(), "String.t()");
        assert_eq!(
            types.config(&s("Elixir.MyApp.Thing")).unwrap(),
            "MyApp.Thing.t()"
        );
        assert_eq!(
            types.config(&s("dspy.Prediction")).unwrap(),
            "DSPy.Prediction.t()"
        );
        assert_eq!(
            types
                .config(&Value::Tuple(vec![s("list"), s("integer")]))
                .unwrap(),
            "[integer()]"
        );
        assert_eq!(
            types
                .config(&Value::Tuple(vec![
                    s("union"),
                    Value::List(vec![s("string"), s("none")])
                ]))
                .unwrap(),
            "String.t() | nil"
        );
        assert!(types
            .config(&s("strnig"))
            .unwrap_err()
            .contains("unknown type"));
        assert!(types.config(&Value::Int(3)).is_err());
    }
}
