//! A pool of Python workers: parallel start, least-loaded dispatch with several calls in
//! flight per worker, per-call deadlines and cancellation, and replacement of workers that
//! die (with backoff, so a worker that cannot start never becomes a tight crash loop).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

pub use crate::proto::call::Op;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::agent::Agent;
use crate::allow::Allowlist;
use crate::auth;
use crate::cache::{self, ResultCache};
use crate::callback::{Callbacks, Function};
use crate::codec::Budgets;
use crate::error::{Error, ErrorKind};
use crate::proto::{self, frame::Body};
use crate::shared::SharedDir;
use crate::startup;
use crate::stats::{Snapshot, Stats};
use crate::transport::{Carrier, Dial, Transport};
use crate::worker::{Answer, StreamEvent, Worker, WorkerInfo, WorkerSpec};

/// How a pool is built.
#[derive(Clone)]
pub struct PoolConfig {
    /// The Python interpreter.
    pub python: PathBuf,
    /// The worker's Python code, put on the interpreter's path (see [`crate::agent`]);
    /// `None` when the interpreter has `snakebridge_agent` installed.
    pub agent: Option<Agent>,
    /// Number of worker processes.
    pub size: usize,
    /// Python threads per worker (1 = strictly serial).
    pub threads: u32,
    /// Environment variables for the workers only (e.g. `OMP_NUM_THREADS`).
    pub env: Vec<(String, String)>,
    /// Directories prepended to the workers' `PYTHONPATH`.
    pub python_path: Vec<PathBuf>,
    /// How long one worker may take to become ready.
    pub startup_timeout: Duration,
    /// Largest single gRPC message, in bytes; larger payloads travel in parts.
    pub max_message_size: usize,
    /// Largest payload (encoded value plus buffers) a call may send, in bytes.
    pub max_payload_size: usize,
    /// Largest payload a worker may send back (a result, a stream chunk, a callback's
    /// arguments), in bytes.
    pub max_result_size: usize,
    /// Most values (list, tuple and set items, map keys and map values) one payload may
    /// hold, either way (see [`crate::codec::budget`]).
    pub max_elements: usize,
    /// How frames travel to the workers (the local carrier unless told).
    pub carrier: Carrier,
    /// Buffers of at least this many bytes travel through shared memory (see
    /// [`crate::shared`]) when the machine has `/dev/shm`; `None`: always in messages.
    pub shared_memory: Option<usize>,
    /// Longest wait between two attempts to replace a worker that will not start.
    pub max_restart_backoff: Duration,
    /// Calls that may wait for a Python thread beyond the `size × threads` that run at
    /// once; past them a call fails at once with `overloaded`.
    pub max_queue: usize,
    /// How long a call may keep running in Python after it was given up on (deadline
    /// passed, caller gone) before its worker counts as hung.
    pub hang_grace: Duration,
    /// Whether a hung worker is replaced: it takes no new calls, a new worker takes its
    /// slot at once, and it is killed once its other calls are done (so that its stuck
    /// thread does not leak). Otherwise the thread stays stuck and the worker works on
    /// with one thread less.
    pub replace_hung_workers: bool,
    /// The Python modules calls may reach (see [`crate::allow`]); `None`: any.
    pub allowed_modules: Option<Allowlist>,
    /// Values redacted from everything that comes back from the workers (see
    /// [`crate::secrets`]): the resolved secrets the pool hands to Python.
    pub secrets: Vec<String>,
    /// Who runs the Elixir functions Python calls back.
    pub callbacks: Callbacks,
    /// Calls each worker runs when it starts and after a restart (target and encoded
    /// `[args, kwargs]`), e.g. to configure a library's global state.
    pub init: Vec<(String, proto::Payload)>,
    /// Whether [`Pool::start`] fails when a worker cannot start. Otherwise the pool starts
    /// without it, keeps trying to start it with backoff, and calls that find no live
    /// worker fail at once with `no_workers` and the reason ([`Pool::start_error`]).
    pub strict: bool,
    /// What to do about a worker that cannot start, appended to the explanation (see
    /// [`crate::startup::explain`]), e.g. the command that installs what is missing.
    pub start_hint: Option<String>,
}

/// Everything but the secrets and the init calls' arguments (which may hold secrets too).
impl std::fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("python", &self.python)
            .field("agent", &self.agent)
            .field("size", &self.size)
            .field("threads", &self.threads)
            .field("python_path", &self.python_path)
            .field("startup_timeout", &self.startup_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("max_payload_size", &self.max_payload_size)
            .field("max_result_size", &self.max_result_size)
            .field("max_elements", &self.max_elements)
            .field("carrier", &self.carrier)
            .field("shared_memory", &self.shared_memory)
            .field("max_queue", &self.max_queue)
            .field("hang_grace", &self.hang_grace)
            .field("replace_hung_workers", &self.replace_hung_workers)
            .field("allowed_modules", &self.allowed_modules)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field(
                "init",
                &self
                    .init
                    .iter()
                    .map(|(target, _)| target)
                    .collect::<Vec<_>>(),
            )
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            python: PathBuf::from("python3"),
            agent: None,
            // One worker per core, as the Elixir side's default (a scheduler per core).
            size: std::thread::available_parallelism().map_or(2, usize::from),
            threads: crate::contract::DEFAULT_THREADS,
            env: Vec::new(),
            python_path: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            max_message_size: crate::contract::DEFAULT_MAX_MESSAGE_SIZE,
            max_payload_size: crate::contract::DEFAULT_MAX_PAYLOAD_SIZE,
            max_result_size: crate::contract::DEFAULT_MAX_RESULT_SIZE,
            max_elements: crate::contract::DEFAULT_MAX_ELEMENTS,
            carrier: Carrier::default(),
            shared_memory: Some(crate::contract::DEFAULT_SHARED_MIN_SIZE),
            max_restart_backoff: Duration::from_secs(5),
            max_queue: 10_000,
            hang_grace: Duration::from_secs(1),
            replace_hung_workers: true,
            allowed_modules: None,
            secrets: Vec::new(),
            callbacks: Callbacks::default(),
            init: Vec::new(),
            strict: true,
            start_hint: None,
        }
    }
}

