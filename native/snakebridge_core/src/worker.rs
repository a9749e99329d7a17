//! One Python worker: its OS process, its connection, and the calls in flight on it.
//!
//! A worker is spawned as `python -m snakebridge_agent --socket … --token-file …` in its
//! own process group, with `PR_SET_PDEATHSIG` so it dies with the BEAM. It prints one
//! readiness line; the core then connects through the [`Transport`]. A supervisor task
//! owns the process and the inbound frames: it routes replies to their callers and, when
//! the process or the connection dies, answers every in-flight caller with
//! `worker_crashed` at once and tells the pool.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::StreamExt;

use crate::agent::{self, Agent};
use crate::callback::{self, CallbackId, Callbacks, Function, Granted, Scope};
use crate::error::{Error, ErrorKind};
use crate::proto::{self, frame::Body};
use crate::transport::{Describer, FrameStream, Transport};

/// The line a worker prints on stdout once it is listening.
pub const READY_PREFIX: &str = "SNAKEBRIDGE_READY";

/// How many lines of a worker's stderr are kept for error reports.
const STDERR_TAIL_LINES: usize = 40;

/// What a worker process needs to start.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The Python interpreter.
    pub python: PathBuf,
    /// The worker's Python code, put on the interpreter's path; `None` when the
    /// interpreter has `snakebridge_agent` installed.
    pub agent: Option<Agent>,
    /// Size of the worker's Python thread pool (1 = strictly serial).
    pub threads: u32,
    /// Extra environment variables for the worker only.
    pub env: Vec<(String, String)>,
    /// Directories prepended to the worker's `PYTHONPATH`.
    pub python_path: Vec<PathBuf>,
    /// How long a worker may take to print its readiness line.
    pub startup_timeout: Duration,
    /// The pool's private (0700) directory holding sockets and the token file.
    pub dir: PathBuf,
    /// Who runs the Elixir functions Python calls.
    pub callbacks: Callbacks,
    /// File holding the per-run token.
    pub token_file: PathBuf,
    /// Calls every worker runs after it starts (and after a restart) before taking work:
    /// target and encoded `[args, kwargs]`.
    pub init: Vec<(String, proto::Payload)>,
    /// The modules the worker's agent lets calls reach (`None`: any).
    pub allowed_modules: Option<Vec<String>>,
    /// How the worker serves its socket.
    pub carrier: crate::transport::Carrier,
}

/// What the pool runs once a worker it started has died.
type ExitHook = Box<dyn FnOnce(&Worker, &Error) + Send>;

/// Request ids of a worker's init calls, apart from the pool's call ids.
const INIT_REQUEST_BASE: u64 = 1 << 63;

/// A successful call's answer as the worker sent it.
#[derive(Debug, Default)]
pub struct Answer {
    /// The encoded result.
    pub payload: proto::Payload,
    /// How long the call waited in the worker for a Python thread, in microseconds.
    pub queue_us: u64,
}

/// The outcome a caller waits for.
pub type Outcome = Result<Answer, Error>;

/// What the consumer of a streaming call receives, in order; `End` and `Failed` are last.
#[derive(Debug)]
pub enum StreamEvent {
    /// One element of the stream.
    Chunk(proto::Payload),
    /// The Python iterator is exhausted.
    End,
    /// The stream failed (Python raised mid-stream, the worker died, …).
    Failed(Error),
}

/// What a call answered directly runs with its outcome (see [`Worker::begin_direct`]).
pub type Completion = Box<dyn FnOnce(Outcome) + Send>;

/// A completion, run exactly once: with the outcome, or with an `internal` error if it is
/// dropped unanswered. It runs on a runtime thread: where no runtime is running (a
/// scheduler thread of the VM closing a pool), it is spawned onto `runtime`.
pub struct Direct {
    done: Option<Completion>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("answered", &self.done.is_none())
            .finish_non_exhaustive()
    }
}

