//! The wire contract generated from `proto/snakebridge.proto` (protocol version 1).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("snakebridge.v1");

/// The protocol version this build speaks; `Handshake` refuses any other.
pub const PROTOCOL_VERSION: u32 = 2;

/// Metadata key carrying the per-run token on every RPC.
pub const TOKEN_METADATA_KEY: &str = "x-snakebridge-token";
