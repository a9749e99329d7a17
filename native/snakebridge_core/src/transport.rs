//! The carrier of frames between the core and one worker.
//!
//! The pool only sees [`Transport`] and [`Connection`]: a handshake result, a sender of
//! outbound frames and a stream of inbound ones. Two implement it over the worker's Unix
//! socket, as the pool's [`Carrier`] says: [`LocalTransport`] (the default) writes the
//! frames length-prefixed straight onto the socket (see [`crate::carrier`]), and
//! [`GrpcTransport`] opens one long-lived gRPC bidirectional `Channel` stream. Both share
//! a [`Dial`]: the token, the handshake, and how payloads are split and put back together.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::transport::{Endpoint, Uri};

use crate::carrier;
use crate::codec::Budgets;
use crate::error::{Error, ErrorKind};
use crate::framing;
use crate::proto::{self, worker_client::WorkerClient};
use crate::shared::SharedDir;

/// HTTP/2 settings for a local socket, where bandwidth is not the constraint: windows
/// large enough that a payload part never waits for a window update, and DATA frames of
/// 1 MiB (not 16 KiB) so that a large payload costs few frame headers.
///
/// This one is the initial window of each stream.
pub const STREAM_WINDOW_BYTES: u32 = 32 << 20;
/// The initial window of the whole connection (see [`STREAM_WINDOW_BYTES`]).
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// The largest DATA frame (see [`STREAM_WINDOW_BYTES`]).
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// Inbound frames from a worker; the stream ends (or yields an error) when the connection
/// is gone.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<proto::Frame, Error>> + Send>>;

/// A boxed future, so that the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `DescribeLibrary` on the connection's worker.
pub type Describer = Arc<
    dyn Fn(
            proto::DescribeLibraryRequest,
        ) -> BoxFuture<'static, Result<proto::DescribeLibraryResponse, Error>>
        + Send
        + Sync,
>;

/// An open, handshaken connection to one worker.
pub struct Connection {
    /// What the worker said about itself.
    pub handshake: proto::HandshakeResponse,
    /// The control-plane call that introspects a library.
    pub describe: Describer,
    /// Frames written here reach the worker in order.
    pub outbound: mpsc::UnboundedSender<proto::Frame>,
    /// Frames the worker sends.
    pub inbound: FrameStream,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("handshake", &self.handshake)
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

/// Opens connections to workers.
pub trait Transport: Send + Sync + 'static {
    /// Connects to the worker listening at `socket`, handshakes and opens the data plane.
    fn connect<'a>(&'a self, socket: &'a Path) -> BoxFuture<'a, Result<Connection, Error>>;
}

/// How frames travel between the core and a local worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Carrier {
    /// The local carrier ([`LocalTransport`]): length-prefixed frames, no HTTP/2.
    #[default]
    Local,
    /// gRPC over the Unix socket ([`GrpcTransport`]).
    Grpc,
}

impl Carrier {
    /// The carrier's name: the worker's `--carrier` argument and the Elixir option's atom.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Local => "local",
            Carrier::Grpc => "grpc",
        }
    }

    /// The carrier named `name` (see [`Carrier::name`]).
    pub fn from_name(name: &str) -> Option<Carrier> {
        match name {
            "local" => Some(Carrier::Local),
            "grpc" => Some(Carrier::Grpc),
            _ => None,
        }
    }

    /// The transport that opens connections on this carrier as `dial` says.
    pub fn transport(self, dial: Dial) -> Arc<dyn Transport> {
        match self {
            Carrier::Local => Arc::new(LocalTransport::new(dial)),
            Carrier::Grpc => Arc::new(GrpcTransport::new(dial)),
        }
    }
}

/// What every transport opens a worker's connection with: the per-run token, the
/// message and payload limits, and the pool's directory for large buffers.
pub struct Dial {
    token: String,
    max_message_size: usize,
    budgets: Budgets,
    shared: Option<Arc<SharedDir>>,
}

