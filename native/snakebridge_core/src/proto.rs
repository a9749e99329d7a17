//! The wire contract generated from `proto/snakebridge.proto` (see [`PROTOCOL_VERSION`]).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("snakebridge.v1");

/// The protocol version this build speaks; `Handshake` refuses any other.
pub const PROTOCOL_VERSION: u32 = 2;

/// Metadata key carrying the per-run token on every RPC.
pub const TOKEN_METADATA_KEY: &str = "x-snakebridge-token";

/// The capability a worker lists when it joined the client's shared directory
/// (`HandshakeRequest.shared_dir`).
pub const SHARED_MEMORY_CAPABILITY: &str = "shared_memory";
