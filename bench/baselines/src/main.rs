//! SnakeBridge transport baselines.
//!
//! `baselines raw-socket` measures the physical floor (length-prefixed frames
//! echoed by a minimal Python loop over Unix sockets); `baselines grpcio-echo`
//! measures a tonic client against plain Python `grpcio` servers;
//! `baselines raw-transfer` measures moving one large payload between two
//! processes over a Unix socket, and copying it in memory. Each prints one
//! JSON object per result line on stdout; diagnostics go to stderr.

mod args;
mod driver;
mod grpcio_echo;
mod raw_socket;
mod raw_transfer;
mod stats;
mod workers;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use args::{Args, Bench};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // The transfer baseline is synchronous (std only) and has its own options.
    let transfer = match argv.first().map(String::as_str) {
        Some("raw-transfer") => Some(raw_transfer::main(&argv[1..])),
        Some(raw_transfer::SENDER) => Some(raw_transfer::sender_main(&argv[1..])),
        _ => None,
    };
    if let Some(result) = transfer {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse(argv.into_iter()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting tokio runtime: {e}"))?;
    let reports = runtime.block_on(async {
        let bench = async {
            match args.bench {
                Bench::RawSocket => raw_socket::run(args).await,
                Bench::GrpcioEcho => grpcio_echo::run(args).await,
            }
        };
        // On Ctrl-C the bench future is dropped, which kills the workers and
        // removes their sockets.
        tokio::select! {
            reports = bench => reports,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    })?;
    // Let tokio's orphan reaper finish before the runtime goes away.
    drop(runtime);
    let mut out = std::io::stdout().lock();
    for report in reports {
        writeln!(out, "{}", report.to_json()).context("writing results to stdout")?;
    }
    out.flush().context("flushing stdout")
}
