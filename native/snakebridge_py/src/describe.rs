//! `DescribeLibrary`: runs the agent's introspection (`snakebridge_agent.introspect`) under
//! the GIL and turns the dict it returns into a `DescribeLibraryResponse`.
//!
//! The agent returns the descriptor with the proto's field names and enum names.
//! `descriptor_hash` is the SHA-256 of the response's protobuf encoding without the hash
//! (deterministic: the generated maps are `BTreeMap`s).
//! Nothing here panics on a malformed answer: it becomes an `internal` status.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use snakebridge_core::proto::{
    self, function_descriptor, parameter_descriptor, type_descriptor, ClassDescriptor,
    FunctionDescriptor, ParameterDescriptor, PropertyDescriptor, TypeDescriptor,
};
use std::collections::BTreeMap;
use tonic::Status;

/// The agent module doing the introspection.
const INTROSPECT_MODULE: &str = "snakebridge_agent.introspect";

/// Deepest `TypeDescriptor` nesting accepted (the agent stops well before).
const MAX_TYPE_DEPTH: usize = 64;

/// Describes the library `request` names. Blocks: call it off the async runtime.
pub fn describe(
    request: &proto::DescribeLibraryRequest,
) -> Result<proto::DescribeLibraryResponse, Status> {
    if request.module_path.is_empty() {
        return Err(Status::invalid_argument("module_path is empty"));
    }
    let config_hash_hex = snakebridge_core::hex::encode(&request.config_hash);
    Python::attach(|py| {
        let module = py.import(INTROSPECT_MODULE).map_err(|err| {
            Status::internal(format!(
                "cannot import {INTROSPECT_MODULE}: {}",
                python_error(py, &err)
            ))
        })?;
        let import_error = module.getattr("ModuleImportError").map_err(|err| {
            Status::internal(format!(
                "{INTROSPECT_MODULE}.ModuleImportError: {}",
                python_error(py, &err)
            ))
        })?;
        let not_allowed = module
            .getattr("allowlist")
            .and_then(|allowlist| allowlist.getattr("NotAllowed"))
            .map_err(|err| {
                Status::internal(format!(
                    "{INTROSPECT_MODULE}.allowlist.NotAllowed: {}",
                    python_error(py, &err)
                ))
            })?;
        let answer = module
            .call_method1(
                "describe_cached",
                (
                    request.module_path.as_str(),
                    request.submodules.clone(),
                    request.depth,
                    request.exclude_patterns.clone(),
                    config_hash_hex,
                ),
            )
            .map_err(|err| {
                if err.is_instance(py, &import_error) {
                    Status::not_found(err.value(py).to_string())
                } else if err.is_instance(py, &not_allowed) {
                    Status::permission_denied(err.value(py).to_string())
                } else {
                    Status::internal(format!(
                        "introspecting {}: {}",
                        request.module_path,
                        python_error(py, &err)
                    ))
                }
            })?;
        Converter::default().response(&answer).map_err(|err| {
            Status::internal(format!(
                "the agent's description of {} is malformed: {err}",
                request.module_path
            ))
        })
    })
}

/// `TypeName: message`, then the traceback when Python has one.
fn python_error(py: Python<'_>, err: &PyErr) -> String {
    let mut text = err.to_string();
    if let Some(traceback) = err.traceback(py).and_then(|tb| tb.format().ok()) {
        text.push('\n');
        text.push_str(traceback.trim_end());
    }
    text
}

/// Converts the agent's dicts, collecting warnings about unknown enum names.
#[derive(Default)]
struct Converter {
    warnings: Vec<String>,
}

type Dict<'py> = Bound<'py, PyDict>;

impl Converter {
    fn response(
        mut self,
        answer: &Bound<'_, PyAny>,
    ) -> Result<proto::DescribeLibraryResponse, String> {
        let dict = as_dict(answer, "result")?;
        let version = string(&dict, "version", "result")?;
        let mut classes = BTreeMap::new();
        for (key, value) in map_items(&dict, "classes", "result")? {
            let path = format!("classes[{key}]");
            let class = self.class(&as_dict(&value, &path)?, &path)?;
            classes.insert(key, class);
        }
        let mut functions = BTreeMap::new();
        for (key, value) in map_items(&dict, "functions", "result")? {
            let path = format!("functions[{key}]");
            let function = self.function(&as_dict(&value, &path)?, &path)?;
            functions.insert(key, function);
        }
        let mut warnings = strings(&dict, "warnings", "result")?;
        warnings.append(&mut self.warnings);
        let mut response = proto::DescribeLibraryResponse {
            version,
            classes,
            functions,
            descriptor_hash: Vec::new(),
            warnings,
        };
        response.descriptor_hash = snakebridge_core::descriptor::descriptor_digest(&response);
        Ok(response)
    }

