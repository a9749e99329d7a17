//! The module plan: what Elixir modules and functions a config generates, worked out from
//! the config and the library's descriptor. The Elixir generator only turns the plan into
//! code (`@moduledoc`, `@doc`, `@spec`, `def`): it reads these types, which the NIF
//! mirrors as `%SnakeBridge.Generator.ModulePlan{}` and `%SnakeBridge.Generator.FunctionPlan{}`.

use std::collections::HashSet;

use crate::config::ConfigError;
use crate::docstring;
use crate::proto::{
    parameter_descriptor::Kind as ParamKind, DescribeLibraryResponse, FunctionDescriptor,
};
use crate::types::Types;
use crate::value::Value;

/// One generated module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModulePlan {
    /// The Elixir module's name, as an atom's text (`Elixir.Json`).
    pub module: String,
    /// Its `@moduledoc`.
    pub moduledoc: String,
    /// The module-level functions of the Python module, or one class.
    pub kind: ModuleKind,
    /// The Python module or class path.
    pub python: String,
    /// The config's `integration_id`, else its `python_module`.
    pub integration: String,
    /// Its functions.
    pub functions: Vec<FunctionPlan>,
}

/// What a generated module stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// The Python module's functions.
    Functions,
    /// One Python class (the module's type `t()` is a reference to one of its objects).
    Class,
}

/// What a generated function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Calls a module-level function.
    Function,
    /// Calls a class, returning a reference to the new object.
    Constructor,
    /// Returns the pool's shared object of a `singleton` class.
    Instance,
    /// Calls a method of an object.
    Method,
    /// Reads a property of an object.
    Getter,
    /// Writes a property of an object.
    Setter,
}

impl FunctionKind {
    /// The kind's name, as docs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Function => "function",
            FunctionKind::Constructor => "constructor",
            FunctionKind::Instance => "instance",
            FunctionKind::Method => "method",
            FunctionKind::Getter => "getter",
            FunctionKind::Setter => "setter",
        }
    }
}

/// A result-cache policy of a `cacheable` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Cached until the cache evicts it.
    Forever,
    /// Cached for this many milliseconds (the config's `caching.ttl`).
    TtlMs(u64),
}

/// A configured default timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Milliseconds.
    Ms(u64),
    /// No deadline.
    Infinity,
}

/// One generated function (and its bang variant, unless it streams).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionPlan {
    /// Elixir-safe, unique in its module.
    pub name: String,
    /// What it does.
    pub kind: FunctionKind,
    /// What to call in Python: the dotted path, or the method or attribute name.
    pub target: String,
    /// Elixir names of the required positional parameters.
    pub args: Vec<String>,
    /// Their typespecs (Elixir source, see [`crate::types`]).
    pub arg_types: Vec<String>,
    /// The Elixir name of a list standing for `*args`, when the function takes one.
    pub varargs: Option<String>,
    /// The result's typespec (Elixir source).
    pub return_type: String,
    /// Its `@doc` (Markdown).
    pub doc: String,
    /// Whether it returns a stream.
    pub streaming: bool,
    /// The configured default timeout, if any.
    pub timeout: Option<Timeout>,
    /// Whether it may be retried (a `pure` function).
    pub idempotent: bool,
    /// The result cache's policy (a `cacheable` function), if any.
    pub cache: Option<CachePolicy>,
}

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

