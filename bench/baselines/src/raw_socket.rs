//! `raw-socket`: the physical floor. Length-prefixed frames (4-byte big-endian
//! length + payload) echoed by a minimal Python loop over Unix sockets.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::driver::{check_echo, payload, run_concurrent};
use crate::stats::Report;
use crate::workers::WorkerSet;

const MAX_FRAME: usize = 16 << 20;
const IO_BUF: usize = 64 << 10;

pub async fn run(args: &Args) -> Result<Vec<Report>> {
    let workers = WorkerSet::spawn(
        &args.python,
        &args.script("echo_socket.py"),
        &[] as &[OsString],
        args.workers,
    )
    .await?;
    let result = measure(args, workers.sockets()).await;
    let shutdown = workers.shutdown().await;
    let reports = result?;
    shutdown?;
    Ok(reports)
}

async fn measure(args: &Args, sockets: &[std::path::PathBuf]) -> Result<Vec<Report>> {
    let sequential = tokio::time::timeout(args.timeout, sequential(args, &sockets[0]))
        .await
        .context("raw_socket_sequential timed out")??;
    let concurrent = tokio::time::timeout(args.timeout, concurrent(args, sockets))
        .await
        .context("raw_socket_concurrent timed out")??;
    Ok(vec![sequential, concurrent])
}

fn frame(id: u64, size: usize) -> Result<Vec<u8>> {
    let len = u32::try_from(size).context("payload too large for a frame")?;
    let mut f = Vec::with_capacity(4 + size);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&payload(id, size));
    Ok(f)
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<()> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)
        .await
        .context("reading frame header")?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit");
    }
    buf.resize(len, 0);
    r.read_exact(buf).await.context("reading frame payload")?;
    Ok(())
}

/// (a) One connection to one worker, one frame in flight at a time.
async fn sequential(args: &Args, socket: &Path) -> Result<Report> {
    let mut stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut reply = Vec::with_capacity(args.payload);
    for id in 0..args.warmup as u64 {
        ping(&mut stream, id, args.payload, &mut reply).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    let start = Instant::now();
    for id in 0..args.calls as u64 {
        let t0 = Instant::now();
        ping(&mut stream, id, args.payload, &mut reply).await?;
        samples.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    Ok(Report::from_samples(
        "raw_socket_sequential",
        samples,
        elapsed,
    ))
}

async fn ping(stream: &mut UnixStream, id: u64, size: usize, reply: &mut Vec<u8>) -> Result<()> {
    let request = frame(id, size)?;
    stream.write_all(&request).await.context("writing frame")?;
    read_frame(stream, reply).await?;
    check_echo(id, size, reply)
}

/// (b) C callers over W pipelined connections (one per worker).
async fn concurrent(args: &Args, sockets: &[std::path::PathBuf]) -> Result<Report> {
    let mut conns = Vec::with_capacity(sockets.len());
    for socket in sockets {
        conns.push(PipelinedConn::connect(socket).await?);
    }
    let handles: std::sync::Arc<Vec<mpsc::Sender<Request>>> =
        std::sync::Arc::new(conns.iter().filter_map(|c| c.requests.clone()).collect());
    let size = args.payload;
    let call = move |i: usize| {
        let handles = std::sync::Arc::clone(&handles);
        async move {
            let id = i as u64;
            let (reply_tx, reply_rx) = oneshot::channel();
            let request = Request {
                frame: frame(id, size)?,
                reply: reply_tx,
            };
            handles[i % handles.len()]
                .send(request)
                .await
                .map_err(|_| anyhow::anyhow!("worker connection closed"))?;
            let echoed = reply_rx
                .await
                .context("worker connection closed before replying")?;
            check_echo(id, size, &echoed)
        }
    };
    run_concurrent(args.warmup, args.concurrency, call.clone()).await?;
    let (samples, elapsed) = run_concurrent(args.calls, args.concurrency, call).await?;
    for conn in conns {
        conn.close().await?;
    }
    Ok(Report::from_samples(
        "raw_socket_concurrent",
        samples,
        elapsed,
    ))
}

struct Request {
    frame: Vec<u8>,
    reply: oneshot::Sender<Vec<u8>>,
}

/// One Unix-socket connection with a writer task (coalescing queued frames
/// into one write) and a reader task that answers callers in FIFO order.
struct PipelinedConn {
    requests: Option<mpsc::Sender<Request>>,
    writer: JoinHandle<Result<()>>,
    reader: JoinHandle<Result<()>>,
}

impl PipelinedConn {
    async fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let (read_half, write_half) = stream.into_split();
        let (requests, request_rx) = mpsc::channel(1024);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        Ok(PipelinedConn {
            requests: Some(requests),
            writer: tokio::spawn(write_loop(write_half, request_rx, pending_tx)),
            reader: tokio::spawn(read_loop(read_half, pending_rx)),
        })
    }

    /// Closes the write side, lets the reader drain to EOF, and surfaces any
    /// I/O error either task hit.
    /// Callers must have dropped their sender clones first.
    async fn close(mut self) -> Result<()> {
        self.requests = None;
        let grace = Duration::from_secs(10);
        tokio::time::timeout(grace, &mut self.writer)
            .await
            .context("writer did not finish")?
            .context("writer task panicked")??;
        tokio::time::timeout(grace, &mut self.reader)
            .await
            .context("reader did not drain the connection")?
            .context("reader task panicked")?
    }
}

impl Drop for PipelinedConn {
    fn drop(&mut self) {
        self.writer.abort();
        self.reader.abort();
    }
}

async fn write_loop(
    write_half: OwnedWriteHalf,
    mut requests: mpsc::Receiver<Request>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Vec<u8>>>,
) -> Result<()> {
    let mut w = BufWriter::with_capacity(IO_BUF, write_half);
    while let Some(mut request) = requests.recv().await {
        loop {
            // Register the reply slot before the bytes go out so the reader
            // always finds it.
            pending
                .send(request.reply)
                .map_err(|_| anyhow::anyhow!("reader task gone"))?;
            w.write_all(&request.frame).await.context("writing frame")?;
            match requests.try_recv() {
                Ok(next) => request = next,
                Err(_) => break,
            }
        }
        w.flush().await.context("flushing frames")?;
    }
    w.shutdown().await.context("closing write side")?;
    Ok(())
}

async fn read_loop(
    read_half: OwnedReadHalf,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<Vec<u8>>>,
) -> Result<()> {
    let mut r = BufReader::with_capacity(IO_BUF, read_half);
    loop {
        let Some(reply) = pending.recv().await else {
            return Ok(()); // writer finished and every reply was delivered
        };
        let mut payload = Vec::new();
        read_frame(&mut r, &mut payload).await?;
        // The caller may have given up (e.g. aborted); that is not an I/O error.
        let _ = reply.send(payload);
    }
}