    fn class(&mut self, dict: &Dict<'_>, path: &str) -> Result<ClassDescriptor, String> {
        let constructor = match optional_dict(dict, "constructor", path)? {
            Some(constructor) => Some(self.function(&constructor, &format!("{path}.constructor"))?),
            None => None,
        };
        let mut methods = BTreeMap::new();
        for (key, value) in map_items(dict, "methods", path)? {
            let method_path = format!("{path}.methods[{key}]");
            let method = self.function(&as_dict(&value, &method_path)?, &method_path)?;
            methods.insert(key, method);
        }
        let mut properties = Vec::new();
        for (index, value) in list_items(dict, "properties", path)?.iter().enumerate() {
            let property_path = format!("{path}.properties[{index}]");
            properties.push(self.property(&as_dict(value, &property_path)?, &property_path)?);
        }
        Ok(ClassDescriptor {
            name: string(dict, "name", path)?,
            python_path: string(dict, "python_path", path)?,
            docstring: string(dict, "docstring", path)?,
            bases: strings(dict, "bases", path)?,
            constructor,
            methods,
            properties,
        })
    }

    fn property(&mut self, dict: &Dict<'_>, path: &str) -> Result<PropertyDescriptor, String> {
        Ok(PropertyDescriptor {
            name: string(dict, "name", path)?,
            readonly: boolean(dict, "readonly", path)?,
            r#type: self.optional_type(dict, "type", path)?,
            docstring: string(dict, "docstring", path)?,
        })
    }

    fn function(&mut self, dict: &Dict<'_>, path: &str) -> Result<FunctionDescriptor, String> {
        let mut parameters = Vec::new();
        for (index, value) in list_items(dict, "parameters", path)?.iter().enumerate() {
            let parameter_path = format!("{path}.parameters[{index}]");
            parameters.push(self.parameter(&as_dict(value, &parameter_path)?, &parameter_path)?);
        }
        let kind_name = string(dict, "kind", path)?;
        let kind = match function_descriptor::Kind::from_str_name(&kind_name) {
            Some(kind) => kind,
            None => {
                self.unknown("function kind", &kind_name, path);
                function_descriptor::Kind::default()
            }
        };
        Ok(FunctionDescriptor {
            name: string(dict, "name", path)?,
            python_path: string(dict, "python_path", path)?,
            docstring: string(dict, "docstring", path)?,
            parameters,
            return_type: self.optional_type(dict, "return_type", path)?,
            is_generator: boolean(dict, "is_generator", path)?,
            is_async: boolean(dict, "is_async", path)?,
            is_async_generator: boolean(dict, "is_async_generator", path)?,
            kind: kind as i32,
            signature: string(dict, "signature", path)?,
        })
    }

    fn parameter(&mut self, dict: &Dict<'_>, path: &str) -> Result<ParameterDescriptor, String> {
        let kind_name = string(dict, "kind", path)?;
        let kind = match parameter_descriptor::Kind::from_str_name(&kind_name) {
            Some(kind) => kind,
            None => {
                self.unknown("parameter kind", &kind_name, path);
                parameter_descriptor::Kind::default()
            }
        };
        let default_repr = match field(dict, "default_repr", path)? {
            Some(value) => Some(
                value
                    .extract::<String>()
                    .map_err(|e| format!("{path}.default_repr: {e}"))?,
            ),
            None => None,
        };
        Ok(ParameterDescriptor {
            name: string(dict, "name", path)?,
            kind: kind as i32,
            required: boolean(dict, "required", path)?,
            default_repr,
            annotation: self.optional_type(dict, "annotation", path)?,
        })
    }

    fn optional_type(
        &mut self,
        dict: &Dict<'_>,
        key: &str,
        path: &str,
    ) -> Result<Option<TypeDescriptor>, String> {
        match optional_dict(dict, key, path)? {
            Some(value) => Ok(Some(self.type_descriptor(
                &value,
                &format!("{path}.{key}"),
                0,
            )?)),
            None => Ok(None),
        }
    }

