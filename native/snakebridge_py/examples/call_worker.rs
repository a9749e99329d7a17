//! Starts a real Python worker and talks to it over its Unix socket, the way the core does.
//!
//! ```text
//! cargo run --release -p snakebridge_py --example call_worker [-- PYTHON]
//! ```
//!
//! PYTHON defaults to `python3`; nothing needs to be installed in it. The worker is this
//! checkout's agent: `priv/python` and the extension SnakeBridge's Mix compiler built into
//! `priv/native` (run `mix compile` first). The example prints every reply and panics on
//! the first one that is not what the protocol promises, so a clean run is the proof.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use snakebridge_core::agent::{self, Agent};
use snakebridge_core::codec::{self, call_arguments};
use snakebridge_core::proto::{
    self, error::Kind, frame::Body, worker_client::WorkerClient, Frame, HandshakeRequest,
    PROTOCOL_VERSION, TOKEN_METADATA_KEY,
};
use snakebridge_core::value::{Date, ObjectRef, Time, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Streaming};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let python = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    for threads in [1, 4] {
        println!("=== worker with --threads {threads}");
        run_against_worker(&python, threads).await?;
    }
    println!("all checks passed");
    Ok(())
}

async fn run_against_worker(python: &Path, threads: u32) -> Result<(), Error> {
    let dir = private_dir()?;
    let socket = dir.join("worker.sock");
    let token_file = dir.join("token");
    let token = snakebridge_core::auth::new_token();
    std::fs::write(&token_file, format!("{token}\n"))?;

    let started = Instant::now();
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
        .arg(&socket)
        .arg("--token-file")
        .arg(&token_file)
        .arg("--threads")
        .arg(threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next_line().await?.ok_or("worker closed stdout")?;
    println!("ready line after {:?}: {ready}", started.elapsed());
    assert_eq!(
        ready,
        format!(
            "SNAKEBRIDGE_READY {PROTOCOL_VERSION} {}",
            child.id().ok_or("no pid")?
        )
    );

    let channel = connect(&socket).await?;

    // Every RPC needs the token.
    let mut anonymous = WorkerClient::new(channel.clone());
    let refused = anonymous.handshake(handshake(PROTOCOL_VERSION)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let mut impostor = client(channel.clone(), "not-the-token");
    let refused = impostor.handshake(handshake(PROTOCOL_VERSION)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    println!("requests without the right token: UNAUTHENTICATED");

    let mut client = client(channel, &token);
    let wrong = client.handshake(handshake(99)).await.unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    println!("handshake v99: {:?} {}", wrong.code(), wrong.message());
    let hello = client
        .handshake(handshake(PROTOCOL_VERSION))
        .await?
        .into_inner();
    println!("handshake: {hello:?}");
    assert_eq!(hello.threads, threads);
    let describe = client
        .describe_library(proto::DescribeLibraryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        describe.code(),
        Code::InvalidArgument,
        "an empty module path"
    );
    let described = client
        .describe_library(proto::DescribeLibraryRequest {
            module_path: "json".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(described.functions.contains_key("json.dumps"));
    assert_eq!(described.descriptor_hash.len(), 32);

    let (frames, inbound) = mpsc::channel::<Frame>(64);
    let mut replies = client
        .channel(ReceiverStream::new(inbound))
        .await?
        .into_inner();

    check_calls(&frames, &mut replies).await?;
    check_assembly_limit(&frames, &mut replies).await?;
    // print() in user code must not reach the protocol stream (stdout).
    call(
        &frames,
        &mut replies,
        50,
        "builtins.print",
        vec![Value::Str("printed by user code".into())],
        vec![],
    )
    .await?;
    if threads == 1 {
        check_cancellation(&frames, &mut replies).await?;
    }
    measure_latency(&frames, &mut replies).await?;

    // Closing stdin ends the worker promptly, and it removes its socket.
    let closing = Instant::now();
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await??;
    println!(
        "stdin closed: worker exited with {status} after {:?}",
        closing.elapsed()
    );
    assert!(status.success());
    assert!(!socket.exists());
    let after_ready = lines.next_line().await?;
    assert_eq!(
        after_ready, None,
        "the worker wrote to stdout after the ready line"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A part announcing more bytes than the client's `max_payload_size` (the default here) is
/// refused for its exchange before anything is allocated; the connection goes on.
async fn check_assembly_limit(
    frames: &mpsc::Sender<Frame>,
    replies: &mut Streaming<Frame>,
) -> Result<(), Error> {
    frames
        .send(Frame {
            request_id: 60,
            body: Some(Body::Part(proto::Part {
                slot: -1,
                total: 1 << 62,
                data: vec![0u8; 16].into(),
            })),
        })
        .await?;
    let reply = next_reply(replies).await?;
    assert_eq!(reply.request_id, 60);
    let error = error_of(&reply, Kind::Encoding)?;
    println!("a part of 2^62 bytes: {}", error.message);
    assert!(error.message.contains("more than the 2147483648 bytes"));
    let reply = call(
        frames,
        replies,
        61,
        "math.sqrt",
        vec![Value::Int(4)],
        vec![],
    )
    .await?;
    assert_eq!(result_value(&reply)?, Value::Float(2.0));
    Ok(())
}

async fn check_calls(
    frames: &mpsc::Sender<Frame>,
    replies: &mut Streaming<Frame>,
) -> Result<(), Error> {
    let s = |text: &str| Value::Str(text.to_owned());

    let reply = call(
        frames,
        replies,
        1,
        "math.sqrt",
        vec![Value::Float(2.0)],
        vec![],
    )
    .await?;
    assert_eq!(result_value(&reply)?, Value::Float(2f64.sqrt()));

    let reply = call(
        frames,
        replies,
        2,
        "os.path.join",
        vec![s("a"), s("b")],
        vec![],
    )
    .await?;
    assert_eq!(result_value(&reply)?, s("a/b"));

    let kwargs = vec![
        (s("sort_keys"), Value::Bool(true)),
        (s("indent"), Value::Nil),
    ];
    let data = Value::Map(vec![(s("b"), Value::Int(1)), (s("a"), Value::List(vec![]))]);
    let reply = call(frames, replies, 3, "json.dumps", vec![data], kwargs).await?;
    assert_eq!(result_value(&reply)?, s(r#"{"a": [], "b": 1}"#));

    // Keyword arguments reach the callee (os.path.join takes none: TypeError).
    let reply = call(
        frames,
        replies,
        4,
        "os.path.join",
        vec![s("a")],
        vec![(s("sep"), s(":"))],
    )
    .await?;
    let error = error_of(&reply, Kind::PythonException)?;
    assert!(error.message.contains("unexpected keyword argument 'sep'"));

    let reply = call(
        frames,
        replies,
        5,
        "operator.truediv",
        vec![Value::Int(1), Value::Int(0)],
        vec![],
    )
    .await?;
    let error = error_of(&reply, Kind::PythonException)?;
    let exception = error.python.as_ref().ok_or("no exception")?;
    assert_eq!(exception.r#type, "ZeroDivisionError");
    assert_eq!(exception.module, "builtins");
    assert_eq!(exception.mro[1], "builtins.ArithmeticError");
    assert!(exception
        .traceback
        .contains("ZeroDivisionError: division by zero"));

    let reply = call(frames, replies, 6, "nosuch.thing", vec![], vec![]).await?;
    error_of(&reply, Kind::TargetNotFound)?;
    let reply = call(frames, replies, 7, "math.nope", vec![], vec![]).await?;
    let error = error_of(&reply, Kind::TargetNotFound)?;
    assert!(error
        .message
        .contains("module 'math' has no attribute 'nope'"));

    // An object that is not plain data stays in the worker and crosses as a reference,
    // which later calls can pass back; an id the worker does not hold is UNKNOWN_REF.
    let reply = call(frames, replies, 8, "pathlib.Path", vec![s("/tmp")], vec![]).await?;
    let path = match result_value(&reply)? {
        Value::Ref(r) => r,
        other => return Err(format!("expected a reference, got {other:?}").into()),
    };
    assert_eq!(path.type_name, "pathlib.PosixPath");
    assert_eq!(path.repr, "PosixPath('/tmp')");
    let passed_back = Value::Ref(ObjectRef {
        id: path.id,
        ..ObjectRef::default()
    });
    let reply = call(
        frames,
        replies,
        80,
        "builtins.str",
        vec![passed_back],
        vec![],
    )
    .await?;
    assert_eq!(result_value(&reply)?, s("/tmp"));
    let unknown = Value::Ref(ObjectRef {
        id: 987_654_321,
        ..ObjectRef::default()
    });
    let reply = call(frames, replies, 81, "builtins.str", vec![unknown], vec![]).await?;
    let error = error_of(&reply, Kind::UnknownRef)?;
    assert!(error
        .message
        .starts_with("args[0]: this worker holds no object"));

    // Keyword arguments arrive as a dict.
    let reply = call(
        frames,
        replies,
        9,
        "builtins.dict",
        vec![],
        vec![(s("x"), Value::List(vec![Value::Int(1)]))],
    )
    .await?;
    assert_eq!(
        result_value(&reply)?,
        Value::Map(vec![(s("x"), Value::List(vec![Value::Int(1)]))])
    );
    // Objects nested in plain data become references in place.
    let reply = call(frames, replies, 10, "builtins.vars", vec![], vec![]).await?;
    match result_value(&reply)? {
        Value::Map(entries) => assert!(entries.iter().any(|(_, v)| matches!(v, Value::Ref(_)))),
        other => return Err(format!("expected a map, got {other:?}").into()),
    }

    // Every kind of value survives a round trip through Python; an aware datetime comes
    // back in UTC.
    let date = Date {
        year: 2024,
        month: 2,
        day: 29,
    };
    let time = Time {
        hour: 13,
        minute: 5,
        second: 7,
        microsecond: 250,
    };
    let big: num_bigint::BigInt = num_bigint::BigInt::from(u64::MAX) * 1000;
    let sent = vec![
        Value::Nil,
        Value::Bool(true),
        Value::Int(-7),
        Value::BigInt(big.clone()),
        Value::Float(f64::INFINITY),
        s("héllo"),
        Value::Bytes(vec![0, 255].into()),
        Value::Tuple(vec![Value::Int(1), s("two")]),
        Value::Set(vec![Value::Int(3)]),
        Value::Map(vec![
            (Value::Int(1), s("one")),
            (Value::Tuple(vec![]), Value::Nil),
        ]),
        Value::Date(date),
        Value::Time(time),
        Value::NaiveDateTime(date, time),
        Value::DateTime(date, time, 3600),
    ];
    let reply = call(
        frames,
        replies,
        11,
        "builtins.list",
        vec![Value::Tuple(sent.clone())],
        vec![],
    )
    .await?;
    let mut expected = sent;
    let utc = Time { hour: 12, ..time };
    expected[13] = Value::DateTime(date, utc, 0);
    assert_eq!(result_value(&reply)?, Value::List(expected));

    // A list cannot be a Python dict key.
    let bad_key = Value::Map(vec![(Value::List(vec![]), Value::Nil)]);
    let reply = call(
        frames,
        replies,
        12,
        "builtins.len",
        vec![s("x"), bad_key],
        vec![],
    )
    .await?;
    let error = error_of(&reply, Kind::Encoding)?;
    println!("unhashable key: {}", error.message);
    assert!(error.message.starts_with("args[1][<list>]"));

    // A streaming call sends one chunk per element as credit allows, then a final chunk.
    let mut streaming = call_frame(13, "builtins.range", vec![Value::Int(3)], vec![]);
    if let Some(Body::Call(call)) = streaming.body.as_mut() {
        call.streaming = true;
    }
    frames.send(streaming).await?;
    let no_reply = tokio::time::timeout(Duration::from_millis(200), replies.message()).await;
    assert!(no_reply.is_err(), "no chunk may come before credit");
    frames
        .send(Frame {
            request_id: 13,
            body: Some(Body::Credit(proto::Credit { chunks: 10 })),
        })
        .await?;
    for expected in 0..3 {
        match next_reply(replies).await?.body {
            Some(Body::Chunk(chunk)) if !chunk.is_final => {
                assert_eq!(chunk.chunk_id, expected as u64);
                let value = codec::decode_payload(&chunk.payload.unwrap_or_default())?;
                assert_eq!(value, Value::Int(expected));
            }
            other => return Err(format!("expected chunk {expected}, got {other:?}").into()),
        }
    }
    match next_reply(replies).await?.body {
        Some(Body::Chunk(chunk)) if chunk.is_final => {}
        other => return Err(format!("expected the final chunk, got {other:?}").into()),
    }
    println!("call checks passed");
    Ok(())
}

async fn check_cancellation(
    frames: &mpsc::Sender<Frame>,
    replies: &mut Streaming<Frame>,
) -> Result<(), Error> {
    // One thread: 100 waits behind the sleep, so the cancel reaches it while queued, and
    // 101's deadline passes while it waits.
    frames
        .send(call_frame(
            99,
            "time.sleep",
            vec![Value::Float(0.3)],
            vec![],
        ))
        .await?;
    frames
        .send(call_frame(100, "math.sqrt", vec![Value::Int(4)], vec![]))
        .await?;
    let mut with_deadline = call_frame(101, "math.sqrt", vec![Value::Int(9)], vec![]);
    if let Some(Body::Call(call)) = with_deadline.body.as_mut() {
        call.timeout_ms = 50;
    }
    frames.send(with_deadline).await?;
    frames
        .send(Frame {
            request_id: 100,
            body: Some(Body::Cancel(proto::Cancel {
                reason: "test".into(),
            })),
        })
        .await?;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let reply = next_reply(replies).await?;
        println!("  reply {}: {}", reply.request_id, describe(&reply));
        seen.push(reply);
    }
    seen.sort_by_key(|r| r.request_id);
    assert_eq!(result_value(&seen[0])?, Value::Nil);
    error_of(&seen[1], Kind::Cancelled)?;
    error_of(&seen[2], Kind::Cancelled)?;
    println!("cancellation checks passed");
    Ok(())
}

async fn measure_latency(
    frames: &mpsc::Sender<Frame>,
    replies: &mut Streaming<Frame>,
) -> Result<(), Error> {
    let rounds = 2000u64;
    let args = vec![Value::Int(1), Value::Int(2)];
    for id in 0..200 {
        call(
            frames,
            replies,
            1_000 + id,
            "operator.add",
            args.clone(),
            vec![],
        )
        .await?;
    }
    let started = Instant::now();
    for id in 0..rounds {
        call(
            frames,
            replies,
            10_000 + id,
            "operator.add",
            args.clone(),
            vec![],
        )
        .await?;
    }
    let per_call = started.elapsed() / rounds as u32;
    println!("sequential operator.add(1, 2): {per_call:?} per call ({rounds} calls)");
    Ok(())
}

// ---------------------------------------------------------------------------------------

async fn call(
    frames: &mpsc::Sender<Frame>,
    replies: &mut Streaming<Frame>,
    request_id: u64,
    target: &str,
    args: Vec<Value>,
    kwargs: Vec<(Value, Value)>,
) -> Result<Frame, Error> {
    frames
        .send(call_frame(request_id, target, args, kwargs))
        .await?;
    let reply = next_reply(replies).await?;
    assert_eq!(reply.request_id, request_id);
    if request_id < 1_000 {
        println!("  {target} -> {}", describe(&reply));
    }
    Ok(reply)
}

fn call_frame(
    request_id: u64,
    target: &str,
    args: Vec<Value>,
    kwargs: Vec<(Value, Value)>,
) -> Frame {
    let payload = codec::encode_payload(proto::Codec::Msgpack, &call_arguments(args, kwargs))
        .expect("arguments encode");
    Frame {
        request_id,
        body: Some(Body::Call(proto::Call {
            target: target.to_owned(),
            args: Some(payload),
            result_codec: proto::Codec::Msgpack as i32,
            ..Default::default()
        })),
    }
}

async fn next_reply(replies: &mut Streaming<Frame>) -> Result<Frame, Error> {
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.message()).await??;
    reply.ok_or_else(|| "the worker ended the channel".into())
}

fn result_value(frame: &Frame) -> Result<Value, Error> {
    match &frame.body {
        Some(Body::Result(proto::Result {
            value: Some(payload),
            ..
        })) => Ok(codec::decode_payload(payload)?),
        _ => Err(format!("expected a result, got {}", describe(frame)).into()),
    }
}

/// The error of `frame`, of `kind`, as the BEAM's side of the core reads it: the worker
/// sends a Python exception's message once, in the exception, and the core composes the
/// error's message from it (and restores the traceback's last line).
fn error_of(frame: &Frame, kind: Kind) -> Result<snakebridge_core::Error, Error> {
    match &frame.body {
        Some(Body::Error(error)) if error.kind == kind as i32 => {
            Ok(snakebridge_core::Error::from_frame(error.clone(), 0))
        }
        _ => Err(format!(
            "expected a {} error, got {}",
            kind.as_str_name(),
            describe(frame)
        )
        .into()),
    }
}

fn describe(frame: &Frame) -> String {
    match &frame.body {
        Some(Body::Result(proto::Result {
            value: Some(payload),
            ..
        })) => match codec::decode_payload(payload) {
            Ok(value) => format!("Result {value:?}"),
            Err(err) => format!("Result (undecodable: {err})"),
        },
        Some(Body::Error(error)) => {
            let kind = Kind::try_from(error.kind)
                .map(|k| k.as_str_name())
                .unwrap_or("?");
            let python = error
                .exception
                .as_ref()
                .map(|e| format!(" [{}.{}, mro {:?}]", e.module, e.r#type, e.mro))
                .unwrap_or_default();
            format!("Error {kind}: {}{python}", error.message)
        }
        other => format!("{other:?}"),
    }
}

fn handshake(version: u32) -> HandshakeRequest {
    HandshakeRequest {
        protocol_version: version,
        client: "call_worker example".to_owned(),
        max_message_size: 0,
        ..HandshakeRequest::default()
    }
}

type TokenInterceptor = Box<dyn FnMut(Request<()>) -> Result<Request<()>, tonic::Status> + Send>;

fn client(
    channel: Channel,
    token: &str,
) -> WorkerClient<tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>> {
    let token: MetadataValue<_> = token.parse().expect("token is ASCII");
    let interceptor: TokenInterceptor = Box::new(move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert(TOKEN_METADATA_KEY, token.clone());
        Ok(request)
    });
    WorkerClient::with_interceptor(channel, interceptor)
}

async fn connect(socket: &Path) -> Result<Channel, Error> {
    let socket = socket.to_owned();
    let channel = Endpoint::from_static("http://worker.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(channel)
}

fn private_dir() -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "snakebridge-example-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
