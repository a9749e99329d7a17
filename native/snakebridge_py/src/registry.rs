//! The worker's object registry: Python objects that the BEAM holds references to.
//!
//! A result that is not plain data is stored here under a fresh id and crosses as an
//! object reference; the BEAM sends the id back to use the object and releases it (in
//! batches) when its last reference is garbage-collected. Objects created by a call made in
//! a session also belong to that session and are dropped when it ends. The registry is the
//! only owner of these objects on the Python side: releasing an id drops its reference.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use pyo3::prelude::*;

struct Entry {
    object: Py<PyAny>,
    session: Option<Arc<str>>,
}

struct Registry {
    next_id: u64,
    objects: HashMap<u64, Entry>,
    sessions: HashMap<Arc<str>, HashSet<u64>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        next_id: 1,
        objects: HashMap::new(),
        sessions: HashMap::new(),
    })
});

fn lock() -> MutexGuard<'static, Registry> {
    // Every critical section leaves the maps consistent: a poisoned lock is still usable.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores `obj`, as an object of `session` when there is one, and returns its new id.
pub fn register(obj: &Bound<'_, PyAny>, session: Option<Arc<str>>) -> u64 {
    let mut registry = lock();
    let id = registry.next_id;
    registry.next_id += 1;
    if let Some(session) = &session {
        registry
            .sessions
            .entry(Arc::clone(session))
            .or_default()
            .insert(id);
    }
    registry.objects.insert(
        id,
        Entry {
            object: obj.clone().unbind(),
            session,
        },
    );
    id
}

/// The object stored under `id`, if the registry holds it.
pub fn get<'py>(py: Python<'py>, id: u64) -> Option<Bound<'py, PyAny>> {
    lock()
        .objects
        .get(&id)
        .map(|entry| entry.object.bind(py).clone())
}

/// Drops the registry's references to `ids` and to every object of `sessions`; unknown
/// ids and sessions are ignored.
pub fn release(_py: Python<'_>, ids: &[u64], sessions: &[String]) {
    let released: Vec<Entry> = {
        let mut registry = lock();
        let mut doomed: Vec<u64> = ids.to_vec();
        for session in sessions {
            if let Some(members) = registry.sessions.remove(session.as_str()) {
                doomed.extend(members);
            }
        }
        let mut released = Vec::with_capacity(doomed.len());
        for id in doomed {
            if let Some(entry) = registry.objects.remove(&id) {
                if let Some(session) = &entry.session {
                    if let Some(members) = registry.sessions.get_mut(session) {
                        members.remove(&id);
                    }
                }
                released.push(entry);
            }
        }
        released
    };
    // Dropped with the GIL held and the lock released: a `__del__` may run here and must
    // be free to use the registry itself.
    drop(released);
}

/// How many objects the registry holds.
pub fn len() -> usize {
    lock().objects.len()
}
