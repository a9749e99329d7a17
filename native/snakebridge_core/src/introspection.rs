//! Introspecting a library through a pool, with the descriptor cache as the only cache.
//!
//! A describe whose very request (config, module, submodules, depth, exclusions; see
//! [`descriptor::request_key`]) made a cached entry tells the worker that entry's library
//! and Python versions. A worker whose library and Python are still those answers
//! `unchanged` without introspecting, and the cached entry is the answer; otherwise the
//! worker introspects and the new entry is stored, hot and on disk. The worker keeps no
//! cache of its own, so invalidating the entry ([`DescriptorCache::invalidate`]) is all it
//! takes to introspect again.

use std::sync::Arc;
use std::time::Duration;

use crate::descriptor::{self, DescriptorCache, Entry, SCHEMA_VERSION};
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::proto::DescribeLibraryRequest;

/// One library to describe.
#[derive(Debug, Clone)]
pub struct Describe {
    /// What to introspect. Its `library_id` names the integration the entry is stored
    /// under; its `known_*` fields are set here.
    pub request: DescribeLibraryRequest,
    /// The integration's config, as the bytes its hash is taken of.
    pub config: Vec<u8>,
    /// Introspect even when the cached entry still holds.
    pub force: bool,
    /// How long introspection may take.
    pub timeout: Duration,
}

/// Describes `describe.request`'s library on a worker of `pool`, answered from `cache`
/// when the library and the worker's Python did not change since the cached entry was
/// made for the same request; stores what was introspected.
pub async fn describe(
    pool: &Pool,
    cache: &DescriptorCache,
    describe: Describe,
) -> Result<Arc<Entry>, Error> {
    let Describe {
        mut request,
        config,
        force,
        timeout,
    } = describe;
    let integration = request.library_id.clone();
    let request_key = descriptor::request_key(&config, &request);
    // A corrupt or unreadable file is replaced by what is introspected now.
    let known = match cache.load(&integration, None) {
        Ok(Some(entry)) if !force && entry.request_key == request_key => Some(entry),
        _ => None,
    };
    if let Some(entry) = &known {
        request.known_version = Some(entry.library_version.clone());
        request.known_python_version = Some(entry.python_version.clone());
    }
    let (mut descriptor, worker) = pool.describe(request, timeout).await?;
    if descriptor.unchanged {
        return known.ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "the worker answered `unchanged` to a request that named no version",
            )
            .with_worker(worker.pid())
        });
    }
    // The core's own hash (hex) replaces whatever the worker put there.
    let hash = descriptor::descriptor_hash(&descriptor);
    descriptor.descriptor_hash = hash.clone().into_bytes();
    let python_version = worker.info().python_version;
    let entry = Entry {
        schema_version: SCHEMA_VERSION,
        integration,
        config_hash: descriptor::config_hash(&config),
        request_key,
        cache_key: descriptor::cache_key(&config, &descriptor.version, &python_version),
        library_version: descriptor.version.clone(),
        python_version,
        descriptor_hash: hash,
        descriptor,
    };
    cache
        .store(entry.clone())
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    Ok(Arc::new(entry))
}
