//! The result cache: answers of calls marked cacheable (pure functions), kept per
//! `(integration, target, arguments)` until their time to live passes.
//!
//! Only plain data is cached: a call involving objects (a pinned call, a session, or a
//! result that refers to objects) always runs, since objects change and die.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use crate::proto;
use crate::worker::Worker;

/// Most entries kept; past it, expired entries go first, then arbitrary ones.
const CAPACITY: usize = 10_000;

/// The msgpack bytes that start an object reference (the codec's own marker); a result
/// containing them may refer to objects and is not cached. (Bytes that merely look alike
/// only cost a missed caching opportunity.)
const REF_TAG: [u8; 3] = crate::codec::msgpack::REF_MARKER;

/// What identifies a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The cache's namespace (see [`crate::pool::CachePolicy::integration`]).
    pub integration: String,
    /// What was called (see [`crate::pool::CallRequest::target`]).
    pub target: String,
    /// The call's [`crate::pool::Op`], as its wire number.
    pub op: i32,
    /// The encoded `[args, kwargs]`: compared whole, so distinct arguments never collide.
    pub args: Vec<u8>,
    /// How the result is encoded (its codec, tensors as lists): a result cached in one
    /// form does not answer a call that asked for another.
    pub result_codec: i32,
    /// Whether tensors come back as nested lists (see `result_codec`).
    pub tensors_as_lists: bool,
}

struct Entry {
    payload: proto::Payload,
    worker: Weak<Worker>,
    expires: Option<Instant>,
}

/// The cache of one pool.
#[derive(Default)]
pub struct ResultCache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().map(|e| e.len()).unwrap_or_default();
        f.debug_struct("ResultCache")
            .field("entries", &entries)
            .finish_non_exhaustive()
    }
}

impl ResultCache {
    /// The cached answer for `key`, if fresh (with the worker that gave it, when alive).
    pub fn get(&self, key: &Key) -> Option<(proto::Payload, Weak<Worker>)> {
        let mut entries = self.entries.lock().ok()?;
        let fresh = entries
            .get(key)
            .map(|e| e.expires.is_none_or(|t| t > Instant::now()))?;
        if !fresh {
            entries.remove(key);
            return None;
        }
        entries
            .get(key)
            .map(|e| (e.payload.clone(), e.worker.clone()))
    }

    /// Keeps an answer for `ttl` (`None`: until cleared), unless it refers to objects.
    pub fn put(
        &self,
        key: Key,
        payload: &proto::Payload,
        worker: Weak<Worker>,
        ttl: Option<Duration>,
    ) {
        if payload.data.windows(REF_TAG.len()).any(|w| w == REF_TAG) {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            let now = Instant::now();
            entries.retain(|_, e| e.expires.is_none_or(|t| t > now));
            if entries.len() >= CAPACITY {
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                payload: payload.clone(),
                worker,
                expires: ttl.map(|t| Instant::now() + t),
            },
        );
    }

    /// Drops every answer of `integration` (all when `None`); returns how many.
    pub fn clear(&self, integration: Option<&str>) -> usize {
        let Ok(mut entries) = self.entries.lock() else {
            return 0;
        };
        let before = entries.len();
        match integration {
            None => entries.clear(),
            Some(name) => entries.retain(|key, _| key.integration != name),
        }
        before - entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(args: &[u8]) -> Key {
        Key {
            integration: "math".into(),
            target: "math.sqrt".into(),
            op: 0,
            args: args.to_vec(),
            result_codec: 0,
            tensors_as_lists: false,
        }
    }

    fn payload(data: &[u8]) -> proto::Payload {
        proto::Payload {
            data: data.to_vec(),
            ..proto::Payload::default()
        }
    }

    #[test]
    fn answers_are_kept_per_arguments_until_they_expire() {
        let cache = ResultCache::default();
        cache.put(key(b"1"), &payload(b"one"), Weak::new(), None);
        cache.put(
            key(b"2"),
            &payload(b"two"),
            Weak::new(),
            Some(Duration::ZERO),
        );
        assert_eq!(cache.get(&key(b"1")).unwrap().0.data, b"one");
        assert!(cache.get(&key(b"2")).is_none(), "expired");
        assert!(cache.get(&key(b"3")).is_none());
        assert_eq!(cache.clear(Some("other")), 0);
        assert_eq!(cache.clear(Some("math")), 1);
        assert!(cache.get(&key(b"1")).is_none());
    }

    #[test]
    fn results_that_refer_to_objects_are_not_cached() {
        let cache = ResultCache::default();
        cache.put(
            key(b"1"),
            &payload(&[0x91, 0xc7, 0x00, 0x08, 0x93]),
            Weak::new(),
            None,
        );
        assert!(cache.get(&key(b"1")).is_none());
    }
}