impl Direct {
    /// `done`, to run on `runtime` when it cannot run where it is answered.
    pub fn new(done: Completion, runtime: tokio::runtime::Handle) -> Direct {
        Direct {
            done: Some(done),
            runtime,
        }
    }

    /// Runs the completion with `outcome`.
    pub fn complete(mut self, outcome: Outcome) {
        if let Some(done) = self.done.take() {
            run_completion(done, &self.runtime, outcome);
        }
    }

    /// The completion back, unrun (a call that could not be sent).
    fn into_done(mut self) -> Completion {
        self.done.take().unwrap_or_else(|| Box::new(drop))
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let lost = Err(Error::new(ErrorKind::Internal, "the call's reply was lost"));
            run_completion(done, &self.runtime, lost);
        }
    }
}

/// Runs `done` here if this is a runtime thread, else spawns it onto `runtime`.
fn run_completion(done: Completion, runtime: &tokio::runtime::Handle, outcome: Outcome) {
    if tokio::runtime::Handle::try_current().is_ok() {
        done(outcome);
    } else {
        runtime.spawn(async move { done(outcome) });
    }
}

/// Who waits for the frames of one request.
enum Waiter {
    Once(oneshot::Sender<Outcome>),
    Stream(mpsc::UnboundedSender<StreamEvent>),
    /// Answered by running a completion where the reply is read: no task waits.
    Direct(Direct),
}

impl Waiter {
    /// Delivers the request's failure; a waiter that stopped listening is fine.
    fn fail(self, err: Error) {
        match self {
            Waiter::Once(tx) => {
                let _ = tx.send(Err(err));
            }
            Waiter::Stream(tx) => {
                let _ = tx.send(StreamEvent::Failed(err));
            }
            Waiter::Direct(direct) => direct.complete(Err(err)),
        }
    }
}

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, Waiter>,
    /// Calls given up on (deadline passed, caller gone) whose Python thread has not
    /// finished yet: the worker answers every call, late or not, so one that stays here
    /// holds a thread that is stuck.
    abandoned: HashSet<u64>,
    /// Set once the worker is gone; later calls fail with this error.
    dead: Option<Error>,
    /// The Elixir functions sent on this connection: the only ones it may call back.
    granted: Granted,
}

/// A live worker as the pool sees it.
pub struct Worker {
    slot: usize,
    generation: u64,
    pid: u32,
    /// When the worker became ready.
    started: std::time::Instant,
    /// Whether it answered a call yet (init calls aside).
    served: std::sync::atomic::AtomicBool,
    /// Taken out of the pool (hung): it finishes its calls and is killed, not replaced.
    retired: std::sync::atomic::AtomicBool,
    python_version: String,
    outbound: mpsc::UnboundedSender<proto::Frame>,
    calls: Mutex<Calls>,
    in_flight: AtomicUsize,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    /// Object references and sessions the BEAM dropped, sent to the worker in batches.
    releases: Mutex<proto::Release>,
    release_wake: Notify,
    callbacks: Callbacks,
    describer: Describer,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .field("pid", &self.pid)
            .field("python_version", &self.python_version)
            .field("in_flight", &self.in_flight)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// A snapshot of one worker, for observation and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The pool slot the worker fills.
    pub slot: usize,
    /// The worker's OS process id.
    pub pid: u32,
    /// Calls waiting on the worker (see [`Worker::in_flight`]).
    pub in_flight: usize,
    /// The worker's `sys.version`.
    pub python_version: String,
}

/// The last lines of a worker's stderr.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == STDERR_TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The lines, secrets redacted.
    fn text(&self) -> String {
        let text = self
            .0
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        crate::secrets::scrub(&text).into_owned()
    }
}

