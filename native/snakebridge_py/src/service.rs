//! The `Worker` service: handshake, describe (on a blocking thread), and the data plane
//! whose call frames go to the thread pool. gRPC calls it through its trait, the local
//! carrier through the same methods (`handshake_with`, `describe_with`, `channel_with`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use snakebridge_core::auth;
use snakebridge_core::codec::Budgets;
use snakebridge_core::direct::{Inbox, Outbox, Patient};
use snakebridge_core::framing::{self, Assembler};
use snakebridge_core::proto::{
    self, worker_server::Worker, Frame, HandshakeRequest, HandshakeResponse, PROTOCOL_VERSION,
    SHARED_MEMORY_CAPABILITY, TOKEN_METADATA_KEY,
};
use snakebridge_core::serve::{self, Control, Executor, IncomingCall, ReplySender, Router};
use snakebridge_core::shared::SharedDir;
use snakebridge_core::transport::Splitting;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use std::os::unix::net::UnixStream;

use bytes::BytesMut;

use crate::callback::Link;
use crate::leader;
use crate::threads::{self, Job, Threads};

/// Feature names reported by `Handshake`.
const CAPABILITIES: [&str; 3] = ["codec:msgpack", "cancel", "parts"];

/// The client's message limit when it names none.
const DEFAULT_MAX_MESSAGE: usize = snakebridge_core::contract::DEFAULT_MAX_MESSAGE_SIZE;

/// The service state shared by every connection.
pub struct WorkerService {
    python_threads: Threads,
    threads: u32,
    python_version: String,
    /// The largest message the client accepts (from its handshake).
    max_message_size: Arc<AtomicUsize>,
    /// The client's shared directory for large buffers, once joined (from its handshake).
    shared: Mutex<Option<Arc<SharedDir>>>,
    /// The client's budgets (from its handshake): `max_payload_size` bounds one incoming
    /// payload, assembled from parts or taken from shared files; `max_result_size` what
    /// the worker sends back; `max_elements` both.
    budgets: Mutex<Budgets>,
}

impl std::fmt::Debug for WorkerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService")
            .field("python_threads", &self.python_threads)
            .field("threads", &self.threads)
            .field("python_version", &self.python_version)
            .field("max_message_size", &self.max_message_size)
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

impl WorkerService {
    /// A service whose calls run on `python_threads`; `threads` and `python_version` are
    /// reported by `Handshake`.
    pub fn new(python_threads: Threads, threads: u32, python_version: String) -> Self {
        WorkerService {
            python_threads,
            threads,
            python_version,
            max_message_size: Arc::new(AtomicUsize::new(DEFAULT_MAX_MESSAGE)),
            shared: Mutex::new(None),
            budgets: Mutex::new(Budgets::default()),
        }
    }
}

/// A reply item as the frames to send (large buffers shared, oversized payloads in parts).
fn split_reply(
    item: Result<Frame, Status>,
    outgoing: &framing::Outgoing,
) -> Vec<Result<Frame, Status>> {
    match item {
        Ok(frame) => outgoing.frames(frame).into_iter().map(Ok).collect(),
        Err(status) => vec![Err(status)],
    }
}

/// The client's shared directory, if it offered one this worker may use; why not is
/// reported on stderr and the buffers travel in messages.
fn join_shared(request: &HandshakeRequest) -> Option<SharedDir> {
    if request.shared_dir.is_empty() {
        return None;
    }
    let min_size = usize::try_from(request.shared_min_size).unwrap_or(usize::MAX);
    match SharedDir::join(std::path::Path::new(&request.shared_dir), min_size) {
        Ok(shared) => Some(shared),
        Err(why) => {
            eprintln!("snakebridge: not using shared memory for large buffers: {why}");
            None
        }
    }
}

/// The budgets a handshake names; each one it leaves at 0 keeps its default.
fn budgets_of(request: &HandshakeRequest) -> Budgets {
    let given = |n: u64, default: usize| match n {
        0 => default,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let defaults = Budgets::default();
    Budgets {
        max_payload_size: given(request.max_payload_size, defaults.max_payload_size),
        max_result_size: given(request.max_result_size, defaults.max_result_size),
        max_elements: given(request.max_elements, defaults.max_elements),
    }
}

/// An interceptor refusing every request that does not carry `token`.
pub fn token_check(token: Arc<str>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let presented = request
            .metadata()
            .get(TOKEN_METADATA_KEY)
            .map(|value| value.as_bytes());
        match presented {
            Some(presented) if auth::token_matches(&token, presented) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong SnakeBridge token")),
            None => Err(Status::unauthenticated(format!(
                "missing `{TOKEN_METADATA_KEY}` metadata"
            ))),
        }
    }
}

