//! The tokio runtime shared by every pool of this VM.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime, built on first use; an error if the OS refused its threads.
pub(crate) fn get() -> Result<&'static Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("snakebridge-rt")
                .thread_stack_size(16 << 20)
                .enable_all()
                .build()
                .map_err(|e| format!("could not start SnakeBridge's runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// [`get`] for a NIF: the runtime, or the error raised to the caller.
pub(crate) fn for_nif() -> rustler::NifResult<&'static Runtime> {
    get().map_err(|e| rustler::Error::Term(Box::new(e)))
}