fn timeout(value: &Value) -> Option<Timeout> {
    match field(value, "timeout") {
        Some(Value::Int(ms)) => u64::try_from(*ms).ok().map(Timeout::Ms),
        // (`:infinity` crosses as a float.)
        Some(Value::Float(f)) if f.is_infinite() && *f > 0.0 => Some(Timeout::Infinity),
        _ => None,
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
fn doc(
    python: &str,
    kind: FunctionKind,
    f: &FunctionDescriptor,
    description: Option<&str>,
) -> String {
    let mut doc = String::new();
    match description.filter(|d| !d.is_empty()) {
        Some(description) => doc.push_str(description),
        None if !f.docstring.is_empty() => doc.push_str(&docstring::to_markdown(&f.docstring)),
        None if kind == FunctionKind::Constructor => doc.push_str(&format!(
            "Creates a `{python}` object; the module documentation describes its parameters."
        )),
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
fn positional(
    f: &FunctionDescriptor,
    ctx: &mut Ctx,
    entry: Option<&Value>,
    path: &str,
) -> (Vec<String>, Vec<String>, Option<String>) {
    let configured: &[(Value, Value)] = match entry.and_then(|e| field(e, "args")) {
        Some(Value::Map(entries)) => entries,
        _ => &[],
    };
    let takes_any = f
        .parameters
        .iter()
        .any(|p| ParamKind::try_from(p.kind) == Ok(ParamKind::VarKeyword));
    for (key, _) in configured {
        if let Value::Str(key) = key {
            if !takes_any && !f.parameters.iter().any(|p| &p.name == key) {
                ctx.error(
                    format!("{path}.args.{key}"),
                    format!("{} has no parameter {key:?}", ctx.python),
                );
            }
        }
    }
    let mut seen = Names::default();
    for taken in ["kwargs", "opts", "ref", "value"] {
        seen.claim(taken.into());
    }
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut varargs = None;
    for p in &f.parameters {
        match ParamKind::try_from(p.kind).unwrap_or(ParamKind::PositionalOrKeyword) {
            ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword if p.required => {
                names.push(seen.claim(elixir_name(&p.name)));
                let spec = match configured
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Str(k) if *k == p.name))
                {
                    Some((_, t)) => ctx.config_type(t, &format!("{path}.args.{}", p.name)),
                    None => ctx.types.spec(p.annotation.as_ref()),
                };
                types.push(spec);
            }
            ParamKind::VarPositional => {
                varargs = Some(seen.claim(elixir_name(&p.name)));
            }
            _ => {}
        }
    }
    (names, types, varargs)
}

/// What planning a config needs besides the config: the typespecs and the errors found.
struct Ctx<'a> {
    types: &'a Types,
    errors: Vec<ConfigError>,
    /// The Python name of what is being planned, for messages.
    python: String,
}

impl Ctx<'_> {
    fn error(&mut self, path: String, message: String) {
        self.errors.push(ConfigError { path, message });
    }

    /// The typespec of a config type, or `term()` and an error at `path`.
    fn config_type(&mut self, t: &Value, path: &str) -> String {
        match self.types.config(t) {
            Ok(spec) => spec,
            Err(message) => {
                self.error(path.to_owned(), message);
                "term()".into()
            }
        }
    }
}

/// What a generated function is, apart from the Python callable it wraps.
struct Shape<'a> {
    /// The Elixir name wanted (the plan may suffix it to keep names unique).
    name: &'a str,
    /// What it does.
    kind: FunctionKind,
    /// What the call names: the dotted path, or the method or attribute name.
    target: &'a str,
    /// The Python callable's dotted path, for docs and errors.
    python: &'a str,
    /// Whether it returns a stream.
    streaming: bool,
}

/// One generated function of `shape`, for `f` configured by `entry` (at `path` in the
/// config).
fn function(
    ctx: &mut Ctx,
    names: &mut Names,
    shape: Shape<'_>,
    f: &FunctionDescriptor,
    entry: Option<&Value>,
    path: &str,
) -> FunctionPlan {
    let Shape {
        name: wanted,
        kind,
        target,
        python,
        streaming,
    } = shape;
    let name = names.claim(wanted.to_owned());
    ctx.python = python.to_owned();
    let (args, arg_types, varargs) = positional(f, ctx, entry, path);
    let description = entry.and_then(|e| text(e, "description"));
    let return_type = match entry.and_then(|e| field(e, "returns")) {
        Some(t) => ctx.config_type(t, &format!("{path}.returns")),
        None => ctx.types.spec(f.return_type.as_ref()),
    };
    FunctionPlan {
        name,
        kind,
        target: target.to_owned(),
        args,
        arg_types,
        varargs,
        return_type,
        doc: doc(python, kind, f, description),
        streaming,
        timeout: entry.and_then(timeout),
        // `pure: true`: safe to retry.
        idempotent: entry.is_some_and(|e| flag(e, "pure")),
        cache: None,
    }
}

/// The result-cache policy of a `cacheable: true` function: forever, or the config's
/// `caching.ttl`; none when not cacheable or caching is disabled.
fn cache_policy(config: &Value, entry: &Value) -> Option<CachePolicy> {
    let caching = field(config, "caching");
    let disabled = matches!(
        caching.and_then(|c| field(c, "enabled")),
        Some(Value::Bool(false))
    );
    if !flag(entry, "cacheable") || disabled {
        return None;
    }
    match caching.and_then(|c| field(c, "ttl")) {
        Some(Value::Int(ms)) => u64::try_from(*ms).ok().map(CachePolicy::TtlMs),
        _ => Some(CachePolicy::Forever),
    }
}

