//! Leader/follower reading of the local carrier's connections: the worker's idle Python
//! threads wait on one epoll set holding every connection's socket and the pool's task
//! queue, each registration one-shot. When a call frame arrives, exactly one idle thread
//! wakes, reads it, re-arms the socket (so the next frame wakes another idle thread, not
//! this one) and runs the call itself, writing its reply itself: no I/O thread between
//! the socket and the call, one thread woken per call, one GIL acquisition.
//!
//! While every Python thread is busy (running calls, streaming, waiting for a callback),
//! someone must still read: cancels, stream credit and callback answers cannot wait for a
//! call to end. The sentinel, a thread that never runs Python, reads then: it queues the
//! calls it reads for the next free Python thread. It is armed by the last Python thread
//! to leave the idle set, and steps back when it finds one idle again.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use snakebridge_core::direct::{Filled, Inbox};
use snakebridge_core::serve::{Executor, IncomingCall, Router};

use crate::callback::Link;

/// The epoll key of the task queue's event counter; connections have keys from 1 on.
pub const TASKS: u64 = 0;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An epoll set whose registrations are one-shot: an event wakes one waiting thread and
/// disarms its registration until [`Epoll::rearm`].
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new, empty set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the result is a new descriptor or -1.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn control(&self, op: libc::c_int, fd: RawFd, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            u64: key,
        };
        // SAFETY: `event` is a valid epoll_event for the call's duration.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) }).map(drop)
    }

    /// Watches `fd` for input, reported with `key`.
    pub fn add(&self, fd: RawFd, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, key)
    }

    /// Arms `fd` again after its event was taken.
    pub fn rearm(&self, fd: RawFd, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, key)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL. A descriptor that is not
        // registered (already removed) only makes the call fail.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Blocks until one registration has an event; its key.
    pub fn wait(&self) -> io::Result<u64> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        loop {
            // SAFETY: room for one event.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut event, 1, -1) };
            if n == 1 {
                return Ok(event.u64);
            }
            let err = io::Error::last_os_error();
            if n < 0 && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// A counting event (an eventfd in semaphore mode): each [`EventCount::signal`] lets one
/// [`EventCount::take`] succeed.
#[derive(Debug)]
pub struct EventCount(OwnedFd);

impl EventCount {
    /// A counter at zero.
    pub fn new() -> io::Result<EventCount> {
        // SAFETY: no pointers; the result is a new descriptor or -1.
        let fd = check(unsafe {
            libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE,
            )
        })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(EventCount(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor to watch.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Adds `n` to the count.
    pub fn signal(&self, n: u64) {
        // SAFETY: writes the 8 bytes of `n`. It can only fail on an overflowing count
        // (the queue is closed by then and every waiter wakes anyway).
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&n as *const u64).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Takes one from the count; `false` when it is zero.
    pub fn take(&self) -> bool {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value`.
        let n = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut value as *mut u64).cast::<libc::c_void>(),
                8,
            )
        };
        n == 8
    }
}

/// What reading a connection found.
#[derive(Debug, Default)]
pub struct Read {
    /// The calls that arrived, in order.
    pub calls: Vec<IncomingCall>,
    /// Whether the connection ended (the client left, or sent something malformed).
    pub ended: bool,
}

#[derive(Debug)]
struct Reading {
    inbox: Inbox,
    router: Router,
    open: bool,
}

/// One connection of the local carrier after its handshake, read by whichever thread its
/// socket wakes.
pub struct Connection {
    key: u64,
    socket: Arc<UnixStream>,
    reading: Mutex<Reading>,
    executor: Box<dyn Executor>,
    link: Arc<Link>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("key", &self.key)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection on the non-blocking `socket`, whose frames `router` routes;
    /// `executor` takes cancels and releases, `link` is its way back to the BEAM.
    pub fn new(
        key: u64,
        socket: Arc<UnixStream>,
        inbox: Inbox,
        router: Router,
        executor: Box<dyn Executor>,
        link: Arc<Link>,
    ) -> Connection {
        Connection {
            key,
            socket,
            reading: Mutex::new(Reading {
                inbox,
                router,
                open: true,
            }),
            executor,
            link,
        }
    }

    /// The connection's key in the epoll sets.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The connection's link to the BEAM (for the calls it carries).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what the socket has (reading on while a frame is incomplete) and routes it;
    /// then re-arms the socket in `epoll`, unless the connection ended.
    pub fn read(&self, epoll: &Epoll) -> Read {
        let mut read = Read::default();
        let mut reading = self.reading();
        if !reading.open {
            return Read {
                calls: Vec::new(),
                ended: true,
            };
        }
        let Reading { inbox, router, .. } = &mut *reading;
        let callbacks = self.link.callbacks();
        let failure = loop {
            match inbox.fill(self.socket.as_fd()) {
                Ok(Filled::Bytes(_)) => {}
                Ok(Filled::WouldBlock) => break None,
                Ok(Filled::Closed) => break Some(inbox.closed().err()),
                Err(err) => break Some(Some(err)),
            }
            let taken = loop {
                match inbox.take_frame() {
                    Ok(Some(frame)) => {
                        if let Some(call) = router.route(frame, &*self.executor, callbacks) {
                            read.calls.push(call);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err),
                }
            };
            if let Err(err) = taken {
                break Some(Some(err));
            }
            if !inbox.partial() {
                break None;
            }
        };
        match failure {
            None => {
                drop(reading);
                if let Err(err) = epoll.rearm(self.fd(), self.key) {
                    eprintln!("snakebridge: closing a connection: cannot watch it: {err}");
                    self.end();
                    read.ended = true;
                }
            }
            Some(err) => {
                if let Some(err) = err {
                    eprintln!("snakebridge: closing a connection: {err}");
                }
                router.close(callbacks);
                reading.open = false;
                drop(reading);
                // The client sees the connection end (whatever is still written to it fails).
                let _ = self.socket.shutdown(std::net::Shutdown::Both);
                read.ended = true;
            }
        }
        read
    }

    /// Ends the connection from this side.
    fn end(&self) {
        let mut reading = self.reading();
        if reading.open {
            reading.open = false;
            reading.router.close(self.link.callbacks());
        }
        drop(reading);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The connections being read, by key.
#[derive(Debug, Default)]
pub struct Connections {
    by_key: Mutex<HashMap<u64, Arc<Connection>>>,
    next_key: std::sync::atomic::AtomicU64,
}

impl Connections {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A key for a new connection.
    pub fn next_key(&self) -> u64 {
        self.next_key
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1)
            .max(1)
    }

    /// Adds a connection.
    pub fn insert(&self, connection: Arc<Connection>) {
        self.map().insert(connection.key(), connection);
    }

    /// The connection with `key`, if it is still read.
    pub fn get(&self, key: u64) -> Option<Arc<Connection>> {
        self.map().get(&key).cloned()
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, key: u64) -> Option<Arc<Connection>> {
        self.map().remove(&key)
    }

    /// Every connection being read.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        self.map().values().cloned().collect()
    }
}

/// The sentinel's state: whether it should read, and its own epoll set of the connections.
#[derive(Debug)]
pub struct Sentinel {
    armed: Mutex<bool>,
    changed: Condvar,
    /// The connections, registered as in the Python threads' set.
    pub epoll: Epoll,
}

impl Sentinel {
    /// A sentinel at rest.
    pub fn new() -> io::Result<Sentinel> {
        Ok(Sentinel {
            armed: Mutex::new(false),
            changed: Condvar::new(),
            epoll: Epoll::new()?,
        })
    }

    fn armed(&self) -> MutexGuard<'_, bool> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the sentinel to read (no Python thread is idle).
    pub fn arm(&self) {
        let mut armed = self.armed();
        if !*armed {
            *armed = true;
            self.changed.notify_one();
        }
    }

    /// Waits until armed.
    pub fn wait_armed(&self) {
        let mut armed = self.armed();
        while !*armed {
            armed = self.changed.wait(armed).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Steps back if `idle` says a Python thread is free to read; whether it did. Checked
    /// under the same lock as [`Sentinel::arm`], so that a thread leaving the idle set
    /// meanwhile arms it again.
    pub fn step_back_if(&self, idle: impl FnOnce() -> bool) -> bool {
        let mut armed = self.armed();
        if idle() {
            *armed = false;
            true
        } else {
            false
        }
    }
}
