//! The worker's Python thread pool: `threads` OS threads that take call jobs from one
//! queue and run them under the GIL. With one thread, calls run strictly one at a time in
//! arrival order.

use std::collections::VecDeque;
use std::os::raw::c_long;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use pyo3::{ffi, prelude::*};
use snakebridge_core::proto::{self, error::Kind, Frame};
use snakebridge_core::serve::{error_frame, Control, IncomingCall};

use crate::call::{self, Dispatch};
use crate::callback::Link;
use crate::convert;
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
            let _ = reply.send(Ok(frame));
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

/// The pool's tasks. Idle threads wait on one condition variable, and a task wakes
/// exactly one of them: a channel behind a mutex woke a second thread per task, to take the
/// mutex over (about 2.6 thread wake-ups per call with 4 threads, where 1 is needed).
#[derive(Default)]
struct Queue {
    /// The tasks, and whether the queue is closed (no handle is left).
    tasks: Mutex<(VecDeque<Task>, bool)>,
    ready: Condvar,
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
        self.ready.notify_one();
        None
    }

    /// The next task, waiting for one; `None` once the queue is closed and drained.
    fn pop(&self) -> Option<Task> {
        let mut tasks = self.lock();
        loop {
            if let Some(task) = tasks.0.pop_front() {
                return Some(task);
            }
            if tasks.1 {
                return None;
            }
            tasks = self.ready.wait(tasks).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

/// What the handles share: the last one to go closes the queue.
struct Handles(Arc<Queue>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The pool's queue; dropping every handle stops the threads once the queue drains.
#[derive(Clone)]
pub struct Threads {
    queue: Arc<Handles>,
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
    jobs: Arc<Queue>,
    dispatch: Dispatch,
    /// Threads waiting for a task.
    idle: AtomicUsize,
    /// Threads started so far (the configured ones plus any added for callbacks).
    started: AtomicUsize,
}

impl Threads {
    /// Starts `threads` pool threads that run jobs with `dispatch`.
    pub fn start(threads: usize, dispatch: Dispatch) -> std::io::Result<Threads> {
        let jobs = Arc::new(Queue::default());
        let queue = Arc::new(Handles(Arc::clone(&jobs)));
        let shared = Arc::new(Shared {
            jobs,
            dispatch,
            idle: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        for _ in 0..threads {
            spawn_thread(&shared)?;
        }
        Ok(Threads { queue, shared })
    }

    /// Queues a job; if the pool has stopped, answers it with an error instead.
    pub fn submit(&self, job: Job) {
        if let Some(Task::Call(job)) = self.queue.0.push(Task::Call(job)) {
            job.incoming
                .refuse(Kind::Internal, "the worker's thread pool has stopped");
        }
    }

    /// Queues the release of registry objects and sessions; a stopped pool has nothing
    /// left to free.
    pub fn release(&self, release: proto::Release) {
        let _ = self.queue.0.push(Task::Release(release));
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
            let next = shared.jobs.pop();
            shared.idle.fetch_sub(1, Ordering::AcqRel);
            match next {
                Some(Task::Call(job)) => job.run(&shared.dispatch),
                Some(Task::Release(release)) => Python::attach(|py| {
                    registry::release(py, &release.ref_ids, &release.session_ids)
                }),
                None => break,
            }
        })
    });
}
