//! `raw-transfer`: the floor for moving one large payload between two
//! processes, and for copying it within one.
//!
//! The binary spawns itself (`raw-transfer-sender`) as a second process
//! connected over a Unix socket in a private temporary directory. Each round
//! the parent sends a one-byte request and receives N bytes, which the sender
//! writes in `--chunk`-byte writes, into a freshly allocated N-byte buffer (a
//! receiver has to allocate; the page faults of that buffer are part of the
//! cost). The timed span runs from the request to the last byte received.
//! `rust_memcpy` copies the same N bytes into a fresh `Vec` in-process.
//!
//! `shm_map` and `shm_read` time the two ways a receiver can take a buffer its
//! sender wrote to a file under `/dev/shm` (the write included, as in
//! SnakeBridge's shared memory): mapping the file (`MAP_POPULATE`, what
//! SnakeBridge's BEAM side did before issue 14) and reading it with `read(2)`
//! into a fresh buffer (what it does since: a worker cannot change or truncate
//! memory the BEAM owns).
//!
//! Prints one JSON line per result: name, bytes, rounds, median seconds and
//! GB/s (10^9 bytes per second).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::workers::SocketDir;

/// The hidden subcommand the parent runs in its child process.
pub const SENDER: &str = "raw-transfer-sender";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Every payload byte has this value, so the receiver can spot-check it.
const FILL: u8 = 0xA5;
const REQUEST: u8 = b'g';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub bytes: usize,
    pub rounds: usize,
    pub warmup: usize,
    pub chunk: usize,
    /// Set only in the sender.
    pub socket: Option<PathBuf>,
}

fn value<T: std::str::FromStr>(flag: &str, raw: Option<&String>) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw = raw.with_context(|| format!("{flag} needs a value"))?;
    raw.parse::<T>()
        .with_context(|| format!("invalid value {raw:?} for {flag}"))
}

impl Options {
    /// Parses the options following `raw-transfer` (or `raw-transfer-sender`).
    pub fn parse(argv: &[String]) -> Result<Self> {
        let mut opts = Options {
            bytes: 100_000_000,
            rounds: 5,
            warmup: 1,
            chunk: 1 << 20,
            socket: None,
        };
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--bytes" => opts.bytes = value(flag, it.next())?,
                "--rounds" => opts.rounds = value(flag, it.next())?,
                "--warmup" => opts.warmup = value(flag, it.next())?,
                "--chunk" => opts.chunk = value(flag, it.next())?,
                "--socket" => opts.socket = Some(value(flag, it.next())?),
                "-h" | "--help" => bail!("{}", crate::args::USAGE),
                other => bail!("unknown option {other:?}\n{}", crate::args::USAGE),
            }
        }
        ensure!(
            opts.bytes > 0 && opts.rounds > 0 && opts.chunk > 0,
            "--bytes, --rounds and --chunk must be at least 1"
        );
        Ok(opts)
    }
}