/// What runs on every worker, so that its arguments cannot refer to an object (which
/// lives on one worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EveryWorker<'a> {
    /// A broadcast.
    Broadcast,
    /// One of a pool's init calls (run by every worker at start and after a restart).
    Init {
        /// The init call's target.
        target: &'a str,
    },
}

impl EveryWorker<'_> {
    /// Refuses arguments that refer to objects (`pinned`): they live on one worker, and
    /// this runs on every one.
    pub fn check_unpinned(self, pinned: bool) -> Result<(), Error> {
        if !pinned {
            return Ok(());
        }
        let message = match self {
            EveryWorker::Broadcast => {
                "object references live on one worker and cannot be broadcast".to_owned()
            }
            EveryWorker::Init { target } => {
                format!("init call {target}: object references cannot be init arguments")
            }
        };
        Err(Error::new(ErrorKind::BadRequest, message))
    }
}

/// One call to make.
#[derive(Debug, Default)]
pub struct CallRequest {
    /// Dotted path of the callable (`"os.path.join"`), or the method / attribute name for
    /// the other [`Op`]s.
    pub target: String,
    /// What to do: call a function, call a method, get or set an attribute.
    pub op: Op,
    /// `[args, kwargs]`, already encoded (see [`crate::codec::call_arguments`]).
    pub args: proto::Payload,
    /// How long the caller will wait; `None` waits for as long as it takes.
    pub timeout: Option<Duration>,
    /// Resolves when the caller gives up (e.g. its process died).
    pub cancel: Option<oneshot::Receiver<()>>,
    /// Return the result as an object reference even when it is plain data.
    pub return_ref: bool,
    /// The worker that must run the call (it holds objects the arguments refer to, or
    /// the call's session lives there).
    pub pin: Option<Weak<Worker>>,
    /// The session the call belongs to (its objects end with the session).
    pub session: Option<String>,
    /// Serve the call from the result cache when it can (a pure function).
    pub cache: Option<CachePolicy>,
    /// The codec the worker encodes the result in (msgpack by default).
    pub result_codec: proto::Codec,
    /// Tensors cross as nested lists (`serialization.tensor_passthrough: false`).
    pub tensors_as_lists: bool,
    /// The Elixir functions among the arguments (see [`crate::callback`]): held until the
    /// call ends, and given to the connection the call is sent on.
    pub callbacks: Vec<Arc<Function>>,
}

/// How a cacheable call's answer is kept.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// The cache's namespace (the integration the target belongs to).
    pub integration: String,
    /// How long an answer stays fresh; `None` until cleared.
    pub ttl: Option<Duration>,
}

/// A call's answer and the worker that gave it (which holds any objects it refers to).
#[derive(Debug)]
pub struct Reply {
    /// The encoded answer.
    pub payload: proto::Payload,
    /// The worker that gave it.
    pub worker: Arc<Worker>,
    /// Microseconds the call waited in the worker for a Python thread.
    pub queue_us: u64,
    /// The answer came from the result cache.
    pub cache_hit: bool,
}

/// Steers a streaming call: more credit, or cancel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamControl {
    worker: Arc<Worker>,
    id: u64,
}

impl StreamControl {
    /// Lets the worker send `chunks` more chunks.
    pub fn credit(&self, chunks: u32) {
        self.worker.credit(self.id, chunks);
    }

    /// Stops the stream: the worker closes the Python iterator; no more events arrive.
    pub fn cancel(&self) {
        self.worker.cancel(self.id, "the consumer stopped");
    }

    /// The worker running the stream (which holds any objects its chunks refer to).
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }
}

/// A running pool. Cloning is cheap; the workers stop when the last clone is dropped or
/// [`Pool::close`] is called.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .field("closed", &self.inner.closed)
            .field("outstanding", &self.inner.outstanding)
            .field("max_outstanding", &self.inner.max_outstanding)
            .finish_non_exhaustive()
    }
}