impl WorkerService {
    /// The largest message the client accepts (from its handshake).
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// Answers a handshake (either carrier): checks the protocol version, takes the
    /// client's limits and shared directory, reports the worker.
    pub fn handshake_with(&self, request: HandshakeRequest) -> Result<HandshakeResponse, Status> {
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: the client ({}) speaks version {}, this worker speaks version {PROTOCOL_VERSION}",
                request.client, request.protocol_version
            )));
        }
        if request.max_message_size > 0 {
            let limit = usize::try_from(request.max_message_size).unwrap_or(usize::MAX);
            self.max_message_size.store(limit, Ordering::Relaxed);
        }
        *self.budgets.lock().unwrap_or_else(|e| e.into_inner()) = budgets_of(&request);
        let mut capabilities: Vec<String> = CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
        if let Some(shared) = join_shared(&request) {
            *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(shared));
            capabilities.push(SHARED_MEMORY_CAPABILITY.to_owned());
        }
        Ok(HandshakeResponse {
            protocol_version: PROTOCOL_VERSION,
            worker_pid: std::process::id(),
            python_version: self.python_version.clone(),
            capabilities,
            threads: self.threads,
        })
    }

    /// Describes a library (either carrier), on a blocking thread: introspection imports
    /// modules and holds the GIL for a while.
    pub async fn describe_with(
        &self,
        request: proto::DescribeLibraryRequest,
    ) -> Result<proto::DescribeLibraryResponse, Status> {
        match tokio::task::spawn_blocking(move || crate::describe::describe(&request)).await {
            Ok(described) => described,
            Err(err) => Err(Status::internal(format!(
                "the introspection task failed: {err}"
            ))),
        }
    }

    /// Opens the data plane on `inbound`, the client's frames (either carrier): returns
    /// the frames to send back, large buffers shared and oversized payloads in parts.
    pub fn channel_with<S>(&self, inbound: S) -> ChannelStream
    where
        S: Stream<Item = Result<Frame, Status>> + Unpin + Send + 'static,
    {
        let (reply, replies) = mpsc::unbounded_channel();
        let (assembler, outgoing, budgets) = self.connection_parts();
        tokio::spawn(read_frames(
            inbound,
            self.python_threads.clone(),
            ReplySender::channel(reply),
            assembler,
            budgets,
        ));
        Splitting::new(UnboundedReceiverStream::new(replies), outgoing, split_reply)
    }

    /// What a new data-plane connection works with, from the client's handshake: how
    /// payloads that come in parts or shared are assembled, how large replies go out, and
    /// the budgets.
    fn connection_parts(&self) -> (Assembler, framing::Outgoing, Budgets) {
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let budgets = *self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let assembler = Assembler::new(budgets.max_payload_size).with_shared(shared.clone());
        let outgoing = framing::Outgoing {
            part_size: framing::part_size(self.max_message_size.load(Ordering::Relaxed)),
            shared,
        };
        (assembler, outgoing, budgets)
    }

    /// Opens the data plane of a local-carrier connection on `socket` (non-blocking),
    /// `read` being what was read past its `Open`: from now on the worker's Python threads
    /// read it themselves (see [`crate::leader`]), refusing frames over `limit` bytes.
    pub fn lead(&self, socket: UnixStream, read: BytesMut, limit: usize) -> std::io::Result<()> {
        let (assembler, outgoing, budgets) = self.connection_parts();
        let socket = Arc::new(socket);
        let outbox = Outbox::new(Patient(Arc::clone(&socket)), outgoing);
        let reply = ReplySender::direct(Arc::new(outbox));
        let link = Arc::new(Link::new(
            reply.clone(),
            self.python_threads.clone(),
            budgets,
        ));
        let executor = Connection {
            python_threads: self.python_threads.clone(),
            link: Arc::clone(&link),
        };
        let connection = leader::Connection::new(
            self.python_threads.connection_key(),
            socket,
            Inbox::new(read, limit),
            Router::new(reply, assembler),
            Box::new(executor),
            link,
        );
        self.python_threads.adopt(connection)
    }
}

/// The frames a worker sends on its data plane (see [`WorkerService::channel_with`]).
pub type ChannelStream =
    Splitting<UnboundedReceiverStream<Result<Frame, Status>>, Result<Frame, Status>>;

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn handshake(
        &self,
        request: Request<HandshakeRequest>,
    ) -> Result<Response<HandshakeResponse>, Status> {
        self.handshake_with(request.into_inner()).map(Response::new)
    }

    async fn describe_library(
        &self,
        request: Request<proto::DescribeLibraryRequest>,
    ) -> Result<Response<proto::DescribeLibraryResponse>, Status> {
        self.describe_with(request.into_inner())
            .await
            .map(Response::new)
    }

    type ChannelStream = ChannelStream;

    async fn channel(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::ChannelStream>, Status> {
        Ok(Response::new(self.channel_with(request.into_inner())))
    }
}

/// What runs one connection's calls: the worker's Python threads, with the connection's
/// link back to the BEAM for the Elixir functions among their arguments.
#[derive(Debug)]
struct Connection {
    python_threads: Threads,
    link: Arc<Link>,
}

impl Executor for Connection {
    fn submit(&self, incoming: IncomingCall) {
        self.python_threads.submit(Job {
            incoming,
            link: Arc::clone(&self.link),
        });
    }

    fn release(&self, release: proto::Release) {
        self.python_threads.release(release);
    }

    fn interrupt(&self, control: &Arc<Control>) {
        threads::interrupt(control);
    }
}

/// Reads one connection's frames until the client ends its stream (the core's
/// [`serve::route`]). The response stream ends once this task and every job of the
/// connection have dropped their senders.
async fn read_frames<S>(
    inbound: S,
    python_threads: Threads,
    reply: ReplySender,
    assembler: Assembler,
    budgets: Budgets,
) where
    S: Stream<Item = Result<Frame, Status>> + Unpin,
{
    let link = Arc::new(Link::new(reply.clone(), python_threads.clone(), budgets));
    let connection = Connection {
        python_threads,
        link: Arc::clone(&link),
    };
    serve::route(inbound, &connection, link.callbacks(), reply, assembler).await;
}
