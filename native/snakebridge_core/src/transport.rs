//! The carrier of frames between the core and one worker.
//!
//! The pool only sees [`Transport`] and [`Connection`]: a handshake result, a sender of
//! outbound frames and a stream of inbound ones. [`GrpcTransport`] implements it with one
//! long-lived gRPC bidirectional `Channel` stream over the worker's Unix socket; a lighter
//! local carrier of the same frames can be added beside it without touching the pool.

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

use crate::error::{Error, ErrorKind};
use crate::proto::{self, worker_client::WorkerClient};

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

/// Opens connections to workers.
pub trait Transport: Send + Sync + 'static {
    /// Connects to the worker listening at `socket`, handshakes and opens the data plane.
    fn connect<'a>(&'a self, socket: &'a Path) -> BoxFuture<'a, Result<Connection, Error>>;
}

/// gRPC (tonic) over a Unix socket, with the per-run token on every RPC.
pub struct GrpcTransport {
    token: String,
    max_message_size: usize,
}

impl GrpcTransport {
    /// A transport presenting `token`; single messages are limited to `max_message_size`.
    pub fn new(token: String, max_message_size: usize) -> Self {
        GrpcTransport {
            token,
            max_message_size,
        }
    }
}

fn transport_error(what: &str, err: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Transport, format!("{what}: {err}"))
}

fn status_error(what: &str, status: &tonic::Status) -> Error {
    transport_error(what, format!("{:?}: {}", status.code(), status.message()))
}

impl Transport for GrpcTransport {
    fn connect<'a>(&'a self, socket: &'a Path) -> BoxFuture<'a, Result<Connection, Error>> {
        Box::pin(async move {
            let socket: PathBuf = socket.to_path_buf();
            // The URI is required by tonic but unused: the connector dials the socket.
            let channel = Endpoint::try_from("http://snakebridge.worker")
                .map_err(|e| transport_error("endpoint", e))?
                .connect_timeout(Duration::from_secs(10))
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(8 << 20))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move { UnixStream::connect(socket).await.map(TokioIo::new) }
                }))
                .await
                .map_err(|e| transport_error("connecting to the worker's socket", e))?;

            let token: MetadataValue<_> = self
                .token
                .parse()
                .map_err(|e| transport_error("token is not valid metadata", e))?;
            let mut client =
                WorkerClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                    req.metadata_mut()
                        .insert(proto::TOKEN_METADATA_KEY, token.clone());
                    Ok(req)
                })
                .max_decoding_message_size(self.max_message_size)
                .max_encoding_message_size(self.max_message_size);

            let handshake = client
                .handshake(proto::HandshakeRequest {
                    protocol_version: proto::PROTOCOL_VERSION,
                    client: concat!("snakebridge_core/", env!("CARGO_PKG_VERSION")).to_owned(),
                })
                .await
                .map_err(|status| status_error("handshake", &status))?
                .into_inner();
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

            let describer = client.clone();
            let describe: Describer = Arc::new(move |request| {
                let mut client = describer.clone();
                Box::pin(async move {
                    match client.describe_library(request).await {
                        Ok(response) => Ok(response.into_inner()),
                        Err(status) if status.code() == tonic::Code::NotFound => Err(Error::new(
                            ErrorKind::TargetNotFound,
                            status.message().to_owned(),
                        )),
                        Err(status) => Err(status_error("describe", &status)),
                    }
                })
            });
            let (outbound, rx) = mpsc::unbounded_channel();
            let inbound = client
                .channel(UnboundedReceiverStream::new(rx))
                .await
                .map_err(|status| status_error("opening the channel", &status))?
                .into_inner()
                .map(|item| item.map_err(|status| status_error("channel", &status)));
            Ok(Connection {
                handshake,
                describe,
                outbound,
                inbound: Box::pin(inbound),
            })
        })
    }
}
