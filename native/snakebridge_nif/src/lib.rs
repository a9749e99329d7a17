//! Rustler binding of SnakeBridge's core. Only what the BEAM needs lives here: terms ⇄
//! core values ([`terms`]), the pool NIFs ([`pool`]), object references ([`refs`]), streams ([`stream`]), sessions ([`session`]), Elixir functions called from Python ([`callbacks`]), introspection and the descriptor
//! cache ([`describe`]), config validation ([`config`]) and the tokio runtime the work runs on
//! ([`runtime`]). Every NIF returns at once; results arrive as `{tag, result}` messages
//! sent from tokio threads.

mod atoms;
mod callbacks;
mod config;
mod describe;
mod pool;
mod refs;
mod reply;
mod runtime;
mod session;
mod stream;
mod terms;

rustler::init!("Elixir.SnakeBridge.Native");