struct Inner {
    spec: WorkerSpec,
    size: usize,
    max_restart_backoff: Duration,
    transport: Arc<dyn Transport>,
    slots: RwLock<Vec<Option<Arc<Worker>>>>,
    /// Signalled whenever a slot gets a new worker or the pool closes.
    changed: Notify,
    next_request: AtomicU64,
    next_generation: AtomicU64,
    round_robin: AtomicUsize,
    closed: AtomicBool,
    stats: Stats,
    cache: ResultCache,
    budgets: Budgets,
    /// The shared directory for large buffers, when there is one.
    shared_memory: Option<Arc<SharedDir>>,
    /// Calls being made now, and the most there may be (`size × threads + max_queue`).
    outstanding: AtomicUsize,
    max_outstanding: usize,
    hang_grace: Duration,
    replace_hung_workers: bool,
    allowed_modules: Option<Allowlist>,
    /// Why the last attempt to (re)start a worker failed (explained, see
    /// [`crate::startup`]), for the errors of calls that find no live worker; `None` once
    /// a start succeeded.
    last_start_error: std::sync::Mutex<Option<Error>>,
    start_hint: Option<String>,
    /// Per slot, the delay before replacing a worker that died young (grows while they
    /// keep dying young).
    crash_delays: std::sync::Mutex<Vec<Duration>>,
}

/// A worker that dies sooner than this after its start is replaced after a delay.
const YOUNG_DEATH: Duration = Duration::from_secs(10);
/// The first delay before restarting a worker (doubling up to `max_restart_backoff`).
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
/// The longest a retired (hung) worker is kept for its remaining calls.
const RETIRE_WAIT: Duration = Duration::from_secs(60);

/// A call counted among the pool's outstanding calls until dropped.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An admission that outlives the function that admitted the call (a direct call's, held
/// by its completion).
struct OwnedAdmission(Arc<Inner>);

impl Drop for OwnedAdmission {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a direct call runs with its outcome (see [`Pool::try_call_direct`]).
pub type Done = Box<dyn FnOnce(Result<Reply, Error>) + Send>;

/// Why [`Pool::try_call_direct`] did not start a call, with what it was given back.
pub enum Declined {
    /// The call needs what only [`Pool::call`] does (the result cache, waiting for a
    /// worker): run it there.
    Queue(Box<CallRequest>, Done),
    /// The call failed before it was sent: answer `Done` with the error (from a runtime
    /// thread).
    Failed(Error, Done),
}

impl std::fmt::Debug for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Declined::Queue(request, _) => f.debug_tuple("Queue").field(request).finish(),
            Declined::Failed(err, _) => f.debug_tuple("Failed").field(err).finish(),
        }
    }
}

/// A call started by [`Pool::try_call_direct`]: it can be given up on.
#[derive(Debug)]
pub struct DirectCall {
    inner: Weak<Inner>,
    worker: Arc<Worker>,
    id: u64,
    timeout_ms: u64,
}

impl DirectCall {
    /// The caller stopped waiting: the call is cancelled in the worker and answered with
    /// a `cancelled` error. Call from a runtime thread (the hang watch is a task).
    pub fn cancel(&self) {
        let err = Error::new(ErrorKind::Cancelled, "the caller cancelled the call");
        self.give_up("caller went away", err);
    }

    /// The call's deadline passed (the caller keeps the time): answered with a `timeout`
    /// error. Call from a runtime thread.
    pub fn expire(&self) {
        let err = Error::new(
            ErrorKind::Timeout,
            format!("no reply within {} ms", self.timeout_ms),
        );
        self.give_up("deadline passed", err);
    }

    fn give_up(&self, reason: &str, err: Error) {
        if self.worker.give_up(self.id, reason, err) {
            if let Some(inner) = self.inner.upgrade() {
                inner.watch_hang(&self.worker, self.id);
            }
        }
    }
}