fn lock_calls(worker: &Worker) -> std::sync::MutexGuard<'_, Calls> {
    // A panic while holding this lock cannot leave the map inconsistent (every critical
    // section is a single insert/remove), so a poisoned lock is still usable.
    worker.calls.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Starts a worker process for `slot`, waits for readiness and connects to it.
    /// `on_exit` runs once, after the worker died and its callers were answered.
    pub async fn spawn(
        slot: usize,
        generation: u64,
        spec: &WorkerSpec,
        transport: Arc<dyn Transport>,
        on_exit: impl FnOnce(&Worker, &Error) + Send + 'static,
    ) -> Result<Arc<Worker>, Error> {
        let (worker, hook) = Worker::start(slot, generation, spec, transport).await?;
        if let Err(err) = worker.run_init(spec).await {
            worker.kill();
            return Err(err);
        }
        // Only a worker that fully started is replaced when it dies.
        if let Ok(mut hook) = hook.lock() {
            *hook = Some(Box::new(on_exit));
        }
        Ok(worker)
    }

    async fn start(
        slot: usize,
        generation: u64,
        spec: &WorkerSpec,
        transport: Arc<dyn Transport>,
    ) -> Result<(Arc<Worker>, Arc<Mutex<Option<ExitHook>>>), Error> {
        let socket = spec.dir.join(format!("w{slot}-{generation}.sock"));
        let mut child = spawn_process(spec, &socket)?;
        let os_pid = child.id().unwrap_or_default();
        let tail = StderrTail::default();
        let stderr_done = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(collect_lines(stderr, tail.clone())));
        let fail = |message: String, status: Option<ExitStatus>, tail: &StderrTail| {
            let mut err = Error::new(ErrorKind::WorkerStartFailed, message).with_worker(os_pid);
            err.exit_status = status.map(exit_code);
            err.stderr_tail = Some(tail.text());
            err
        };

        let ready = match child.stdout.take() {
            Some(stdout) => {
                tokio::time::timeout(spec.startup_timeout, wait_ready(stdout, tail.clone())).await
            }
            None => Ok(Err("stdout was not captured".to_owned())),
        };
        let stdout = match ready {
            Ok(Ok(stdout)) => stdout,
            Ok(Err(reason)) => {
                let status = reap(&mut child, stderr_done).await;
                return Err(fail(
                    format!(
                        "Python worker `{}` exited before it was ready ({reason})",
                        spec.python.display()
                    ),
                    status,
                    &tail,
                ));
            }
            Err(_) => {
                kill_group(os_pid);
                let status = reap(&mut child, stderr_done).await;
                return Err(fail(
                    format!(
                        "Python worker `{}` was not ready within {:?}",
                        spec.python.display(),
                        spec.startup_timeout
                    ),
                    status,
                    &tail,
                ));
            }
        };
        // Keep draining stdout so that a chatty worker can never block on a full pipe.
        tokio::spawn(collect_lines(stdout, tail.clone()));

        let connection = match transport.connect(&socket).await {
            Ok(connection) => connection,
            Err(err) => {
                kill_group(os_pid);
                let status = reap(&mut child, stderr_done).await;
                return Err(fail(
                    format!("could not connect to the worker: {}", err.message),
                    status,
                    &tail,
                ));
            }
        };

        let (kill_tx, kill_rx) = oneshot::channel();
        let mut calls = Calls::default();
        calls
            .granted
            .grant(&spec.callbacks.permanent, &Scope::Permanent);
        let worker = Arc::new(Worker {
            slot,
            generation,
            started: std::time::Instant::now(),
            served: std::sync::atomic::AtomicBool::new(false),
            retired: std::sync::atomic::AtomicBool::new(false),
            pid: connection.handshake.worker_pid,
            python_version: connection.handshake.python_version.clone(),
            outbound: connection.outbound,
            calls: Mutex::new(calls),
            in_flight: AtomicUsize::new(0),
            kill: Mutex::new(Some(kill_tx)),
            releases: Mutex::new(proto::Release::default()),
            release_wake: Notify::new(),
            callbacks: spec.callbacks.clone(),
            describer: connection.describe,
        });
        tracing::debug!(slot, pid = worker.pid, "worker ready");
        let hook = Arc::new(Mutex::new(None));
        tokio::spawn(supervise(
            worker.clone(),
            Supervised {
                child,
                inbound: connection.inbound,
                kill_rx,
                tail,
                stderr_done,
                socket,
                on_exit: hook.clone(),
            },
        ));
        Ok((worker, hook))
    }

    /// Runs the spec's init calls in order; the first failure fails the start.
    async fn run_init(&self, spec: &WorkerSpec) -> Result<(), Error> {
        for (index, (target, args)) in spec.init.iter().enumerate() {
            let id = INIT_REQUEST_BASE + index as u64;
            let frame = proto::Frame {
                request_id: id,
                body: Some(Body::Call(proto::Call {
                    target: target.clone(),
                    args: Some(args.clone()),
                    ..proto::Call::default()
                })),
            };
            let reply = self.begin(id, frame, &[])?;
            let outcome = match tokio::time::timeout(spec.startup_timeout, reply).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(Error::new(
                    ErrorKind::Internal,
                    "the init call's reply was lost",
                )),
                Err(_) => {
                    self.cancel(id, "init deadline passed");
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("no reply within {:?}", spec.startup_timeout),
                    ))
                }
            };
            if let Err(err) = outcome {
                let mut failed = Error::new(
                    ErrorKind::WorkerStartFailed,
                    format!("the worker's init call {target} failed: {}", err.message),
                )
                .with_worker(self.pid);
                failed.python = err.python;
                return Err(failed);
            }
        }
        Ok(())
    }

    /// Introspects a library in this worker (`DescribeLibrary`).
    pub async fn describe(
        &self,
        request: proto::DescribeLibraryRequest,
    ) -> Result<proto::DescribeLibraryResponse, Error> {
        (self.describer)(request)
            .await
            .map_err(|e| e.with_worker(self.pid))
    }

    /// The worker's OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pool slot this worker fills.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Which start of its slot this worker is (unique within the pool).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How long ago the worker became ready.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the worker answered any call (its init calls aside).
    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Marks the worker as taken out of the pool: its death needs no replacement.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Whether the worker was taken out of the pool (see [`Worker::retire`]).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Calls currently waiting on this worker.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the worker can take calls.
    pub fn is_alive(&self) -> bool {
        lock_calls(self).dead.is_none()
    }

    /// A snapshot for observation.
    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            slot: self.slot,
            pid: self.pid,
            in_flight: self.in_flight(),
            python_version: self.python_version.clone(),
        }
    }

    /// Registers request `id` and sends its frame; the receiver gets exactly one reply.
    /// `functions` are the Elixir functions among its arguments: the connection may call
    /// them until the call ends, or its session if it has one (see [`Scope::of_call`]).
    pub fn begin(
        &self,
        id: u64,
        frame: proto::Frame,
        functions: &[Arc<Function>],
    ) -> Result<oneshot::Receiver<Outcome>, Error> {
        let (tx, rx) = oneshot::channel();
        self.register(id, Waiter::Once(tx), vec![frame], functions)
            .map_err(|(err, _)| err)?;
        Ok(rx)
    }

    /// Registers request `id` and sends its frame; `direct` runs with its one reply where
    /// the reply is read (or with the failure: the worker died, the call was given up on).
    /// A call that cannot be sent gives its completion back, unrun, with the reason.
    pub fn begin_direct(
        &self,
        id: u64,
        frame: proto::Frame,
        functions: &[Arc<Function>],
        direct: Direct,
    ) -> Result<(), (Error, Completion)> {
        self.register(id, Waiter::Direct(direct), vec![frame], functions)
            .map_err(|(err, waiter)| match waiter {
                Some(Waiter::Direct(direct)) => (err, direct.into_done()),
                _ => (err, Box::new(drop) as Completion),
            })
    }

    /// Registers streaming request `id` and sends its frames (the call, then the initial
    /// credit), with `functions` as in [`Worker::begin`]; the receiver gets the chunks,
    /// then `End` or `Failed`.
    pub fn begin_stream(
        &self,
        id: u64,
        frames: Vec<proto::Frame>,
        functions: &[Arc<Function>],
    ) -> Result<mpsc::UnboundedReceiver<StreamEvent>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(id, Waiter::Stream(tx), frames, functions)
            .map_err(|(err, _)| err)?;
        Ok(rx)
    }

    /// Registers `waiter` for request `id` and sends `frames`; on failure, the error and
    /// the waiter back (if it was not answered meanwhile).
    fn register(
        &self,
        id: u64,
        waiter: Waiter,
        frames: Vec<proto::Frame>,
        functions: &[Arc<Function>],
    ) -> Result<(), (Error, Option<Waiter>)> {
        {
            let mut calls = lock_calls(self);
            if let Some(err) = &calls.dead {
                return Err((err.clone(), Some(waiter)));
            }
            calls.pending.insert(id, waiter);
            if !functions.is_empty() {
                let scope = frames
                    .iter()
                    .find_map(|frame| match &frame.body {
                        Some(Body::Call(call)) => Some(Scope::of_call(id, call)),
                        _ => None,
                    })
                    .unwrap_or(Scope::Call(id));
                calls.granted.grant(functions, &scope);
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        for frame in frames {
            if self.outbound.send(frame).is_err() {
                let waiter = self.take(id);
                let err = Error::new(
                    ErrorKind::WorkerCrashed,
                    "the worker's connection closed before the call was sent",
                )
                .with_worker(self.pid);
                return Err((err, waiter));
            }
        }
        Ok(())
    }

    /// Lets the worker produce `chunks` more chunks of stream `id`.
    pub fn credit(&self, id: u64, chunks: u32) {
        // If the connection is gone the stream has failed already.
        let _ = self.outbound.send(proto::Frame {
            request_id: id,
            body: Some(Body::Credit(proto::Credit { chunks })),
        });
    }

    /// Gives up on call `id` like [`Worker::cancel`], and remembers it until the worker
    /// answers it (see [`Worker::is_abandoned`]).
    pub fn abandon(&self, id: u64, reason: &str) {
        if self.cancel(id, reason) {
            self.mark_abandoned(id);
        }
    }

    /// Remembers call `id`, given up on, until the worker answers it.
    fn mark_abandoned(&self, id: u64) {
        let mut calls = lock_calls(self);
        if calls.dead.is_none() {
            calls.abandoned.insert(id);
        }
    }

    /// Gives up on call `id` like [`Worker::abandon`] and answers its waiter with `err`;
    /// `false` when it was answered already.
    pub fn give_up(&self, id: u64, reason: &str, err: Error) -> bool {
        let Some(waiter) = self.withdraw(id, reason) else {
            return false;
        };
        self.mark_abandoned(id);
        waiter.fail(err.with_worker(self.pid));
        true
    }

    /// Whether abandoned call `id` still holds a Python thread (the worker has not answered
    /// it yet and is alive).
    pub fn is_abandoned(&self, id: u64) -> bool {
        let calls = lock_calls(self);
        calls.dead.is_none() && calls.abandoned.contains(&id)
    }

    /// Gives up on request `id` (deadline passed, caller gone) and tells the worker;
    /// `false` when it was not pending (answered already).
    pub fn cancel(&self, id: u64, reason: &str) -> bool {
        self.withdraw(id, reason).is_some()
    }

    /// Takes request `id`'s waiter, if it is pending, and tells the worker to cancel it.
    fn withdraw(&self, id: u64, reason: &str) -> Option<Waiter> {
        let waiter = self.take(id)?;
        // If the connection is already gone there is nobody left to tell.
        let _ = self.outbound.send(proto::Frame {
            request_id: id,
            body: Some(Body::Cancel(proto::Cancel {
                reason: reason.to_owned(),
            })),
        });
        Some(waiter)
    }

    /// Queues the release of object `id` in the worker. Cheap and non-blocking, so that it
    /// can run in a garbage collector's resource destructor; the supervisor sends all
    /// queued ids in one `Release` frame when it next wakes.
    pub fn queue_release(&self, id: u64) {
        if let Ok(mut releases) = self.releases.lock() {
            releases.ref_ids.push(id);
        }
        self.release_wake.notify_one();
    }

    /// Queues the end of session `id`: the worker drops every object created in it. The
    /// Elixir functions sent in it are not callable from now on.
    pub fn queue_session_release(&self, id: &str) {
        lock_calls(self).granted.end_session(id);
        if let Ok(mut releases) = self.releases.lock() {
            releases.session_ids.push(id.to_owned());
        }
        self.release_wake.notify_one();
    }

    fn flush_releases(&self) {
        let release = match self.releases.lock() {
            Ok(mut releases) => std::mem::take(&mut *releases),
            Err(_) => return,
        };
        if !release.ref_ids.is_empty() || !release.session_ids.is_empty() {
            // A closed connection means the worker and its objects are gone anyway.
            let _ = self.outbound.send(proto::Frame {
                request_id: 0,
                body: Some(Body::Release(release)),
            });
        }
    }

    /// Asks the supervisor to kill the process (pool shutdown).
    pub fn kill(&self) {
        let sender = self.kill.lock().ok().and_then(|mut k| k.take());
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
    }

    /// Takes the waiter of request `id` on the worker's last frame for it. A request given
    /// up on is not pending any more: it leaves the abandoned set (its thread is free).
    fn finish(&self, id: u64) -> Option<Waiter> {
        if id < INIT_REQUEST_BASE {
            self.served.store(true, Ordering::Relaxed);
        }
        let mut calls = lock_calls(self);
        let waiter = self.remove_pending(&mut calls, id);
        if waiter.is_none() {
            calls.abandoned.remove(&id);
        }
        waiter
    }

    fn take(&self, id: u64) -> Option<Waiter> {
        self.remove_pending(&mut lock_calls(self), id)
    }

    /// Takes the waiter of request `id`: the call is over for the core (answered, or
    /// given up on), and so are the Elixir functions sent with it.
    fn remove_pending(&self, calls: &mut Calls, id: u64) -> Option<Waiter> {
        calls.granted.end_call(id);
        let waiter = calls.pending.remove(&id);
        if waiter.is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        waiter
    }

    /// Answers callback request `request_id` (see [`crate::callback`]). `functions` are
    /// the Elixir functions in the answer: the connection may call them until Python
    /// drops them (they belong to no call of the core's).
    pub fn callback_reply(
        &self,
        request_id: u64,
        outcome: Result<proto::Payload, proto::Error>,
        functions: &[Arc<Function>],
    ) {
        use proto::callback_result::Outcome;
        if !functions.is_empty() {
            let mut calls = lock_calls(self);
            if calls.dead.is_none() {
                calls.granted.grant(functions, &Scope::UntilDropped);
            }
        }
        let outcome = match outcome {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Error(error),
        };
        // A closed connection means the waiting Python thread is gone too.
        let _ = self.outbound.send(proto::Frame {
            request_id,
            body: Some(Body::CallbackResult(proto::CallbackResult {
                outcome: Some(outcome),
            })),
        });
    }

    fn route(self: &Arc<Self>, frame: proto::Frame) {
        let id = frame.request_id;
        match frame.body {
            Some(Body::Result(result)) => match self.finish(id) {
                Some(Waiter::Once(tx)) => {
                    // The caller may have stopped waiting; that is fine.
                    let _ = tx.send(Ok(Answer {
                        payload: result.value.unwrap_or_default(),
                        queue_us: result.queue_us,
                    }));
                }
                Some(Waiter::Direct(direct)) => direct.complete(Ok(Answer {
                    payload: result.value.unwrap_or_default(),
                    queue_us: result.queue_us,
                })),
                Some(stream) => stream.fail(Error::new(
                    ErrorKind::Internal,
                    "the worker answered a streaming call with a single result",
                )),
                None => {}
            },
            Some(Body::Error(error)) => {
                if let Some(waiter) = self.finish(id) {
                    waiter.fail(Error::from_frame(error, self.pid));
                }
            }
            Some(Body::Chunk(chunk)) if chunk.is_final => {
                if let Some(Waiter::Stream(tx)) = self.finish(id) {
                    if let Some(payload) = chunk.payload {
                        let _ = tx.send(StreamEvent::Chunk(payload));
                    }
                    let _ = tx.send(StreamEvent::End);
                }
            }
            Some(Body::Chunk(chunk)) => {
                let calls = lock_calls(self);
                if let Some(Waiter::Stream(tx)) = calls.pending.get(&id) {
                    let _ = tx.send(StreamEvent::Chunk(chunk.payload.unwrap_or_default()));
                }
            }
            Some(Body::CallbackRequest(request)) => self.run_callback(id, request),
            Some(Body::Release(release)) => {
                let ids = release.callback_ids.iter();
                let ids = ids.filter_map(|id| CallbackId::from_slice(id));
                lock_calls(self).granted.release(ids);
            }
            other => tracing::debug!(?other, "unexpected frame from a worker"),
        }
    }

    /// Hands callback request `request_id` to the pool's handler, if the function it
    /// names was sent on this connection; refuses it otherwise.
    fn run_callback(self: &Arc<Self>, request_id: u64, request: proto::CallbackRequest) {
        let Some(handler) = &self.callbacks.handler else {
            let refusal = callback::failed("this pool does not run callbacks");
            return self.callback_reply(request_id, Err(refusal), &[]);
        };
        let function = CallbackId::from_slice(&request.callback_id)
            .and_then(|id| lock_calls(self).granted.get(&id));
        match function {
            Some(function) => handler.invoke(
                self.clone(),
                request_id,
                function,
                request.args.unwrap_or_default(),
            ),
            None => {
                let refusal = callback::unknown(&request.callback_id);
                self.callback_reply(request_id, Err(refusal), &[]);
            }
        }
    }

    fn fail_all(&self, err: &Error) {
        let (pending, _granted) = {
            let mut calls = lock_calls(self);
            calls.dead = Some(err.clone());
            (
                std::mem::take(&mut calls.pending),
                std::mem::take(&mut calls.granted),
            )
        };
        self.in_flight.store(0, Ordering::Relaxed);
        for (_, waiter) in pending {
            waiter.fail(err.clone());
        }
    }
}

/// The `PYTHONPATH` the worker would have without SnakeBridge: the spec's own, else the VM's.
fn inherited_python_path(spec: &WorkerSpec) -> Option<std::ffi::OsString> {
    match spec.env.iter().find(|(name, _)| name == "PYTHONPATH") {
        Some((_, value)) => Some(value.into()),
        None => std::env::var_os("PYTHONPATH"),
    }
}

fn spawn_process(spec: &WorkerSpec, socket: &Path) -> Result<Child, Error> {
    if let Some(agent) = &spec.agent {
        agent.check()?;
    }
    let mut cmd = Command::new(&spec.python);
    cmd.arg("-m")
        .arg(agent::MODULE)
        .arg("--socket")
        .arg(socket)
        .arg("--token-file")
        .arg(&spec.token_file)
        .arg("--threads")
        .arg(spec.threads.max(1).to_string())
        .arg("--carrier")
        .arg(spec.carrier.name())
        .args(
            spec.allowed_modules
                .iter()
                .flat_map(|modules| ["--allowed-modules".to_owned(), modules.join(",")]),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONUNBUFFERED", "1")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(agent::environment(
            spec.agent.as_ref(),
            &spec.python_path,
            inherited_python_path(spec),
        )?)
        .process_group(0)
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        let python = spec.python.display();
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => format!("the interpreter `{python}` was not found"),
            std::io::ErrorKind::PermissionDenied => {
                format!("the interpreter `{python}` cannot be run: {e}")
            }
            _ => format!("could not start Python `{python}`: {e}"),
        };
        Error::new(ErrorKind::WorkerStartFailed, message)
    })
}

