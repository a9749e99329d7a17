//! Payloads larger than one gRPC message travel in parts.
//!
//! [`split`] turns a frame whose payload has a slot (the encoded `data`, or an out-of-band
//! buffer) larger than the part size into `Part` frames for those slots, followed by the
//! frame itself with the slots emptied and listed in `Payload.parted`. Parts are slices
//! of the slot's bytes (no copy). [`Assembler`] puts them back together on the receiving
//! side: one copy of each parted slot, into a buffer of its announced size, bounded by a
//! limit on the bytes being assembled at once.
//!
//! When the connection has a [`SharedDir`], large buffers skip all of this: [`Outgoing`]
//! writes them to files before splitting, and the [`Assembler`] maps them back.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use prost::Message;

use crate::proto::{self, frame::Body, Frame, Part, Payload};
use crate::shared::SharedDir;

/// Slot number of a payload's encoded `data` in `Part` and `Payload.parted`.
pub const DATA_SLOT: i32 = -1;

/// Most bytes reserved up front for a slot being assembled: a part's announced total is
/// only a claim (one byte can announce 2^62), so larger slots grow as their parts arrive.
const PREALLOCATE_MAX: usize = 64 << 20;

/// The part size for a connection whose messages may be `max_message_size` bytes: half of
/// it (room for the frame's other fields), at most 8 MiB, at least 64 KiB.
pub fn part_size(max_message_size: usize) -> usize {
    (max_message_size / 2).clamp(64 << 10, 8 << 20)
}

/// The payload a frame carries, if any.
pub fn payload_mut(frame: &mut Frame) -> Option<&mut Payload> {
    match frame.body.as_mut()? {
        Body::Call(call) => call.args.as_mut(),
        Body::Result(result) => result.value.as_mut(),
        Body::Chunk(chunk) => chunk.payload.as_mut(),
        Body::CallbackRequest(request) => request.args.as_mut(),
        Body::CallbackResult(proto::CallbackResult {
            outcome: Some(proto::callback_result::Outcome::Value(value)),
        }) => Some(value),
        _ => None,
    }
}

/// The bytes a payload carries in all.
pub fn payload_size(payload: &Payload) -> usize {
    payload.data.len() + payload.buffers.iter().map(Bytes::len).sum::<usize>()
}

/// How one side of a connection sends payloads: buffers of the shared directory's minimum
/// size through it (when the connection has one), slots larger than `part_size` in parts.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Slots larger than this many bytes travel in parts (see [`part_size`]).
    pub part_size: usize,
    /// The connection's shared directory, if it has one.
    pub shared: Option<Arc<SharedDir>>,
}

impl Outgoing {
    /// `frame` as the frames to send (see [`split`]), its large buffers shared first.
    pub fn frames(&self, mut frame: Frame) -> Vec<Frame> {
        if let (Some(shared), Some(payload)) = (&self.shared, payload_mut(&mut frame)) {
            shared.share(payload);
        }
        split(frame, self.part_size)
    }
}

/// `frame` as the frames to send: the parts of its oversized slots, then itself.
pub fn split(mut frame: Frame, part_size: usize) -> Vec<Frame> {
    let request_id = frame.request_id;
    let Some(payload) = payload_mut(&mut frame) else {
        return vec![fit(frame, part_size)];
    };
    let part_size = part_size.max(1);
    let oversized =
        payload.data.len() > part_size || payload.buffers.iter().any(|b| b.len() > part_size);
    if !oversized {
        return vec![frame];
    }
    let mut frames = Vec::new();
    let mut parts = |slot: i32, bytes: Bytes| {
        let total = bytes.len() as u64;
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + part_size).min(bytes.len());
            frames.push(Frame {
                request_id,
                body: Some(Body::Part(Part {
                    slot,
                    total,
                    data: bytes.slice(at..end),
                })),
            });
            at = end;
        }
    };
    if payload.data.len() > part_size {
        parts(DATA_SLOT, Bytes::from(std::mem::take(&mut payload.data)));
        payload.parted.push(DATA_SLOT);
    }
    for (index, buffer) in payload.buffers.iter_mut().enumerate() {
        if buffer.len() > part_size {
            parts(index as i32, std::mem::take(buffer));
            payload.parted.push(index as i32);
        }
    }
    frames.push(frame);
    frames
}

