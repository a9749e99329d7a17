#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
//! Rustler binding of SnakeBridge's core. Only what the BEAM needs lives here: the typed
//! shapes of the boundary ([`types`]), terms ⇄ core values ([`terms`]), the pool NIFs ([`pool`]), object references ([`refs`]), streams ([`stream`]), sessions ([`session`]), Elixir functions called from Python ([`callbacks`]), introspection and the descriptor
//! cache ([`describe`]), config validation ([`config`]), manifest signatures ([`signing`]), the dev-mode config watcher
//! ([`watch`]) and the tokio runtime the work runs on ([`runtime`]). Every NIF returns at
//! once; results arrive as `{tag, result}` messages sent from tokio threads (the watcher's
//! from its own thread).

mod atoms;
mod buffers;
mod callbacks;
mod codec;
mod config;
mod contract;
mod describe;
mod pool;
mod refs;
mod reply;
mod runtime;
mod session;
mod signing;
mod stream;
mod terms;
mod types;
mod watch;

/// Conversions allocate a small block per string, list and map; mimalloc serves those
/// about twice as fast as the system allocator (it was a third of encoding time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

rustler::init!("Elixir.SnakeBridge.Native");