async fn wait_ready<R: AsyncRead + Unpin>(stdout: R, tail: StderrTail) -> Result<R, String> {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => return Err("its stdout closed".to_owned()),
            Ok(_) if line.starts_with(READY_PREFIX) => {
                // Whatever the reader buffered past the line is output; losing it is fine.
                return Ok(reader.into_inner());
            }
            Ok(_) => tail.push(line.trim_end().to_owned()),
            Err(e) => return Err(format!("reading its stdout failed: {e}")),
        }
    }
}

async fn collect_lines<R: AsyncRead + Unpin>(stream: R, tail: StderrTail) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tail.push(line);
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain syscall; the worker leads its own process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Waits for the child to exit (killing it if it will not) and for its stderr to drain.
async fn reap(
    child: &mut Child,
    stderr_done: Option<tokio::task::JoinHandle<()>>,
) -> Option<ExitStatus> {
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    if let Some(done) = stderr_done {
        let _ = tokio::time::timeout(Duration::from_millis(500), done).await;
    }
    status
}

/// Exit code, or minus the signal number when the process was killed by a signal.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

/// What the supervisor of a worker owns besides the worker.
struct Supervised {
    /// The worker's process.
    child: Child,
    /// Frames from the worker.
    inbound: FrameStream,
    /// Fires when the worker is to be killed.
    kill_rx: oneshot::Receiver<()>,
    /// The last lines of its stderr.
    tail: StderrTail,
    /// The task draining its stderr.
    stderr_done: Option<tokio::task::JoinHandle<()>>,
    /// Its socket, removed once it is gone.
    socket: PathBuf,
    /// What the pool runs once it died.
    on_exit: Arc<Mutex<Option<ExitHook>>>,
}

