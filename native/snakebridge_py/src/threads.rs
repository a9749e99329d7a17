//! The worker's Python thread pool: `threads` OS threads that run calls under the GIL.
//! An idle thread waits on one epoll set (see [`crate::leader`]) for either a task queued
//! for the pool (a call that came over gRPC or was read by the sentinel, a release) or a
//! local-carrier connection with frames to read, whose first call it then runs itself.
//! With one thread, calls run strictly one at a time in arrival order.

use std::collections::VecDeque;
use std::os::raw::c_long;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::{ffi, prelude::*};
use snakebridge_core::proto::{self, error::Kind, Frame};
use snakebridge_core::serve::{error_frame, Control, IncomingCall};

use crate::call::{self, Dispatch};
use crate::callback::Link;
use crate::convert;
use crate::leader::{Connection, Connections, Epoll, EventCount, Sentinel, TASKS};
use crate::registry;

/// Stack size of each pool thread: deep Python recursion and value nesting need room.
const STACK_SIZE: usize = 8 * 1024 * 1024;

pub use snakebridge_core::serve::ReplySender;

impl call::Running for Control {
    fn enter(&self, _py: Python<'_>) {
        // SAFETY: no preconditions; the GIL is held.
        let ident = unsafe { ffi::PyThread_get_thread_ident() };
        self.set_runner(ident as u64);
    }

    fn leave(&self, _py: Python<'_>) {
        let (ident, interrupted) = self.take_runner();
        if ident != 0 && interrupted {
            // An interruption that arrived as the call returned must not hit the thread's
            // next call. SAFETY: the GIL is held; a null exception clears the pending one.
            unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, std::ptr::null_mut()) };
        }
    }
}

impl call::Credit for Control {
    fn acquire(&self) -> bool {
        self.acquire_credit()
    }
}

/// Raises `snakebridge_agent.dispatch.CallCancelled` in the thread running a cancelled
/// call, if one is: a call looping in Python stops at its next bytecode, freeing its thread
/// (a call blocked in C code stays blocked; the core replaces a worker whose call hangs).
pub fn interrupt(control: &Arc<Control>) {
    if control.runner() == 0 {
        return;
    }
    let control = Arc::clone(control);
    // Taking the GIL waits for as long as the running call holds it: never on a runtime
    // thread. If the thread cannot start, the call is left to the core.
    let _ = std::thread::Builder::new()
        .name("snakebridge-interrupt".into())
        .spawn(move || {
            Python::attach(|py| {
                let ident = control.runner();
                if ident == 0 {
                    return;
                }
                let Ok(exception) = py
                    .import("snakebridge_agent.dispatch")
                    .and_then(|m| m.getattr("CallCancelled"))
                else {
                    return;
                };
                control.mark_interrupted();
                // SAFETY: the GIL is held and `exception` is a live exception type.
                unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, exception.as_ptr()) };
            });
        });
}

/// One call waiting for a pool thread: the call as the connection received it, and the
/// connection's way back for Elixir functions among its arguments.
#[derive(Debug)]
pub struct Job {
    /// The call.
    pub incoming: IncomingCall,
    /// The connection's link to the BEAM.
    pub link: Arc<Link>,
}

impl Job {
    fn run(self, dispatch: &Dispatch) {
        let refusal = self.incoming.refusal();
        let queue_us = self.incoming.queue_us();
        let Job { incoming, link } = self;
        let IncomingCall {
            request_id,
            call,
            control,
            in_flight,
            reply,
            ..
        } = incoming;
        // The connection may be gone; then nobody is waiting for these answers.
        let send = |frame: Frame| {
            let _ = reply.send(frame);
        };
        match refusal {
            Some(reason) => send(error_frame(request_id, Kind::Cancelled, reason)),
            None => {
                let crossing = convert::Crossing {
                    link,
                    tensors_as_lists: call.tensors_as_lists,
                    session: (!call.session_id.is_empty())
                        .then(|| Arc::from(call.session_id.as_str())),
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    if call.streaming {
                        call::stream(dispatch, request_id, call, &crossing, &*control, &send);
                    } else {
                        send(call::run(
                            dispatch, request_id, call, &crossing, queue_us, &*control,
                        ));
                    }
                }));
                if outcome.is_err() {
                    send(error_frame(
                        request_id,
                        Kind::Internal,
                        "the worker panicked while running the call",
                    ));
                }
            }
        }
        in_flight.finish(request_id);
    }
}

