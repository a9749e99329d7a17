//! Object references: `%SnakeBridge.Ref{}` holds a [`RefResource`], the core's
//! [`HeldObject`] as a resource. When the BEAM garbage-collects the last copy of the term,
//! the resource is dropped and the object's release is queued to its worker (sent in
//! batches); `SnakeBridge.release/1` does the same at once.

use std::sync::Arc;

use rustler::ResourceArc;
use snakebridge_core::pinned::HeldObject;
use snakebridge_core::Worker;

use crate::atoms;

/// One Python object held for the BEAM.
pub(crate) struct RefResource(HeldObject);

#[rustler::resource_impl]
impl rustler::Resource for RefResource {}

impl RefResource {
    /// A reference to object `id` held by `worker`.
    pub(crate) fn new(worker: &Arc<Worker>, id: u64) -> RefResource {
        RefResource(HeldObject::new(worker, id))
    }
}

impl std::ops::Deref for RefResource {
    type Target = HeldObject;

    fn deref(&self) -> &HeldObject {
        &self.0
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
