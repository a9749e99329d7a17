//! `grpcio-echo`: tonic client against plain Python `grpcio` echo servers on
//! Unix sockets — the best case for a pure-Python gRPC worker.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::args::Args;
use crate::driver::{check_echo, payload, run_concurrent};
use crate::stats::Report;
use crate::workers::WorkerSet;

pub mod proto {
    tonic::include_proto!("bench");
}

use proto::echo_client::EchoClient;
use proto::EchoMessage;

pub async fn run(args: &Args) -> Result<Vec<Report>> {
    let extra = [OsString::from(args.grpc_threads.to_string())];
    let workers = WorkerSet::spawn(
        &args.python,
        &args.script("grpcio_echo_server.py"),
        &extra,
        args.workers,
    )
    .await?;
    let result = measure(args, workers.sockets()).await;
    let shutdown = workers.shutdown().await;
    let reports = result?;
    shutdown?;
    Ok(reports)
}

async fn measure(args: &Args, sockets: &[PathBuf]) -> Result<Vec<Report>> {
    let mut clients = Vec::with_capacity(sockets.len());
    for socket in sockets {
        clients.push(EchoClient::new(connect(socket).await?));
    }
    let sequential = tokio::time::timeout(args.timeout, sequential(args, clients[0].clone()))
        .await
        .context("grpcio_echo_sequential timed out")??;
    let concurrent = tokio::time::timeout(args.timeout, concurrent(args, clients))
        .await
        .context("grpcio_echo_concurrent timed out")??;
    Ok(vec![sequential, concurrent])
}

/// Opens an HTTP/2 channel over a Unix socket. The URI is a placeholder the
/// connector ignores.
async fn connect(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .context("building endpoint")?
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("connecting to grpc server at {}", socket.display()))
}

async fn echo(client: &mut EchoClient<Channel>, id: u64, size: usize) -> Result<()> {
    let reply = client
        .echo(EchoMessage {
            payload: payload(id, size),
        })
        .await
        .with_context(|| format!("Echo call {id}"))?;
    check_echo(id, size, &reply.into_inner().payload)
}

/// (a) Sequential unary calls on one channel to one server.
async fn sequential(args: &Args, mut client: EchoClient<Channel>) -> Result<Report> {
    for id in 0..args.warmup as u64 {
        echo(&mut client, id, args.payload).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    let start = Instant::now();
    for id in 0..args.calls as u64 {
        let t0 = Instant::now();
        echo(&mut client, id, args.payload).await?;
        samples.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    Ok(Report::from_samples(
        "grpcio_echo_sequential",
        samples,
        elapsed,
    ))
}

/// (b) C concurrent callers over W channels (one per server), round-robin.
async fn concurrent(args: &Args, clients: Vec<EchoClient<Channel>>) -> Result<Report> {
    let clients = Arc::new(clients);
    let size = args.payload;
    let call = move |i: usize| {
        let mut client = clients[i % clients.len()].clone();
        async move { echo(&mut client, i as u64, size).await }
    };
    run_concurrent(args.warmup, args.concurrency, call.clone()).await?;
    let (samples, elapsed) = run_concurrent(args.calls, args.concurrency, call).await?;
    Ok(Report::from_samples(
        "grpcio_echo_concurrent",
        samples,
        elapsed,
    ))
}
