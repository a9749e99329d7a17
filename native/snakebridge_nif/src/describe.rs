//! Introspection and the descriptor cache: `describe` asks a worker to introspect a
//! library and stores the descriptor (hot and on disk); `descriptor_load` reads it back
//! without Python; `descriptor_invalidate` forgets it. Descriptors reach Elixir as plain
//! maps with string keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use rustler::{Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use snakebridge_core::codec::json;
use snakebridge_core::descriptor::{self, DescriptorCache, Entry, SCHEMA_VERSION};
use snakebridge_core::proto::DescribeLibraryRequest;
use snakebridge_core::{Error, ErrorKind};

use crate::pool::PoolResource;
use crate::reply::Reply;
use crate::types::Describe;
use crate::{atoms, runtime, terms};

/// One cache per directory, so its hot level is shared by every caller.
static CACHES: LazyLock<Mutex<HashMap<PathBuf, Arc<DescriptorCache>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub(crate) fn cache(dir: &str) -> Arc<DescriptorCache> {
    let dir = PathBuf::from(dir);
    let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(
        caches
            .entry(dir.clone())
            .or_insert_with(|| Arc::new(DescriptorCache::new(dir))),
    )
}

/// The entry as an Elixir map with string keys (via its JSON form).
fn entry_term<'a>(env: Env<'a>, entry: &Entry) -> Term<'a> {
    let Ok(json) = serde_json::to_value(entry) else {
        let err = Error::new(ErrorKind::Internal, "a descriptor could not be rendered");
        return terms::error_tuple(env, &err);
    };
    terms::from_value(env, &json::to_value(&json), &terms::Origin::none())
}

/// Introspects the requested library on the pool (from the worker's own cache unless
/// `force`) and stores the descriptor in the cache directory under its integration.
/// Replies `{tag, {:ok, entry_map}}` or `{tag, {:error, error_map}}`.
#[rustler::nif]
fn describe<'a>(
    env: Env<'a>,
    pool: ResourceArc<PoolResource>,
    spec: Describe<'a>,
    pid: LocalPid,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let runtime = runtime::for_nif()?;
    let config_hash = descriptor::config_hash(spec.config.as_slice());
    let config = spec.config.as_slice().to_vec();
    let (dir, integration, timeout_ms) = (spec.dir, spec.integration, spec.timeout_ms);
    let mut request = DescribeLibraryRequest {
        library_id: integration.clone(),
        module_path: spec.module_path,
        submodules: spec.submodules,
        depth: spec.depth,
        config_hash: Vec::new(),
        exclude_patterns: spec.exclude_patterns,
    };
    // Without it the worker cannot answer from its own cache: it introspects again.
    if !spec.force {
        request.config_hash = descriptor::request_key(&config, &request).into_bytes();
    }
    let pool = pool.pool.clone();
    let reply = Reply::new(pid, tag);
    runtime.spawn(async move {
        let outcome = pool
            .describe(request, Duration::from_millis(timeout_ms))
            .await
            .and_then(|(mut descriptor, worker)| {
                // The core's own hash (hex) replaces whatever the worker put there.
                let hash = descriptor::descriptor_hash(&descriptor);
                descriptor.descriptor_hash = hash.clone().into_bytes();
                let python_version = worker.info().python_version;
                let entry = Entry {
                    schema_version: SCHEMA_VERSION,
                    integration,
                    config_hash,
                    cache_key: descriptor::cache_key(&config, &descriptor.version, &python_version),
                    library_version: descriptor.version.clone(),
                    python_version,
                    descriptor_hash: hash,
                    descriptor,
                };
                cache(&dir)
                    .store(entry.clone())
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                Ok(entry)
            });
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
