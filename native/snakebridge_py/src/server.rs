//! Running the server: a tokio runtime on the calling thread, the Unix socket served with
//! gRPC or the local carrier (see `snakebridge_core::carrier`), the readiness line, the
//! exit watchers.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use snakebridge_core::auth;
use snakebridge_core::carrier::{self, Reader};
use snakebridge_core::proto::{self, refusal::Code, worker_server::WorkerServer, PROTOCOL_VERSION};
use snakebridge_core::transport::Carrier;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::call::Dispatch;
use crate::lifecycle;
use crate::service::{token_check, WorkerService};
use crate::threads::Threads;
use snakebridge_core::transport::{CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, STREAM_WINDOW_BYTES};

/// Largest frame the worker accepts (arguments can carry tensors).
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// What the server needs to run.
pub struct Config {
    /// The Unix socket to listen on.
    pub socket_path: PathBuf,
    /// The token every request must carry (see [`token_check`]).
    pub token: String,
    /// How the socket is served.
    pub carrier: Carrier,
    /// How many Python threads run calls.
    pub threads: usize,
    /// The interpreter's `sys.version`, reported by `Handshake`.
    pub python_version: String,
    /// The agent's dispatch module, which every call goes through.
    pub dispatch: Dispatch,
}

/// Everything but the token.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("socket_path", &self.socket_path)
            .field("carrier", &self.carrier)
            .field("threads", &self.threads)
            .field("python_version", &self.python_version)
            .field("dispatch", &self.dispatch)
            .finish_non_exhaustive()
    }
}

/// Why the server could not start or stopped.
#[derive(Debug)]
pub enum ServeError {
    /// An operating-system failure (socket, threads, stdout).
    Os(std::io::Error, String),
    /// The gRPC server failed.
    Transport(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Os(err, context) => write!(f, "{context}: {err}"),
            ServeError::Transport(message) => write!(f, "gRPC server failed: {message}"),
        }
    }
}

fn os(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |err| ServeError::Os(err, context)
}

/// Binds the socket, announces readiness and serves until the process ends.
pub fn run(config: Config) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("snakebridge-io")
        .build()
        .map_err(os("cannot start the tokio runtime"))?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), ServeError> {
    let Config {
        socket_path,
        token,
        carrier,
        threads,
        python_version,
        dispatch,
    } = config;
    let listener = UnixListener::bind(&socket_path)
        .map_err(os(format!("cannot listen on {}", socket_path.display())))?;
    let python_threads =
        Threads::start(threads, dispatch).map_err(os("cannot start the thread pool"))?;
    lifecycle::watch(socket_path).map_err(os("cannot start the exit watchers"))?;
    announce_ready().map_err(os("cannot write the readiness line"))?;

    let threads = u32::try_from(threads).unwrap_or(u32::MAX);
    let service = WorkerService::new(python_threads, threads, python_version);
    if carrier == Carrier::Local {
        return serve_local(listener, Arc::new(service), Arc::from(token)).await;
    }
    let service = WorkerServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        token_check(Arc::from(token)),
    );
    Server::builder()
        // The same HTTP/2 settings as the core's side (windows, 1 MiB frames).
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .add_service(service)
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await
        .map_err(|e| ServeError::Transport(e.to_string()))
}

/// The most an `Open` may take (a handshake or a describe request).
const MAX_OPEN_BYTES: usize = 1 << 20;

/// What a frame may take beyond the client's message limit (its envelope).
const FRAME_SLACK: usize = 64 << 10;

/// Serves the local carrier (see [`snakebridge_core::carrier`]): each connection opens
/// with the token and a handshake (then carries the data plane) or a describe request.
async fn serve_local(
    listener: UnixListener,
    service: Arc<WorkerService>,
    token: Arc<str>,
) -> Result<(), ServeError> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(os("cannot accept a connection"))?;
        tokio::spawn(serve_connection(
            stream,
            Arc::clone(&service),
            Arc::clone(&token),
        ));
    }
}

/// One connection of the local carrier. Whatever goes wrong ends this connection only.
async fn serve_connection(stream: UnixStream, service: Arc<WorkerService>, token: Arc<str>) {
    let (read, mut write) = stream.into_split();
    let mut reader = Reader::new(read, MAX_OPEN_BYTES);
    let open = match reader.magic().await {
        Ok(()) => reader.next::<proto::Open>("Open").await,
        Err(err) => Err(err),
    };
    let answer = match open {
        Ok(Some(open)) if !auth::token_matches(&token, open.token.as_bytes()) => {
            refusal(Code::Unauthenticated, "wrong SnakeBridge token")
        }
        Ok(Some(open)) => match open.request {
            Some(proto::open::Request::Handshake(request)) => {
                match service.handshake_with(request) {
                    Ok(handshake) => {
                        let opened = proto::Opened {
                            answer: Some(proto::opened::Answer::Handshake(handshake)),
                        };
                        if carrier::write(&mut write, &opened).await.is_ok() {
                            let limit = service.max_message_size() + FRAME_SLACK;
                            if let Err(err) = lead(&service, reader, write, limit) {
                                eprintln!("snakebridge: closing a connection: {err}");
                            }
                        }
                        return;
                    }
                    Err(status) => proto::opened::Answer::Refused((&status).into()),
                }
            }
            Some(proto::open::Request::Describe(request)) => {
                match service.describe_with(request).await {
                    Ok(described) => proto::opened::Answer::Describe(described),
                    Err(status) => proto::opened::Answer::Refused((&status).into()),
                }
            }
            None => refusal(Code::InvalidArgument, "an Open without a request"),
        },
        // The client left before asking anything.
        Ok(None) => return,
        Err(err) => refusal(Code::InvalidArgument, &err.to_string()),
    };
    let opened = proto::Opened {
        answer: Some(answer),
    };
    let _ = carrier::write(&mut write, &opened).await;
}

/// Hands a connection past its handshake to the Python threads, which read it themselves.
fn lead(
    service: &WorkerService,
    reader: Reader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    limit: usize,
) -> std::io::Result<()> {
    let (read, buffered) = reader.into_parts();
    let stream = read
        .reunite(write)
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    // Still non-blocking, and no longer registered with this runtime.
    let stream = stream.into_std()?;
    service.lead(stream, buffered, limit)
}

fn refusal(code: Code, message: &str) -> proto::opened::Answer {
    proto::opened::Answer::Refused(proto::Refusal {
        code: code as i32,
        message: message.to_owned(),
    })
}

/// Writes `SNAKEBRIDGE_READY <protocol version> <pid>` to file descriptor 1.
fn announce_ready() -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "SNAKEBRIDGE_READY {PROTOCOL_VERSION} {}",
        std::process::id()
    )?;
    stdout.flush()
}
