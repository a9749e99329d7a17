//! The rules and constants more than one language needs, with this module as their one
//! owner. The NIF hands them to Elixir (`SnakeBridge.Native.contract/0`, read through
//! `SnakeBridge.Contract`), the worker's extension to Python (`snakebridge_agent._native`);
//! neither keeps a copy.

use crate::value::DType;

/// Python threads per worker when the pool does not say.
pub const DEFAULT_THREADS: u32 = 4;

/// Largest single message, in bytes, when the pool does not say; larger payloads travel in
/// parts.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Largest payload a call may send, in bytes, when the pool does not say.
pub const DEFAULT_MAX_PAYLOAD_SIZE: usize = 2 << 30;

/// Largest payload a worker may send back (a result, a stream chunk, a callback's
/// arguments), in bytes, when the pool does not say.
pub const DEFAULT_MAX_RESULT_SIZE: usize = 1 << 30;

/// The most values (list, tuple and set items, map keys and map values) one payload may
/// hold when the pool does not say: about a gigabyte of terms at the BEAM's worst.
pub const DEFAULT_MAX_ELEMENTS: usize = 10_000_000;

/// The smallest buffer that crosses through shared memory when the pool does not say.
pub const DEFAULT_SHARED_MIN_SIZE: usize = crate::shared::DEFAULT_MIN_SIZE;

/// The most bytes of each text of an error a worker sends: its message, its traceback, and
/// its class names together. A longer text is cut, saying how much was cut, so that a
/// 100 MB exception message costs one bounded frame.
pub const MAX_ERROR_TEXT: usize = 64 << 10;

/// The key that marks a map as a call to make inside an init call's arguments:
/// `{"__snakebridge_call__": "dspy.LM", "args": [...], "kwargs": {...}}`.
pub const NESTED_CALL_KEY: &str = "__snakebridge_call__";

/// The worker's runner of init calls whose arguments hold nested calls.
pub const CALL_NESTED: &str = "snakebridge_agent.dispatch.call_nested";

/// The worker's registry of the Elixir functions exported to Python (`tools`).
pub const TOOLS: &str = "snakebridge_agent.tools";

/// The call that exports an Elixir function to Python under a name.
pub const REGISTER_TOOL: &str = "snakebridge_agent.tools.register";

/// What every restricted pool may still reach: SnakeBridge's own tool registry and the
/// runner of init calls with nested calls (whose targets the worker checks one by one).
pub const ALWAYS_ALLOWED: &[&str] = &[TOOLS, CALL_NESTED];

/// The tensor element types: numpy's name and Nx's `{kind, bits}` of each.
pub fn tensor_types() -> impl Iterator<Item = (&'static str, (&'static str, u32))> {
    DType::ALL.into_iter().map(|d| (d.name(), d.nx()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_always_allowed_names_cover_the_calls_the_core_makes_for_a_pool() {
        assert!(REGISTER_TOOL.starts_with(&format!("{TOOLS}.")));
        assert!(ALWAYS_ALLOWED.contains(&CALL_NESTED));
    }

    #[test]
    fn every_tensor_type_has_one_name_and_one_nx_type() {
        let types: Vec<_> = tensor_types().collect();
        assert_eq!(types.len(), DType::ALL.len());
        assert!(types.contains(&("bfloat16", ("bf", 16))));
        assert!(types.contains(&("bool", ("bool", 8))));
    }
}
