//! The local carrier: the contract's proto messages straight over a worker's Unix socket,
//! each prefixed by its length, without HTTP/2 (see `Open` in `proto/snakebridge.proto`).
//!
//! A connection begins with [`MAGIC`]; then every message is its length as a big-endian
//! `u32` and its protobuf bytes. Both sides refuse a length over their limit before
//! reading the message, so a hostile prefix costs nothing; a malformed message or a
//! connection that ends inside one is an error of that connection only.
//!
//! Writers batch: [`write_batched`] drains every message already queued into one buffer
//! and writes it with one syscall, so many calls in flight cost few writes.

use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_stream::{Stream, StreamExt};

/// The first bytes of every connection on the local carrier.
pub const MAGIC: [u8; 4] = *b"SBF1";

/// Bytes of a message's length prefix.
const PREFIX: usize = 4;

/// What a batched write gathers at most before writing (more waits for the next write).
const BATCH_BYTES: usize = 1 << 20;

/// Room kept free in a reader's buffer for the next read.
const READ_CHUNK: usize = 64 << 10;

/// A connection on the local carrier failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// The peer does not speak the local carrier (a gRPC client, another program).
    #[error("the connection does not speak SnakeBridge's local carrier: it began with {0:?}, not \"SBF1\"")]
    NotCarrier([u8; 4]),
    /// A length prefix over the limit.
    #[error("a message announces {len} bytes, more than the {limit} bytes a message may take")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The most a message may take.
        limit: usize,
    },
    /// Bytes that are not the expected message.
    #[error("a malformed {what} message: {message}")]
    Malformed {
        /// The message expected.
        what: &'static str,
        /// What protobuf said.
        message: String,
    },
    /// The connection ended inside a message or before the magic.
    #[error("the connection ended inside a message ({have} of {want} bytes arrived)")]
    Truncated {
        /// Bytes that arrived.
        have: usize,
        /// Bytes announced.
        want: usize,
    },
    /// The socket failed.
    #[error("the socket failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for CarrierError {
    fn from(err: std::io::Error) -> Self {
        CarrierError::Io(err.to_string())
    }
}

/// The refusal a worker sends on the local carrier for the gRPC status it would answer.
impl From<&tonic::Status> for crate::proto::Refusal {
    fn from(status: &tonic::Status) -> Self {
        use crate::proto::refusal::Code;
        let code = match status.code() {
            tonic::Code::Unauthenticated => Code::Unauthenticated,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            _ => Code::Internal,
        };
        crate::proto::Refusal {
            code: code as i32,
            message: status.message().to_owned(),
        }
    }
}

/// Appends `message` to `out`, prefixed by its length.
pub fn put<M: Message>(message: &M, out: &mut BytesMut) -> Result<(), CarrierError> {
    let len = message.encoded_len();
    let prefix = u32::try_from(len).map_err(|_| CarrierError::TooLong {
        len,
        limit: u32::MAX as usize,
    })?;
    out.reserve(PREFIX + len);
    out.put_u32(prefix);
    message.encode_raw(out);
    Ok(())
}

/// Takes one whole message off the front of `buf`: `Ok(None)` while it has not all
/// arrived. A length over `limit` is refused as soon as its prefix has arrived.
pub fn take<M: Message + Default>(
    buf: &mut BytesMut,
    limit: usize,
    what: &'static str,
) -> Result<Option<M>, CarrierError> {
    let Some(prefix) = buf.get(..PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > limit {
        return Err(CarrierError::TooLong { len, limit });
    }
    if buf.len() < PREFIX + len {
        // Room for the rest, at once: its length is within the limit.
        buf.reserve(PREFIX + len - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX);
    let body = buf.split_to(len).freeze();
    M::decode(body)
        .map(Some)
        .map_err(|err| CarrierError::Malformed {
            what,
            message: err.to_string(),
        })
}

/// Reads length-prefixed messages from one side of a connection.
#[derive(Debug)]
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    limit: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader refusing messages longer than `limit` bytes.
    pub fn new(io: R, limit: usize) -> Self {
        Reader {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            limit,
        }
    }

    /// Refuses messages longer than `limit` bytes from now on (once the peer said how
    /// large its messages may be).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Reads [`MAGIC`], refusing a connection that begins otherwise.
    pub async fn magic(&mut self) -> Result<(), CarrierError> {
        while self.buf.len() < MAGIC.len() {
            if self.fill().await? == 0 {
                return Err(CarrierError::Truncated {
                    have: self.buf.len(),
                    want: MAGIC.len(),
                });
            }
        }
        let mut first = [0u8; 4];
        first.copy_from_slice(&self.buf[..4]);
        if first != MAGIC {
            return Err(CarrierError::NotCarrier(first));
        }
        self.buf.advance(MAGIC.len());
        Ok(())
    }

    /// The next message; `Ok(None)` when the peer closed the connection between messages.
    pub async fn next<M: Message + Default>(
        &mut self,
        what: &'static str,
    ) -> Result<Option<M>, CarrierError> {
        loop {
            if let Some(message) = take(&mut self.buf, self.limit, what)? {
                return Ok(Some(message));
            }
            if self.fill().await? == 0 {
                return match self.buf.len() {
                    0 => Ok(None),
                    have => Err(CarrierError::Truncated {
                        have,
                        want: self.announced(),
                    }),
                };
            }
        }
    }

    /// The bytes the message at the front of the buffer takes, prefix included (as far as
    /// they are known).
    fn announced(&self) -> usize {
        match self.buf.get(..PREFIX) {
            Some(p) => PREFIX + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            None => PREFIX,
        }
    }

    async fn fill(&mut self) -> Result<usize, CarrierError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        Ok(self.io.read_buf(&mut self.buf).await?)
    }

    /// The socket back, with what was read past the last message (for a reader that takes
    /// over).
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }
}

