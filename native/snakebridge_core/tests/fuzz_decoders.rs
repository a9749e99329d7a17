//! A fuzz run over everything that reads bytes or values from outside: the msgpack decoder
//! (`decode`, `decode_parts`), the JSON decoder, the framing `Assembler` (frames as they
//! arrive from the other side), the local carrier's length-prefixed messages, descriptor files and the docstrings in them, and config
//! validation with the module plan. No input may panic, hang or crash; what decodes must
//! encode again to the same value.
//!
//! cargo-fuzz needs a nightly compiler, so this is a random-mutation run instead: a seeded
//! corpus of valid encodings, mutated byte-wise, plus random bytes, for a fixed time. Inputs
//! that decode join the corpus.
//!
//! - `SNAKEBRIDGE_FUZZ_SECONDS`: the time of the whole run, shared by the targets (default
//!   10; `make fuzz` gives 300). The targets run in parallel as the test harness allows.
//! - `SNAKEBRIDGE_FUZZ_SEED`: the seed (default: from the clock), printed by every target.
//!
//! A failing input is written to a file (its path is printed, with the seed) and can be
//! replayed with `SNAKEBRIDGE_FUZZ_REPLAY=<absolute path> cargo test --release --test
//! fuzz_decoders` (the tests run in the crate's directory).
//! An input running longer than [`HANG`] is a hang: its file is written and the run aborts.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{arb_value, same};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snakebridge_core::bytes::Bytes;
use snakebridge_core::callback::CallbackId;
use snakebridge_core::carrier;
use snakebridge_core::codec::{self, json, msgpack};
use snakebridge_core::descriptor::{self, Entry, SCHEMA_VERSION};
use snakebridge_core::framing::{self, Assembler, Outgoing};
use snakebridge_core::proto::{self, frame::Body, DescribeLibraryResponse, Frame, Payload};
use snakebridge_core::shared::SharedDir;
use snakebridge_core::value::Value;
use snakebridge_core::{config, docstring, plan};

/// How many `#[test]`s below share the run's time.
const TARGETS: u32 = 9;

/// The longest one input may take before the run counts it as a hang.
const HANG: Duration = Duration::from_secs(20);

/// Largest input the mutations grow.
const MAX_INPUT: usize = 96 << 10;

fn total_seconds() -> f64 {
    std::env::var("SNAKEBRIDGE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0)
}

fn run_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("SNAKEBRIDGE_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
    })
}

/// Written to stderr itself, not through the test harness's capture, so that it is seen
/// even when the process dies.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---------------------------------------------------------------------------------------
// The fuzz loop

/// One thing to fuzz: its seeds, tokens worth inserting, and the check of one input
/// (panics on a violated invariant; returns whether the input was accepted, which makes it
/// part of the corpus).
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
    check: fn(&[u8]) -> bool,
}

/// The input being checked and since when, for the hang watchdog.
type Current = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

fn crash_file(name: &str, seed: u64, input: &[u8]) -> PathBuf {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fuzz-{}-{seed}.bin", name.replace(' ', "-")));
    let _ = std::fs::write(&file, input);
    file
}

/// Aborts the run when an input takes longer than [`HANG`]; ends when the fuzz loop drops
/// its handle of `current`.
fn watchdog(name: &'static str, seed: u64, current: Current) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        if Arc::strong_count(&current) == 1 {
            return;
        }
        let Ok(current) = current.lock() else { return };
        if let Some((since, input)) = current.as_ref() {
            if since.elapsed() > HANG {
                let file = crash_file(name, seed, input);
                say(&format!(
                    "fuzz {name}: an input ran for more than {HANG:?} (seed {seed}); it is in {}",
                    file.display()
                ));
                std::process::abort();
            }
        }
    });
}

