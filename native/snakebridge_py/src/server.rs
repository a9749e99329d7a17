//! Running the server: a tokio runtime on the calling thread, the Unix socket, the
//! readiness line, the exit watchers.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use snakebridge_core::proto::{worker_server::WorkerServer, PROTOCOL_VERSION};
use tokio::net::UnixListener;
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
    let service = WorkerServer::new(WorkerService::new(python_threads, threads, python_version))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
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