// Leaves out the token, which is a secret.
impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("max_message_size", &self.max_message_size)
            .field("budgets", &self.budgets)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Dial {
    /// Connections presenting `token`; single messages are limited to `max_message_size`
    /// (larger payloads travel in parts), whole payloads to the `budgets`: what the worker
    /// sends to `max_result_size`, and the worker is told all of them in the handshake.
    pub fn new(token: String, max_message_size: usize, budgets: Budgets) -> Self {
        Dial {
            token,
            max_message_size,
            budgets,
            shared: None,
        }
    }

    /// Offers each worker a directory of its own inside `shared` for large buffers.
    pub fn with_shared(mut self, shared: Option<Arc<SharedDir>>) -> Self {
        self.shared = shared;
        self
    }

    /// A new connection's own directory for large buffers (see `crate::shared`), if the
    /// pool has shared memory.
    fn connection_dir(&self) -> Option<Arc<SharedDir>> {
        self.shared
            .as_ref()
            .and_then(|pool| match pool.connection() {
                Ok(dir) => Some(Arc::new(dir)),
                Err(err) => {
                    tracing::debug!("large buffers travel in messages: {err}");
                    None
                }
            })
    }

    /// The handshake offering `shared` (the connection's directory).
    fn handshake_request(&self, shared: &Option<Arc<SharedDir>>) -> proto::HandshakeRequest {
        proto::HandshakeRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            client: concat!("snakebridge_core/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_message_size: self.max_message_size as u64,
            shared_dir: shared
                .as_ref()
                .map(|s| s.path().to_string_lossy().into_owned())
                .unwrap_or_default(),
            shared_min_size: shared.as_ref().map_or(0, |s| s.min_size() as u64),
            max_payload_size: self.budgets.max_payload_size as u64,
            max_result_size: self.budgets.max_result_size as u64,
            max_elements: self.budgets.max_elements as u64,
        }
    }

    /// Refuses a worker that speaks another protocol version.
    fn check(handshake: &proto::HandshakeResponse) -> Result<(), Error> {
        if handshake.protocol_version != proto::PROTOCOL_VERSION {
            return Err(Error::new(
                ErrorKind::Transport,
                format!(
                    "worker speaks protocol {}, this build speaks {}",
                    handshake.protocol_version,
                    proto::PROTOCOL_VERSION
                ),
            ));
        }
        Ok(())
    }

    /// How frames to the worker are sent: large buffers through the connection's
    /// directory if the worker joined it, payloads larger than a message in parts.
    fn outgoing(
        &self,
        handshake: &proto::HandshakeResponse,
        shared: &Option<Arc<SharedDir>>,
    ) -> framing::Outgoing {
        let joined = handshake
            .capabilities
            .iter()
            .any(|c| c == proto::SHARED_MEMORY_CAPABILITY);
        framing::Outgoing {
            part_size: framing::part_size(self.max_message_size),
            shared: shared.clone().filter(|_| joined),
        }
    }

    /// The frames to the worker, split as `outgoing` says, from the connection's queue.
    fn outbound(
        outgoing: framing::Outgoing,
    ) -> (
        mpsc::UnboundedSender<proto::Frame>,
        Splitting<UnboundedReceiverStream<proto::Frame>, proto::Frame>,
    ) {
        let (outbound, rx) = mpsc::unbounded_channel();
        let frames = Splitting::new(UnboundedReceiverStream::new(rx), outgoing, |frame, out| {
            out.frames(frame)
        });
        (outbound, frames)
    }

    /// The worker's frames with parted payloads put back together, within the budgets.
    fn inbound(
        &self,
        frames: impl Stream<Item = Result<proto::Frame, Error>> + Send + 'static,
        shared: Option<Arc<SharedDir>>,
    ) -> FrameStream {
        let assembler = framing::Assembler::new(self.budgets.max_result_size).with_shared(shared);
        Box::pin(assembled(frames, assembler))
    }
}

/// gRPC (tonic) over a Unix socket, with the per-run token on every RPC.
#[derive(Debug)]
pub struct GrpcTransport {
    dial: Dial,
}

impl GrpcTransport {
    /// A transport opening connections as `dial` says.
    pub fn new(dial: Dial) -> Self {
        GrpcTransport { dial }
    }
}

/// The inbound frames with parted payloads put back together. A payload that cannot be
/// assembled becomes an `Error` frame of its exchange, failing that call only.
fn assembled(
    frames: impl Stream<Item = Result<proto::Frame, Error>> + Send + 'static,
    assembler: framing::Assembler,
) -> impl Stream<Item = Result<proto::Frame, Error>> + Send + 'static {
    // (tokio-stream has no `scan`: a part yields `None`, filtered out.)
    Assembling {
        inner: Box::pin(frames),
        assembler,
    }
    .filter_map(|item| item)
}

/// Outbound frames (or items holding frames) turned into the frames to send by `split`
/// (see [`framing::Outgoing::frames`]): large buffers shared, oversized payloads in parts.
pub struct Splitting<S, T> {
    inner: S,
    queue: VecDeque<T>,
    outgoing: framing::Outgoing,
    split: fn(T, &framing::Outgoing) -> Vec<T>,
}

