//! The module plan: what Elixir modules and functions a config generates, worked out from
//! the config and the library's descriptor. The Elixir generator only turns the plan into
//! code (`@moduledoc`, `@doc`, `@spec`, `def`).
//!
//! A plan is a list of modules, each a map with string keys:
//! `module` (Elixir module name), `moduledoc`, `python` (Python module or class path) and
//! `functions`, each with `name` (Elixir-safe, unique in its module), `kind` (`function`,
//! `constructor`, `method`, `getter`, `setter`), `target` (what to call in Python), `args`
//! (Elixir names of the required positional parameters), `varargs` (the Elixir name of a
//! list standing for `*args`, or nil), `doc`, `arg_types` and
//! `return_type` (Elixir typespec source), `streaming`, and `timeout` (ms, or nil).

use std::collections::HashSet;

use crate::config::ConfigError;
use crate::proto::{
    parameter_descriptor::Kind as ParamKind, type_descriptor::Kind as TypeKind,
    DescribeLibraryResponse, FunctionDescriptor, TypeDescriptor,
};
use crate::value::Value;

/// Words that cannot name an Elixir function or variable.
const RESERVED: &[&str] = &[
    "after", "and", "catch", "do", "else", "end", "false", "fn", "in", "nil", "not", "or",
    "rescue", "true", "when", "def", "defp", "import", "require", "alias", "quote", "unquote",
    "super", "case", "cond", "receive", "try", "with", "for",
];

/// Names the generated functions of a module may not take (they are the bang variants or
/// functions every module gets).
const TAKEN: &[&str] = &["module_info", "__info__"];

/// An Elixir-safe snake_case name for a Python name.
pub fn elixir_name(python: &str) -> String {
    let mut out = String::new();
    let trimmed = python.trim_matches('_');
    let source = if trimmed.is_empty() { python } else { trimmed };
    let mut previous_lower = false;
    for c in source.chars() {
        if c.is_ascii_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            out.push('_');
            previous_lower = false;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "py_");
    }
    if RESERVED.contains(&out.as_str()) || TAKEN.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// The Elixir typespec (source) for a type descriptor.
