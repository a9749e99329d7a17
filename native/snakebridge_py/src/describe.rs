//! `DescribeLibrary`: runs the agent's introspection (`snakebridge_agent.introspect`) under
//! the GIL. The agent writes the descriptor as JSON in the shape of the proto's
//! `DescribeLibraryResponse` (field names, enum names), which reads straight into the
//! message (the core's generated serde); `descriptor_hash` is the core's digest of it.
//! Nothing here panics on a malformed answer: it becomes an `internal` status.

use pyo3::prelude::*;
use snakebridge_core::proto;
use tonic::Status;

/// The agent module doing the introspection.
const INTROSPECT_MODULE: &str = "snakebridge_agent.introspect";

/// Describes the library `request` names (or answers `unchanged`, see the request's
/// `known_version`). Blocks: call it off the async runtime.
pub fn describe(
    request: &proto::DescribeLibraryRequest,
) -> Result<proto::DescribeLibraryResponse, Status> {
    if request.module_path.is_empty() {
        return Err(Status::invalid_argument("module_path is empty"));
    }
    let json: String = Python::attach(|py| {
        let module = py.import(INTROSPECT_MODULE).map_err(|err| {
            Status::internal(format!(
                "cannot import {INTROSPECT_MODULE}: {}",
                python_error(py, &err)
            ))
        })?;
        let class = |path: &str| {
            path.split('.')
                .try_fold(module.clone().into_any(), |object, name| {
                    object.getattr(name)
                })
                .map_err(|err| {
                    Status::internal(format!(
                        "{INTROSPECT_MODULE}.{path}: {}",
                        python_error(py, &err)
                    ))
                })
        };
        let import_error = class("ModuleImportError")?;
        let not_allowed = class("allowlist.NotAllowed")?;
        let answer = module
            .call_method1(
                "describe",
                (
                    request.module_path.as_str(),
                    request.submodules.clone(),
                    request.depth,
                    request.exclude_patterns.clone(),
                    request.known_version.clone(),
                    request.known_python_version.clone(),
                ),
            )
            .and_then(|result| module.call_method1("canonical_json", (result,)))
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
        answer
            .extract()
            .map_err(|err| Status::internal(format!("the agent's description: {err}")))
    })?;
    let mut response: proto::DescribeLibraryResponse =
        serde_json::from_str(&json).map_err(|err| {
            Status::internal(format!(
                "the agent's description of {} is malformed: {err}",
                request.module_path
            ))
        })?;
    if !response.unchanged {
        response.descriptor_hash = snakebridge_core::descriptor::descriptor_digest(&response);
    }
    Ok(response)
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