fn fuzz(target: Target) {
    if let Some(file) = std::env::var_os("SNAKEBRIDGE_FUZZ_REPLAY") {
        let input = std::fs::read(&file).expect("the replay file is readable");
        (target.check)(&input);
        return;
    }
    let seed = run_seed()
        ^ target
            .name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ b as u64);
    let budget = Duration::from_secs_f64(total_seconds() / f64::from(TARGETS));
    say(&format!(
        "fuzz {}: {budget:.1?}, seed {} (SNAKEBRIDGE_FUZZ_SEED)",
        target.name,
        run_seed()
    ));
    let mut rng = StdRng::seed_from_u64(seed);
    let current: Current = Arc::default();
    watchdog(target.name, seed, current.clone());

    let mut corpus = target.seeds.clone();
    let mut known: HashSet<Vec<u8>> = corpus.iter().cloned().collect();
    let started = Instant::now();
    let mut runs = 0u64;
    // Every seed as it is first, then mutants.
    while runs < target.seeds.len() as u64 || started.elapsed() < budget {
        let input = if let Some(seed_input) = target.seeds.get(runs as usize) {
            seed_input.clone()
        } else {
            next_input(&mut rng, &corpus, target.tokens)
        };
        if let Ok(mut current) = current.lock() {
            *current = Some((Instant::now(), input.clone()));
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.check)(&input)));
        if let Ok(mut current) = current.lock() {
            *current = None;
        }
        match outcome {
            Ok(true) if corpus.len() < 4096 && known.insert(input.clone()) => corpus.push(input),
            Ok(_) => {}
            Err(_) => {
                let file = crash_file(target.name, seed, &input);
                panic!(
                    "fuzz {}: input {runs} (seed {}) failed; it is in {} ({} bytes: {:02x?}...)",
                    target.name,
                    run_seed(),
                    file.display(),
                    input.len(),
                    &input[..input.len().min(64)]
                );
            }
        }
        runs += 1;
    }
    drop(current);
    say(&format!(
        "fuzz {}: {runs} inputs in {:.1?}, corpus {}",
        target.name,
        started.elapsed(),
        corpus.len()
    ));
}

const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0x90, 0x91, 0x93, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc7, 0xc9,
    0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, b'[', b']', b'{',
    b'}', b'"', b'\\', b':', b',', b'0', b'-', b'e', b'.',
];

const WIDE: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    i64::MAX as u64,
    u64::MAX,
];