pub fn typespec(t: Option<&TypeDescriptor>) -> String {
    let Some(t) = t else {
        return "term()".into();
    };
    let arg = |i: usize| typespec(t.args.get(i));
    match TypeKind::try_from(t.kind).unwrap_or(TypeKind::Any) {
        TypeKind::Any | TypeKind::Literal => "term()".into(),
        TypeKind::Primitive => match t.name.as_str() {
            "int" => "integer()".into(),
            "float" => "float()".into(),
            "str" => "String.t()".into(),
            "bool" => "boolean()".into(),
            "bytes" | "bytearray" => "binary()".into(),
            "None" | "NoneType" => "nil".into(),
            _ => "term()".into(),
        },
        TypeKind::List => format!("[{}]", arg(0)),
        TypeKind::Dict => format!("%{{optional({}) => {}}}", arg(0), arg(1)),
        TypeKind::Tuple => "tuple()".into(),
        TypeKind::Set => "MapSet.t()".into(),
        TypeKind::Optional => format!("{} | nil", arg(0)),
        TypeKind::Union => {
            let parts: Vec<String> = t.args.iter().map(|a| typespec(Some(a))).collect();
            if parts.is_empty() {
                "term()".into()
            } else {
                parts.join(" | ")
            }
        }
        TypeKind::Class => "SnakeBridge.Ref.t()".into(),
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(n) if n == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    match field(value, key) {
        Some(Value::Str(text)) => Some(text),
        _ => None,
    }
}

fn flag(value: &Value, key: &str) -> bool {
    matches!(field(value, key), Some(Value::Bool(true)))
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    match field(value, key) {
        Some(Value::List(items)) => items,
        _ => &[],
    }
}

fn timeout(value: &Value) -> Value {
    match field(value, "timeout") {
        Some(Value::Int(ms)) => Value::Int(*ms),
        _ => Value::Nil,
    }
}

/// Unique names within one module.
#[derive(Default)]
struct Names(HashSet<String>);

impl Names {
    fn claim(&mut self, wanted: String) -> String {
        let mut name = wanted.clone();
        let mut n = 2;
        // `x` and `x!` are both generated, so `x` must be free.
        while !self.0.insert(name.clone()) {
            name = format!("{wanted}_{n}");
            n += 1;
        }
        name
    }
}

/// The Markdown doc of a function: the Python signature, then the docstring.
fn doc(python: &str, f: &FunctionDescriptor, description: Option<&str>) -> String {
    let mut doc = String::new();
    match description.filter(|d| !d.is_empty()) {
        Some(description) => doc.push_str(description),
        None if !f.docstring.is_empty() => doc.push_str(&f.docstring),
        None => doc.push_str(&format!("Calls `{python}`.")),
    }
    doc.push_str(&format!(
        "\n\nPython: `{python}{}`\n\nRequired Python parameters are positional arguments (a list stands for `*args`); the others go in `kwargs`; SnakeBridge options (`:timeout`, `:session`, ...) in `opts`.",
        f.signature
    ));
    doc
}

/// The required positional parameters (Elixir names, made unique) with their types, and
/// the Elixir name of the `*args` list when the function takes one.
fn positional(f: &FunctionDescriptor) -> (Vec<Value>, Vec<Value>, Value) {
    let mut seen = Names::default();
    for taken in ["kwargs", "opts", "ref", "value"] {
        seen.claim(taken.into());
    }
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut varargs = Value::Nil;
    for p in &f.parameters {
        match ParamKind::try_from(p.kind).unwrap_or(ParamKind::PositionalOrKeyword) {
            ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword if p.required => {
                names.push(Value::Str(seen.claim(elixir_name(&p.name))));
                types.push(Value::Str(typespec(p.annotation.as_ref())));
            }
            ParamKind::VarPositional => {
                varargs = Value::Str(seen.claim(elixir_name(&p.name)));
            }
            _ => {}
        }
    }
    (names, types, varargs)
}

#[allow(clippy::too_many_arguments)]
fn function(
    names: &mut Names,
    wanted: &str,
    kind: &str,
    target: &str,
    python: &str,
    f: &FunctionDescriptor,
    entry: Option<&Value>,
    streaming: bool,
) -> Value {
    let name = names.claim(wanted.to_owned());
    let (args, arg_types, varargs) = positional(f);
    let description = entry.and_then(|e| text(e, "description"));
    map(vec![
        ("name", Value::Str(name)),
        ("kind", s(kind)),
        ("target", s(target)),
        ("args", Value::List(args)),
        ("arg_types", Value::List(arg_types)),
        ("varargs", varargs),
        ("return_type", Value::Str(typespec(f.return_type.as_ref()))),
        ("doc", Value::Str(doc(python, f, description))),
        ("streaming", Value::Bool(streaming)),
        ("timeout", entry.map(timeout).unwrap_or(Value::Nil)),
    ])
}

/// The plan for a (validated) config against its library's descriptor, or the config's
/// references that the descriptor does not have.
pub fn plan(
    config: &Value,
    descriptor: &DescribeLibraryResponse,
) -> Result<Value, Vec<ConfigError>> {
    let python_module = text(config, "python_module").unwrap_or_default();
    let prefix = text(config, "elixir_module")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Elixir.{}", camelize(python_module)));
    let mut errors = Vec::new();
    let mut modules = Vec::new();

    // Module-level functions live in the prefix module.
    let mut names = Names::default();
    let mut functions = Vec::new();
    for (i, entry) in items(config, "functions").iter().enumerate() {
        let path = text(entry, "python_path").unwrap_or_default();
        let Some(f) = descriptor.functions.get(path) else {
            errors.push(ConfigError {
                path: format!("functions[{i}].python_path"),
                message: format!("{path:?} is not in the descriptor of {python_module}"),
            });
            continue;
        };
        let wanted = text(entry, "elixir_name")
            .map(str::to_owned)
            .unwrap_or_else(|| elixir_name(&f.name));
        let streaming = flag(entry, "streaming") || f.is_generator || f.is_async_generator;
        functions.push(function(
            &mut names,
            &wanted,
            "function",
            path,
            path,
            f,
            Some(entry),
            streaming,
        ));
    }
    modules.push(map(vec![
        ("module", Value::Str(prefix.clone())),
        ("python", s(python_module)),
        (
            "moduledoc",
            Value::Str(
                text(config, "description")
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("Functions of the Python module `{python_module}`.")
                    }),
            ),
        ),
        ("functions", Value::List(functions)),
    ]));

    for (i, entry) in items(config, "classes").iter().enumerate() {
        let path = text(entry, "python_path").unwrap_or_default();
        let Some(class) = descriptor.classes.get(path) else {
            errors.push(ConfigError {
                path: format!("classes[{i}].python_path"),
                message: format!("{path:?} is not in the descriptor of {python_module}"),
            });
            continue;
        };
        let module = text(entry, "elixir_module")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let relative = path
                    .strip_prefix(&format!("{python_module}."))
                    .unwrap_or(path);
                format!("{prefix}.{}", camelize(relative))
            });
        let mut names = Names::default();
        let mut functions = Vec::new();
        let constructor = class.constructor.clone().unwrap_or_default();
        let ctor_entry = field(entry, "constructor");
        functions.push(function(
            &mut names,
            "create",
            "constructor",
            path,
            path,
            &constructor,
            ctor_entry,
            false,
        ));
        let configured = items(entry, "methods");
        for (j, m) in configured.iter().enumerate() {
            let name = text(m, "name").unwrap_or_default();
            let Some(f) = class.methods.get(name) else {
                errors.push(ConfigError {
                    path: format!("classes[{i}].methods[{j}].name"),
                    message: format!("{path} has no method {name:?}"),
                });
                continue;
            };
            let wanted = text(m, "elixir_name")
                .map(str::to_owned)
                .unwrap_or_else(|| elixir_name(name));
            let streaming = flag(m, "streaming") || f.is_generator || f.is_async_generator;
            let python = format!("{path}.{name}");
            functions.push(function(
                &mut names,
                &wanted,
                "method",
                name,
                &python,
                f,
                Some(m),
                streaming,
            ));
        }
        for (j, p) in items(entry, "properties").iter().enumerate() {
            let name = text(p, "name").unwrap_or_default();
            let Some(property) = class.properties.iter().find(|q| q.name == name) else {
                errors.push(ConfigError {
                    path: format!("classes[{i}].properties[{j}].name"),
                    message: format!("{path} has no property {name:?}"),
                });
                continue;
            };
            let wanted = text(p, "elixir_name")
                .map(str::to_owned)
                .unwrap_or_else(|| elixir_name(name));
            let readonly = property.readonly || flag(p, "readonly");
            let spec = typespec(property.r#type.as_ref());
            let getter = FunctionDescriptor {
                signature: String::new(),
                docstring: property.docstring.clone(),
                ..Default::default()
            };
            let python = format!("{path}.{name}");
            let mut get = function(
                &mut names,
                &wanted,
                "getter",
                name,
                &python,
                &getter,
                Some(p),
                false,
            );
            set_field(&mut get, "return_type", Value::Str(spec.clone()));
            functions.push(get);
            if !readonly {
                let mut set = function(
                    &mut names,
                    &format!("set_{wanted}"),
                    "setter",
                    name,
                    &python,
                    &getter,
                    Some(p),
                    false,
                );
                set_field(&mut set, "arg_types", Value::List(vec![Value::Str(spec)]));
                functions.push(set);
            }
        }
        let moduledoc = text(entry, "description")
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if class.docstring.is_empty() {
                    format!("The Python class `{path}`.")
                } else {
                    class.docstring.clone()
                }
            });
        modules.push(map(vec![
            ("module", Value::Str(module)),
            ("python", s(path)),
            ("moduledoc", Value::Str(moduledoc)),
            ("functions", Value::List(functions)),
        ]));
    }
    if errors.is_empty() {
        Ok(Value::List(modules))
    } else {
        Err(errors)
    }
}

