//! The local carrier (see [`crate::carrier`]) without a runtime: for threads that read a
//! non-blocking socket when it is ready and write their own replies (the worker's
//! leader/follower threads), so that no I/O thread stands between the socket and the
//! code that runs a call.
//!
//! - [`Inbox`] reads what the socket has with one `read` and takes whole frames off it.
//! - [`Outbox`] writes from whichever thread has a frame to send. A thread that finds a
//!   write in progress appends its frame and leaves; the writing thread writes everything
//!   appended meanwhile with its next syscall. Many frames in flight cost few writes, and
//!   no thread waits for another's write.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, BytesMut};

use crate::carrier::{put, take, CarrierError};
use crate::framing::Outgoing;
use crate::proto::Frame;
use crate::serve::{Closed, FrameSink};

/// What one read gets at least room for.
const READ_CHUNK: usize = 64 << 10;

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Bytes arrived.
    Bytes(usize),
    /// Nothing is there now.
    WouldBlock,
    /// The peer closed the connection.
    Closed,
}

/// Frames read from a non-blocking socket, one read at a time.
#[derive(Debug)]
pub struct Inbox {
    buf: BytesMut,
    limit: usize,
}

impl Inbox {
    /// An inbox starting with `buf` (what a reader read past the last message it took),
    /// refusing frames longer than `limit` bytes.
    pub fn new(buf: BytesMut, limit: usize) -> Inbox {
        Inbox { buf, limit }
    }

    /// Reads what `fd` has now, with one `read` (retried when a signal interrupts it).
    pub fn fill(&mut self, fd: BorrowedFd<'_>) -> Result<Filled, CarrierError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let spare = self.buf.spare_capacity_mut();
        loop {
            // SAFETY: `spare` is writable memory of `spare.len()` bytes that `read` only
            // writes to; the bytes it reports written are initialised below.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    spare.as_mut_ptr().cast::<libc::c_void>(),
                    spare.len(),
                )
            };
            if n > 0 {
                let n = n as usize;
                // SAFETY: `read` initialised `n` bytes after the buffer's length.
                unsafe { self.buf.advance_mut(n) };
                return Ok(Filled::Bytes(n));
            }
            if n == 0 {
                return Ok(Filled::Closed);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(Filled::WouldBlock),
                _ => return Err(err.into()),
            }
        }
    }

    /// The next whole frame read; `Ok(None)` while it has not all arrived.
    pub fn take_frame(&mut self) -> Result<Option<Frame>, CarrierError> {
        take(&mut self.buf, self.limit, "frame")
    }

    /// Whether part of a frame has arrived and waits for the rest.
    pub fn partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The peer closed the connection: an error if it did so inside a frame.
    pub fn closed(&self) -> Result<(), CarrierError> {
        match self.buf.get(..4) {
            None if self.buf.is_empty() => Ok(()),
            None => Err(CarrierError::Truncated {
                have: self.buf.len(),
                want: 4,
            }),
            Some(p) => Err(CarrierError::Truncated {
                have: self.buf.len(),
                want: 4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            }),
        }
    }
}

/// The writing side of a connection, shared by every thread that sends on it.
#[derive(Debug)]
pub struct Outbox<W> {
    state: Mutex<Pending>,
    io: Mutex<W>,
    outgoing: Outgoing,
}

#[derive(Debug, Default)]
struct Pending {
    /// Frames waiting for the write in progress to end.
    bytes: BytesMut,
    /// A buffer kept for the next batch (its allocation reused).
    spare: BytesMut,
    /// Whether a thread is writing.
    writing: bool,
    /// Why the connection can no longer be written to.
    failed: Option<String>,
}

impl<W: Write> Outbox<W> {
    /// An outbox writing to `io`; each frame's large buffers are shared and its
    /// oversized payload sent in parts as `outgoing` says.
    pub fn new(io: W, outgoing: Outgoing) -> Outbox<W> {
        Outbox {
            state: Mutex::new(Pending::default()),
            io: Mutex::new(io),
            outgoing,
        }
    }

    fn state(&self) -> MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `frame`: written now by this thread, or appended to the write in progress
    /// (which writes it next). An error once a write failed: the connection is gone.
    pub fn send(&self, frame: Frame) -> Result<(), CarrierError> {
        let frames = self.outgoing.frames(frame);
        let mut state = self.state();
        if let Some(failed) = &state.failed {
            return Err(CarrierError::Io(failed.clone()));
        }
        for frame in &frames {
            if let Err(err) = put(frame, &mut state.bytes) {
                // Longer than a length prefix can say: refused, the connection is fine.
                eprintln!("snakebridge: frame {} not sent: {err}", frame.request_id);
            }
        }
        if state.writing || state.bytes.is_empty() {
            return Ok(());
        }
        state.writing = true;
        loop {
            let spare = std::mem::take(&mut state.spare);
            let mut batch = std::mem::replace(&mut state.bytes, spare);
            drop(state);
            let written = self
                .io
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(&batch);
            state = self.state();
            batch.clear();
            state.spare = batch;
            if let Err(err) = written {
                state.writing = false;
                state.bytes.clear();
                state.failed = Some(err.to_string());
                return Err(err.into());
            }
            if state.bytes.is_empty() {
                state.writing = false;
                return Ok(());
            }
        }
    }
}

