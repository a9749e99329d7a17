//! The worker's Python thread pool: `threads` OS threads that take call jobs from one
//! queue and run them under the GIL. With one thread, calls run strictly one at a time in
//! arrival order.

use std::collections::HashMap;
use std::os::raw::c_long;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pyo3::{ffi, prelude::*};
use snakebridge_core::proto::{self, error::Kind, Frame};
use tokio::sync::mpsc::UnboundedSender;
use tonic::Status;

use crate::call::{self, Dispatch};
use crate::callback::Link;
use crate::convert;
use crate::registry;

/// Stack size of each pool thread: deep Python recursion and value nesting need room.
const STACK_SIZE: usize = 8 * 1024 * 1024;

/// Where the frames answering one connection's calls go.
pub type ReplySender = UnboundedSender<Result<Frame, Status>>;

/// The steering of one call: cancellation, and for a stream the credit the consumer gave.
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    credit: Mutex<u64>,
    changed: Condvar,
    /// The Python thread running the call's code (its ident), 0 while none is. Written
    /// and read with the GIL held.
    thread: AtomicU64,
    /// An interruption was requested for the thread in `thread`.
    interrupted: AtomicBool,
}

impl call::Running for Control {
    fn enter(&self, _py: Python<'_>) {
        // SAFETY: no preconditions; the GIL is held.
        let ident = unsafe { ffi::PyThread_get_thread_ident() };
        self.thread.store(ident as u64, Ordering::SeqCst);
    }

    fn leave(&self, _py: Python<'_>) {
        let ident = self.thread.swap(0, Ordering::SeqCst);
        if ident != 0 && self.interrupted.load(Ordering::SeqCst) {
            // An interruption that arrived as the call returned must not hit the thread's
            // next call. SAFETY: the GIL is held; a null exception clears the pending one.
            unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, std::ptr::null_mut()) };
        }
    }
}

impl Control {
    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let _guard = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    /// Raises `snakebridge_agent.dispatch.CallCancelled` in the thread running the call, if
    /// one is: a call looping in Python stops at its next bytecode, freeing its thread (a
    /// call blocked in C code stays blocked; the core replaces a worker whose call hangs).
    fn interrupt(self: &Arc<Self>) {
        if self.thread.load(Ordering::SeqCst) == 0 {
            return;
        }
        let control = Arc::clone(self);
        // Taking the GIL waits for as long as the running call holds it: never on a
        // runtime thread. If the thread cannot start, the call is left to the core.
        let _ = std::thread::Builder::new()
            .name("snakebridge-interrupt".into())
            .spawn(move || {
                Python::attach(|py| {
                    let ident = control.thread.load(Ordering::SeqCst);
                    if ident == 0 {
                        return;
                    }
                    let Ok(exception) = py
                        .import("snakebridge_agent.dispatch")
                        .and_then(|m| m.getattr("CallCancelled"))
                    else {
                        return;
                    };
                    control.interrupted.store(true, Ordering::SeqCst);
                    // SAFETY: the GIL is held and `exception` is a live exception type.
                    unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, exception.as_ptr()) };
                });
            });
    }

    fn add_credit(&self, chunks: u32) {
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        *credit = credit.saturating_add(u64::from(chunks));
        self.changed.notify_all();
    }
}

impl call::Credit for Control {
    fn acquire(&self) -> bool {
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_cancelled() {
                return false;
            }
            if *credit > 0 {
                *credit -= 1;
                return true;
            }
            credit = self.changed.wait(credit).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The calls of one connection that have not been answered yet, with their controls.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<u64, Arc<Control>>>,
}

impl InFlight {
    /// Registers a new call; `None` when `request_id` is already in flight.
    pub fn register(&self, request_id: u64) -> Option<Arc<Control>> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.contains_key(&request_id) {
            return None;
        }
        let control = Arc::new(Control::default());
        calls.insert(request_id, Arc::clone(&control));
        Some(control)
    }

    /// Marks a call as cancelled and interrupts its Python code if it is running;
    /// unknown or finished ids are ignored.
    pub fn cancel(&self, request_id: u64) {
        if let Some(control) = self.get(request_id) {
            control.cancel();
            control.interrupt();
        }
    }