/// What a pool thread can be asked to do.
enum Task {
    Call(Job),
    /// Drop the registry's references to these objects and sessions (the BEAM released
    /// them).
    Release(proto::Release),
}

/// The pool's tasks. Each one queued adds one to an event counter in the threads' epoll
/// set, which wakes exactly one idle thread (a channel behind a mutex woke a second thread
/// per task, to take the mutex over).
struct Queue {
    /// The tasks, and whether the queue is closed (no handle is left).
    tasks: Mutex<(VecDeque<Task>, bool)>,
    count: EventCount,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Task>, bool)> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `task` and wakes one idle thread; gives the task back when closed.
    fn push(&self, task: Task) -> Option<Task> {
        let mut tasks = self.lock();
        if tasks.1 {
            return Some(task);
        }
        tasks.0.push_back(task);
        drop(tasks);
        self.count.signal(1);
        None
    }

    /// The task a thread woken by the counter takes: `Ok(None)` when another thread took it
    /// first, `Err(())` once the queue is closed and drained.
    fn pop(&self) -> Result<Option<Task>, ()> {
        if !self.count.take() {
            return Ok(None);
        }
        let mut tasks = self.lock();
        match tasks.0.pop_front() {
            Some(task) => Ok(Some(task)),
            None if tasks.1 => Err(()),
            None => Ok(None),
        }
    }

    fn close(&self) {
        self.lock().1 = true;
        // Every thread wakes, finds nothing and stops.
        self.count.signal(u64::MAX / 2);
    }
}

/// What the handles share: the last one to go closes the queue.
struct Handles(Arc<Shared>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.queue.close();
    }
}

/// The pool's queue; dropping every handle stops the threads once the queue drains.
#[derive(Clone)]
pub struct Threads {
    /// Held only: the last handle to go closes the queue.
    _handles: Arc<Handles>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("idle", &self.shared.idle)
            .field("started", &self.shared.started)
            .finish_non_exhaustive()
    }
}

/// What every pool thread shares.
struct Shared {
    queue: Queue,
    /// What idle threads wait on: the queue's counter and the connections' sockets.
    epoll: Epoll,
    /// The local-carrier connections being read.
    connections: Connections,
    /// Who reads while no thread is idle.
    sentinel: Sentinel,
    dispatch: Dispatch,
    /// Threads waiting for a task.
    idle: AtomicUsize,
    /// Threads started so far (the configured ones plus any added for callbacks).
    started: AtomicUsize,
}