fn set_field(value: &mut Value, key: &str, new: Value) {
    if let Value::Map(entries) = value {
        for (k, v) in entries.iter_mut() {
            if matches!(k, Value::Str(n) if n == key) {
                *v = new;
                return;
            }
        }
    }
}

/// `dspy.teleprompt` -> `Dspy.Teleprompt`, `chain_of_thought` -> `ChainOfThought`.
fn camelize(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|part| {
            part.split('_')
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let mut chars = w.chars();
                    match chars.next() {
                        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                        None => String::new(),
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names_become_safe_elixir_names() {
        assert_eq!(elixir_name("dumps"), "dumps");
        assert_eq!(elixir_name("__call__"), "call");
        assert_eq!(elixir_name("ChainOfThought"), "chain_of_thought");
        assert_eq!(elixir_name("in"), "in_");
        assert_eq!(elixir_name("2fa"), "py_2fa");
        assert_eq!(elixir_name("module_info"), "module_info_");
        assert_eq!(camelize("dspy.chain_of_thought"), "Dspy.ChainOfThought");
    }

    #[test]
    fn type_descriptors_become_typespecs() {
        let int = TypeDescriptor {
            kind: TypeKind::Primitive as i32,
            name: "int".into(),
            ..Default::default()
        };
        let list = TypeDescriptor {
            kind: TypeKind::List as i32,
            args: vec![int.clone()],
            ..Default::default()
        };
        let optional = TypeDescriptor {
            kind: TypeKind::Optional as i32,
            args: vec![list],
            ..Default::default()
        };
        assert_eq!(typespec(Some(&optional)), "[integer()] | nil");
        assert_eq!(typespec(None), "term()");
    }

    #[test]
    fn names_in_a_module_are_unique() {
        let mut names = Names::default();
        assert_eq!(names.claim("run".into()), "run");
        assert_eq!(names.claim("run".into()), "run_2");
    }
}
