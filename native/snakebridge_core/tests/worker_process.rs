//! A real Python worker (`python -m snakebridge_agent`) against the core's transport: the
//! per-run token, the readiness line, and the worker's exits on stdin EOF and parent death.
//!
//! The worker is this checkout's agent (`priv/python`, and the extension the Mix compiler
//! built into `priv/native`: run `mix compile` first) on `$SNAKEBRIDGE_PYTHON`, else
//! `python3`: nothing needs to be installed in the interpreter.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snakebridge_core::agent::{self, Agent};
use snakebridge_core::carrier;
use snakebridge_core::codec::{self, call_arguments, Budgets};
use snakebridge_core::proto::{self, frame::Body, worker_client::WorkerClient};
use snakebridge_core::transport::{Dial, GrpcTransport, LocalTransport, Transport};
use snakebridge_core::{auth, Value};
use tokio_stream::StreamExt;

fn python() -> PathBuf {
    std::env::var_os("SNAKEBRIDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The environment that puts this checkout's agent on the worker's path.
fn agent_env() -> Vec<(OsString, OsString)> {
    let priv_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../priv");
    let agent = Agent::in_priv(&priv_dir);
    agent
        .check()
        .expect("the checkout's agent (run `mix compile` to build its extension)");
    agent::environment(Some(&agent), &[], std::env::var_os("PYTHONPATH")).unwrap()
}

/// A private directory with a token file, removed on drop.
struct Scratch {
    dir: PathBuf,
    token: String,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sb-test-{name}-{}-{}",
            std::process::id(),
            &auth::new_token()[..8]
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let token = auth::new_token();
        std::fs::write(dir.join("token"), &token).unwrap();
        Scratch { dir, token }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("w.sock")
    }

    fn worker_args(&self) -> Vec<String> {
        vec![
            "-m".into(),
            "snakebridge_agent".into(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--token-file".into(),
            self.dir.join("token").display().to_string(),
            "--threads".into(),
            "2".into(),
        ]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads stdout lines until the readiness line; returns the lines before it.
/// The lines the worker printed before its ready line. Fails (rather than hanging) when
/// the ready line does not come within 30 s.
fn wait_ready(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let ready = format!("SNAKEBRIDGE_READY {} ", proto::PROTOCOL_VERSION);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut before = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(&ready) {
                let _ = tx.send(Ok(before));
                return;
            }
            before.push(line);
        }
        let _ = tx.send(Err(before));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(before)) => before,
        Ok(Err(before)) => {
            panic!("the worker closed stdout before it was ready; it printed {before:?}")
        }
        Err(_) => panic!(
            "no ready line of protocol {} within 30 s",
            proto::PROTOCOL_VERSION
        ),
    }
}

fn start_worker(scratch: &Scratch) -> Child {
    start_worker_with(scratch, &[])
}

fn start_worker_with(scratch: &Scratch, extra: &[&str]) -> Child {
    let mut child = Command::new(python())
        .args(scratch.worker_args())
        .args(extra)
        .envs(agent_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts");
    wait_ready(&mut child);
    child
}

fn is_gone(pid: u32) -> bool {
    // A process is gone when it no longer exists or is a zombie awaiting its reaper.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn the_worker_refuses_clients_without_the_token() {
    let scratch = Scratch::new("auth");
    let mut child = start_worker(&scratch);

    let wrong = GrpcTransport::new(Dial::new(auth::new_token(), 1 << 20, Budgets::default()));
    let err = wrong
        .connect(&scratch.socket())
        .await
        .expect_err("a wrong token must be refused");
    assert!(err.message.contains("Unauthenticated"), "{}", err.message);

    // A foreign client that knows the socket path but presents no token at all.
    let socket = scratch.socket();
    let channel = tonic::transport::Endpoint::try_from("http://worker")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .expect("the socket accepts connections");
    let mut client = WorkerClient::new(channel);
    let status = client
        .handshake(proto::HandshakeRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            client: "intruder".into(),
            ..proto::HandshakeRequest::default()
        })
        .await
        .expect_err("no token, no handshake");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = client
        .channel(tokio_stream::iter(Vec::<proto::Frame>::new()))
        .await
        .expect_err("no token, no data plane");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn with_the_token_the_worker_handshakes_and_answers_calls() {
    let scratch = Scratch::new("call");
    let mut child = start_worker(&scratch);

    let transport = GrpcTransport::new(Dial::new(
        scratch.token.clone(),
        1 << 20,
        Budgets::default(),
    ));
    let mut connection = transport
        .connect(&scratch.socket())
        .await
        .expect("connects");
    assert_eq!(connection.handshake.worker_pid, child.id());
    assert_eq!(connection.handshake.threads, 2);
    assert!(connection.handshake.python_version.starts_with("3."));

    let args = codec::encode_payload(
        proto::Codec::Msgpack,
        &call_arguments(vec![Value::Int(9)], vec![]),
    )
    .unwrap();
    connection
        .outbound
        .send(proto::Frame {
            request_id: 7,
            body: Some(Body::Call(proto::Call {
                target: "math.sqrt".into(),
                args: Some(args),
                ..Default::default()
            })),
        })
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), connection.inbound.next())
        .await
        .expect("a reply in time")
        .expect("the stream is open")
        .expect("a frame");
    assert_eq!(reply.request_id, 7);
    match reply.body {
        Some(Body::Result(result)) => {
            let value = codec::decode_payload(&result.value.unwrap()).unwrap();
            assert_eq!(value, Value::Float(3.0));
        }
        other => panic!("expected a result, got {other:?}"),
    }

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_worker_exits_when_its_stdin_closes() {
    let scratch = Scratch::new("stdin");
    let mut child = start_worker(&scratch);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker outlived its stdin");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!scratch.socket().exists(), "the worker removes its socket");
}

#[test]
fn the_worker_exits_when_its_parent_dies() {
    let scratch = Scratch::new("parent");
    // The shell is the worker's parent. The worker gets our stdin pipe, which stays open,
    // so only its parent's death can end it. (A background job's stdin is /dev/null before
    // its own redirections apply, hence the pipe is saved on fd 3 first.)
    let script = format!(
        "exec 3<&0; {} {} <&3 & echo $!; exec sleep 60",
        python().display(),
        scratch.worker_args().join(" ")
    );
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(agent_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let before = wait_ready(&mut shell);
    let worker: u32 = before
        .first()
        .and_then(|line| line.trim().parse().ok())
        .expect("the shell printed the worker's pid");
    // Still alive a while after its readiness: nothing but the parent's death will end it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !is_gone(worker),
        "worker {worker} died while its parent lived"
    );

    shell.kill().unwrap();
    shell.wait().unwrap();
    assert!(
        wait_gone(worker, Duration::from_secs(3)),
        "worker {worker} outlived its parent"
    );
}

// ---------------------------------------------------------------------------------------
// The local carrier

/// Sends `bytes` on a fresh connection and returns the refusal the worker answers with.
async fn refusal_of(socket: &std::path::Path, bytes: &[u8]) -> proto::Refusal {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reader = carrier::Reader::new(stream, 1 << 20);
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        reader.next::<proto::Opened>("Opened"),
    )
    .await
    .expect("an answer in time")
    .expect("a well-formed answer")
    .expect("an answer before the connection closes");
    match opened.answer {
        Some(proto::opened::Answer::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn sqrt_frame(request_id: u64, target: &str) -> proto::Frame {
    let args = codec::encode_payload(
        proto::Codec::Msgpack,
        &call_arguments(vec![Value::Int(9)], vec![]),
    )
    .unwrap();
    proto::Frame {
        request_id,
        body: Some(Body::Call(proto::Call {
            target: target.into(),
            args: Some(args),
            ..Default::default()
        })),
    }
}

async fn next_frame(connection: &mut snakebridge_core::transport::Connection) -> proto::Frame {
    tokio::time::timeout(Duration::from_secs(10), connection.inbound.next())
        .await
        .expect("a reply in time")
        .expect("the stream is open")
        .expect("a frame")
}

#[tokio::test]
async fn the_local_carrier_serves_calls_and_refuses_what_is_malformed() {
    use proto::refusal::Code;
    let scratch = Scratch::new("local");
    let mut child = start_worker_with(&scratch, &["--carrier", "local"]);
    let socket = scratch.socket();
    let dial = |token: &str| Dial::new(token.to_owned(), 1 << 20, Budgets::default());

    // Who may not talk to it, and what it does not take: each refused with a reason, on
    // that connection only.
    let err = LocalTransport::new(dial(&auth::new_token()))
        .connect(&socket)
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("Unauthenticated: wrong SnakeBridge token"),
        "{}",
        err.message
    );
    let grpc = GrpcTransport::new(dial(&scratch.token));
    let grpc = tokio::time::timeout(Duration::from_secs(15), grpc.connect(&socket)).await;
    assert!(
        matches!(grpc, Ok(Err(_))),
        "a gRPC client gets an error, not a hang"
    );
    let refusal = refusal_of(&socket, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert_eq!(refusal.code(), Code::InvalidArgument);
    assert!(
        refusal
            .message
            .contains("does not speak SnakeBridge's local carrier"),
        "{}",
        refusal.message
    );
    let refusal = refusal_of(&socket, b"SBF1\xff\xff\xff\xff").await;
    assert!(
        refusal
            .message
            .contains("announces 4294967295 bytes, more than the 1048576"),
        "{}",
        refusal.message
    );
    let refusal = refusal_of(&socket, b"SBF1\x00\x00\x00\x03\xff\xff\xff").await;
    assert!(
        refusal.message.contains("malformed Open"),
        "{}",
        refusal.message
    );
    let mut empty = bytes::BytesMut::from(&b"SBF1"[..]);
    let open = proto::Open {
        token: scratch.token.clone(),
        request: None,
    };
    carrier::put(&open, &mut empty).unwrap();
    let refusal = refusal_of(&socket, &empty).await;
    assert!(
        refusal.message.contains("without a request"),
        "{}",
        refusal.message
    );

    // The real thing: calls, errors and describe.
    let mut connection = LocalTransport::new(dial(&scratch.token))
        .connect(&socket)
        .await
        .expect("connects");
    assert_eq!(connection.handshake.worker_pid, child.id());
    assert_eq!(connection.handshake.threads, 2);
    connection
        .outbound
        .send(sqrt_frame(7, "math.sqrt"))
        .unwrap();
    let reply = next_frame(&mut connection).await;
    assert_eq!(reply.request_id, 7);
    match reply.body {
        Some(Body::Result(result)) => {
            let value = codec::decode_payload(&result.value.unwrap()).unwrap();
            assert_eq!(value, Value::Float(3.0));
        }
        other => panic!("expected a result, got {other:?}"),
    }
    connection
        .outbound
        .send(sqrt_frame(8, "math.no_such_function"))
        .unwrap();
    let reply = next_frame(&mut connection).await;
    match reply.body {
        Some(Body::Error(error)) => assert_eq!(error.kind(), proto::error::Kind::TargetNotFound),
        other => panic!("expected an error, got {other:?}"),
    }
    let described = (connection.describe)(proto::DescribeLibraryRequest {
        library_id: "json".into(),
        module_path: "json".into(),
        depth: 1,
        ..Default::default()
    })
    .await
    .expect("describes json");
    assert!(
        described
            .functions
            .keys()
            .any(|name| name.ends_with("dumps")),
        "{:?}",
        described.functions.keys()
    );
    let missing = (connection.describe)(proto::DescribeLibraryRequest {
        library_id: "x".into(),
        module_path: "no_such_module_here".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(missing.kind, snakebridge_core::ErrorKind::TargetNotFound);

    // A data-plane connection that sends an oversized frame is closed; the worker and its
    // other connection carry on.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (read, mut write) = stream.into_split();
        let open = proto::Open {
            token: scratch.token.clone(),
            request: Some(proto::open::Request::Handshake(proto::HandshakeRequest {
                protocol_version: proto::PROTOCOL_VERSION,
                max_message_size: 1 << 20,
                ..Default::default()
            })),
        };
        carrier::open(&mut write, &open).await.unwrap();
        let mut reader = carrier::Reader::new(read, 1 << 20);
        let opened = reader
            .next::<proto::Opened>("Opened")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            opened.answer,
            Some(proto::opened::Answer::Handshake(_))
        ));
        write.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let (mut read, _) = reader.into_parts();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the worker closes that connection: {closed:?}"
        );
    }
    connection
        .outbound
        .send(sqrt_frame(9, "math.sqrt"))
        .unwrap();
    assert_eq!(next_frame(&mut connection).await.request_id, 9);
    assert!(child.try_wait().unwrap().is_none(), "the worker is alive");

    child.kill().unwrap();
    child.wait().unwrap();
}