impl<S, T> std::fmt::Debug for Splitting<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splitting")
            .field("queued", &self.queue.len())
            .field("outgoing", &self.outgoing)
            .finish_non_exhaustive()
    }
}

impl<S, T> Splitting<S, T> {
    /// Splits the items of `inner` with `split`, as `outgoing` says.
    pub fn new(
        inner: S,
        outgoing: framing::Outgoing,
        split: fn(T, &framing::Outgoing) -> Vec<T>,
    ) -> Self {
        Splitting {
            inner,
            queue: VecDeque::new(),
            outgoing,
            split,
        }
    }
}

impl<S: Stream<Item = T> + Unpin, T: Unpin> Stream for Splitting<S, T> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        use std::task::Poll;
        if let Some(item) = self.queue.pop_front() {
            return Poll::Ready(Some(item));
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let mut items = (self.split)(item, &self.outgoing).into_iter();
                let first = items.next();
                self.queue.extend(items);
                Poll::Ready(first)
            }
            other => other,
        }
    }
}

/// See [`assembled`].
struct Assembling<S> {
    inner: Pin<Box<S>>,
    assembler: framing::Assembler,
}

impl<S: Stream<Item = Result<proto::Frame, Error>>> Stream for Assembling<S> {
    type Item = Option<Result<proto::Frame, Error>>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(match self.assembler.push(frame) {
                Ok(None) => None,
                Ok(Some(frame)) => Some(Ok(frame)),
                Err(err) => Some(Ok(proto::Frame {
                    request_id: err.request_id,
                    body: Some(proto::frame::Body::Error(proto::Error {
                        kind: proto::error::Kind::Encoding as i32,
                        message: err.message,
                        exception: None,
                    })),
                })),
            })),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Some(Err(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn transport_error(what: &str, err: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Transport, format!("{what}: {err}"))
}

fn status_error(what: &str, status: &tonic::Status) -> Error {
    let message = crate::secrets::scrub(status.message());
    transport_error(what, format!("{:?}: {message}", status.code()))
}

/// The error of a request the worker refused (`what`: "describe", "handshake"): a
/// library that is not there or not allowed as such, anything else as a transport error.
fn refused(what: &str, refusal: &proto::Refusal) -> Error {
    use proto::refusal::Code;
    let message = crate::secrets::scrub(&refusal.message);
    match refusal.code() {
        Code::NotFound => Error::new(ErrorKind::TargetNotFound, message),
        Code::PermissionDenied => Error::new(ErrorKind::NotAllowed, message),
        code => transport_error(what, format!("{code:?}: {message}")),
    }
}

impl Transport for GrpcTransport {
    fn connect<'a>(&'a self, socket: &'a Path) -> BoxFuture<'a, Result<Connection, Error>> {
        Box::pin(async move {
            let socket: PathBuf = socket.to_path_buf();
            // The URI is required by tonic but unused: the connector dials the socket.
            let channel = Endpoint::try_from("http://snakebridge.worker")
                .map_err(|e| transport_error("endpoint", e))?
                .connect_timeout(Duration::from_secs(10))
                .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
                .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
                .max_frame_size(Some(MAX_FRAME_BYTES))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move { UnixStream::connect(socket).await.map(TokioIo::new) }
                }))
                .await
                .map_err(|e| transport_error("connecting to the worker's socket", e))?;

            let dial = &self.dial;
            let token: MetadataValue<_> = dial
                .token
                .parse()
                .map_err(|e| transport_error("token is not valid metadata", e))?;
            let mut client =
                WorkerClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                    req.metadata_mut()
                        .insert(proto::TOKEN_METADATA_KEY, token.clone());
                    Ok(req)
                })
                .max_decoding_message_size(dial.max_message_size)
                .max_encoding_message_size(dial.max_message_size);

            let shared = dial.connection_dir();
            let handshake = client
                .handshake(dial.handshake_request(&shared))
                .await
                .map_err(|status| refused("handshake", &proto::Refusal::from(&status)))?
                .into_inner();
            Dial::check(&handshake)?;

            let describer = client.clone();
            let describe: Describer = Arc::new(move |request| {
                let mut client = describer.clone();
                Box::pin(async move {
                    match client.describe_library(request).await {
                        Ok(response) => Ok(response.into_inner()),
                        Err(status) => Err(refused("describe", &proto::Refusal::from(&status))),
                    }
                })
            });
            let (outbound, frames) = Dial::outbound(dial.outgoing(&handshake, &shared));
            let inbound = client
                .channel(frames)
                .await
                .map_err(|status| status_error("opening the channel", &status))?
                .into_inner()
                .map(|item| item.map_err(|status| status_error("channel", &status)));
            let inbound = dial.inbound(inbound, shared);
            Ok(Connection {
                handshake,
                describe,
                outbound,
                inbound,
            })
        })
    }
}