impl<W: Write + Send + std::fmt::Debug + 'static> FrameSink for Outbox<W> {
    fn send(&self, frame: Frame) -> Result<(), Closed> {
        Outbox::send(self, frame).map_err(|_| Closed)
    }
}

/// A non-blocking socket written as if it were blocking: a write that would block waits
/// until the socket can take more (for [`Outbox`], whose writer must not give up).
#[derive(Debug)]
pub struct Patient<S>(pub Arc<S>);

impl<S: AsFd> Write for Patient<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.0.as_fd().as_raw_fd();
        loop {
            // SAFETY: `buf` is readable for `buf.len()` bytes; MSG_NOSIGNAL turns a closed
            // peer into EPIPE instead of SIGPIPE.
            let n = unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => wait_writable(fd)?,
                _ => return Err(err),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks until `fd` can be written to (or has failed, which the next write reports).
fn wait_writable(fd: libc::c_int) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, -1) } >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::tests::frame;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn outgoing() -> Outgoing {
        Outgoing {
            part_size: 1 << 20,
            shared: None,
        }
    }

    #[test]
    fn an_inbox_takes_whole_frames_from_whatever_arrived() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut inbox = Inbox::new(BytesMut::new(), 1 << 20);
        assert_eq!(inbox.fill(server.as_fd()).unwrap(), Filled::WouldBlock);
        let mut wire = BytesMut::new();
        put(&frame(1, "a"), &mut wire).unwrap();
        put(&frame(2, "bb"), &mut wire).unwrap();
        client.write_all(&wire[..wire.len() - 3]).unwrap();
        assert!(matches!(
            inbox.fill(server.as_fd()).unwrap(),
            Filled::Bytes(_)
        ));
        assert_eq!(inbox.take_frame().unwrap(), Some(frame(1, "a")));
        assert_eq!(inbox.take_frame().unwrap(), None);
        assert!(inbox.partial());
        client.write_all(&wire[wire.len() - 3..]).unwrap();
        inbox.fill(server.as_fd()).unwrap();
        assert_eq!(inbox.take_frame().unwrap(), Some(frame(2, "bb")));
        assert!(!inbox.partial());
        // Cut inside a frame, then closed: an error naming what arrived.
        client.write_all(&wire[..5]).unwrap();
        drop(client);
        inbox.fill(server.as_fd()).unwrap();
        assert_eq!(inbox.take_frame().unwrap(), None);
        assert_eq!(inbox.fill(server.as_fd()).unwrap(), Filled::Closed);
        assert!(matches!(
            inbox.closed(),
            Err(CarrierError::Truncated { have: 5, .. })
        ));
    }

    #[test]
    fn an_inbox_refuses_an_oversized_prefix_before_reading_the_frame() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        client.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
        let mut inbox = Inbox::new(BytesMut::new(), 1 << 20);
        inbox.fill(server.as_fd()).unwrap();
        assert!(matches!(
            inbox.take_frame(),
            Err(CarrierError::TooLong { limit, .. }) if limit == 1 << 20
        ));
    }

    #[test]
    fn frames_sent_from_many_threads_arrive_whole() {
        let (client, server) = UnixStream::pair().unwrap();
        client.set_nonblocking(true).unwrap();
        let outbox = Arc::new(Outbox::new(Patient(Arc::new(client)), outgoing()));
        // Larger than a socket buffer in all: writers wait for the reader.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let outbox = Arc::clone(&outbox);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        outbox.send(frame(t * 1000 + i, &"x".repeat(300))).unwrap();
                    }
                })
            })
            .collect();
        let reader = std::thread::spawn(move || {
            let mut server = server;
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while got.len() < 2000 {
                let n = server.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                while let Some(f) = take::<Frame>(&mut buf, 1 << 20, "frame").unwrap() {
                    got.push(f.request_id);
                }
            }
            got
        });
        for t in threads {
            t.join().unwrap();
        }
        let mut got = reader.join().unwrap();
        // Each thread's frames in its order; all of them once.
        for t in 0..4u64 {
            let mine: Vec<u64> = got.iter().copied().filter(|id| id / 1000 == t).collect();
            assert_eq!(mine, (0..500).map(|i| t * 1000 + i).collect::<Vec<_>>());
        }
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 2000);
    }

    #[test]
    fn a_closed_peer_fails_the_send_and_every_later_one() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        let outbox = Outbox::new(Patient(Arc::new(client)), outgoing());
        assert!(outbox.send(frame(1, "a")).is_err());
        assert!(matches!(
            outbox.send(frame(2, "b")),
            Err(CarrierError::Io(_))
        ));
    }
}
