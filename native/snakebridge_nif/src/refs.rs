//! Object references: `%SnakeBridge.Ref{}` holds a [`RefResource`] naming an object in one
//! worker's registry. When the BEAM garbage-collects the last copy of the term, the
//! resource is dropped and the object's release is queued to its worker (sent in batches);
//! `SnakeBridge.release/1` does the same at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use rustler::ResourceArc;
use snakebridge_core::Worker;

use crate::atoms;

/// One Python object held for the BEAM.
pub struct RefResource {
    worker: Weak<Worker>,
    id: u64,
    released: AtomicBool,
}

#[rustler::resource_impl]
impl rustler::Resource for RefResource {}

impl RefResource {
    /// A reference to object `id` held by `worker`.
    pub fn new(worker: &Arc<Worker>, id: u64) -> RefResource {
        RefResource {
            worker: Arc::downgrade(worker),
            id,
            released: AtomicBool::new(false),
        }
    }

    /// The object's id in its worker's registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The worker holding the object.
    pub fn worker(&self) -> &Weak<Worker> {
        &self.worker
    }

    /// Why the reference cannot be used any more, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        if self.released.load(Ordering::Acquire) {
            return Some("the object was released");
        }
        if !worker_alive(&self.worker) {
            return Some("the worker holding the object died; the object is gone");
        }
        None
    }

    /// Releases the object in its worker (once; later calls do nothing).
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            if let Some(worker) = self.worker.upgrade() {
                worker.queue_release(self.id);
            }
        }
    }
}

/// Whether a worker something is pinned to (an object, a session) still runs.
pub fn worker_alive(worker: &Weak<Worker>) -> bool {
    worker.upgrade().is_some_and(|w| w.is_alive())
}

impl Drop for RefResource {
    fn drop(&mut self) {
        self.release();
    }
}

/// Releases a reference's object now; using the reference afterwards is a `:stale_ref`
/// error. Idempotent.
#[rustler::nif]
fn ref_release(resource: ResourceArc<RefResource>) -> rustler::Atom {
    resource.release();
    atoms::ok()
}

/// Whether the reference can still be used (not released, worker alive).
#[rustler::nif]
fn ref_alive(resource: ResourceArc<RefResource>) -> bool {
    resource.unusable().is_none()
}
