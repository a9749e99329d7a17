#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
//! SnakeBridge's engine, free of any binding: the NIF crate and the Python worker crate are
//! thin layers over this one.
//!
//! - [`proto`]: the gRPC wire contract (frames, handshake, describe).
//! - [`value`]: the value model every crossing goes through.
//! - [`keys`]: map keys as Python sees them, to refuse maps whose keys would collide.
//! - [`codec`]: values ⇄ bytes (msgpack).
//! - [`error`]: the error every fallible operation of the core returns.
//! - [`framing`]: payloads larger than one message, in parts.
//! - [`hex`]: lowercase hexadecimal for hashes, tokens and keys.
//! - [`secrets`]: resolved secrets redacted from what comes back from workers.
//! - [`signing`]: ed25519 signatures of config manifests.
//! - [`shared`]: large payload buffers through shared memory instead of messages.
//! - [`transport`]: the carrier of frames between the core and a worker (gRPC, or the
//!   local carrier), behind a trait.
//! - [`carrier`]: the local carrier's wire: length-prefixed proto messages, batched writes.
//! - [`direct`]: the same wire without a runtime, for threads that read a ready socket and
//!   write their own replies.
//! - [`agent`]: the worker's own Python code, handed to each worker process.
//! - [`worker`]: one Python worker process and its connection.
//! - [`serve`]: the worker's half of the frame protocol (calls in flight, credit,
//!   callbacks waiting for the BEAM), for the worker's binding.
//! - [`pool`]: N workers, dispatch, deadlines, replacement of crashed workers.
//! - [`pinned`]: what is pinned to one worker: objects held for the BEAM, sessions.
//! - [`startup`]: why a worker could not start, in words a user can act on.
//! - [`auth`]: the per-run token.
//! - [`allow`]: the allowlist of Python modules a pool may reach.
//! - [`cache`]: answers of cacheable calls.
//! - [`config`]: the schema and validation of integration configs.
//! - [`contract`]: the constants Elixir and Python get from the core, not from copies.
//! - [`plan`]: the Elixir modules and functions a config generates.
//! - [`types`]: the typespecs of the generated `@spec`s.
//! - [`docstring`]: Python docstrings as Markdown for the generated docs.
//! - [`descriptor`]: the descriptor cache (what introspection learned, hot and on disk).
//! - [`introspection`]: describing a library through a pool, answered from that cache
//!   while the library is unchanged.
//! - [`stats`]: a pool's counters.
//! - [`callback`]: Python calling functions that live in the BEAM.
//! - [`watch`]: the dev-mode watcher of config manifests (debounced batches of changed files).

pub mod agent;
pub mod allow;
pub mod auth;
pub mod cache;
pub mod callback;
pub mod carrier;
pub mod codec;
pub mod config;
pub mod contract;
pub mod descriptor;
pub mod direct;
pub mod docstring;
pub mod error;
pub mod framing;
pub mod hex;
pub mod introspection;
pub mod keys;
pub mod pinned;
pub mod plan;
pub mod pool;
pub mod proto;
pub mod secrets;
pub mod serve;
pub mod shared;
pub mod signing;
pub mod startup;
pub mod stats;
pub mod transport;
pub mod types;
pub mod value;
pub mod watch;
pub mod worker;

pub use error::{Error, ErrorKind};

/// The buffer crate of [`Value::Bytes`] and tensor data, so bindings use the same release.
pub use bytes;
/// The big-integer crate of [`Value::BigInt`], so bindings use the same release.
pub use num_bigint;
pub use pool::{CallRequest, Op, Pool, PoolConfig, Reply};
pub use value::Value;
pub use worker::Worker;