impl Threads {
    /// Starts `threads` pool threads that run jobs with `dispatch`, and the sentinel.
    pub fn start(threads: usize, dispatch: Dispatch) -> std::io::Result<Threads> {
        let queue = Queue {
            tasks: Mutex::new((VecDeque::new(), false)),
            count: EventCount::new()?,
        };
        let epoll = Epoll::new()?;
        epoll.add(queue.count.fd(), TASKS)?;
        let shared = Arc::new(Shared {
            queue,
            epoll,
            connections: Connections::default(),
            sentinel: Sentinel::new()?,
            dispatch,
            idle: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        for _ in 0..threads {
            spawn_thread(&shared)?;
        }
        {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("snakebridge-sentinel".into())
                .spawn(move || watch(&shared))?;
        }
        let queue = Arc::new(Handles(Arc::clone(&shared)));
        Ok(Threads {
            _handles: queue,
            shared,
        })
    }

    /// Queues a job; if the pool has stopped, answers it with an error instead.
    pub fn submit(&self, job: Job) {
        self.shared.submit(job);
    }

    /// Queues the release of registry objects and sessions; a stopped pool has nothing
    /// left to free.
    pub fn release(&self, release: proto::Release) {
        let _ = self.shared.queue.push(Task::Release(release));
    }

    /// Called by a pool thread about to wait for the BEAM (an Elixir callback): if no
    /// other thread is free, one more is started, so that calls the callback makes back
    /// into this worker can run. Without it a re-entrant call would wait forever for the
    /// thread that waits for it. Threads added this way stay (their number is bounded by
    /// the deepest nesting of callbacks seen).
    pub fn before_blocking(&self) {
        if self.shared.idle.load(Ordering::Acquire) == 0 {
            // Failing to start a thread leaves the pool as it was: calls still queue.
            let _ = spawn_thread(&self.shared);
        }
    }

    /// A key for a connection about to be [`Threads::adopt`]ed.
    pub fn connection_key(&self) -> u64 {
        self.shared.connections.next_key()
    }

    /// Reads `connection` from now on: its frames wake an idle thread, which runs the
    /// first call it reads.
    pub fn adopt(&self, connection: Connection) -> std::io::Result<()> {
        let connection = Arc::new(connection);
        let (fd, key) = (connection.fd(), connection.key());
        self.shared.connections.insert(Arc::clone(&connection));
        let watched = self
            .shared
            .sentinel
            .epoll
            .add(fd, key)
            .and_then(|()| self.shared.epoll.add(fd, key));
        if let Err(err) = watched {
            self.shared.forget(&connection);
            return Err(err);
        }
        Ok(())
    }
}

impl Shared {
    fn submit(&self, job: Job) {
        if let Some(Task::Call(job)) = self.queue.push(Task::Call(job)) {
            job.incoming
                .refuse(Kind::Internal, "the worker's thread pool has stopped");
        }
    }

    /// Reads `key`'s connection, ready in `epoll`: the calls it read, or none if it is gone.
    fn read(&self, key: u64, epoll: &Epoll) -> Vec<Job> {
        let Some(connection) = self.connections.get(key) else {
            return Vec::new();
        };
        let read = connection.read(epoll);
        if read.ended {
            self.forget(&connection);
        }
        let link = connection.link();
        read.calls
            .into_iter()
            .map(|incoming| Job {
                incoming,
                link: Arc::clone(link),
            })
            .collect()
    }

    /// Stops watching a connection that ended.
    fn forget(&self, connection: &Connection) {
        self.epoll.remove(connection.fd());
        self.sentinel.epoll.remove(connection.fd());
        self.connections.remove(connection.key());
    }
}

fn spawn_thread(shared: &Arc<Shared>) -> std::io::Result<()> {
    let index = shared.started.fetch_add(1, Ordering::AcqRel);
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("snakebridge-py-{index}"))
        .stack_size(STACK_SIZE)
        .spawn(move || work(&shared))
        .map(drop)
}

fn work(shared: &Shared) {
    // Attaching once for the thread's lifetime and detaching while idle keeps one Python
    // thread state per pool thread: the per-job attach below only re-takes the GIL instead
    // of creating and destroying a thread state (and thread-locals survive between calls).
    Python::attach(|py| {
        py.detach(|| loop {
            shared.idle.fetch_add(1, Ordering::AcqRel);
            let event = shared.epoll.wait();
            if shared.idle.fetch_sub(1, Ordering::AcqRel) == 1 {
                // The last idle thread leaves: someone must read while it is busy.
                shared.sentinel.arm();
            }
            let key = match event {
                Ok(key) => key,
                Err(err) => {
                    eprintln!("snakebridge: a pool thread stops: cannot wait for work: {err}");
                    break;
                }
            };
            if key != TASKS {
                let mut jobs = shared.read(key, &shared.epoll).into_iter();
                let first = jobs.next();
                // More calls read at once (many in flight): for the other threads.
                for job in jobs {
                    shared.submit(job);
                }
                if let Some(job) = first {
                    job.run(&shared.dispatch);
                }
                continue;
            }
            let task = shared.queue.pop();
            // Re-armed after taking one: another task wakes another thread.
            if let Err(err) = shared.epoll.rearm(shared.queue.count.fd(), TASKS) {
                eprintln!("snakebridge: a pool thread stops: cannot wait for tasks: {err}");
                break;
            }
            match task {
                Ok(Some(Task::Call(job))) => job.run(&shared.dispatch),
                Ok(Some(Task::Release(release))) => Python::attach(|py| {
                    registry::release(py, &release.ref_ids, &release.session_ids)
                }),
                Ok(None) => {}
                Err(()) => break,
            }
        })
    });
}

/// The sentinel: reads the connections while no Python thread is idle, queueing the calls
/// it reads; steps back as soon as it finds a thread idle.
fn watch(shared: &Shared) {
    loop {
        shared.sentinel.wait_armed();
        for connection in shared.connections.all() {
            // A connection that ended meanwhile is no longer registered: nothing to arm.
            let _ = shared
                .sentinel
                .epoll
                .rearm(connection.fd(), connection.key());
        }
        loop {
            let key = match shared.sentinel.epoll.wait() {
                Ok(key) => key,
                Err(err) => {
                    eprintln!("snakebridge: the reading sentinel stops: {err}");
                    return;
                }
            };
            let idle = || shared.idle.load(Ordering::Acquire) > 0;
            if shared.sentinel.step_back_if(idle) {
                // The idle thread was woken by the same frames.
                break;
            }
            for job in shared.read(key, &shared.sentinel.epoll) {
                shared.submit(job);
            }
        }
    }
}