impl Pool {
    /// Creates the pool's private directory and token, and starts `config.size` workers in
    /// parallel. Fails (stopping any that did start) if any worker cannot start.
    pub async fn start(config: PoolConfig) -> Result<Pool, Error> {
        if config.size == 0 {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "pool size must be at least 1",
            ));
        }
        crate::secrets::register(config.secrets.iter().cloned());
        let dir = private_dir()?;
        let token = auth::new_token();
        let token_file = dir.join("token");
        write_private(&token_file, token.as_bytes())?;
        let shared_memory = config
            .shared_memory
            .and_then(SharedDir::create)
            .map(Arc::new);
        let shared = shared_memory.clone();
        let budgets = Budgets {
            max_payload_size: config.max_payload_size,
            max_result_size: config.max_result_size,
            max_elements: config.max_elements,
        };
        let dial = Dial::new(token, config.max_message_size, budgets).with_shared(shared);
        let transport = config.carrier.transport(dial);
        let inner = Arc::new(Inner {
            spec: WorkerSpec {
                python: config.python,
                agent: config.agent,
                threads: config.threads,
                env: config.env,
                python_path: config.python_path,
                startup_timeout: config.startup_timeout,
                dir,
                token_file,
                callbacks: config.callbacks,
                init: config.init,
                allowed_modules: config
                    .allowed_modules
                    .as_ref()
                    .map(|list| list.modules().to_vec()),
                carrier: config.carrier,
            },
            size: config.size,
            max_restart_backoff: config.max_restart_backoff,
            transport,
            slots: RwLock::new(vec![None; config.size]),
            changed: Notify::new(),
            next_request: AtomicU64::new(1),
            next_generation: AtomicU64::new(0),
            round_robin: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
            cache: ResultCache::default(),
            budgets,
            shared_memory,
            outstanding: AtomicUsize::new(0),
            max_outstanding: config
                .size
                .saturating_mul(config.threads.max(1) as usize)
                .saturating_add(config.max_queue),
            hang_grace: config.hang_grace,
            replace_hung_workers: config.replace_hung_workers,
            allowed_modules: config.allowed_modules,
            last_start_error: std::sync::Mutex::new(None),
            start_hint: config.start_hint,
            crash_delays: std::sync::Mutex::new(vec![Duration::ZERO; config.size]),
        });

        let mut starting = tokio::task::JoinSet::new();
        for slot in 0..config.size {
            let inner = inner.clone();
            starting.spawn(async move { (slot, Inner::spawn_worker(&inner, slot).await) });
        }
        let mut first_error = None;
        while let Some(joined) = starting.join_next().await {
            match joined {
                Ok((slot, Ok(worker))) => inner.install(slot, worker),
                Ok((_, Err(err))) => {
                    first_error.get_or_insert(err);
                }
                Err(join_err) => {
                    first_error.get_or_insert(Error::new(
                        ErrorKind::Internal,
                        format!("worker start task failed: {join_err}"),
                    ));
                }
            }
        }
        let pool = Pool { inner };
        match first_error {
            None => Ok(pool),
            Some(err) if config.strict => {
                pool.close();
                Err(err)
            }
            Some(err) => {
                pool.inner.set_start_error(Some(err));
                let empty: Vec<usize> = (pool.inner.read_slots().iter().enumerate())
                    .filter(|(_, worker)| worker.is_none())
                    .map(|(slot, _)| slot)
                    .collect();
                for slot in empty {
                    Inner::replace(&pool.inner, slot, FIRST_RESTART_DELAY);
                }
                Ok(pool)
            }
        }
    }

    /// Why the last attempt to start a worker failed, until one starts: what a pool that
    /// is not strict started without.
    pub fn start_error(&self) -> Option<Error> {
        self.inner.start_error()
    }

    /// Calls a Python function on the least-loaded live worker (or the pinned one) and
    /// waits for its encoded result, the deadline, or the caller's cancellation, whichever
    /// comes first. A cacheable call may be answered from the result cache.
    pub async fn call(&self, mut request: CallRequest) -> Result<Reply, Error> {
        self.check_allowed(&request)?;
        self.check_payload(&request.args)?;
        let started = Instant::now();
        let in_session = request.session.is_some();
        let cache = match request.cache.take() {
            Some(policy) if request.pin.is_none() && !in_session => Some((
                cache::Key {
                    integration: policy.integration,
                    target: request.target.clone(),
                    op: request.op as i32,
                    args: request.args.data.clone(),
                    result_codec: request.result_codec as i32,
                    tensors_as_lists: request.tensors_as_lists,
                },
                policy.ttl,
            )),
            _ => None,
        };
        if let Some((key, _)) = &cache {
            let hit = self.inner.cache.get(key).and_then(|(payload, worker)| {
                let worker = worker.upgrade().filter(|w| w.is_alive());
                Some((payload, worker.or_else(|| self.inner.least_loaded())?))
            });
            self.inner.stats.record_cache(hit.is_some());
            if let Some((payload, worker)) = hit {
                self.inner.stats.record_call(started.elapsed(), true, false);
                return Ok(Reply {
                    payload,
                    worker,
                    queue_us: 0,
                    cache_hit: true,
                });
            }
        }
        let outcome = self.dispatch(request).await;
        if let (Some((key, ttl)), Ok(reply)) = (cache, &outcome) {
            let worker = Arc::downgrade(&reply.worker);
            self.inner.cache.put(key, &reply.payload, worker, ttl);
        }
        self.inner
            .stats
            .record_call(started.elapsed(), outcome.is_ok(), in_session);
        outcome
    }

    /// Starts a call without a task waiting for it: its frame goes out now, and `done`
    /// runs with its outcome where the reply is read (on a runtime thread), so that the
    /// reply reaches the caller with no hop in between. The caller keeps the deadline and
    /// calls [`DirectCall::expire`] when it passes (or [`DirectCall::cancel`]).
    ///
    /// Declines what it cannot start at once: a call that may be answered from the result
    /// cache, or that would wait for a worker to start, goes back as [`Declined::Queue`]
    /// for [`Pool::call`]; a call refused before it was sent comes back as
    /// [`Declined::Failed`]. Call from any thread, in a runtime's context or not:
    /// `runtime` runs what must run on a runtime thread.
    pub fn try_call_direct(
        &self,
        mut request: CallRequest,
        done: Done,
        runtime: &tokio::runtime::Handle,
    ) -> Result<DirectCall, Declined> {
        if request.cache.is_some() {
            return Err(Declined::Queue(Box::new(request), done));
        }
        if let Err(err) = self
            .check_allowed(&request)
            .and_then(|()| self.check_payload(&request.args))
        {
            return Err(Declined::Failed(err, done));
        }
        let worker = match &request.pin {
            Some(pinned) => match pinned.upgrade().filter(|w| w.is_alive()) {
                Some(worker) => worker,
                None => return Err(Declined::Queue(Box::new(request), done)),
            },
            None => match self.inner.least_loaded() {
                Some(worker) => worker,
                None => return Err(Declined::Queue(Box::new(request), done)),
            },
        };
        let admission = match self.inner.admit() {
            Ok(admitted) => {
                // Held by the completion from now on.
                std::mem::forget(admitted);
                OwnedAdmission(Arc::clone(&self.inner))
            }
            Err(err) => return Err(Declined::Failed(err, done)),
        };
        let started = Instant::now();
        let in_session = request.session.is_some();
        let callbacks = std::mem::take(&mut request.callbacks);
        let (id, timeout_ms, frame) = self.call_frame(request, false);
        let answering = Arc::clone(&worker);
        let completion: crate::worker::Completion = Box::new(move |outcome| {
            let inner = Arc::clone(&admission.0);
            drop(admission);
            inner
                .stats
                .record_call(started.elapsed(), outcome.is_ok(), in_session);
            done(outcome.map(|answer| Reply {
                payload: answer.payload,
                worker: answering,
                queue_us: answer.queue_us,
                cache_hit: false,
            }))
        });
        let direct = crate::worker::Direct::new(completion, runtime.clone());
        match worker.begin_direct(id, frame, &callbacks, direct) {
            Ok(()) => Ok(DirectCall {
                inner: Arc::downgrade(&self.inner),
                worker,
                id,
                timeout_ms,
            }),
            Err((err, completion)) => {
                let failed: Done = Box::new(move |outcome| {
                    completion(outcome.map(|r| Answer {
                        payload: r.payload,
                        queue_us: r.queue_us,
                    }))
                });
                Err(Declined::Failed(err, failed))
            }
        }
    }

    /// The pool's budgets for what crosses: a binding encodes arguments and decodes
    /// results within them (see [`crate::codec::budget`]).
    pub fn budgets(&self) -> Budgets {
        self.inner.budgets
    }

    /// The smallest buffer that crosses through shared memory (see [`crate::shared`]), or
    /// `None` when every buffer travels in messages.
    pub fn shared_memory(&self) -> Option<usize> {
        self.inner.shared_memory.as_ref().map(|s| s.min_size())
    }

    /// Refuses a request outside the pool's `allowed_modules`, before anything is sent.
    fn check_allowed(&self, request: &CallRequest) -> Result<(), Error> {
        match &self.inner.allowed_modules {
            None => Ok(()),
            Some(list) => match request.op {
                Op::Call => list.check_target(&request.target),
                Op::CallMethod | Op::GetAttr | Op::SetAttr => list.check_name(&request.target),
            },
        }
    }

    /// Refuses arguments larger than the pool's `max_payload_size`, before anything is sent
    /// (a binding's writer refuses them earlier, while encoding, when it writes
    /// [`within`](crate::codec::msgpack::Writer::within) the pool's budgets).
    fn check_payload(&self, args: &proto::Payload) -> Result<(), Error> {
        let size = crate::framing::payload_size(args);
        Ok(self
            .inner
            .budgets
            .to_python("the arguments")
            .check_size(size)?)
    }

    async fn dispatch(&self, mut request: CallRequest) -> Result<Reply, Error> {
        let _admitted = self.inner.admit()?;
        let deadline = request.timeout.map(|t| Instant::now() + t);
        let worker = self.target_worker(&request, deadline).await?;
        let cancel = request.cancel.take();
        let callbacks = std::mem::take(&mut request.callbacks);
        let (id, timeout_ms, frame) = self.call_frame(request, false);
        let reply = worker.begin(id, frame, &callbacks)?;
        let cancelled = async {
            match cancel {
                // A dropped sender means the same as a sent cancel: nobody waits any more.
                Some(cancel) => {
                    let _ = cancel.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            outcome = reply => match outcome {
                Ok(Ok(answer)) => Ok(Reply {
                    payload: answer.payload,
                    worker,
                    queue_us: answer.queue_us,
                    cache_hit: false,
                }),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(Error::new(ErrorKind::Internal, "the call's reply was lost").with_worker(worker.pid())),
            },
            _ = expired => {
                worker.abandon(id, "deadline passed");
                self.inner.watch_hang(&worker, id);
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no reply within {} ms", timeout_ms),
                ).with_worker(worker.pid()))
            }
            _ = cancelled => {
                worker.abandon(id, "caller went away");
                self.inner.watch_hang(&worker, id);
                Err(Error::new(ErrorKind::Cancelled, "the caller cancelled the call").with_worker(worker.pid()))
            }
        }
    }

    /// Starts a streaming call: the worker iterates the call's result and sends one chunk
    /// per element, `initial_credit` at first and then as many as [`StreamControl::credit`]
    /// allows. Returns the handle that steers the stream and the receiver of its events.
    pub async fn stream(
        &self,
        mut request: CallRequest,
        initial_credit: u32,
    ) -> Result<(StreamControl, mpsc::UnboundedReceiver<StreamEvent>), Error> {
        self.check_allowed(&request)?;
        self.check_payload(&request.args)?;
        let deadline = request.timeout.map(|t| Instant::now() + t);
        let worker = self.target_worker(&request, deadline).await?;
        let callbacks = std::mem::take(&mut request.callbacks);
        let (id, _, frame) = self.call_frame(request, true);
        let credit = proto::Frame {
            request_id: id,
            body: Some(Body::Credit(proto::Credit {
                chunks: initial_credit,
            })),
        };
        let events = worker.begin_stream(id, vec![frame, credit], &callbacks)?;
        Ok((StreamControl { worker, id }, events))
    }

    /// Runs the same call on every live worker at once (for global state such as a
    /// library's configuration); returns each worker's pid and outcome.
    /// (A request pinned to one worker, by its arguments' references, is refused:
    /// see [`EveryWorker`].)
    pub async fn broadcast(&self, request: CallRequest) -> Vec<(u32, Result<Reply, Error>)> {
        if let Err(err) = EveryWorker::Broadcast.check_unpinned(request.pin.is_some()) {
            return vec![(0, Err(err))];
        }
        let workers: Vec<Arc<Worker>> = self
            .inner
            .read_slots()
            .iter()
            .flatten()
            .filter(|w| w.is_alive())
            .cloned()
            .collect();
        let mut calls = tokio::task::JoinSet::new();
        for worker in workers {
            let pool = self.clone();
            let pid = worker.pid();
            let request = CallRequest {
                target: request.target.clone(),
                op: request.op,
                args: request.args.clone(),
                timeout: request.timeout,
                return_ref: request.return_ref,
                result_codec: request.result_codec,
                tensors_as_lists: request.tensors_as_lists,
                callbacks: request.callbacks.clone(),
                pin: Some(Arc::downgrade(&worker)),
                ..CallRequest::default()
            };
            calls.spawn(async move { (pid, pool.call(request).await) });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(join_err) => outcomes.push((
                    0,
                    Err(Error::new(
                        ErrorKind::Internal,
                        format!("a broadcast call failed to run: {join_err}"),
                    )),
                )),
            }
        }
        outcomes
    }

    /// Introspects a library on the least-loaded worker, within `timeout`; returns the
    /// descriptor and the worker that made it (whose Python version it depends on).
    pub async fn describe(
        &self,
        request: proto::DescribeLibraryRequest,
        timeout: Duration,
    ) -> Result<(proto::DescribeLibraryResponse, Arc<Worker>), Error> {
        if let Some(list) = &self.inner.allowed_modules {
            list.check_target(&request.module_path)?;
        }
        let deadline = Instant::now() + timeout;
        let worker = self.inner.pick(Some(deadline)).await?;
        match tokio::time::timeout_at(deadline, worker.describe(request)).await {
            Ok(outcome) => Ok((outcome?, worker)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("introspection took longer than {} ms", timeout.as_millis()),
            )
            .with_worker(worker.pid())),
        }
    }

    /// Picks the worker a new session will be pinned to: the least loaded, waiting for one
    /// to start until `deadline`.
    pub async fn checkout(&self, deadline: Option<Instant>) -> Result<Arc<Worker>, Error> {
        let worker = self.inner.pick(deadline).await?;
        self.inner.stats.record_session();
        Ok(worker)
    }

    /// The pool's counters now.
    pub fn stats(&self) -> Snapshot {
        self.inner.stats.snapshot()
    }

    /// Drops cached answers of `integration` (all when `None`); returns how many.
    pub fn clear_cache(&self, integration: Option<&str>) -> usize {
        self.inner.cache.clear(integration)
    }

    /// The worker a request must run on: the one holding its objects, else the least
    /// loaded (waiting for one to start, until `deadline`).
    async fn target_worker(
        &self,
        request: &CallRequest,
        deadline: Option<Instant>,
    ) -> Result<Arc<Worker>, Error> {
        match &request.pin {
            Some(pinned) => pinned.upgrade().filter(|w| w.is_alive()).ok_or_else(|| {
                Error::new(
                    ErrorKind::StaleRef,
                    "the worker holding the object died; the object is gone",
                )
            }),
            None => self.inner.pick(deadline).await,
        }
    }

    /// A fresh request id, the timeout in milliseconds (0 = none) and the call frame.
    fn call_frame(&self, request: CallRequest, streaming: bool) -> (u64, u64, proto::Frame) {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let timeout_ms = request
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0);
        let frame = proto::Frame {
            request_id: id,
            body: Some(Body::Call(proto::Call {
                target: request.target,
                args: Some(request.args),
                timeout_ms,
                streaming,
                session_id: request.session.unwrap_or_default(),
                result_codec: request.result_codec as i32,
                op: request.op as i32,
                return_ref: request.return_ref,
                tensors_as_lists: request.tensors_as_lists,
            })),
        };
        (id, timeout_ms, frame)
    }

    /// The live workers, slot by slot.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner
            .read_slots()
            .iter()
            .flatten()
            .filter(|w| w.is_alive())
            .map(|w| w.info())
            .collect()
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Stops every worker; calls in flight fail with `worker_crashed`, later calls with
    /// `pool_closed`. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, Vec<Option<Arc<Worker>>>> {
        // Slots hold plain Option<Arc<_>>: a panic elsewhere cannot leave them torn.
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn install(&self, slot: usize, worker: Arc<Worker>) {
        {
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            slots[slot] = Some(worker.clone());
        }
        if self.closed.load(Ordering::SeqCst) {
            worker.kill();
        }
        self.changed.notify_waiters();
    }

    /// Starts a worker for `slot`; a failure is explained (see [`crate::startup`]).
    async fn spawn_worker(inner: &Arc<Inner>, slot: usize) -> Result<Arc<Worker>, Error> {
        let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let spawned = Worker::spawn(
            slot,
            generation,
            &inner.spec,
            inner.transport.clone(),
            move |worker, err| {
                if let Some(inner) = weak.upgrade() {
                    Inner::on_worker_exit(&inner, worker, err);
                }
            },
        )
        .await;
        spawned
            .map_err(|err| startup::explain(&inner.spec.python, &err, inner.start_hint.as_deref()))
    }

    fn start_error(&self) -> Option<Error> {
        self.last_start_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_start_error(&self, err: Option<Error>) {
        *self
            .last_start_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = err;
    }

    /// A worker died: its slot gets a new one, unless it had been retired (replaced
    /// already). One that died young without answering a call (it cannot live, whatever
    /// the calls) is replaced after a growing delay, so that it never makes a tight crash
    /// loop; one that served calls is replaced at once (a call killed it).
    fn on_worker_exit(inner: &Arc<Inner>, worker: &Worker, err: &Error) {
        let slot = worker.slot();
        {
            let mut slots = inner.slots.write().unwrap_or_else(|p| p.into_inner());
            // (Retiring happens under this lock too.)
            if worker.is_retired() {
                return;
            }
            match &slots[slot] {
                Some(current) if current.generation() != worker.generation() => return,
                _ => slots[slot] = None,
            }
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(slot, error = %err, "replacing a dead worker");
        let delay = {
            let mut delays = inner.crash_delays.lock().unwrap_or_else(|p| p.into_inner());
            let delay = &mut delays[slot];
            *delay = if worker.age() < YOUNG_DEATH && !worker.served() {
                (*delay * 2).clamp(FIRST_RESTART_DELAY, inner.max_restart_backoff)
            } else {
                Duration::ZERO
            };
            *delay
        };
        Inner::replace(inner, slot, delay);
    }

    /// Starts a worker for `slot` after `delay`, retrying with backoff until one starts or
    /// the pool closes.
    fn replace(inner: &Arc<Inner>, slot: usize, delay: Duration) {
        let weak = Arc::downgrade(inner);
        let max_backoff = inner.max_restart_backoff;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut backoff = FIRST_RESTART_DELAY;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                match Inner::spawn_worker(&inner, slot).await {
                    Ok(worker) => {
                        inner.set_start_error(None);
                        inner.install(slot, worker);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(slot, error = %err, ?backoff, "worker restart failed");
                        inner.set_start_error(Some(err));
                    }
                }
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        });
    }

    /// Counts a call in, or refuses it when the pool already has as many as it may.
    fn admit(&self) -> Result<Admitted<'_>, Error> {
        let before = self.outstanding.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(&self.outstanding);
        if before >= self.max_outstanding {
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "the pool already has {before} calls running or queued, its limit (size × threads + max_queue)"
                ),
            ));
        }
        Ok(admitted)
    }

    /// After the hang grace, checks whether abandoned call `id` still holds a thread of
    /// `worker`; if so the worker is hung (see [`PoolConfig::replace_hung_workers`]).
    fn watch_hang(self: &Arc<Self>, worker: &Arc<Worker>, id: u64) {
        let inner = Arc::downgrade(self);
        let worker = Arc::downgrade(worker);
        let grace = self.hang_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let (Some(inner), Some(worker)) = (inner.upgrade(), worker.upgrade()) else {
                return;
            };
            if !worker.is_abandoned(id) || inner.closed.load(Ordering::SeqCst) {
                return;
            }
            inner.stats.record_hang();
            if inner.replace_hung_workers {
                tracing::warn!(pid = worker.pid(), "replacing a worker whose call hung");
                Inner::retire(&inner, worker);
            } else {
                tracing::warn!(pid = worker.pid(), "a call hung; its thread stays stuck");
            }
        });
    }

    /// Takes `worker` out of its slot (no new calls), starts its replacement at once, and
    /// kills it when its remaining calls are done (at most [`RETIRE_WAIT`] later).
    fn retire(inner: &Arc<Inner>, worker: Arc<Worker>) {
        let slot = worker.slot();
        {
            let mut slots = inner.slots.write().unwrap_or_else(|p| p.into_inner());
            match &slots[slot] {
                Some(current) if Arc::ptr_eq(current, &worker) => slots[slot] = None,
                // Already retired, or dead and being replaced.
                _ => return,
            }
            worker.retire();
        }
        Inner::replace(inner, slot, Duration::ZERO);
        tokio::spawn(async move {
            let retired = Instant::now();
            while worker.in_flight() > 0 && retired.elapsed() < RETIRE_WAIT {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worker.kill();
        });
    }

    /// The live worker with the fewest calls in flight (ties broken round-robin); waits
    /// for one to be (re)started when none is alive, until `deadline`. When none is alive
    /// and the last attempt to start one failed, fails at once with the reason: a caller
    /// learns what is wrong now rather than at its deadline.
    async fn pick(&self, deadline: Option<Instant>) -> Result<Arc<Worker>, Error> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::PoolClosed, "the pool was stopped"));
            }
            if let Some(worker) = self.least_loaded() {
                return Ok(worker);
            }
            if let Some(err) = self.start_error() {
                return Err(self.no_workers(Some(err)));
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(self.no_workers(self.start_error()));
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The error of a call that found no live worker, with why the last start failed.
    fn no_workers(&self, start_error: Option<Error>) -> Error {
        match start_error {
            Some(err) => Error {
                kind: ErrorKind::NoWorkers,
                message: format!(
                    "none of the {} workers is running, and the last attempt to start one \
                     failed: {}",
                    self.size, err.message
                ),
                ..err
            },
            None => Error::new(
                ErrorKind::NoWorkers,
                format!(
                    "none of the {} workers was alive before the deadline",
                    self.size
                ),
            ),
        }
    }

    fn least_loaded(&self) -> Option<Arc<Worker>> {
        let slots = self.read_slots();
        let n = slots.len();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Arc<Worker>> = None;
        for i in 0..n {
            if let Some(worker) = &slots[(start + i) % n] {
                if !worker.is_alive() {
                    continue;
                }
                if best.is_none_or(|b| worker.in_flight() < b.in_flight()) {
                    best = Some(worker);
                }
            }
        }
        best.cloned()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for worker in self.read_slots().iter().flatten() {
            worker.kill();
        }
        // Now, not when the last handle goes: files in it are memory.
        if let Some(shared) = &self.shared_memory {
            shared.remove();
        }
        self.changed.notify_waiters();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
        // Workers are being killed; their sockets are removed by their supervisors, the
        // token and the directory here.
        let _ = std::fs::remove_file(&self.spec.token_file);
        let _ = std::fs::remove_dir_all(&self.spec.dir);
    }
}