async fn supervise(worker: Arc<Worker>, supervised: Supervised) {
    let Supervised {
        mut child,
        mut inbound,
        mut kill_rx,
        tail,
        stderr_done,
        socket,
        on_exit,
    } = supervised;
    // `Child::wait` closes stdin before waiting, and stdin EOF tells the worker to exit:
    // hold stdin here, for as long as the worker should live.
    let stdin = child.stdin.take();
    let mut status = None;
    let cause = loop {
        tokio::select! {
            frame = inbound.next() => match frame {
                Some(Ok(frame)) => worker.route(frame),
                Some(Err(err)) => break format!("its connection failed ({})", err.message),
                None => break "its connection closed".to_owned(),
            },
            exited = child.wait() => {
                status = exited.ok();
                break "it exited".to_owned();
            }
            _ = worker.release_wake.notified() => worker.flush_releases(),
            _ = &mut kill_rx => {
                kill_group(worker.pid);
                break "the pool stopped it".to_owned();
            }
        }
    };
    drop(inbound);
    drop(stdin);
    if status.is_none() {
        // A dead process closes its socket first; its exit status follows within moments.
        // Waiting briefly lets the callers' error say how it died.
        status = tokio::time::timeout(Duration::from_millis(250), child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    if status.is_none() {
        kill_group(worker.pid);
        status = reap(&mut child, None).await;
    }
    if let Some(done) = stderr_done {
        let _ = tokio::time::timeout(Duration::from_millis(250), done).await;
    }
    let how = match status {
        Some(status) => format!("{cause}: {status}"),
        None => cause,
    };
    let mut err = Error::new(
        ErrorKind::WorkerCrashed,
        format!("Python worker {} died ({how})", worker.pid),
    )
    .with_worker(worker.pid);
    err.exit_status = status.map(exit_code);
    err.stderr_tail = Some(tail.text());
    worker.fail_all(&err);
    // Anything the worker started in its process group goes with it.
    kill_group(worker.pid);
    let _ = std::fs::remove_file(&socket);
    tracing::debug!(slot = worker.slot, pid = worker.pid, %how, "worker gone");
    let hook = on_exit.lock().ok().and_then(|mut hook| hook.take());
    if let Some(hook) = hook {
        hook(&worker, &err);
    }
}
