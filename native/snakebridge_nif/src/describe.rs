//! Introspection and the descriptor cache (both in the core): `describe` asks a worker to
//! introspect a library and stores the descriptor (hot and on disk); `descriptor_load`
//! reads it back without Python; `descriptor_invalidate` forgets it. Descriptors reach
//! Elixir as `%SnakeBridge.Descriptor.Entry{}` structs (see `types.rs`).

use std::sync::Arc;
use std::time::Duration;

use rustler::{Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use snakebridge_core::descriptor::{self, DescriptorCache, Entry};
use snakebridge_core::introspection;
use snakebridge_core::proto::DescribeLibraryRequest;
use snakebridge_core::{Error, ErrorKind};

use crate::pool::PoolResource;
use crate::reply::Reply;
use crate::types::{Describe, DescriptorEntry};
use crate::{atoms, runtime, terms};

/// The process's descriptor cache for `dir`.
pub(crate) fn cache(dir: &str) -> Arc<DescriptorCache> {
    DescriptorCache::shared(dir)
}

/// The entry as `%SnakeBridge.Descriptor.Entry{}`.
fn entry_term<'a>(env: Env<'a>, entry: &Entry) -> Term<'a> {
    match DescriptorEntry::new(env, entry) {
        Ok(entry) => entry.encode(env),
        Err(_) => {
            let err = Error::new(ErrorKind::Internal, "a descriptor could not be rendered");
            terms::error_tuple(env, &err)
        }
    }
}

/// Describes the requested library on the pool (see `snakebridge_core::introspection`:
/// answered from the cache while the library is unchanged, unless `force`) and stores the
/// descriptor in the cache directory under its integration. Replies
/// `{tag, {:ok, entry_map}}` or `{tag, {:error, error_map}}`.
#[rustler::nif]
fn describe<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    spec: Describe<'a>,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let runtime = runtime::for_nif()?;
    let cache = cache(&spec.dir);
    let describe = introspection::Describe {
        request: DescribeLibraryRequest {
            library_id: spec.integration,
            module_path: spec.module_path,
            submodules: spec.submodules,
            depth: spec.depth,
            exclude_patterns: spec.exclude_patterns,
            ..DescribeLibraryRequest::default()
        },
        config: spec.config.as_slice().to_vec(),
        force: spec.force,
        timeout: Duration::from_millis(spec.timeout_ms),
    };
    let pool = pool.pool.clone();
    let reply = Reply::new(pid, tag);
    runtime.spawn(async move {
        let outcome = introspection::describe(&pool, &cache, describe).await;
        reply.send(|env| match &outcome {
            Ok(entry) => (atoms::ok(), entry_term(env, entry)).encode(env),
            Err(err) => terms::error_tuple(env, err),
        });
    });
    Ok(atoms::ok().encode(env))
}

/// The cached descriptor of `integration` in `dir`: `{:ok, entry_map}`, `:miss` (none, or
/// made for another config when `config` is given), or `{:error, message}` for a corrupt
/// file (naming file and field). Reads the disk: runs on a dirty I/O scheduler.
#[rustler::nif(schedule = "DirtyIo")]
fn descriptor_load<'a>(
    env: Env<'a>,
    dir: String,
    integration: String,
    config: Option<Binary<'a>>,
) -> Term<'a> {
    match cache(&dir).load(&integration, None) {
        Ok(Some(entry)) => {
            let expected = config.map(|c| descriptor::config_hash(c.as_slice()));
            if expected.is_some_and(|hash| hash != entry.config_hash) {
                atoms::miss().encode(env)
            } else {
                (atoms::ok(), entry_term(env, &entry)).encode(env)
            }
        }
        Ok(None) => atoms::miss().encode(env),
        Err(err) => (atoms::error(), err.to_string()).encode(env),
    }
}

/// Forgets `integration`'s descriptor in both levels; `{:ok, removed_file?}` or
/// `{:error, message}`.
#[rustler::nif(schedule = "DirtyIo")]
fn descriptor_invalidate(env: Env<'_>, dir: String, integration: String) -> Term<'_> {
    match cache(&dir).invalidate(&integration) {
        Ok(removed) => (atoms::ok(), removed).encode(env),
        Err(err) => (atoms::error(), err.to_string()).encode(env),
    }
}