/// The Elixir module of each configured class, in config order.
fn class_modules(config: &Value, prefix: &str, python_module: &str) -> Vec<(String, String)> {
    items(config, "classes")
        .iter()
        .map(|entry| {
            let path = text(entry, "python_path").unwrap_or_default();
            let module = text(entry, "elixir_module")
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let relative = path
                        .strip_prefix(&format!("{python_module}."))
                        .unwrap_or(path);
                    format!("{prefix}.{}", camelize(relative))
                });
            (path.to_owned(), module)
        })
        .collect()
}

/// The plan for a (validated) config against its library's descriptor, or the config's
/// references that the descriptor does not have (and its types that are not types).
pub fn plan(
    config: &Value,
    descriptor: &DescribeLibraryResponse,
) -> Result<Vec<ModulePlan>, Vec<ConfigError>> {
    let python_module = text(config, "python_module").unwrap_or_default();
    let integration = text(config, "integration_id").unwrap_or(python_module);
    let prefix = text(config, "elixir_module")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Elixir.{}", camelize(python_module)));
    let class_modules = class_modules(config, &prefix, python_module);
    let types = Types::new(class_modules.iter().cloned());
    let mut ctx = Ctx {
        types: &types,
        errors: Vec::new(),
        python: String::new(),
    };
    let mut modules = Vec::new();
    if let Some(wanted) = text(config, "version") {
        if !version_matches(wanted, &descriptor.version) {
            ctx.error(
                "version".into(),
                format!(
                    "the config is for {python_module} {wanted}, the descriptor is of {python_module} {} (introspect again, or update the config)",
                    descriptor.version
                ),
            );
        }
    }

    // Module-level functions live in the prefix module.
    let mut names = Names::default();
    let mut functions = Vec::new();
    for (i, entry) in items(config, "functions").iter().enumerate() {
        let path = text(entry, "python_path").unwrap_or_default();
        let Some(f) = descriptor.functions.get(path) else {
            ctx.error(
                format!("functions[{i}].python_path"),
                format!("{path:?} is not in the descriptor of {python_module}"),
            );
            continue;
        };
        let wanted = text(entry, "elixir_name")
            .map(str::to_owned)
            .unwrap_or_else(|| elixir_name(&f.name));
        let streaming = flag(entry, "streaming") || f.is_generator || f.is_async_generator;
        let mut planned = function(
            &mut ctx,
            &mut names,
            Shape {
                name: &wanted,
                kind: FunctionKind::Function,
                target: path,
                python: path,
                streaming,
            },
            f,
            Some(entry),
            &format!("functions[{i}]"),
        );
        planned.cache = cache_policy(config, entry);
        functions.push(planned);
    }
    modules.push(ModulePlan {
        module: prefix.clone(),
        kind: ModuleKind::Functions,
        python: python_module.to_owned(),
        integration: integration.to_owned(),
        moduledoc: text(config, "description")
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Functions of the Python module `{python_module}`.")),
        functions,
    });

    for (i, (entry, (path, module))) in items(config, "classes")
        .iter()
        .zip(&class_modules)
        .enumerate()
    {
        let path = path.as_str();
        let Some(class) = descriptor.classes.get(path) else {
            ctx.error(
                format!("classes[{i}].python_path"),
                format!("{path:?} is not in the descriptor of {python_module}"),
            );
            continue;
        };
        let mut names = Names::default();
        let mut functions = Vec::new();
        let constructor = class.constructor.clone().unwrap_or_default();
        let ctor_entry = field(entry, "constructor");
        let mut create = function(
            &mut ctx,
            &mut names,
            Shape {
                name: "create",
                kind: FunctionKind::Constructor,
                target: path,
                python: path,
                streaming: false,
            },
            &constructor,
            ctor_entry,
            &format!("classes[{i}].constructor"),
        );
        create.return_type = types.class(path);
        let required = !create.args.is_empty();
        functions.push(create);
        if flag(entry, "singleton") {
            if required {
                ctx.error(
                    format!("classes[{i}].singleton"),
                    format!(
                        "{path} cannot be a singleton: its constructor has required parameters"
                    ),
                );
            }
            // `instance(opts)`: the pool's one shared object of the class.
            let mut instance = function(
                &mut ctx,
                &mut names,
                Shape {
                    name: "instance",
                    kind: FunctionKind::Instance,
                    target: path,
                    python: path,
                    streaming: false,
                },
                &FunctionDescriptor {
                    docstring: format!("The shared `{path}` object of the pool (`singleton: true`): created with the constructor's defaults on first use, and again after its worker died."),
                    ..Default::default()
                },
                ctor_entry,
                &format!("classes[{i}].constructor"),
            );
            instance.return_type = types.class(path);
            functions.push(instance);
        }
        let configured = items(entry, "methods");
        for (j, m) in configured.iter().enumerate() {
            let name = text(m, "name").unwrap_or_default();
            let Some(f) = class.methods.get(name) else {
                ctx.error(
                    format!("classes[{i}].methods[{j}].name"),
                    format!("{path} has no method {name:?}"),
                );
                continue;
            };
            let wanted = text(m, "elixir_name")
                .map(str::to_owned)
                .unwrap_or_else(|| elixir_name(name));
            let streaming = flag(m, "streaming") || f.is_generator || f.is_async_generator;
            let python = format!("{path}.{name}");
            functions.push(function(
                &mut ctx,
                &mut names,
                Shape {
                    name: &wanted,
                    kind: FunctionKind::Method,
                    target: name,
                    python: &python,
                    streaming,
                },
                f,
                Some(m),
                &format!("classes[{i}].methods[{j}]"),
            ));
        }
        for (j, p) in items(entry, "properties").iter().enumerate() {
            let name = text(p, "name").unwrap_or_default();
            let Some(property) = class.properties.iter().find(|q| q.name == name) else {
                ctx.error(
                    format!("classes[{i}].properties[{j}].name"),
                    format!("{path} has no property {name:?}"),
                );
                continue;
            };
            let wanted = text(p, "elixir_name")
                .map(str::to_owned)
                .unwrap_or_else(|| elixir_name(name));
            let readonly = property.readonly || flag(p, "readonly");
            let spec = match field(p, "type") {
                Some(t) => ctx.config_type(t, &format!("classes[{i}].properties[{j}].type")),
                None => types.spec(property.r#type.as_ref()),
            };
            let getter = FunctionDescriptor {
                signature: String::new(),
                docstring: property.docstring.clone(),
                ..Default::default()
            };
            let python = format!("{path}.{name}");
            let property_path = format!("classes[{i}].properties[{j}]");
            let mut get = function(
                &mut ctx,
                &mut names,
                Shape {
                    name: &wanted,
                    kind: FunctionKind::Getter,
                    target: name,
                    python: &python,
                    streaming: false,
                },
                &getter,
                Some(p),
                &property_path,
            );
            get.return_type = spec.clone();
            functions.push(get);
            if !readonly {
                let mut set = function(
                    &mut ctx,
                    &mut names,
                    Shape {
                        name: &format!("set_{wanted}"),
                        kind: FunctionKind::Setter,
                        target: name,
                        python: &python,
                        streaming: false,
                    },
                    &getter,
                    Some(p),
                    &property_path,
                );
                set.arg_types = vec![spec];
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
                    docstring::to_markdown(&class.docstring)
                }
            });
        modules.push(ModulePlan {
            module: module.clone(),
            kind: ModuleKind::Class,
            python: path.to_owned(),
            integration: integration.to_owned(),
            moduledoc,
            functions,
        });
    }
    if ctx.errors.is_empty() {
        Ok(modules)
    } else {
        Err(ctx.errors)
    }
}

/// Whether a library version satisfies the version a config names: equal, or `wanted`
/// is a prefix of it at a dot (`3` and `3.4` match `3.4.1`).
fn version_matches(wanted: &str, actual: &str) -> bool {
    let wanted = wanted.trim_start_matches(['=', 'v', ' ']);
    actual == wanted || actual.starts_with(&format!("{wanted}."))
}

/// `dspy.teleprompt` -> `Dspy.Teleprompt`, `chain_of_thought` -> `ChainOfThought`.
pub fn camelize(dotted: &str) -> String {
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
    fn versions_match_by_dotted_prefix() {
        assert!(version_matches("3", "3.4.1"));
        assert!(version_matches("3.4", "3.4.1"));
        assert!(version_matches("3.4.1", "3.4.1"));
        assert!(!version_matches("3.4", "3.40.0"));
        assert!(!version_matches("2.6", "3.4.1"));
    }

    #[test]
    fn names_in_a_module_are_unique() {
        let mut names = Names::default();
        assert_eq!(names.claim("run".into()), "run");
        assert_eq!(names.claim("run".into()), "run_2");
    }
}
