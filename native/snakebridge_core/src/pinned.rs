//! What is pinned to one worker: an object the BEAM holds a reference to
//! ([`HeldObject`]), and a session ([`Session`], a group of calls whose objects all end
//! with it). Each is released once, explicitly or when dropped, which queues the release
//! to its worker; and each says why it cannot be used any more, once released or once its
//! worker died. The bindings wrap them (the NIF as resources) and add nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::time::Instant;

use crate::error::Error;
use crate::pool::Pool;
use crate::worker::Worker;

/// The worker something is pinned to, and whether it was released.
#[derive(Debug)]
struct Pin {
    worker: Weak<Worker>,
    released: AtomicBool,
}

impl Pin {
    fn new(worker: Weak<Worker>) -> Pin {
        Pin {
            worker,
            released: AtomicBool::new(false),
        }
    }

    /// Why it cannot be used: `released` once released, `died` once its worker died.
    fn unusable(&self, released: &'static str, died: &'static str) -> Option<&'static str> {
        if self.released.load(Ordering::Acquire) {
            Some(released)
        } else if !self.worker.upgrade().is_some_and(|w| w.is_alive()) {
            Some(died)
        } else {
            None
        }
    }

    /// The worker to tell, the first time only (and only while it runs).
    fn release(&self) -> Option<Arc<Worker>> {
        if self.released.swap(true, Ordering::AcqRel) {
            None
        } else {
            self.worker.upgrade()
        }
    }
}

/// One Python object held for the BEAM, in one worker's registry.
#[derive(Debug)]
pub struct HeldObject {
    pin: Pin,
    id: u64,
}

impl HeldObject {
    /// Object `id` of `worker`'s registry.
    pub fn new(worker: &Arc<Worker>, id: u64) -> HeldObject {
        HeldObject::pinned_to(Arc::downgrade(worker), id)
    }

    fn pinned_to(worker: Weak<Worker>, id: u64) -> HeldObject {
        HeldObject {
            pin: Pin::new(worker),
            id,
        }
    }

    /// The object's id in its worker's registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The worker holding the object.
    pub fn worker(&self) -> &Weak<Worker> {
        &self.pin.worker
    }

    /// Why the reference cannot be used any more, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        self.pin.unusable(
            "the object was released",
            "the worker holding the object died; the object is gone",
        )
    }

    /// Releases the object in its worker (once; later calls do nothing).
    pub fn release(&self) {
        if let Some(worker) = self.pin.release() {
            worker.queue_release(self.id);
        }
    }
}

impl Drop for HeldObject {
    fn drop(&mut self) {
        self.release();
    }
}

/// A session: calls pinned to one worker, whose objects are tagged with the session's id
/// and all dropped when it is released.
#[derive(Debug)]
pub struct Session {
    pin: Pin,
    id: String,
    worker_pid: u32,
}

impl Session {
    /// Starts a session on the least-loaded live worker of `pool`, waiting for one until
    /// `deadline`.
    pub async fn checkout(pool: &Pool, deadline: Option<Instant>) -> Result<Session, Error> {
        let worker = pool.checkout(deadline).await?;
        Ok(Session {
            pin: Pin::new(Arc::downgrade(&worker)),
            id: new_session_id(),
            worker_pid: worker.pid(),
        })
    }

    /// The session's id: what the worker tags its objects with, and what telemetry names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The worker the session is pinned to.
    pub fn worker(&self) -> &Weak<Worker> {
        &self.pin.worker
    }

    /// The OS pid of that worker.
    pub fn worker_pid(&self) -> u32 {
        self.worker_pid
    }

    /// Why the session cannot be used any more, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        self.pin.unusable(
            "the session was released",
            "the session's worker died; its objects are gone",
        )
    }

    /// Ends the session: its worker drops every object created in it (once; later calls
    /// do nothing).
    pub fn release(&self) {
        if let Some(worker) = self.pin.release() {
            worker.queue_session_release(&self.id);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.release();
    }
}

/// A random session id (24 hexadecimal digits).
fn new_session_id() -> String {
    crate::auth::new_token()[..24].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_whose_worker_is_gone_says_so_and_releases_quietly() {
        let object = HeldObject::pinned_to(Weak::new(), 7);
        assert_eq!(
            object.unusable(),
            Some("the worker holding the object died; the object is gone")
        );
        object.release();
        assert_eq!(object.unusable(), Some("the object was released"));
        object.release();
        assert_eq!(object.id(), 7);
    }

    #[test]
    fn a_pin_is_released_once() {
        let pin = Pin::new(Weak::new());
        assert!(pin.release().is_none());
        assert!(pin.released.load(Ordering::Acquire));
        assert!(pin.release().is_none());
    }

    #[test]
    fn session_ids_are_distinct_hex() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