/// The median of the samples (the upper one of the middle two for an even count).
pub fn median(samples: &mut [Duration]) -> Option<Duration> {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

/// Throughput in GB/s (10^9 bytes per second).
pub fn gb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

fn report(name: &str, bytes: usize, mut samples: Vec<Duration>) -> Result<String> {
    let rounds = samples.len();
    let med = median(&mut samples).context("no samples")?;
    Ok(format!(
        "{{\"name\": \"{name}\", \"bytes\": {bytes}, \"rounds\": {rounds}, \
         \"median_s\": {:.6}, \"gb_per_s\": {:.3}}}",
        med.as_secs_f64(),
        gb_per_s(bytes, med)
    ))
}

/// Sender side: answers each one-byte request with `payload`, written in
/// `chunk`-byte writes, until the peer closes the connection.
pub fn serve(stream: &mut UnixStream, payload: &[u8], chunk: usize) -> Result<()> {
    let mut request = [0u8; 1];
    loop {
        match stream.read(&mut request) {
            Ok(0) => return Ok(()),
            Ok(_) => ensure!(request[0] == REQUEST, "unexpected request byte"),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("reading request"),
        }
        for part in payload.chunks(chunk) {
            stream.write_all(part).context("writing payload")?;
        }
    }
}

/// Receiver side: requests one payload and receives its `bytes` bytes into a
/// freshly allocated buffer.
pub fn fetch(stream: &mut UnixStream, bytes: usize) -> Result<Vec<u8>> {
    stream.write_all(&[REQUEST]).context("writing request")?;
    let mut buf = vec![0u8; bytes];
    stream.read_exact(&mut buf).context("reading payload")?;
    Ok(buf)
}

/// `raw-transfer-sender --socket PATH --bytes N --chunk C`.
pub fn sender_main(argv: &[String]) -> Result<()> {
    let opts = Options::parse(argv)?;
    let socket = opts.socket.context("--socket is required")?;
    let mut stream = UnixStream::connect(&socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let payload = vec![FILL; opts.bytes];
    serve(&mut stream, &payload, opts.chunk)
}

/// The sender process, killed and reaped on drop.
struct Sender(Child);

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `raw-transfer --bytes N --rounds R [--warmup W] [--chunk C]`: prints the
/// `raw_transfer` and `rust_memcpy` lines.
pub fn main(argv: &[String]) -> Result<()> {
    let opts = Options::parse(argv)?;
    let mut lines = vec![transfer(&opts)?, memcpy(&opts)?];
    if Path::new(SHM).is_dir() {
        lines.push(shared_file(&opts, Take::Map)?);
        lines.push(shared_file(&opts, Take::Read)?);
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").context("writing results to stdout")?;
    }
    out.flush().context("flushing stdout")
}

fn transfer(opts: &Options) -> Result<String> {
    // Locals drop in reverse order: on an error the sender is killed before
    // its socket's directory is removed.
    let dir = SocketDir::create()?;
    let socket = dir.path().join("transfer.sock");
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    let exe = std::env::current_exe().context("locating the baselines binary")?;
    let mut sender = Sender(
        Command::new(exe)
            .arg(SENDER)
            .arg("--socket")
            .arg(&socket)
            .args(["--bytes", &opts.bytes.to_string()])
            .args(["--chunk", &opts.chunk.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("spawning the sender process")?,
    );
    let mut stream = accept(&listener, &mut sender.0)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;

    for _ in 0..opts.warmup {
        fetch(&mut stream, opts.bytes)?;
    }
    let mut samples = Vec::with_capacity(opts.rounds);
    for _ in 0..opts.rounds {
        let t0 = Instant::now();
        let buf = fetch(&mut stream, opts.bytes)?;
        samples.push(t0.elapsed());
        ensure!(
            buf[0] == FILL && buf[buf.len() - 1] == FILL,
            "received bytes differ from the payload"
        );
    }
    drop(stream); // the sender sees EOF and exits
    let status = sender.0.wait().context("waiting for the sender")?;
    ensure!(status.success(), "the sender process failed: {status}");
    report("raw_transfer", opts.bytes, samples)
}

/// Accepts the sender's connection, giving up if it exits or takes too long.
fn accept(listener: &UnixListener, child: &mut Child) -> Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    bail!("the sender process exited before connecting: {status}");
                }
                ensure!(
                    Instant::now() < deadline,
                    "the sender did not connect within {CONNECT_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(err) => return Err(err).context("accepting the sender's connection"),
        }
    }
}

fn memcpy(opts: &Options) -> Result<String> {
    let src = vec![FILL; opts.bytes];
    let copy = || {
        let mut dst = Vec::with_capacity(src.len());
        dst.extend_from_slice(&src);
        std::hint::black_box(dst)
    };
    for _ in 0..opts.warmup {
        copy();
    }
    let mut samples = Vec::with_capacity(opts.rounds);
    for _ in 0..opts.rounds {
        let t0 = Instant::now();
        let dst = copy();
        samples.push(t0.elapsed());
        ensure!(dst[dst.len() - 1] == FILL, "copy differs from the source");
    }
    report("rust_memcpy", opts.bytes, samples)
}

/// Where the shared-memory lines put their file.
const SHM: &str = "/dev/shm";

#[derive(Clone, Copy)]
enum Take {
    Map,
    Read,
}

/// Writes the payload to a fresh file under `/dev/shm`, then takes it back as
/// `take` says and removes it, as one SnakeBridge shared buffer crosses.
fn shared_file(opts: &Options, take: Take) -> Result<String> {
    use std::os::unix::io::AsRawFd;
    let src = vec![FILL; opts.bytes];
    let path = Path::new(SHM).join(format!("sb-baseline-{}", std::process::id()));
    let once = || -> Result<u8> {
        std::fs::write(&path, &src).context("writing the shared file")?;
        let mut file = std::fs::File::open(&path).context("opening the shared file")?;
        std::fs::remove_file(&path).context("removing the shared file")?;
        match take {
            Take::Map => {
                // SAFETY: a private file of this process, mapped read-only, read
                // once and unmapped before it is closed.
                unsafe {
                    let ptr = libc::mmap(
                        std::ptr::null_mut(),
                        src.len(),
                        libc::PROT_READ,
                        libc::MAP_SHARED | libc::MAP_POPULATE,
                        file.as_raw_fd(),
                        0,
                    );
                    ensure!(ptr != libc::MAP_FAILED, "mmap failed");
                    let last = *(ptr as *const u8).add(src.len() - 1);
                    libc::munmap(ptr, src.len());
                    Ok(last)
                }
            }
            Take::Read => {
                // As the core's shared::copy_of does.
                let mut dst = Vec::with_capacity(src.len());
                file.read_to_end(&mut dst)
                    .context("reading the shared file")?;
                Ok(std::hint::black_box(dst)[src.len() - 1])
            }
        }
    };
    for _ in 0..opts.warmup {
        once()?;
    }
    let mut samples = Vec::with_capacity(opts.rounds);
    for _ in 0..opts.rounds {
        let t0 = Instant::now();
        let last = once()?;
        samples.push(t0.elapsed());
        ensure!(last == FILL, "the shared file differs from the payload");
    }
    let name = match take {
        Take::Map => "shm_map",
        Take::Read => "shm_read",
    };
    report(name, opts.bytes, samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let o = Options::parse(&args(&["--bytes", "10", "--rounds", "3", "--chunk", "4"])).unwrap();
        assert_eq!((o.bytes, o.rounds, o.warmup, o.chunk), (10, 3, 1, 4));
        assert_eq!(o.socket, None);
        assert!(Options::parse(&args(&["--bytes", "0"])).is_err());
        assert!(Options::parse(&args(&["--bytes"])).is_err());
        assert!(Options::parse(&args(&["--nope"])).is_err());
    }

    #[test]
    fn median_and_rate() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), Some(ms(3)));
        assert_eq!(median(&mut [ms(4), ms(1)]), Some(ms(4)));
        assert_eq!(median(&mut []), None);
        assert!((gb_per_s(2_000_000_000, Duration::from_secs(2)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn transfers_a_payload_in_chunks() {
        let (mut receiver, mut sender) = UnixStream::pair().unwrap();
        let payload: Vec<u8> = (0..3 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let server = std::thread::spawn(move || serve(&mut sender, &payload, 1024));
        for _ in 0..2 {
            assert_eq!(fetch(&mut receiver, expected.len()).unwrap(), expected);
        }
        drop(receiver);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn report_line() {
        let line = report("x", 1_000, vec![Duration::from_micros(1)]).unwrap();
        assert_eq!(
            line,
            "{\"name\": \"x\", \"bytes\": 1000, \"rounds\": 1, \"median_s\": 0.000001, \"gb_per_s\": 1.000}"
        );
    }
}