    /// Gives a stream more credit; unknown or finished ids are ignored.
    pub fn credit(&self, request_id: u64, chunks: u32) {
        if let Some(control) = self.get(request_id) {
            control.add_credit(chunks);
        }
    }

    /// Cancels every call (the connection is gone), so that streams waiting for credit end.
    pub fn cancel_all(&self) {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        for control in calls.values() {
            control.cancel();
        }
    }

    fn get(&self, request_id: u64) -> Option<Arc<Control>> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&request_id).cloned()
    }

    fn finish(&self, request_id: u64) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.remove(&request_id);
    }
}

/// One call waiting for a pool thread.
pub struct Job {
    /// The call frame's request id, which the frames answering it carry.
    pub request_id: u64,
    /// The call to run.
    pub call: proto::Call,
    /// When the call frame arrived; its `timeout_ms` counts from here.
    pub arrived: Instant,
    /// The call's cancellation and stream credit.
    pub control: Arc<Control>,
    /// The connection's way back for Elixir functions among the arguments.
    pub link: Arc<Link>,
    /// The connection's unanswered calls; the call leaves them once answered.
    pub in_flight: Arc<InFlight>,
    /// Where the frames answering the call go.
    pub reply: ReplySender,
}

/// The call's id, arrival and control, not its arguments.
impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request_id", &self.request_id)
            .field("arrived", &self.arrived)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// Why the job must not run any more, if it must not.
    fn refusal(&self) -> Option<String> {
        if self.control.is_cancelled() {
            return Some("the call was cancelled before it started".to_owned());
        }
        let timeout = self.call.timeout_ms;
        if timeout > 0 && self.arrived.elapsed() >= Duration::from_millis(timeout) {
            return Some(format!(
                "the call's deadline of {timeout} ms passed before it started"
            ));
        }
        None
    }

    fn run(self, dispatch: &Dispatch) {
        let refusal = self.refusal();
        let queue_us = u64::try_from(self.arrived.elapsed().as_micros()).unwrap_or(u64::MAX);
        let Job {
            request_id,
            call,
            control,
            in_flight,
            reply,
            link,
            ..
        } = self;
        // The connection may be gone; then nobody is waiting for these answers.
        let send = |frame: Frame| {
            let _ = reply.send(Ok(frame));
        };
        match refusal {
            Some(reason) => send(call::error_frame(request_id, Kind::Cancelled, reason)),
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
                    send(call::error_frame(
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

/// The pool's queue; dropping every handle stops the threads once the queue drains.
#[derive(Clone)]
pub struct Threads {
    queue: mpsc::Sender<Task>,
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
    jobs: Mutex<mpsc::Receiver<Task>>,
    dispatch: Dispatch,
    /// Threads waiting for a task.
    idle: AtomicUsize,
    /// Threads started so far (the configured ones plus any added for callbacks).
    started: AtomicUsize,
}

impl Threads {
    /// Starts `threads` pool threads that run jobs with `dispatch`.
    pub fn start(threads: usize, dispatch: Dispatch) -> std::io::Result<Threads> {
        let (queue, jobs) = mpsc::channel::<Task>();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(jobs),
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
        if let Err(mpsc::SendError(Task::Call(job))) = self.queue.send(Task::Call(job)) {
            job.in_flight.finish(job.request_id);
            let _ = job.reply.send(Ok(call::error_frame(
                job.request_id,
                Kind::Internal,
                "the worker's thread pool has stopped",
            )));
        }
    }

    /// Queues the release of registry objects and sessions; a stopped pool has nothing
    /// left to free.
    pub fn release(&self, release: proto::Release) {
        let _ = self.queue.send(Task::Release(release));
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
            let next = {
                let jobs = shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
                jobs.recv()
            };
            shared.idle.fetch_sub(1, Ordering::AcqRel);
            match next {
                Ok(Task::Call(job)) => job.run(&shared.dispatch),
                Ok(Task::Release(release)) => Python::attach(|py| {
                    registry::release(py, &release.ref_ids, &release.session_ids)
                }),
                Err(_) => break,
            }
        })
    });
}
