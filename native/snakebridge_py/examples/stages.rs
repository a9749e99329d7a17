//! Where a small call's microseconds go, without the BEAM: the core's own transports
//! against a real worker, and the parts of a call measured alone.
//!
//! ```text
//! cargo run --release -p snakebridge_py --example stages [-- PYTHON [CALLS]]
//! ```
//!
//! Prints one line per stage: the p50 and p99 of sequential `operator.add(1, 2)` calls
//! through the core's `LocalTransport` and `GrpcTransport` (the worker with 4 threads and
//! with 1), the agent's Python dispatch of the same call timed inside the worker
//! (`timeit`), and the msgpack work of one call in Rust. `bench/README.md` puts these
//! beside the full Elixir call of `bench/call_bench.exs` (the difference is the BEAM's
//! side). Nothing here checks a number.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use snakebridge_core::agent::{self, Agent};
use snakebridge_core::codec::{self, call_arguments, Budgets};
use snakebridge_core::proto::{self, frame::Body};
use snakebridge_core::transport::{Carrier, Connection, Dial};
use snakebridge_core::value::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_stream::StreamExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let python = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let calls: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5_000);
    for (carrier, threads) in [(Carrier::Local, 4), (Carrier::Local, 1), (Carrier::Grpc, 4)] {
        let worker = Worker::start(&python, carrier, threads).await?;
        let mut connection = worker.connect(carrier).await?;
        let latencies = sequential(&mut connection, calls).await?;
        report(
            &format!(
                "core + {} carrier + worker ({threads} threads)",
                carrier.name()
            ),
            &latencies,
        );
        if carrier == Carrier::Local && threads == 4 {
            let per_call = python_dispatch(&mut connection).await?;
            println!(
                "{{\"stage\": \"Python dispatch alone (dispatch.call in the worker)\", \"p50_us\": {per_call:.1}}}"
            );
        }
        drop(connection);
        worker.stop().await?;
    }
    let (encode, decode) = codec_costs();
    println!("{{\"stage\": \"msgpack: encode the arguments (Rust)\", \"p50_us\": {encode:.2}}}");
    println!("{{\"stage\": \"msgpack: decode the result (Rust)\", \"p50_us\": {decode:.2}}}");
    Ok(())
}

fn report(stage: &str, sorted: &[f64]) {
    let at =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    println!(
        "{{\"stage\": \"{stage}\", \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        at(0.5),
        at(0.99)
    );
}

fn add_frame(request_id: u64) -> proto::Frame {
    let args = codec::encode_payload(
        proto::Codec::Msgpack,
        &call_arguments(vec![Value::Int(1), Value::Int(2)], vec![]),
    )
    .expect("encodes");
    proto::Frame {
        request_id,
        body: Some(Body::Call(proto::Call {
            target: "operator.add".into(),
            args: Some(args),
            ..Default::default()
        })),
    }
}

async fn reply(connection: &mut Connection) -> Result<proto::Frame, Error> {
    Ok(
        tokio::time::timeout(Duration::from_secs(10), connection.inbound.next())
            .await?
            .ok_or("the worker closed the connection")??,
    )
}

/// Latencies in µs of `calls` sequential calls (after 500 unmeasured), sorted.
async fn sequential(connection: &mut Connection, calls: usize) -> Result<Vec<f64>, Error> {
    let mut latencies = Vec::with_capacity(calls);
    for id in 0..(calls + 500) as u64 {
        let started = Instant::now();
        connection.outbound.send(add_frame(id))?;
        let frame = reply(connection).await?;
        if !matches!(frame.body, Some(Body::Result(_))) {
            return Err(format!("operator.add answered {frame:?}").into());
        }
        if id >= 500 {
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// µs per `dispatch.call("operator.add", (1, 2), {})`, timed by `timeit` in the worker.
async fn python_dispatch(connection: &mut Connection) -> Result<f64, Error> {
    let number = 200_000;
    let args = codec::encode_payload(
        proto::Codec::Msgpack,
        &call_arguments(
            vec![Value::Str("call('operator.add', (1, 2), {})".into())],
            vec![
                (
                    Value::Str("setup".into()),
                    Value::Str("from snakebridge_agent.dispatch import call".into()),
                ),
                (Value::Str("number".into()), Value::Int(number)),
            ],
        ),
    )?;
    connection.outbound.send(proto::Frame {
        request_id: u64::MAX,
        body: Some(Body::Call(proto::Call {
            target: "timeit.timeit".into(),
            args: Some(args),
            ..Default::default()
        })),
    })?;
    match reply(connection).await?.body {
        Some(Body::Result(result)) => {
            match codec::decode_payload(&result.value.unwrap_or_default())? {
                Value::Float(seconds) => Ok(seconds * 1e6 / number as f64),
                other => Err(format!("timeit answered {other:?}").into()),
            }
        }
        other => Err(format!("timeit failed: {other:?}").into()),
    }
}

/// µs to encode one call's arguments and to decode one result, in Rust.
fn codec_costs() -> (f64, f64) {
    let rounds = 200_000;
    let args = call_arguments(vec![Value::Int(1), Value::Int(2)], vec![]);
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(codec::encode_payload(proto::Codec::Msgpack, &args).expect("encodes"));
    }
    let encode = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let result = codec::encode_payload(proto::Codec::Msgpack, &Value::Int(3)).expect("encodes");
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(codec::decode_payload(&result).expect("decodes"));
    }
    let decode = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    (encode, decode)
}

/// A worker process of this checkout's agent, in a private directory of its own.
struct Worker {
    child: tokio::process::Child,
    dir: PathBuf,
    token: String,
}

impl Worker {
    async fn start(python: &Path, carrier: Carrier, threads: u32) -> Result<Worker, Error> {
        let dir = std::env::temp_dir().join(format!(
            "sb-stages-{}-{}",
            std::process::id(),
            &snakebridge_core::auth::new_token()[..8]
        ));
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let token = snakebridge_core::auth::new_token();
        std::fs::write(dir.join("token"), &token)?;
        let priv_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../priv");
        let agent = Agent::in_priv(&priv_dir);
        agent.check()?;
        let mut child = tokio::process::Command::new(python)
            .envs(agent::environment(
                Some(&agent),
                &[],
                std::env::var_os("PYTHONPATH"),
            )?)
            .args(["-m", agent::MODULE, "--socket"])
            .arg(dir.join("w.sock"))
            .arg("--token-file")
            .arg(dir.join("token"))
            .args([
                "--threads",
                &threads.to_string(),
                "--carrier",
                carrier.name(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let ready = BufReader::new(stdout).lines().next_line().await?;
        if !ready.is_some_and(|line| line.starts_with("SNAKEBRIDGE_READY")) {
            return Err("the worker did not start".into());
        }
        Ok(Worker { child, dir, token })
    }

    async fn connect(&self, carrier: Carrier) -> Result<Connection, Error> {
        let dial = Dial::new(self.token.clone(), 64 << 20, Budgets::default());
        Ok(carrier
            .transport(dial)
            .connect(&self.dir.join("w.sock"))
            .await?)
    }

    async fn stop(mut self) -> Result<(), Error> {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}