/// The local carrier (see [`crate::carrier`]): the same frames, each prefixed by its
/// length, straight over the worker's Unix socket, without HTTP/2. `DescribeLibrary`
/// opens a connection of its own, as gRPC opens a stream of its own.
#[derive(Debug)]
pub struct LocalTransport {
    dial: Arc<Dial>,
}

impl LocalTransport {
    /// A transport opening connections as `dial` says.
    pub fn new(dial: Dial) -> Self {
        LocalTransport {
            dial: Arc::new(dial),
        }
    }
}

/// What an `Open` or `Opened` may hold beyond a frame's own limit.
const ENVELOPE_SLACK: usize = 64 << 10;

/// Opens a connection on the local carrier with `request` and reads the worker's answer.
async fn open_local(
    socket: &Path,
    dial: &Dial,
    request: proto::open::Request,
) -> Result<
    (
        proto::opened::Answer,
        carrier::Reader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    ),
    Error,
> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| transport_error("connecting to the worker's socket", e))?;
    let (read, mut write) = stream.into_split();
    let open = proto::Open {
        token: dial.token.clone(),
        request: Some(request),
    };
    carrier::open(&mut write, &open)
        .await
        .map_err(|e| transport_error("opening the connection", e))?;
    let mut reader = carrier::Reader::new(read, dial.max_message_size + ENVELOPE_SLACK);
    let answer = reader
        .next::<proto::Opened>("Opened")
        .await
        .map_err(|e| transport_error("opening the connection", e))?
        .and_then(|opened| opened.answer)
        .ok_or_else(|| {
            transport_error(
                "opening the connection",
                "the worker closed it without answering",
            )
        })?;
    Ok((answer, reader, write))
}

/// Runs `DescribeLibrary` on a connection of its own.
async fn describe_local(
    socket: &Path,
    dial: &Dial,
    request: proto::DescribeLibraryRequest,
) -> Result<proto::DescribeLibraryResponse, Error> {
    use proto::opened::Answer;
    match open_local(socket, dial, proto::open::Request::Describe(request)).await? {
        (Answer::Describe(response), ..) => Ok(response),
        (Answer::Refused(refusal), ..) => Err(refused("describe", &refusal)),
        (Answer::Handshake(_), ..) => Err(transport_error(
            "describe",
            "the worker answered with a handshake",
        )),
    }
}

impl Transport for LocalTransport {
    fn connect<'a>(&'a self, socket: &'a Path) -> BoxFuture<'a, Result<Connection, Error>> {
        Box::pin(async move {
            use proto::opened::Answer;
            let dial = &self.dial;
            let shared = dial.connection_dir();
            let request = proto::open::Request::Handshake(dial.handshake_request(&shared));
            let (handshake, reader, mut write) = match open_local(socket, dial, request).await? {
                (Answer::Handshake(handshake), reader, write) => (handshake, reader, write),
                (Answer::Refused(refusal), ..) => return Err(refused("handshake", &refusal)),
                (Answer::Describe(_), ..) => {
                    return Err(transport_error(
                        "handshake",
                        "the worker answered with a description",
                    ))
                }
            };
            Dial::check(&handshake)?;

            let describer = Arc::clone(dial);
            let socket_path = socket.to_path_buf();
            let describe: Describer = Arc::new(move |request| {
                let dial = Arc::clone(&describer);
                let socket = socket_path.clone();
                Box::pin(async move { describe_local(&socket, &dial, request).await })
            });

            let (outbound, mut frames) = Dial::outbound(dial.outgoing(&handshake, &shared));
            tokio::spawn(async move {
                let refused = |frame: proto::Frame, err| {
                    tracing::warn!("frame {} not sent: {err}", frame.request_id);
                };
                if let Err(err) = carrier::write_batched(&mut write, &mut frames, refused).await {
                    tracing::debug!("the worker's connection closed: {err}");
                }
            });
            let frames = carrier::frames(reader)
                .map(|item| item.map_err(|err| transport_error("channel", err)));
            let inbound = dial.inbound(frames, shared);
            Ok(Connection {
                handshake,
                describe,
                outbound,
                inbound,
            })
        })
    }
}