/// Creates a fresh directory only this OS user can enter.
fn private_dir() -> Result<PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "snakebridge-{}-{}",
        std::process::id(),
        &auth::new_token()[..12]
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            Error::new(
                ErrorKind::WorkerStartFailed,
                format!("could not create {}: {e}", dir.display()),
            )
        })?;
    Ok(dir)
}

fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<(), Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| {
            Error::new(
                ErrorKind::WorkerStartFailed,
                format!("could not write {}: {e}", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_pool_that_cannot_start_says_why() {
        let config = PoolConfig {
            python: PathBuf::from("/nonexistent/python"),
            size: 2,
            ..PoolConfig::default()
        };
        let err = Pool::start(config).await.expect_err("must fail");
        assert_eq!(err.kind, ErrorKind::WorkerStartFailed);
        assert!(
            err.message.contains("/nonexistent/python"),
            "{}",
            err.message
        );
    }

    #[test]
    fn what_runs_on_every_worker_refuses_object_references() {
        assert!(EveryWorker::Broadcast.check_unpinned(false).is_ok());
        let err = EveryWorker::Broadcast.check_unpinned(true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(err.message.contains("cannot be broadcast"), "{err}");
        let err = EveryWorker::Init { target: "m.f" }
            .check_unpinned(true)
            .unwrap_err();
        assert_eq!(
            err.message,
            "init call m.f: object references cannot be init arguments"
        );
    }

    #[tokio::test]
    async fn a_pool_that_is_not_strict_starts_and_calls_say_why_at_once() {
        let config = PoolConfig {
            python: PathBuf::from("/nonexistent/python"),
            size: 2,
            strict: false,
            start_hint: Some("Run the fix.".into()),
            ..PoolConfig::default()
        };
        let pool = Pool::start(config).await.expect("starts without workers");
        let why = pool.start_error().expect("the reason it has no workers");
        assert_eq!(why.kind, ErrorKind::WorkerStartFailed);
        assert_eq!(
            why.message,
            "cannot start a Python worker with `/nonexistent/python`: the interpreter \
             `/nonexistent/python` was not found. Run the fix."
        );
        // No deadline: only the reason, given at once, ends this call.
        let request = CallRequest {
            target: "math.sqrt".into(),
            ..CallRequest::default()
        };
        let err = pool.call(request).await.expect_err("no worker");
        assert_eq!(err.kind, ErrorKind::NoWorkers);
        assert!(err.message.ends_with(&why.message), "{}", err.message);
        assert!(pool.workers().is_empty());
        pool.close();
    }

    #[tokio::test]
    async fn a_worker_that_exits_early_reports_its_stderr() {
        // `python3 -m snakebridge_agent` without the agent installed: an import error.
        let config = PoolConfig {
            python: PathBuf::from("sh"),
            size: 1,
            env: vec![],
            ..PoolConfig::default()
        };
        // `sh -m snakebridge_agent ...` fails at once with a message on stderr.
        let err = Pool::start(config).await.expect_err("must fail");
        assert_eq!(err.kind, ErrorKind::WorkerStartFailed);
        assert!(
            err.message.contains("exited before it was ready"),
            "{}",
            err.message
        );
        assert!(err.exit_status.is_some());
        assert!(!err.stderr_tail.unwrap_or_default().is_empty());
    }

    #[test]
    fn the_private_directory_is_closed_to_others() {
        let dir = private_dir().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let token = dir.join("token");
        write_private(&token, b"t").unwrap();
        let mode = std::fs::metadata(&token).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