/// The frames `reader` reads, as a stream read by whoever polls it (no task or channel
/// between the socket and the consumer): it ends when the peer closes the connection
/// between frames, and after the first error.
pub fn frames<R>(
    reader: Reader<R>,
) -> impl Stream<Item = Result<crate::proto::Frame, CarrierError>> + Send + Unpin
where
    R: AsyncRead + Unpin + Send + 'static,
{
    Box::pin(futures_util::stream::unfold(
        Some(reader),
        |state| async move {
            let mut reader = state?;
            match reader.next("frame").await {
                Ok(Some(frame)) => Some((Ok(frame), Some(reader))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        },
    ))
}

/// Writes [`MAGIC`] and `message` (the client's `Open`) in one write.
pub async fn open<W: AsyncWrite + Unpin, M: Message>(
    io: &mut W,
    message: &M,
) -> Result<(), CarrierError> {
    let mut out = BytesMut::with_capacity(MAGIC.len() + PREFIX + message.encoded_len());
    out.put_slice(&MAGIC);
    put(message, &mut out)?;
    io.write_all(&out).await?;
    Ok(())
}

/// Writes one message.
pub async fn write<W: AsyncWrite + Unpin, M: Message>(
    io: &mut W,
    message: &M,
) -> Result<(), CarrierError> {
    let mut out = BytesMut::new();
    put(message, &mut out)?;
    io.write_all(&out).await?;
    Ok(())
}

/// Writes the messages of `messages` until it ends, each write taking every message
/// already there (up to about a megabyte), so that many messages cost one syscall.
/// A message that cannot be written (longer than 4 GiB) is skipped and reported to
/// `refused`; a failing socket ends the writing.
pub async fn write_batched<W, S, M>(
    io: &mut W,
    messages: &mut S,
    mut refused: impl FnMut(M, CarrierError),
) -> Result<(), CarrierError>
where
    W: AsyncWrite + Unpin,
    S: Stream<Item = M> + Unpin,
    M: Message,
{
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while let Some(first) = messages.next().await {
        out.clear();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Err(err) = put(&message, &mut out) {
                refused(message, err);
            }
            if out.len() < BATCH_BYTES {
                next = ready(messages).await;
            }
        }
        io.write_all(&out).await?;
    }
    io.flush().await?;
    Ok(())
}

/// The next item of `stream` if it is there now, without waiting.
async fn ready<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| match Pin::new(&mut *stream).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(item),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{self, frame::Body, Frame};

    /// A call frame with `target` (its size grows with the name).
    pub(crate) fn frame(id: u64, target: &str) -> Frame {
        Frame {
            request_id: id,
            body: Some(Body::Call(proto::Call {
                target: target.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn messages_come_back_one_at_a_time_whatever_the_reads_cut() {
        let frames: Vec<Frame> = (0..50).map(|i| frame(i, &"x".repeat(i as usize))).collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            put(f, &mut wire).unwrap();
        }
        // Fed a byte at a time, then in odd chunks.
        for chunk in [1, 7, 4096] {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = take::<Frame>(&mut buf, 1 << 20, "frame").unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_at_its_prefix() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = take::<Frame>(&mut buf, 64 << 20, "frame").unwrap_err();
        assert_eq!(
            err,
            CarrierError::TooLong {
                len: u32::MAX as usize,
                limit: 64 << 20
            }
        );
        // Nothing was reserved for it.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn malformed_bytes_name_the_message() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_slice(&[0xff, 0xff, 0xff]);
        let err = take::<Frame>(&mut buf, 1 << 20, "frame").unwrap_err();
        assert!(
            matches!(err, CarrierError::Malformed { what: "frame", .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_reader_checks_the_magic_and_reports_a_cut_message() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = Reader::new(server, 1 << 20);
        open(&mut client, &frame(1, "a")).await.unwrap();
        let mut partial = BytesMut::new();
        put(&frame(2, "bbbb"), &mut partial).unwrap();
        client.write_all(&partial[..6]).await.unwrap();
        drop(client);
        reader.magic().await.unwrap();
        assert_eq!(
            reader.next::<Frame>("frame").await.unwrap(),
            Some(frame(1, "a"))
        );
        let err = reader.next::<Frame>("frame").await.unwrap_err();
        assert!(
            matches!(err, CarrierError::Truncated { have: 6, .. }),
            "{err}"
        );

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let err = Reader::new(server, 1 << 20).magic().await.unwrap_err();
        assert_eq!(err, CarrierError::NotCarrier(*b"PRI "));
    }

    #[tokio::test]
    async fn queued_messages_go_out_together() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..100 {
            tx.send(frame(i, "t")).unwrap();
        }
        drop(tx);
        let mut rx = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        write_batched(&mut client, &mut rx, |_, _| panic!("refused"))
            .await
            .unwrap();
        drop(client);
        let mut reader = Reader::new(server, 1 << 20);
        for i in 0..100 {
            assert_eq!(
                reader.next::<Frame>("frame").await.unwrap(),
                Some(frame(i, "t"))
            );
        }
        assert_eq!(reader.next::<Frame>("frame").await.unwrap(), None);
    }
}
