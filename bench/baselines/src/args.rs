//! Command-line parsing (hand-rolled to keep the bench's dependency set small).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
usage: baselines <raw-socket|grpcio-echo> [options]
       baselines raw-transfer [--bytes N] [--rounds R] [--warmup W] [--chunk C]

options:
  --calls N          sequential calls, and total calls of the concurrent run (default 20000)
  --concurrency C    concurrent callers (default 64)
  --workers W        Python worker processes, one connection/channel each (default 2)
  --python PATH      Python interpreter (default: _build/venv/bin/python of this checkout)
  --scripts DIR      directory holding the worker scripts (default: bench/python)
  --payload BYTES    request payload size in bytes (default 32, minimum 8)
  --warmup N         warm-up calls before each measurement (default: calls/10, 100..=2000)
  --grpc-threads T   ThreadPoolExecutor threads per grpcio server (default 4)
  --timeout-secs S   hard limit for each measured phase (default 300)

raw-transfer (N bytes from a child process over a Unix socket into a fresh buffer,
and an in-memory copy of N bytes; median of R rounds after W warm-up rounds):
  --bytes N          payload size (default 100000000)
  --rounds R         measured rounds (default 5)
  --warmup W         warm-up rounds (default 1)
  --chunk C          the sender's write size in bytes (default 1048576)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    RawSocket,
    GrpcioEcho,
}

#[derive(Debug, Clone)]
pub struct Args {
    pub bench: Bench,
    pub calls: usize,
    pub concurrency: usize,
    pub workers: usize,
    pub python: PathBuf,
    pub scripts: PathBuf,
    pub payload: usize,
    pub warmup: usize,
    pub grpc_threads: usize,
    pub timeout: Duration,
}

fn value<T: std::str::FromStr>(flag: &str, raw: Option<String>) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw = raw.with_context(|| format!("{flag} needs a value"))?;
    raw.parse::<T>()
        .with_context(|| format!("invalid value {raw:?} for {flag}"))
}

/// `bench/python`, next to this crate's directory.
fn default_scripts_dir() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).join("python")
}

/// `_build/venv/bin/python` of the checkout holding this crate.
fn default_python() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.join("../../_build/venv/bin/python")
}

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self> {
        let bench = match argv.next().as_deref() {
            Some("raw-socket") => Bench::RawSocket,
            Some("grpcio-echo") => Bench::GrpcioEcho,
            Some("-h" | "--help") | None => bail!("{USAGE}"),
            Some(other) => bail!("unknown subcommand {other:?}\n{USAGE}"),
        };
        let mut args = Args {
            bench,
            calls: 20_000,
            concurrency: 64,
            workers: 2,
            python: default_python(),
            scripts: default_scripts_dir(),
            payload: 32,
            warmup: 0,
            grpc_threads: 4,
            timeout: Duration::from_secs(300),
        };
        let mut warmup = None;
        while let Some(flag) = argv.next() {
            match flag.as_str() {
                "--calls" => args.calls = value(&flag, argv.next())?,
                "--concurrency" => args.concurrency = value(&flag, argv.next())?,
                "--workers" => args.workers = value(&flag, argv.next())?,
                "--python" => args.python = value(&flag, argv.next())?,
                "--scripts" => args.scripts = value(&flag, argv.next())?,
                "--payload" => args.payload = value(&flag, argv.next())?,
                "--warmup" => warmup = Some(value(&flag, argv.next())?),
                "--grpc-threads" => args.grpc_threads = value(&flag, argv.next())?,
                "--timeout-secs" => args.timeout = Duration::from_secs(value(&flag, argv.next())?),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if args.calls == 0 || args.concurrency == 0 || args.workers == 0 {
            bail!("--calls, --concurrency and --workers must be at least 1");
        }
        if args.grpc_threads == 0 {
            bail!("--grpc-threads must be at least 1");
        }
        if args.payload < 8 {
            bail!("--payload must be at least 8 bytes (it carries the request id)");
        }
        args.warmup = warmup.unwrap_or((args.calls / 10).clamp(100, 2_000));
        Ok(args)
    }

    pub fn script(&self, name: &str) -> PathBuf {
        self.scripts.join(name)
    }
}