    fn type_descriptor(
        &mut self,
        dict: &Dict<'_>,
        path: &str,
        depth: usize,
    ) -> Result<TypeDescriptor, String> {
        if depth > MAX_TYPE_DEPTH {
            return Err(format!("{path}: types nested deeper than {MAX_TYPE_DEPTH}"));
        }
        let kind_name = string(dict, "kind", path)?;
        let kind = match type_descriptor::Kind::from_str_name(&kind_name) {
            Some(kind) => kind,
            None => {
                self.unknown("type kind", &kind_name, path);
                type_descriptor::Kind::default()
            }
        };
        let mut args = Vec::new();
        for (index, value) in list_items(dict, "args", path)?.iter().enumerate() {
            let arg_path = format!("{path}.args[{index}]");
            args.push(self.type_descriptor(&as_dict(value, &arg_path)?, &arg_path, depth + 1)?);
        }
        Ok(TypeDescriptor {
            kind: kind as i32,
            name: string(dict, "name", path)?,
            args,
            literals: strings(dict, "literals", path)?,
        })
    }

    fn unknown(&mut self, what: &str, name: &str, path: &str) {
        self.warnings.push(format!(
            "{path}: unknown {what} {name:?}, using the default"
        ));
    }
}

/// The value under `key`, `None` when it is missing or Python `None`.
fn field<'py>(
    dict: &Dict<'py>,
    key: &str,
    path: &str,
) -> Result<Option<Bound<'py, PyAny>>, String> {
    match dict.get_item(key) {
        Ok(Some(value)) if value.is_none() => Ok(None),
        Ok(value) => Ok(value),
        Err(err) => Err(format!("{path}.{key}: {err}")),
    }
}

fn as_dict<'py>(value: &Bound<'py, PyAny>, path: &str) -> Result<Dict<'py>, String> {
    value
        .cast::<PyDict>()
        .cloned()
        .map_err(|e| format!("{path}: {e}"))
}

fn optional_dict<'py>(
    dict: &Dict<'py>,
    key: &str,
    path: &str,
) -> Result<Option<Dict<'py>>, String> {
    match field(dict, key, path)? {
        Some(value) => Ok(Some(as_dict(&value, &format!("{path}.{key}"))?)),
        None => Ok(None),
    }
}

fn string(dict: &Dict<'_>, key: &str, path: &str) -> Result<String, String> {
    match field(dict, key, path)? {
        Some(value) => value
            .extract::<String>()
            .map_err(|e| format!("{path}.{key}: {e}")),
        None => Ok(String::new()),
    }
}

fn boolean(dict: &Dict<'_>, key: &str, path: &str) -> Result<bool, String> {
    match field(dict, key, path)? {
        Some(value) => value
            .extract::<bool>()
            .map_err(|e| format!("{path}.{key}: {e}")),
        None => Ok(false),
    }
}

fn list_items<'py>(
    dict: &Dict<'py>,
    key: &str,
    path: &str,
) -> Result<Vec<Bound<'py, PyAny>>, String> {
    match field(dict, key, path)? {
        Some(value) => {
            let list = value
                .cast::<PyList>()
                .map_err(|e| format!("{path}.{key}: {e}"))?;
            Ok(list.iter().collect())
        }
        None => Ok(Vec::new()),
    }
}

fn strings(dict: &Dict<'_>, key: &str, path: &str) -> Result<Vec<String>, String> {
    list_items(dict, key, path)?
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value
                .extract::<String>()
                .map_err(|e| format!("{path}.{key}[{index}]: {e}"))
        })
        .collect()
}

/// The entries of the dict under `key`, keys as strings.
fn map_items<'py>(
    dict: &Dict<'py>,
    key: &str,
    path: &str,
) -> Result<Vec<(String, Bound<'py, PyAny>)>, String> {
    match optional_dict(dict, key, path)? {
        Some(map) => map
            .iter()
            .map(|(k, v)| {
                k.extract::<String>()
                    .map(|k| (k, v))
                    .map_err(|e| format!("{path}.{key}: a key is not a string: {e}"))
            })
            .collect(),
        None => Ok(Vec::new()),
    }
}