/// A frame without a payload, made to fit in one message: an error's texts are cut to
/// size (see [`clip_frame`](crate::error::clip_frame)), and an error still larger than
/// `limit` is replaced by a short one saying so, which fails only its own exchange.
fn fit(mut frame: Frame, limit: usize) -> Frame {
    use proto::callback_result::Outcome;
    match &mut frame.body {
        Some(Body::Error(error))
        | Some(Body::CallbackResult(proto::CallbackResult {
            outcome: Some(Outcome::Error(error)),
        })) => crate::error::clip_frame(error),
        _ => return frame,
    }
    let size = frame.encoded_len();
    if size <= limit {
        return frame;
    }
    let kind = frame
        .body
        .as_ref()
        .map_or("empty", crate::serve::frame_kind);
    crate::serve::error_frame(
        frame.request_id,
        proto::error::Kind::Internal,
        format!("a {kind} frame of {size} bytes is larger than a message may be ({limit} bytes)"),
    )
}

/// Why a frame could not be put back together: the exchange it belongs to and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssemblyError {
    /// The exchange the frame belongs to.
    pub request_id: u64,
    /// What is wrong with it.
    pub message: String,
}

/// A payload slot being put together: its number, announced size and bytes so far.
#[derive(Debug)]
struct Slot {
    slot: i32,
    total: usize,
    bytes: BytesMut,
}

/// Bytes announced by the slots of one exchange.
fn announced(slots: &[Slot]) -> usize {
    slots.iter().map(|s| s.total).sum()
}

/// Puts parted payloads back together, per exchange (request id).
#[derive(Debug)]
pub struct Assembler {
    pending: HashMap<u64, Vec<Slot>>,
    /// Bytes being assembled at once, and the most there may be.
    held: usize,
    limit: usize,
    /// Where buffers sent through shared memory are (none: such a payload is refused).
    shared: Option<Arc<SharedDir>>,
}

impl Assembler {
    /// An assembler holding at most `limit` bytes of incomplete payloads.
    pub fn new(limit: usize) -> Self {
        Assembler {
            pending: HashMap::new(),
            held: 0,
            limit,
            shared: None,
        }
    }

    /// The assembler, mapping the buffers that arrive through `shared`.
    pub fn with_shared(mut self, shared: Option<Arc<SharedDir>>) -> Self {
        self.shared = shared;
        self
    }

    /// Takes the next received frame: `Ok(None)` for a part (kept), `Ok(Some(frame))` for a
    /// frame to handle (its payload whole again). An error names the exchange whose frame
    /// cannot be assembled; its parts are dropped and the exchange should fail.
    pub fn push(&mut self, mut frame: Frame) -> Result<Option<Frame>, AssemblyError> {
        let request_id = frame.request_id;
        let fail = |this: &mut Self, message: String| {
            this.drop_pending(request_id);
            Err(AssemblyError {
                request_id,
                message,
            })
        };
        match frame.body.take() {
            Some(Body::Part(part)) => {
                return match self.add_part(request_id, part) {
                    Ok(()) => Ok(None),
                    Err(message) => fail(self, message),
                };
            }
            body => frame.body = body,
        }
        let pending = self.pending.remove(&request_id).unwrap_or_default();
        self.held -= announced(&pending);
        let Some(payload) = payload_mut(&mut frame) else {
            return Ok(Some(frame));
        };
        // First, so that a failure below still removes the payload's files.
        if !payload.shared.is_empty() {
            let taken = match &self.shared {
                Some(shared) => shared.take(payload, self.limit),
                None => Err(
                    "the payload names shared-memory buffers, but this connection has no shared directory"
                        .to_owned(),
                ),
            };
            if let Err(message) = taken {
                return fail(self, message);
            }
        }
        let mut pending = pending;
        for slot in std::mem::take(&mut payload.parted) {
            let Some(at) = pending.iter().position(|s| s.slot == slot) else {
                return fail(
                    self,
                    format!("payload slot {slot} was announced in parts, none arrived"),
                );
            };
            let Slot { total, bytes, .. } = pending.swap_remove(at);
            if bytes.len() != total {
                return fail(
                    self,
                    format!(
                        "payload slot {slot} is incomplete: {} of {} bytes arrived",
                        bytes.len(),
                        total
                    ),
                );
            }
            match slot {
                DATA_SLOT => payload.data = bytes.into(),
                index => match payload.buffers.get_mut(index as usize) {
                    Some(buffer) => *buffer = bytes.freeze(),
                    None => return fail(self, format!("payload has no buffer {index}")),
                },
            }
        }
        Ok(Some(frame))
    }

