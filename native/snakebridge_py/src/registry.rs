//! The worker's object registry: Python objects that the BEAM holds references to.
//!
//! A result that is not plain data is stored here under a fresh id and crosses as an
//! object reference; the BEAM sends the id back to use the object and releases it (in
//! batches) when its last reference is garbage-collected. The registry is the only owner
//! of these objects on the Python side: releasing an id drops the registry's reference.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use pyo3::prelude::*;

struct Registry {
    next_id: u64,
    objects: HashMap<u64, Py<PyAny>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        next_id: 1,
        objects: HashMap::new(),
    })
});

fn lock() -> MutexGuard<'static, Registry> {
    // Every critical section is one map operation: a poisoned lock is still consistent.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores `obj` and returns its new id.
pub fn register(obj: &Bound<'_, PyAny>) -> u64 {
    let mut registry = lock();
    let id = registry.next_id;
    registry.next_id += 1;
    registry.objects.insert(id, obj.clone().unbind());
    id
}

/// The object stored under `id`, if the registry holds it.
pub fn get<'py>(py: Python<'py>, id: u64) -> Option<Bound<'py, PyAny>> {
    lock().objects.get(&id).map(|obj| obj.bind(py).clone())
}

/// Drops the registry's references to `ids`; unknown ids are ignored.
pub fn release(_py: Python<'_>, ids: &[u64]) {
    let released: Vec<Py<PyAny>> = {
        let mut registry = lock();
        ids.iter()
            .filter_map(|id| registry.objects.remove(id))
            .collect()
    };
    // Dropped with the GIL held and the lock released: a `__del__` may run here and must
    // be free to use the registry itself.
    drop(released);
}

/// How many objects the registry holds.
pub fn len() -> usize {
    lock().objects.len()
}