/// A mutant of a corpus entry (one to four mutations), or now and then random bytes.
fn next_input(rng: &mut StdRng, corpus: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
    if corpus.is_empty() || rng.random_ratio(1, 16) {
        let len = rng.random_range(0..512);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut input = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        mutate(rng, &mut input, corpus, tokens);
    }
    input.truncate(MAX_INPUT);
    input
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, corpus: &[Vec<u8>], tokens: &[&[u8]]) {
    let len = input.len();
    let at = if len == 0 {
        0
    } else {
        rng.random_range(0..len)
    };
    match rng.random_range(0..11) {
        0 if len > 0 => input[at] ^= 1 << rng.random_range(0..8),
        1 if len > 0 => input[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
        2 if len > 0 => input[at] = rng.random(),
        3 => input.insert(at, rng.random()),
        4 if len > 0 => {
            let end = rng.random_range(at..=len.min(at + 64));
            input.drain(at..end);
        }
        5 if len > 0 => {
            // Repeat a chunk: nests what it holds.
            let end = rng.random_range(at..=len.min(at + 32));
            let chunk = input[at..end].to_vec();
            for _ in 0..rng.random_range(1..=8) {
                input.splice(at..at, chunk.iter().copied());
            }
        }
        6 if len > 0 => {
            // A length or number: 1, 2, 4 or 8 bytes, big-endian.
            let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
            let value = WIDE[rng.random_range(0..WIDE.len())].wrapping_add(rng.random_range(0..3));
            let bytes = value.to_be_bytes();
            for (i, b) in bytes[8 - width..].iter().enumerate() {
                if let Some(slot) = input.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        7 if !tokens.is_empty() => {
            let token = tokens[rng.random_range(0..tokens.len())];
            input.splice(at..at, token.iter().copied());
        }
        8 => {
            // Splice with another entry.
            let other = &corpus[rng.random_range(0..corpus.len())];
            let from = if other.is_empty() {
                0
            } else {
                rng.random_range(0..other.len())
            };
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        9 => input.truncate(at),
        _ if len > 1 => {
            let other = rng.random_range(0..len);
            input.swap(at, other);
        }
        _ => input.push(rng.random()),
    }
}

// ---------------------------------------------------------------------------------------
// Seeds

/// Values of every kind, the same for every run.
fn seed_values(n: usize) -> Vec<Value> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = arb_value();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

/// Buffers a fuzzed payload may refer to: of several sizes, so that tensors can fit.
fn buffers() -> Vec<Bytes> {
    [0usize, 1, 2, 4, 8, 16, 24, 64]
        .iter()
        .map(|n| Bytes::from(vec![0x5a; *n]))
        .collect()
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// Configs that validate, using every kind of key (as the NIF gives them: atoms are
/// strings, functions callbacks).
fn seed_configs() -> Vec<Value> {
    let decoder = map(vec![
        ("python_path", s("json.JSONDecoder")),
        ("elixir_module", s("Elixir.Json.Decoder")),
        ("description", s("")),
        (
            "constructor",
            map(vec![
                ("args", map(vec![("strict", s("boolean"))])),
                ("session_aware", Value::Bool(true)),
                ("timeout", Value::Int(1000)),
            ]),
        ),
        (
            "methods",
            Value::List(vec![
                map(vec![
                    ("name", s("decode")),
                    ("elixir_name", s("decode_text")),
                    ("args", map(vec![("s", s("string"))])),
                    (
                        "returns",
                        Value::Tuple(vec![
                            s("union"),
                            Value::List(vec![
                                s("integer"),
                                Value::Tuple(vec![s("list"), s("string")]),
                                Value::Tuple(vec![s("map"), s("string"), s("any")]),
                                Value::Tuple(vec![s("optional"), s("json.JSONDecoder")]),
                            ]),
                        ]),
                    ),
                    ("timeout", Value::Float(f64::INFINITY)),
                ]),
                map(vec![
                    ("name", s("raw_decode")),
                    ("streaming", Value::Bool(false)),
                ]),
            ]),
        ),
        (
            "properties",
            Value::List(vec![map(vec![
                ("name", s("strict")),
                ("type", s("boolean")),
                ("readonly", Value::Bool(true)),
            ])]),
        ),
        ("result_transform", Value::Callback(CallbackId::INERT)),
    ]);
    let json = map(vec![
        ("python_module", s("json")),
        ("integration_id", s("json")),
        ("version", s("2.0")),
        ("description", s("JSON")),
        (
            "introspection",
            map(vec![
                ("enabled", Value::Bool(true)),
                ("discovery_depth", Value::Int(1)),
                ("submodules", Value::List(vec![s("json.decoder")])),
                ("exclude_patterns", Value::List(vec![s("*.tests*")])),
            ]),
        ),
        (
            "classes",
            Value::List(vec![
                decoder,
                map(vec![
                    ("python_path", s("json.JSONEncoder")),
                    ("extends", s("json.JSONDecoder")),
                    ("singleton", Value::Bool(false)),
                ]),
            ]),
        ),
        (
            "functions",
            Value::List(vec![
                map(vec![
                    ("python_path", s("json.dumps")),
                    ("elixir_name", s("encode")),
                    ("args", map(vec![("obj", s("any"))])),
                    ("returns", s("string")),
                    ("pure", Value::Bool(true)),
                    ("cacheable", Value::Bool(true)),
                    ("timeout", s("infinity")),
                ]),
                map(vec![("python_path", s("json.loads"))]),
            ]),
        ),
        (
            "bidirectional_tools",
            map(vec![
                ("enabled", Value::Bool(true)),
                (
                    "export_to_python",
                    Value::List(vec![map(vec![
                        ("python_name", s("lookup")),
                        (
                            "function",
                            Value::Tuple(vec![s("Elixir.String"), s("upcase"), Value::Int(1)]),
                        ),
                    ])]),
                ),
            ]),
        ),
        ("grpc", map(vec![("max_message_size", Value::Int(1 << 20))])),
        (
            "caching",
            map(vec![
                ("enabled", Value::Bool(true)),
                ("ttl", Value::Int(10)),
            ]),
        ),
        (
            "telemetry",
            map(vec![("prefix", Value::List(vec![s("sb"), s("json")]))]),
        ),
        (
            "serialization",
            map(vec![
                ("args", s("msgpack")),
                ("result", s("json")),
                ("tensor_passthrough", Value::Bool(true)),
            ]),
        ),
        (
            "session",
            map(vec![("mode", s("pooled")), ("timeout", Value::Int(5))]),
        ),
        ("python_deps", Value::List(vec![s("numpy>=1")])),
        (
            "init",
            Value::List(vec![map(vec![
                ("python_path", s("json.loads")),
                ("args", Value::List(vec![s("{}")])),
                ("kwargs", map(vec![])),
            ])]),
        ),
        ("allowed_modules", Value::List(vec![s("json")])),
    ]);
    let minimal = map(vec![("python_module", s("json"))]);
    for config in [&json, &minimal] {
        assert_eq!(config::validate(config), vec![], "the seed config is valid");
    }
    vec![json, minimal]
}

/// The committed descriptor of the `json` module.
const FIXTURE: &str = include_str!("../../../test/fixtures/schemas/json.json");

fn fixture() -> Entry {
    descriptor::parse(Path::new("json.json"), FIXTURE.as_bytes()).expect("the fixture parses")
}

/// A small valid descriptor file.
fn small_descriptor_file() -> Vec<u8> {
    let mut descriptor = fixture().descriptor;
    descriptor
        .classes
        .retain(|path, _| path == "json.JSONDecoder");
    descriptor.functions.retain(|path, _| path == "json.dumps");
    entry_file(descriptor)
}

/// The file of an entry around `descriptor`, with the hash it needs.
fn entry_file(descriptor: DescribeLibraryResponse) -> Vec<u8> {
    let entry = Entry {
        schema_version: SCHEMA_VERSION,
        integration: "json".into(),
        config_hash: descriptor::config_hash(b""),
        request_key: String::new(),
        cache_key: descriptor::cache_key(b"", "2.0", "3.11"),
        library_version: "2.0".into(),
        python_version: "3.11".into(),
        descriptor_hash: descriptor::descriptor_hash(&descriptor),
        descriptor,
    };
    serde_json::to_vec_pretty(&entry).expect("an entry serializes")
}

/// A config naming everything `descriptor` has (a few of each).
fn config_for(descriptor: &DescribeLibraryResponse) -> Value {
    let functions = descriptor
        .functions
        .keys()
        .take(12)
        .map(|path| map(vec![("python_path", s(path))]))
        .collect();
    let classes = descriptor
        .classes
        .iter()
        .take(6)
        .map(|(path, class)| {
            let methods = class.methods.keys().take(8);
            let properties = class.properties.iter().take(4);
            map(vec![
                ("python_path", s(path)),
                (
                    "methods",
                    Value::List(methods.map(|m| map(vec![("name", s(m))])).collect()),
                ),
                (
                    "properties",
                    Value::List(
                        properties
                            .map(|p| map(vec![("name", s(&p.name))]))
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    map(vec![
        ("python_module", s("json")),
        ("functions", Value::List(functions)),
        ("classes", Value::List(classes)),
    ])
}

// ---------------------------------------------------------------------------------------
// Checks

/// `v`, just decoded, must encode again and decode to itself.
fn assert_msgpack_again(v: &Value) {
    let bytes =
        msgpack::encode(v).unwrap_or_else(|e| panic!("decoded {v:?} but cannot encode it: {e}"));
    let back = msgpack::decode(&bytes).unwrap_or_else(|e| panic!("re-encoded {v:?} fails: {e}"));
    assert!(same(&back, v), "{v:?} came back as {back:?}");
    let (data, parts) = msgpack::encode_parts(v).expect("encodes out of band");
    let back = msgpack::decode_parts(&data, &parts).expect("decodes out of band");
    assert!(same(&back, v), "{v:?} came back out of band as {back:?}");
}

fn check_msgpack(input: &[u8]) -> bool {
    let in_band = msgpack::decode(input);
    if let Ok(v) = &in_band {
        assert_msgpack_again(v);
    }
    let parts = msgpack::decode_parts(input, &buffers());
    if let Ok(v) = &parts {
        assert_msgpack_again(v);
    }
    in_band.is_ok() || parts.is_ok()
}

fn check_json(input: &[u8]) -> bool {
    let Ok(v) = json::decode(input) else {
        return false;
    };
    let text =
        json::encode(&v).unwrap_or_else(|e| panic!("decoded {v:?} but cannot encode it: {e}"));
    let back = json::decode(&text).unwrap_or_else(|e| panic!("re-encoded {v:?} fails: {e}"));
    assert!(same(&back, &v), "{v:?} came back as {back:?}");
    true
}

/// A config as the NIF would give it (here decoded from msgpack, which carries tuples and
/// callbacks): validation lists problems with paths, and a valid one is planned.
fn check_config(input: &[u8]) -> bool {
    let Ok(config) = msgpack::decode(input) else {
        return false;
    };
    let errors = config::validate(&config);
    for error in &errors {
        assert!(!error.message.is_empty(), "{error:?}");
    }
    if errors.is_empty() {
        static DESCRIPTOR: std::sync::OnceLock<DescribeLibraryResponse> =
            std::sync::OnceLock::new();
        let descriptor = DESCRIPTOR.get_or_init(|| fixture().descriptor);
        let _ = plan::plan(&config, descriptor);
    }
    true
}

const FILE: &str = "/fuzz/schemas/json.json";

/// A descriptor file: an error names the file; a valid one is planned.
fn check_descriptor_file(input: &[u8]) -> bool {
    match descriptor::parse(Path::new(FILE), input) {
        Ok(entry) => {
            let _ = plan::plan(&config_for(&entry.descriptor), &entry.descriptor);
            true
        }
        Err(err) => {
            let message = err.to_string();
            assert!(message.starts_with(&format!("{FILE}: ")), "{message}");
            false
        }
    }
}

/// What a descriptor holds, past the hash check (which mutants rarely pass): the JSON of a
/// descriptor is put in a file with its right hash, which must then load and plan.
fn check_descriptor_content(input: &[u8]) -> bool {
    let Ok(descriptor) = serde_json::from_slice::<DescribeLibraryResponse>(input) else {
        return false;
    };
    let file = entry_file(descriptor);
    match descriptor::parse(Path::new(FILE), &file) {
        Ok(entry) => {
            let _ = plan::plan(&config_for(&entry.descriptor), &entry.descriptor);
        }
        Err(err) => {
            // Only what the hash does not cover: a name that differs from its key.
            let message = err.to_string();
            assert!(message.contains("its key says"), "{message}");
        }
    }
    true
}

fn check_docstring(input: &[u8]) -> bool {
    let _ = docstring::to_markdown(&String::from_utf8_lossy(input));
    true
}

/// Frames as they arrive (length-delimited `Frame`s; the first byte picks the assembler's
/// limit: small, or the worker's): every error names an exchange seen, the bytes held stay
/// within the limit, assembled payloads decode or fail cleanly, and nothing is held once
/// every exchange is dropped.
fn check_frames(input: &[u8]) -> bool {
    let Some((&first, mut rest)) = input.split_first() else {
        return false;
    };
    let limit = if first & 1 == 0 {
        1 << 16
    } else {
        usize::MAX >> 1
    };
    let mut assembler = Assembler::new(limit);
    let mut ids = HashSet::new();
    let mut whole = 0;
    while !rest.is_empty() {
        let Ok(frame) = Frame::decode_length_delimited(&mut rest) else {
            break;
        };
        ids.insert(frame.request_id);
        match assembler.push(frame) {
            Ok(Some(mut frame)) => {
                whole += 1;
                if let Some(payload) = framing::payload_mut(&mut frame) {
                    let _ = codec::decode_payload(payload);
                }
            }
            Ok(None) => {}
            Err(err) => assert!(ids.contains(&err.request_id), "{err:?}"),
        }
        assert!(assembler.held() <= limit);
    }
    for id in ids {
        assembler.drop_pending(id);
    }
    assert_eq!(assembler.held(), 0);
    whole > 0
}

/// Frames split for sending (in parts, large buffers through a shared directory) and then
/// disturbed as the input's bytes say (lost, repeated, reordered, altered): undisturbed
/// they come back whole and equal; disturbed, they fail their exchange only.
fn check_split_frames(input: &[u8]) -> bool {
    let mut rng = StdRng::seed_from_u64(input.iter().fold(17u64, |h, b| {
        h.wrapping_mul(0x100_0000_01b3) ^ u64::from(*b)
    }));
    let base = Scratch::new();
    let sender = Arc::new(SharedDir::create_in(&base.0, 2048).expect("a shared directory"));
    let receiver = Arc::new(SharedDir::join(sender.path(), 2048).expect("joins"));
    let outgoing = Outgoing {
        part_size: rng.random_range(1..2048),
        shared: rng.random_bool(0.5).then(|| sender.clone()),
    };

    let exchanges = rng.random_range(1..4u64);
    let mut originals = Vec::new();
    let mut frames = Vec::new();
    for request_id in 0..exchanges {
        let byte = request_id as u8;
        let data = vec![byte; rng.random_range(0..5000)];
        let buffers = (0..rng.random_range(0..3))
            .map(|_| Bytes::from(vec![byte; rng.random_range(0..6000)]))
            .collect();
        let payload = Payload {
            codec: 0,
            data,
            buffers,
            ..Payload::default()
        };
        let frame = Frame {
            request_id,
            body: Some(Body::Result(proto::Result {
                value: Some(payload),
                queue_us: 1,
            })),
        };
        originals.push(frame.clone());
        frames.extend(outgoing.frames(frame));
    }
    let disturbed = !input.len().is_multiple_of(3) && !frames.is_empty();
    if disturbed {
        for _ in 0..rng.random_range(1..4) {
            disturb(&mut rng, &mut frames);
        }
    }

    let limit = if rng.random_bool(0.5) {
        1 << 14
    } else {
        usize::MAX >> 1
    };
    let mut assembler = Assembler::new(limit).with_shared(Some(receiver.clone()));
    let mut whole = Vec::new();
    for frame in frames {
        match assembler.push(frame) {
            Ok(Some(frame)) => whole.push(frame),
            Ok(None) => {}
            Err(err) => assert!(disturbed || limit < usize::MAX >> 1, "{err:?}"),
        }
        assert!(assembler.held() <= limit);
    }
    if !disturbed && limit == usize::MAX >> 1 {
        assert_eq!(whole, originals);
    }
    // Every id an exchange had, or was given by a disturbance.
    for id in 0..5 {
        assembler.drop_pending(id);
    }
    assert_eq!(assembler.held(), 0);
    drop((outgoing, assembler, receiver, sender, base));
    true
}

/// A private directory for shared buffers, removed on drop (also when a check fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("sb-fuzz-{}", std::process::id()));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn disturb(rng: &mut StdRng, frames: &mut Vec<Frame>) {
    if frames.is_empty() {
        return;
    }
    let at = rng.random_range(0..frames.len());
    match rng.random_range(0..6) {
        0 => {
            frames.remove(at);
        }
        1 => {
            let copy = frames[at].clone();
            frames.insert(rng.random_range(0..=frames.len()), copy);
        }
        2 => {
            let other = rng.random_range(0..frames.len());
            frames.swap(at, other);
        }
        3 => frames[at].request_id = rng.random_range(0..5),
        4 => {
            if let Some(Body::Part(part)) = &mut frames[at].body {
                match rng.random_range(0..4) {
                    0 => part.total = WIDE[rng.random_range(0..WIDE.len())],
                    1 => part.slot = rng.random_range(-3..4),
                    2 => part.data = part.data.slice(..part.data.len() / 2),
                    _ => part.total = part.total.wrapping_add(rng.random_range(0..3)),
                }
            }
        }
        _ => {
            if let Some(payload) = framing::payload_mut(&mut frames[at]) {
                match rng.random_range(0..5) {
                    0 => payload.parted.push(rng.random_range(-3..4)),
                    1 => payload.parted.clear(),
                    2 => payload.shared.push(proto::Shared {
                        slot: rng.random_range(-1..4),
                        name: ["../x", "", ".hidden", "c-0", "c-999", "a/b"]
                            [rng.random_range(0..6)]
                        .into(),
                        size: WIDE[rng.random_range(0..WIDE.len())],
                    }),
                    3 => {
                        for shared in &mut payload.shared {
                            shared.size = shared.size.wrapping_add(1);
                        }
                    }
                    _ => payload.buffers.push(Bytes::from_static(b"extra")),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Targets

#[test]
fn fuzz_msgpack_decode() {
    let mut seeds = Vec::new();
    for v in seed_values(300) {
        if let Ok(bytes) = msgpack::encode(&v) {
            if bytes.len() <= 16 << 10 {
                seeds.push(bytes);
            }
        }
        if let Ok((data, _)) = msgpack::encode_parts(&v) {
            seeds.push(data);
        }
    }
    fuzz(Target {
        name: "msgpack",
        seeds,
        tokens: &[
            &[0xc7, 0, 2],
            &[0xc7, 0, 3],
            &[0xc7, 0, 8, 0x93, 0x01, 0xa0, 0xa0],
            &[0xc7, 0, 9, 0x05],
            &[0xc7, 0, 11, 0x02],
            &[
                0xc7, 0, 10, 0x93, 0xa7, b'f', b'l', b'o', b'a', b't', b'3', b'2', 0x91, 0x02, 0x06,
            ],
            &[0xd7, 7, 0, 0, 7, 0xe9, 1, 1, 0, 0],
            &[0xc7, 17, 7],
            &[0xd4, 1, 1],
            &[0xc7, 3, 1, 0, 0xff, 0xff],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0x00, 0xff, 0xff, 0xff],
        ],
        check: check_msgpack,
    });
}

#[test]
fn fuzz_json_decode() {
    let mut seeds: Vec<Vec<u8>> = seed_values(200)
        .iter()
        .filter_map(|v| json::encode(v).ok())
        .filter(|text| text.len() <= 16 << 10)
        .collect();
    seeds.extend(seed_configs().iter().filter_map(|c| json::encode(c).ok()));
    seeds.push(small_descriptor_file());
    fuzz(Target {
        name: "json",
        seeds,
        tokens: &[
            b"1e400",
            b"-0",
            b"-0.0",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"1.7976931348623157e308",
            b"5e-324",
            b"\"\\u0000\"",
            b"\"\\ud800\"",
            b"\"\\udc00\\ud800\"",
            b"[[[[[[[[",
            b"{\"a\":",
            b"null",
            b"\xef\xbb\xbf",
        ],
        check: check_json,
    });
}

#[test]
fn fuzz_config_validation() {
    let mut seeds: Vec<Vec<u8>> = seed_configs()
        .iter()
        .map(|c| msgpack::encode(c).expect("encodes"))
        .collect();
    seeds.push(msgpack::encode(&config_for(&fixture().descriptor)).expect("encodes"));
    fuzz(Target {
        name: "config",
        seeds,
        tokens: &[
            b"\xa4name",
            b"\xabpython_path",
            b"\xa7timeout",
            b"\xa7classes",
            b"\xa7methods",
            b"\xa4args",
            b"\xa7returns",
            b"\xa4list",
            b"\xa5union",
            b"\xa8infinity",
            b"\xa7extends",
            b"\xa7Elixir.",
            &[0xc7, 0, 2, 0x92, 0xa4, b'l', b'i', b's', b't'],
            &[0xc7, 0, 9, 0x00],
        ],
        check: check_config,
    });
}

#[test]
fn fuzz_descriptor_files() {
    fuzz(Target {
        name: "descriptor file",
        seeds: vec![small_descriptor_file(), FIXTURE.as_bytes().to_vec()],
        tokens: &[
            b"\"schema_version\": 1,",
            b"\"python_path\": \"json.x\",",
            b"\"kind\": 4,",
            b"\"args\": [{\"kind\": 1, \"name\": \"x\", \"args\": [], \"literals\": []}],",
            b"null",
            b"\"\\u0000\"",
            b"-1",
            b"4294967296",
        ],
        check: check_descriptor_file,
    });
}

#[test]
fn fuzz_descriptor_contents() {
    let descriptor = |file: Vec<u8>| {
        let entry: serde_json::Value = serde_json::from_slice(&file).expect("json");
        serde_json::to_vec_pretty(&entry["descriptor"]).expect("json")
    };
    fuzz(Target {
        name: "descriptor content",
        seeds: vec![
            descriptor(small_descriptor_file()),
            descriptor(FIXTURE.as_bytes().to_vec()),
        ],
        tokens: &[
            b"\"kind\": 3,",
            b"\"kind\": 99,",
            b"\"name\": \"def\",",
            b"\"name\": \"__init__\",",
            b"\"name\": \"\",",
            b"\"annotation\": {\"kind\": 2, \"name\": \"list\", \"args\": [], \"literals\": []},",
            b"\"default_repr\": \"None\",",
            b"\"docstring\": \"Args:\\n    x: y\\n\\nReturns:\\n    z\\n\",",
            b"\"is_generator\": true,",
        ],
        check: check_descriptor_content,
    });
}

#[test]
fn fuzz_docstrings() {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).expect("json");
    let mut seeds = Vec::new();
    collect_docstrings(&fixture, &mut seeds);
    seeds.truncate(200);
    fuzz(Target {
        name: "docstring",
        seeds,
        tokens: &[
            b"\n\nArgs:\n    ",
            b"\nReturns\n-------\n",
            b"\nParameters\n----------\nx : int\n    ",
            b":param x: ",
            b":returns: ",
            b">>> ",
            b"```",
            b"\n    ",
            b"\t",
            b"\r\n",
            b"`",
            b"*",
            b"\xe2\x80\x83",
        ],
        check: check_docstring,
    });
}

fn collect_docstrings(json: &serde_json::Value, out: &mut Vec<Vec<u8>>) {
    match json {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields {
                match value {
                    serde_json::Value::String(doc) if key == "docstring" && !doc.is_empty() => {
                        out.push(doc.as_bytes().to_vec())
                    }
                    other => collect_docstrings(other, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_docstrings(i, out)),
        _ => {}
    }
}

#[test]
fn fuzz_frames_as_they_arrive() {
    let mut seeds = Vec::new();
    for (i, v) in seed_values(60).into_iter().enumerate() {
        let Ok(payload) = codec::encode_payload(proto::Codec::Msgpack, &v) else {
            continue;
        };
        let frame = Frame {
            request_id: i as u64 % 3,
            body: Some(Body::Result(proto::Result {
                value: Some(payload),
                queue_us: 0,
            })),
        };
        let mut bytes = vec![i as u8];
        for part in framing::split(frame, 1 + i % 300) {
            part.encode_length_delimited(&mut bytes).expect("encodes");
        }
        seeds.push(bytes);
    }
    // A part announcing an enormous slot, then its frame.
    let mut hostile = vec![1];
    for frame in [
        Frame {
            request_id: 9,
            body: Some(Body::Part(proto::Part {
                slot: -1,
                total: 1 << 62,
                data: Bytes::from_static(b"x"),
            })),
        },
        Frame {
            request_id: 9,
            body: Some(Body::Result(proto::Result {
                value: Some(Payload {
                    parted: vec![-1],
                    ..Payload::default()
                }),
                queue_us: 0,
            })),
        },
    ] {
        frame
            .encode_length_delimited(&mut hostile)
            .expect("encodes");
    }
    seeds.push(hostile);
    fuzz(Target {
        name: "frames",
        seeds,
        tokens: &[
            &[0x5a, 0x0b],
            &[0x10, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0x22, 0x01, 0x01],
        ],
        check: check_frames,
    });
}

/// A connection's bytes on the local carrier, arriving in chunks of a size the first byte
/// chooses: whole messages come out and encode again to themselves; a hostile length is
/// refused at its prefix, without reserving more than the limit.
fn check_carrier(input: &[u8]) -> bool {
    let Some((&first, rest)) = input.split_first() else {
        return false;
    };
    let limit = if first & 1 == 0 { 1 << 10 } else { 1 << 20 };
    let chunk = usize::from(first >> 1).max(1);
    let mut buf = snakebridge_core::bytes::BytesMut::new();
    let mut whole = 0;
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match carrier::take::<Frame>(&mut buf, limit, "frame") {
                Ok(Some(frame)) => {
                    whole += 1;
                    let mut again = snakebridge_core::bytes::BytesMut::new();
                    carrier::put(&frame, &mut again).expect("a decoded frame encodes");
                    let back = carrier::take::<Frame>(&mut again, usize::MAX, "frame");
                    assert_eq!(back, Ok(Some(frame)));
                }
                Ok(None) => break,
                Err(_) => return whole > 0,
            }
        }
        assert!(buf.capacity() <= 2 * (limit + 4) + rest.len() + (64 << 10));
    }
    whole > 0
}

#[test]
fn fuzz_carrier_messages() {
    let mut seeds = Vec::new();
    for (i, v) in seed_values(40).into_iter().enumerate() {
        let Ok(payload) = codec::encode_payload(proto::Codec::Msgpack, &v) else {
            continue;
        };
        let frame = Frame {
            request_id: i as u64,
            body: Some(Body::Result(proto::Result {
                value: Some(payload),
                queue_us: 0,
            })),
        };
        let mut bytes = snakebridge_core::bytes::BytesMut::from(&[i as u8 | 1][..]);
        for part in framing::split(frame, 1 + i % 200) {
            carrier::put(&part, &mut bytes).expect("encodes");
        }
        seeds.push(bytes.to_vec());
    }
    fuzz(Target {
        name: "carrier messages",
        seeds,
        tokens: &[
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x00",
            b"\x00\x10\x00\x00",
        ],
        check: check_carrier,
    });
}

#[test]
fn fuzz_split_frames_disturbed() {
    fuzz(Target {
        name: "split frames",
        seeds: (0u8..32).map(|i| vec![i; usize::from(i)]).collect(),
        tokens: &[],
        check: check_split_frames,
    });
}

#[test]
fn a_part_announcing_an_enormous_slot_allocates_only_what_arrives() {
    // The worker's limit: effectively none. The part's announced size must not be
    // allocated up front (it used to be, and the allocation aborted the process).
    let mut assembler = Assembler::new(usize::MAX >> 1);
    let part = Frame {
        request_id: 1,
        body: Some(Body::Part(proto::Part {
            slot: -1,
            total: 1 << 62,
            data: Bytes::from_static(b"abc"),
        })),
    };
    assert_eq!(assembler.push(part), Ok(None));
    assert_eq!(assembler.held(), 1 << 62);
    assembler.drop_pending(1);
    assert_eq!(assembler.held(), 0);
}

#[test]
fn a_msgpack_header_announcing_millions_of_elements_allocates_only_what_arrives() {
    // 200 MB claiming 200 million map entries, the first of them malformed: decoding used
    // to allocate room for all entries first (25.6 GB), and the allocation aborted.
    let count: u32 = 200_000_000;
    let mut input = vec![0xdf];
    input.extend_from_slice(&count.to_be_bytes());
    input.push(0xc1);
    input.resize(5 + count as usize + 1, 0);
    let err = msgpack::decode(&input).unwrap_err().to_string();
    assert!(err.contains("0xc1"), "{err}");
}

#[test]
fn a_docstring_indented_with_unicode_spaces_becomes_markdown() {
    // Found by the fuzz run: removing the common indentation (2 bytes here) cut into the
    // three bytes of an em space, and panicked.
    let doc = "Summary.\n\nArgs:\n  x: the x\n\u{2003}y\n";
    assert!(docstring::to_markdown(doc).contains('y'));
}