    fn add_part(&mut self, request_id: u64, part: Part) -> Result<(), String> {
        let total = usize::try_from(part.total).unwrap_or(usize::MAX);
        let slots = self.pending.entry(request_id).or_default();
        let at = match slots.iter().position(|s| s.slot == part.slot) {
            Some(at) => at,
            None => {
                if total > self.limit.saturating_sub(self.held) {
                    return Err(format!(
                        "a payload part announces {total} bytes, more than the {} bytes that may be assembled at once",
                        self.limit
                    ));
                }
                self.held += total;
                slots.push(Slot {
                    slot: part.slot,
                    total,
                    bytes: BytesMut::with_capacity(total.min(PREALLOCATE_MAX)),
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[at];
        if slot.bytes.len() + part.data.len() > slot.total || slot.total != total {
            return Err(format!(
                "payload slot {} has more bytes than the {total} announced",
                part.slot
            ));
        }
        slot.bytes.extend_from_slice(&part.data);
        Ok(())
    }

    /// Forgets the parts of an exchange that ended (cancelled, failed).
    pub fn drop_pending(&mut self, request_id: u64) {
        if let Some(slots) = self.pending.remove(&request_id) {
            self.held -= announced(&slots);
        }
    }

    /// Bytes held for incomplete payloads.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_frame(data: Vec<u8>, buffers: Vec<Bytes>) -> Frame {
        Frame {
            request_id: 7,
            body: Some(Body::Result(proto::Result {
                value: Some(Payload {
                    codec: 0,
                    data,
                    buffers,
                    ..Payload::default()
                }),
                queue_us: 3,
            })),
        }
    }

    fn assemble(frames: Vec<Frame>, assembler: &mut Assembler) -> Vec<Frame> {
        frames
            .into_iter()
            .filter_map(|f| assembler.push(f).unwrap())
            .collect()
    }

    #[test]
    fn small_frames_pass_unchanged() {
        let frame = result_frame(vec![1, 2, 3], vec![Bytes::from_static(b"abc")]);
        assert_eq!(split(frame.clone(), 16), vec![frame.clone()]);
        let mut assembler = Assembler::new(1 << 20);
        assert_eq!(assemble(vec![frame.clone()], &mut assembler), vec![frame]);
    }

    #[test]
    fn large_slots_travel_in_parts_and_come_back_whole() {
        let big: Bytes = (0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
        let frame = result_frame(vec![9; 2_500], vec![Bytes::from_static(b"x"), big.clone()]);
        let frames = split(frame.clone(), 1_000);
        // 3 parts of data, 10 of the big buffer, then the frame.
        assert_eq!(frames.len(), 3 + 10 + 1);
        assert!(frames[..13]
            .iter()
            .all(|f| matches!(f.body, Some(Body::Part(_))) && f.request_id == 7));
        // Parts are slices of the buffer, not copies.
        let Some(Body::Part(part)) = &frames[3].body else {
            unreachable!()
        };
        assert_eq!(part.data.as_ptr(), big.as_ptr());
        let mut assembler = Assembler::new(1 << 20);
        assert_eq!(assemble(frames, &mut assembler), vec![frame]);
        assert_eq!(assembler.held(), 0);
    }

    #[test]
    fn missing_or_oversized_parts_fail_their_exchange_only() {
        let frame = result_frame(vec![], vec![Bytes::from(vec![1u8; 3_000])]);
        let mut frames = split(frame, 1_000);
        let mut assembler = Assembler::new(1 << 20);
        // Drop one part: the frame is incomplete.
        frames.remove(1);
        assert!(assembler.push(frames.remove(0)).unwrap().is_none());
        assert!(assembler.push(frames.remove(0)).unwrap().is_none());
        let err = assembler.push(frames.remove(0)).unwrap_err();
        assert_eq!(err.request_id, 7);
        assert!(err.message.contains("incomplete"), "{}", err.message);
        assert_eq!(assembler.held(), 0);

        // A part announcing more than the limit is refused.
        let mut small = Assembler::new(100);
        let frames = split(result_frame(vec![], vec![Bytes::from(vec![0u8; 500])]), 200);
        let err = small.push(frames[0].clone()).unwrap_err();
        assert!(
            err.message.contains("more than the 100 bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn errors_are_cut_to_fit_one_message() {
        let huge = |kind: proto::error::Kind, message: String| Frame {
            request_id: 9,
            body: Some(Body::Error(proto::Error {
                kind: kind as i32,
                message,
                exception: None,
            })),
        };
        let frames = split(
            huge(proto::error::Kind::Internal, "x".repeat(100 << 20)),
            1 << 20,
        );
        assert_eq!(frames.len(), 1);
        assert!(frames[0].encoded_len() < 100 << 10);
        assert_eq!(frames[0].request_id, 9);
        // An error that cannot be cut small enough is replaced, for its exchange only.
        let frames = split(
            huge(proto::error::Kind::Internal, "y".repeat(60 << 10)),
            1 << 10,
        );
        match &frames[0].body {
            Some(Body::Error(error)) => assert!(error.message.contains("larger than a message")),
            other => panic!("{other:?}"),
        }
        assert_eq!(frames[0].request_id, 9);
        // Other frames without a payload pass as they are.
        let release = Frame {
            request_id: 0,
            body: Some(Body::Release(proto::Release {
                ref_ids: (0..10_000).collect(),
                ..proto::Release::default()
            })),
        };
        assert_eq!(split(release.clone(), 1 << 10), vec![release]);
    }

    #[test]
    fn part_sizes_follow_the_message_limit() {
        assert_eq!(part_size(64 << 20), 8 << 20);
        assert_eq!(part_size(4 << 20), 2 << 20);
        assert_eq!(part_size(1000), 64 << 10);
    }

    #[test]
    fn large_buffers_go_through_the_shared_directory_and_small_ones_in_parts() {
        let base = std::env::temp_dir().join(format!("sb-framing-{}", crate::auth::new_token()));
        std::fs::create_dir(&base).unwrap();
        let sender = SharedDir::create_in(&base, 4096).unwrap();
        let receiver = Arc::new(SharedDir::join(sender.path(), 4096).unwrap());
        let outgoing = Outgoing {
            part_size: 1024,
            shared: Some(Arc::new(sender)),
        };
        let big = Bytes::from(vec![7u8; 10_000]);
        let middling = Bytes::from(vec![3u8; 3000]);
        let frames = outgoing.frames(result_frame(
            b"data".to_vec(),
            vec![big.clone(), middling.clone()],
        ));
        // The big buffer became a file; the middling one went in three parts.
        assert_eq!(frames.len(), 4);

        let mut without = Assembler::new(usize::MAX);
        let refused = frames
            .clone()
            .into_iter()
            .map(|f| without.push(f))
            .find_map(Result::err)
            .expect("a connection without a shared directory refuses the payload");
        assert!(
            refused.message.contains("no shared directory"),
            "{}",
            refused.message
        );
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1);

        let mut assembler = Assembler::new(usize::MAX).with_shared(Some(receiver.clone()));
        let mut got = assemble(frames, &mut assembler);
        assert_eq!(got.len(), 1);
        let payload = payload_mut(&mut got[0]).unwrap();
        assert_eq!(payload.buffers, vec![big, middling]);
        assert!(payload.shared.is_empty() && payload.parted.is_empty());
        let dir = receiver.path().to_path_buf();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the file was removed"
        );
        drop((outgoing, assembler, receiver));
        assert!(!dir.exists());
        std::fs::remove_dir_all(base).unwrap();
    }
}
