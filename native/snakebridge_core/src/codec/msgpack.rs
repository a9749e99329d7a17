//! The msgpack codec: [`Value`] ⇄ bytes.
//!
//! Plain msgpack covers nil, booleans, 64-bit integers, floats, strings (`str`), bytes
//! (`bin`), lists (`array`) and maps (`map`, keys of any type). SnakeBridge's other kinds use
//! extension types:
//!
//! | ext | kind | payload |
//! |---|---|---|
//! | 1 | big integer | sign byte (0 = positive, 1 = negative) + magnitude, big-endian |
//! | 2 | tuple | empty; a tag: the next value is an array holding the elements |
//! | 3 | set | empty; a tag: the next value is an array holding the elements |
//! | 4 | date | year i32 BE, month u8, day u8 |
//! | 5 | time | hour u8, minute u8, second u8, microsecond u32 BE |
//! | 6 | naive datetime | date payload + time payload |
//! | 7 | datetime | date payload + time payload + UTC offset in seconds, i32 BE |
//! | 8 | object reference | empty; a tag: the next value is `[id, type name, repr]` |
//! | 9 | callback | the callback's id: 16 bytes (see [`CallbackId`]) |
//! | 11 | large bytes | empty; a tag: the next value is the index of an out-of-band buffer |
//! | 10 | tensor | empty; a tag: the next value is `[dtype name, [dims...], data]`, where data is a `bin` (in band) or the index of one of the payload's out-of-band buffers |
//!
//! Tensor data, and bytes of at least [`OUT_OF_BAND_MIN`], travel out of band when the
//! encoder is given a place for buffers ([`encode_parts`], [`Writer::out_of_band`]): the
//! encoded value holds only the buffer's index, and the bytes are sent beside it without
//! being copied into the msgpack.
//! Tuples, sets and references are tags before an ordinary array so that nested containers are written
//! in one pass, without encoding the inner value to a scratch buffer first.

use bytes::Bytes;
use num_bigint::{BigInt, Sign};

use super::sink::{too_deep, write_value, Seq, Sink};
use super::{Budget, CodecError, Limits};
use crate::callback::CallbackId;
use crate::value::{DType, Date, ObjectRef, Tensor, Time, Value, MAX_DEPTH};

const EXT_BIGINT: i8 = 1;
const EXT_TUPLE: i8 = 2;
const EXT_SET: i8 = 3;
const EXT_DATE: i8 = 4;
const EXT_TIME: i8 = 5;
const EXT_NAIVE_DATETIME: i8 = 6;
const EXT_DATETIME: i8 = 7;
const EXT_REF: i8 = 8;

/// The bytes that start an object reference: an `ext 8` header with an empty payload, of
/// type [`EXT_REF`] (a tag; the reference's fields follow).
pub(crate) const REF_MARKER: [u8; 3] = [0xc7, 0x00, EXT_REF as u8];
const EXT_CALLBACK: i8 = 9;
const EXT_TENSOR: i8 = 10;
const EXT_BUFFER: i8 = 11;

/// Bytes values at least this large travel out of band (when the encoder has buffers).
pub const OUT_OF_BAND_MIN: usize = 64 << 10;

/// Encodes `value` as msgpack, tensor data in band.
pub fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut writer = Writer::in_band();
    write_value(value, &mut writer)?;
    Ok(writer.into_parts().0)
}

/// Encodes `value` as msgpack with tensor data out of band: the msgpack and the buffers
/// it refers to by index. The buffers are the tensors' own `Bytes` (nothing is copied).
pub fn encode_parts(value: &Value) -> Result<(Vec<u8>, Vec<Bytes>), CodecError> {
    let mut writer = Writer::out_of_band();
    write_value(value, &mut writer)?;
    Ok(writer.into_parts())
}

/// Writes msgpack: the [`Sink`] behind [`encode`] and [`encode_parts`], which a binding can
/// also drive straight from its own data (the NIF, from Erlang terms) without building a
/// [`Value`].
///
/// A writer [`within`](Writer::within) limits refuses, as soon as it gets there, a
/// container whose elements would overspend its budget of values and any text, bytes or
/// tensor that would take the payload past its size; [`Writer::finish`] checks the size
/// once more at the end.
#[derive(Debug)]
pub struct Writer {
    out: Vec<u8>,
    /// Where large bytes and tensor data go: in band (`None`), or out of band.
    buffers: Option<Vec<Bytes>>,
    /// Bytes in `buffers`.
    buffered: usize,
    budget: Budget,
}

impl Writer {
    /// A writer that puts all data in the msgpack (as [`encode`]).
    pub fn in_band() -> Writer {
        Writer {
            out: Vec::with_capacity(64),
            buffers: None,
            buffered: 0,
            budget: Budget::unlimited(),
        }
    }

    /// A writer that puts tensor data and large bytes in out-of-band buffers (as
    /// [`encode_parts`]).
    pub fn out_of_band() -> Writer {
        Writer {
            buffers: Some(Vec::new()),
            ..Writer::in_band()
        }
    }

    /// This writer, refusing what goes over `limits`.
    pub fn within(self, limits: Limits) -> Writer {
        Writer {
            budget: limits.budget(),
            ..self
        }
    }

    /// The msgpack written and the buffers it refers to (none when in band).
    pub fn into_parts(self) -> (Vec<u8>, Vec<Bytes>) {
        (self.out, self.buffers.unwrap_or_default())
    }

    /// [`Writer::into_parts`], refused when the whole is over the writer's size limit.
    pub fn finish(self) -> Result<(Vec<u8>, Vec<Bytes>), CodecError> {
        self.room(0)?;
        Ok(self.into_parts())
    }

    /// Refuses writing `more` bytes when they would take the payload past its limit.
    #[inline]
    fn room(&self, more: usize) -> Result<(), CodecError> {
        self.budget
            .check_size(self.out.len() + self.buffered + more)
    }
}

// Writing into a Vec cannot fail: the rmp writers' errors are mapped, never expected.
impl Sink for Writer {
    type Out = ();

    fn nil(&mut self) -> Result<(), CodecError> {
        self.out.push(0xc0);
        Ok(())
    }

    fn bool(&mut self, b: bool) -> Result<(), CodecError> {
        self.out.push(if b { 0xc3 } else { 0xc2 });
        Ok(())
    }

    fn int(&mut self, n: i64) -> Result<(), CodecError> {
        rmp::encode::write_sint(&mut self.out, n).map_err(CodecError::io)?;
        Ok(())
    }

    fn big_int(&mut self, n: &BigInt) -> Result<(), CodecError> {
        let (sign, magnitude) = n.to_bytes_be();
        write_ext_header(&mut self.out, EXT_BIGINT, 1 + magnitude.len())?;
        self.out.push(u8::from(sign == Sign::Minus));
        self.out.extend_from_slice(&magnitude);
        Ok(())
    }

    fn float(&mut self, f: f64) -> Result<(), CodecError> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&f.to_be_bytes());
        Ok(())
    }

    fn str(&mut self, s: &str) -> Result<(), CodecError> {
        self.room(s.len())?;
        write_str(&mut self.out, s)
    }

    fn bytes(&mut self, data: &[u8], keep: impl FnOnce() -> Bytes) -> Result<(), CodecError> {
        self.room(data.len())?;
        match &mut self.buffers {
            Some(buffers) if data.len() >= OUT_OF_BAND_MIN => {
                write_ext_header(&mut self.out, EXT_BUFFER, 0)?;
                rmp::encode::write_uint(&mut self.out, buffers.len() as u64)
                    .map_err(CodecError::io)?;
                buffers.push(keep());
                self.buffered += data.len();
            }
            _ => write_bin(&mut self.out, data)?,
        }
        Ok(())
    }

    fn date(&mut self, d: Date) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_DATE, 6)?;
        put_date(&mut self.out, &d);
        Ok(())
    }

    fn time(&mut self, t: Time) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_TIME, 7)?;
        put_time(&mut self.out, &t);
        Ok(())
    }

    fn naive_datetime(&mut self, d: Date, t: Time) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_NAIVE_DATETIME, 13)?;
        put_date(&mut self.out, &d);
        put_time(&mut self.out, &t);
        Ok(())
    }

    fn datetime(&mut self, d: Date, t: Time, offset: i32) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_DATETIME, 17)?;
        put_date(&mut self.out, &d);
        put_time(&mut self.out, &t);
        self.out.extend_from_slice(&offset.to_be_bytes());
        Ok(())
    }

    fn object_ref(&mut self, r: &ObjectRef) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_REF, 0)?;
        self.out.push(0x93);
        rmp::encode::write_uint(&mut self.out, r.id).map_err(CodecError::io)?;
        write_str(&mut self.out, &r.type_name)?;
        write_str(&mut self.out, &r.repr)
    }

    fn callback(&mut self, id: CallbackId) -> Result<(), CodecError> {
        write_ext_header(&mut self.out, EXT_CALLBACK, CallbackId::LEN)?;
        self.out.extend_from_slice(id.as_bytes());
        Ok(())
    }

    fn tensor(
        &mut self,
        dtype: DType,
        shape: &[u64],
        data: &[u8],
        keep: impl FnOnce() -> Bytes,
    ) -> Result<(), CodecError> {
        self.room(data.len())?;
        let out = &mut self.out;
        write_ext_header(out, EXT_TENSOR, 0)?;
        out.push(0x93);
        write_str(out, dtype.name())?;
        rmp::encode::write_array_len(out, len32(shape.len())?).map_err(CodecError::io)?;
        for dim in shape {
            rmp::encode::write_uint(out, *dim).map_err(CodecError::io)?;
        }
        match &mut self.buffers {
            Some(buffers) => {
                rmp::encode::write_uint(out, buffers.len() as u64).map_err(CodecError::io)?;
                buffers.push(keep());
                self.buffered += data.len();
            }
            None => write_bin(out, data)?,
        }
        Ok(())
    }

    fn seq<E: From<CodecError>>(
        &mut self,
        kind: Seq,
        len: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.budget.spend(len)?;
        self.room(0)?;
        match kind {
            Seq::List => {}
            Seq::Tuple => write_ext_header(&mut self.out, EXT_TUPLE, 0)?,
            Seq::Set => write_ext_header(&mut self.out, EXT_SET, 0)?,
        }
        rmp::encode::write_array_len(&mut self.out, len32(len)?).map_err(CodecError::io)?;
        for _ in 0..len {
            item(self)?;
        }
        Ok(())
    }

    fn map<E: From<CodecError>>(
        &mut self,
        len: usize,
        mut entry: impl FnMut(&mut Self) -> Result<((), ()), E>,
    ) -> Result<(), E> {
        self.budget.spend_entries(len)?;
        self.room(0)?;
        rmp::encode::write_map_len(&mut self.out, len32(len)?).map_err(CodecError::io)?;
        for _ in 0..len {
            entry(self)?;
        }
        Ok(())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    rmp::encode::write_str_len(out, len32(s.len())?).map_err(CodecError::io)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_bin(out: &mut Vec<u8>, data: &[u8]) -> Result<(), CodecError> {
    rmp::encode::write_bin_len(out, len32(data.len())?).map_err(CodecError::io)?;
    out.extend_from_slice(data);
    Ok(())
}

fn len32(len: usize) -> Result<u32, CodecError> {
    u32::try_from(len)
        .map_err(|_| CodecError::new(format!("length {len} exceeds msgpack's 2^32-1")))
}

fn write_ext_header(out: &mut Vec<u8>, ty: i8, len: usize) -> Result<(), CodecError> {
    // rmp picks fixext for 1/2/4/8/16 bytes and ext8/16/32 otherwise (including 0 bytes).
    rmp::encode::write_ext_meta(out, len32(len)?, ty).map_err(CodecError::io)?;
    Ok(())
}

fn put_date(out: &mut Vec<u8>, d: &Date) {
    out.extend_from_slice(&d.year.to_be_bytes());
    out.push(d.month);
    out.push(d.day);
}

fn put_time(out: &mut Vec<u8>, t: &Time) {
    out.push(t.hour);
    out.push(t.minute);
    out.push(t.second);
    out.extend_from_slice(&t.microsecond.to_be_bytes());
}

/// Decodes exactly one msgpack value from `bytes`; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    decode_parts(bytes, &[])
}

/// Decodes exactly one msgpack value from `bytes` whose tensors may refer to `buffers`
/// (their data is then a cheap clone of the buffer, not a copy).
pub fn decode_parts(bytes: &[u8], buffers: &[Bytes]) -> Result<Value, CodecError> {
    decode_within(bytes, buffers, Limits::NONE)
}

/// [`decode_parts`], refusing a value that holds more values than `limits` allow at the
/// header of the container that would overspend them, before its elements are built.
/// (The payload's size is the caller's to check: it has the bytes already.)
pub fn decode_within(bytes: &[u8], buffers: &[Bytes], limits: Limits) -> Result<Value, CodecError> {
    let mut reader = Reader {
        bytes,
        pos: 0,
        buffers,
        limit: MAX_DEPTH,
        budget: limits.budget(),
    };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(reader.error(format!(
            "{} trailing bytes after the value",
            bytes.len() - reader.pos
        )));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    buffers: &'a [Bytes],
    /// The deepest a value read now may be: [`MAX_DEPTH`], or a few levels more inside the
    /// payload of a leaf's tag (see [`Reader::leaf_payload`]).
    limit: usize,
    /// The values the payload may still hold.
    budget: Budget,
}

/// Elements allocated up front for an array or map: its header's count is only a claim
/// (a few bytes can announce millions), so larger ones grow as their elements arrive.
const PREALLOCATE_MAX: usize = 4096;

/// Levels the payload after a leaf's tag takes below the leaf (a tensor's
/// `[dtype, [dims...], data]`), which the writer does not count as nesting.
const LEAF_PAYLOAD_DEPTH: usize = 3;

/// A non-negative integer as the writer writes ids, indices and dimensions (`write_uint`):
/// beyond `i64::MAX` it decodes as a big integer.
fn unsigned(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BigInt(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> CodecError {
        CodecError::new(format!("msgpack at byte {}: {}", self.pos, message.into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error(format!("needs {n} more bytes, input ends")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let slice = self.take(N)?;
        let mut buf = [0u8; N];
        buf.copy_from_slice(slice);
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a length-prefixed count, refusing counts the remaining input cannot hold
    /// (every element takes at least one byte), so a hostile header cannot make us allocate.
    fn count(&mut self, n: usize) -> Result<usize, CodecError> {
        if n > self.bytes.len() - self.pos {
            return Err(self.error(format!("announces {n} elements, input is shorter")));
        }
        Ok(n)
    }

    fn str(&mut self, len: usize) -> Result<Value, CodecError> {
        let start = self.pos;
        let raw = self.take(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Value::Str(s.to_owned())),
            Err(e) => Err(CodecError::new(format!(
                "msgpack at byte {start}: str is not valid UTF-8 ({e})"
            ))),
        }
    }

    fn bin(&mut self, len: usize) -> Result<Value, CodecError> {
        Ok(Value::Bytes(Bytes::copy_from_slice(self.take(len)?)))
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Vec<Value>, CodecError> {
        let len = self.count(len)?;
        self.budget.spend(len)?;
        let mut items = Vec::with_capacity(len.min(PREALLOCATE_MAX));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(items)
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, CodecError> {
        let len = self.count(len)?;
        self.budget.spend_entries(len)?;
        let mut pairs = Vec::with_capacity(len.min(PREALLOCATE_MAX));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > self.limit {
            return Err(too_deep());
        }
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => Value::Int(i64::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => Value::List(self.seq(usize::from(marker & 0x0f), depth)?),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.u8()?;
                self.bin(usize::from(n))?
            }
            0xc5 => {
                let n = self.u16()?;
                self.bin(usize::from(n))?
            }
            0xc6 => {
                let n = self.u32()?;
                self.bin(n as usize)?
            }
            0xc7 => {
                let n = self.u8()?;
                self.ext(usize::from(n), depth)?
            }
            0xc8 => {
                let n = self.u16()?;
                self.ext(usize::from(n), depth)?
            }
            0xc9 => {
                let n = self.u32()?;
                self.ext(n as usize, depth)?
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Value::Int(i64::from(self.u8()?)),
            0xcd => Value::Int(i64::from(self.u16()?)),
            0xce => Value::Int(i64::from(self.u32()?)),
            0xcf => {
                let n = self.u64()?;
                match i64::try_from(n) {
                    Ok(small) => Value::Int(small),
                    Err(_) => Value::BigInt(BigInt::from(n)),
                }
            }
            0xd0 => Value::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1, depth)?,
            0xd5 => self.ext(2, depth)?,
            0xd6 => self.ext(4, depth)?,
            0xd7 => self.ext(8, depth)?,
            0xd8 => self.ext(16, depth)?,
            0xd9 => {
                let n = self.u8()?;
                self.str(usize::from(n))?
            }
            0xda => {
                let n = self.u16()?;
                self.str(usize::from(n))?
            }
            0xdb => {
                let n = self.u32()?;
                self.str(n as usize)?
            }
            0xdc => {
                let n = self.u16()?;
                Value::List(self.seq(usize::from(n), depth)?)
            }
            0xdd => {
                let n = self.u32()?;
                Value::List(self.seq(n as usize, depth)?)
            }
            0xde => {
                let n = self.u16()?;
                self.map(usize::from(n), depth)?
            }
            0xdf => {
                let n = self.u32()?;
                self.map(n as usize, depth)?
            }
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
            0xc1 => return Err(self.error("marker 0xc1 is never used")),
        })
    }

    fn ext(&mut self, len: usize, depth: usize) -> Result<Value, CodecError> {
        let ty = i8::from_be_bytes(self.array()?);
        let start = self.pos;
        let payload = self.take(len)?;
        let bad = |what: &str| {
            CodecError::new(format!(
                "msgpack at byte {start}: malformed {what} extension ({len} bytes)"
            ))
        };
        match ty {
            EXT_BIGINT => {
                let (&sign, magnitude) = payload.split_first().ok_or_else(|| bad("integer"))?;
                let sign = match sign {
                    0 => Sign::Plus,
                    1 => Sign::Minus,
                    _ => return Err(bad("integer")),
                };
                Ok(Value::integer(BigInt::from_bytes_be(sign, magnitude)))
            }
            EXT_TUPLE | EXT_SET => {
                if len != 0 {
                    return Err(bad("tuple/set tag"));
                }
                let items = self.tagged_array(depth)?;
                Ok(if ty == EXT_TUPLE {
                    Value::Tuple(items)
                } else {
                    Value::Set(items)
                })
            }
            EXT_REF => {
                if len != 0 {
                    return Err(bad("reference tag"));
                }
                match self.leaf_payload(depth)? {
                    Value::List(items) => match items.as_slice() {
                        [id, Value::Str(type_name), Value::Str(repr)] => match unsigned(id) {
                            Some(id) => Ok(Value::Ref(ObjectRef {
                                id,
                                type_name: type_name.clone(),
                                repr: repr.clone(),
                            })),
                            None => Err(self.error("a reference's id must be a u64")),
                        },
                        _ => Err(self.error("a reference must be [id, type name, repr]")),
                    },
                    other => Err(self.error(format!(
                        "a reference tag must be followed by an array, found {}",
                        other.kind()
                    ))),
                }
            }
            EXT_CALLBACK => CallbackId::from_slice(payload)
                .map(Value::Callback)
                .ok_or_else(|| bad("callback")),
            EXT_BUFFER => {
                if len != 0 {
                    return Err(bad("buffer tag"));
                }
                match self.leaf_payload(depth)? {
                    Value::Int(i) if i >= 0 => self
                        .buffers
                        .get(i as usize)
                        .cloned()
                        .map(Value::Bytes)
                        .ok_or_else(|| {
                            self.error(format!(
                                "bytes refer to buffer {i}, the payload has {}",
                                self.buffers.len()
                            ))
                        }),
                    other => Err(self.error(format!(
                        "a buffer tag must be followed by its index, found {}",
                        other.kind()
                    ))),
                }
            }
            EXT_TENSOR => {
                if len != 0 {
                    return Err(bad("tensor tag"));
                }
                self.tensor(depth)
            }
            EXT_DATE if len == 6 => Ok(Value::Date(get_date(payload))),
            EXT_TIME if len == 7 => Ok(Value::Time(get_time(payload))),
            EXT_NAIVE_DATETIME if len == 13 => Ok(Value::NaiveDateTime(
                get_date(payload),
                get_time(&payload[6..]),
            )),
            EXT_DATETIME if len == 17 => {
                let mut off = [0u8; 4];
                off.copy_from_slice(&payload[13..17]);
                Ok(Value::DateTime(
                    get_date(payload),
                    get_time(&payload[6..]),
                    i32::from_be_bytes(off),
                ))
            }
            EXT_DATE | EXT_TIME | EXT_NAIVE_DATETIME | EXT_DATETIME => Err(bad("date/time")),
            other => Err(CodecError::new(format!(
                "msgpack at byte {start}: unknown extension type {other}"
            ))),
        }
    }
}

impl Reader<'_> {
    /// The array right after a tuple or set tag, read as the tagged value itself: its
    /// items one level down, as the writer counts them.
    fn tagged_array(&mut self, depth: usize) -> Result<Vec<Value>, CodecError> {
        let at = self.pos;
        let len = match self.u8()? {
            marker @ 0x90..=0x9f => usize::from(marker & 0x0f),
            0xdc => usize::from(self.u16()?),
            0xdd => self.u32()? as usize,
            _ => {
                self.pos = at;
                let other = self.value(depth + 1)?;
                return Err(self.error(format!(
                    "a tuple/set tag must be followed by an array, found {}",
                    other.kind()
                )));
            }
        };
        self.seq(len, depth)
    }

    /// The value after the tag of a leaf (reference, callback, buffer, tensor): one level
    /// down, but allowed [`LEAF_PAYLOAD_DEPTH`] levels past [`MAX_DEPTH`], since the writer
    /// counts the leaf only. Still deeper with each level, so tags nested in tags end.
    fn leaf_payload(&mut self, depth: usize) -> Result<Value, CodecError> {
        let limit = std::mem::replace(&mut self.limit, MAX_DEPTH + LEAF_PAYLOAD_DEPTH);
        let payload = self.value(depth + 1);
        self.limit = limit;
        payload
    }

    /// The `[dtype, shape, data]` after a tensor tag.
    fn tensor(&mut self, depth: usize) -> Result<Value, CodecError> {
        let at = self.pos;
        let fail = |message: String| CodecError::new(format!("msgpack at byte {at}: {message}"));
        let Value::List(parts) = self.leaf_payload(depth)? else {
            return Err(fail("a tensor tag must be followed by an array".into()));
        };
        let [Value::Str(dtype), Value::List(dims), data] = parts.as_slice() else {
            return Err(fail("a tensor must be [dtype, shape, data]".into()));
        };
        let dtype = DType::from_name(dtype)
            .ok_or_else(|| fail(format!("unknown tensor dtype {dtype:?}")))?;
        let shape = dims
            .iter()
            .map(|d| {
                unsigned(d).ok_or_else(|| {
                    fail("a tensor's dimensions must be non-negative integers".into())
                })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let data = match data {
            Value::Bytes(bytes) => bytes.clone(),
            Value::Int(i) => self
                .buffers
                .get(usize::try_from(*i).unwrap_or(usize::MAX))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "tensor data refers to buffer {i}, the payload has {}",
                        self.buffers.len()
                    ))
                })?,
            other => {
                return Err(fail(format!(
                    "tensor data must be bytes or a buffer index, found {}",
                    other.kind()
                )))
            }
        };
        Tensor::new(dtype, shape, data)
            .map(Value::Tensor)
            .map_err(fail)
    }
}

fn get_date(p: &[u8]) -> Date {
    Date {
        year: i32::from_be_bytes([p[0], p[1], p[2], p[3]]),
        month: p[4],
        day: p[5],
    }
}

fn get_time(p: &[u8]) -> Time {
    Time {
        hour: p[0],
        minute: p[1],
        second: p[2],
        microsecond: u32::from_be_bytes([p[3], p[4], p[5], p[6]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_reference_starts_with_the_ref_marker() {
        let value = Value::Ref(ObjectRef {
            id: 7,
            type_name: "t".into(),
            repr: "r".into(),
        });
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes[..REF_MARKER.len()], REF_MARKER);
    }
    use proptest::prelude::*;

    fn round_trip(v: &Value) -> Value {
        decode(&encode(v).expect("encodes")).expect("decodes")
    }

    #[test]
    fn every_kind_round_trips() {
        let date = Date {
            year: 2026,
            month: 11,
            day: 24,
        };
        let time = Time {
            hour: 23,
            minute: 59,
            second: 1,
            microsecond: 999_999,
        };
        let big = BigInt::parse_bytes(b"-123456789012345678901234567890", 10).unwrap();
        let values = vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-1),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::BigInt(big),
            Value::BigInt(BigInt::from(u64::MAX) * 7),
            Value::Float(1.5),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Str("héllo ☃".into()),
            Value::Bytes(Bytes::from_static(&[0, 255, 1])),
            Value::List(vec![Value::Int(1), Value::Nil]),
            Value::Tuple(vec![]),
            Value::Tuple(vec![Value::Tuple(vec![Value::Int(1)])]),
            Value::Set(vec![Value::Int(1), Value::Str("a".into())]),
            Value::Map(vec![
                (Value::Int(1), Value::Str("one".into())),
                (
                    Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                    Value::Map(vec![]),
                ),
            ]),
            Value::Date(date),
            Value::Time(time),
            Value::NaiveDateTime(date, time),
            Value::DateTime(date, time, -3600),
            Value::Ref(ObjectRef {
                id: 42,
                type_name: "pathlib.PosixPath".into(),
                repr: "PosixPath('/tmp')".into(),
            }),
            Value::Ref(ObjectRef::default()),
            Value::Callback(CallbackId::random()),
        ];
        for v in &values {
            assert_eq!(&round_trip(v), v);
        }
    }

    fn tensor(dtype: DType, shape: Vec<u64>) -> Value {
        let n: u64 = shape.iter().product::<u64>() * dtype.size() as u64;
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        Value::Tensor(Tensor::new(dtype, shape, Bytes::from(data)).unwrap())
    }

    #[test]
    fn tensors_round_trip_in_band_and_out_of_band() {
        let values = Value::List(vec![
            tensor(DType::F32, vec![2, 3]),
            tensor(DType::C128, vec![]),
            tensor(DType::Bool, vec![0, 4]),
            Value::Map(vec![(Value::Str("w".into()), tensor(DType::BF16, vec![5]))]),
        ]);
        assert_eq!(round_trip(&values), values);
        let (data, buffers) = encode_parts(&values).unwrap();
        assert_eq!(buffers.len(), 4);
        // The msgpack holds no tensor data; the buffers are the tensors' own bytes.
        assert!(data.len() < 100);
        let Value::List(items) = &values else {
            unreachable!()
        };
        let Value::Tensor(first) = &items[0] else {
            unreachable!()
        };
        assert_eq!(buffers[0].as_ptr(), first.data.as_ptr());
        assert_eq!(decode_parts(&data, &buffers).unwrap(), values);
    }

    #[test]
    fn large_bytes_travel_out_of_band() {
        let big = Bytes::from(vec![7u8; OUT_OF_BAND_MIN]);
        let small = Bytes::from_static(b"abc");
        let value = Value::List(vec![Value::Bytes(big.clone()), Value::Bytes(small)]);
        let (data, buffers) = encode_parts(&value).unwrap();
        assert_eq!(buffers.len(), 1);
        assert_eq!(buffers[0].as_ptr(), big.as_ptr());
        assert!(data.len() < 32);
        assert_eq!(decode_parts(&data, &buffers).unwrap(), value);
        // Without a place for buffers they stay in band.
        assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn malformed_tensors_are_errors() {
        let (data, buffers) = encode_parts(&tensor(DType::F64, vec![3])).unwrap();
        assert!(decode_parts(&data, &[])
            .unwrap_err()
            .to_string()
            .contains("buffer 0, the payload has 0"));
        let short = vec![buffers[0].slice(0..8)];
        assert!(decode_parts(&data, &short)
            .unwrap_err()
            .to_string()
            .contains("needs 24 bytes"));
        let mut bad_dtype = encode(&tensor(DType::U8, vec![1])).unwrap();
        let at = bad_dtype.windows(5).position(|w| w == b"uint8").unwrap();
        bad_dtype[at] = b'v';
        assert!(decode(&bad_dtype)
            .unwrap_err()
            .to_string()
            .contains("unknown tensor dtype"));
    }

    #[test]
    fn kinds_beyond_plain_msgpack_are_written_as_the_table_says() {
        let date = Date {
            year: 2026,
            month: 11,
            day: 25,
        };
        let time = Time {
            hour: 1,
            minute: 2,
            second: 3,
            microsecond: 40,
        };
        let u8s = Tensor::new(DType::U8, vec![2], Bytes::from_static(&[7, 8])).unwrap();
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (Value::Tuple(vec![Value::Int(1)]), vec![0xc7, 0, 2, 0x91, 1]),
            (Value::Set(vec![]), vec![0xc7, 0, 3, 0x90]),
            (
                Value::integer(-BigInt::from(1u128 << 64)),
                vec![0xc7, 10, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                Value::Date(date),
                vec![0xc7, 6, 4, 0, 0, 0x07, 0xea, 11, 25],
            ),
            (Value::Time(time), vec![0xc7, 7, 5, 1, 2, 3, 0, 0, 0, 40]),
            (
                Value::DateTime(date, time, -1),
                vec![
                    0xc7, 17, 7, 0, 0, 0x07, 0xea, 11, 25, 1, 2, 3, 0, 0, 0, 40, 0xff, 0xff, 0xff,
                    0xff,
                ],
            ),
            (
                Value::Ref(ObjectRef {
                    id: 5,
                    type_name: "t".into(),
                    repr: "r".into(),
                }),
                vec![0xc7, 0, 8, 0x93, 5, 0xa1, b't', 0xa1, b'r'],
            ),
            (
                Value::Callback(CallbackId::from_bytes([9; 16])),
                [&[0xd8, 9][..], &[9; 16]].concat(),
            ),
            (
                Value::Tensor(u8s),
                [
                    &[0xc7, 0, 10, 0x93, 0xa5][..],
                    b"uint8",
                    &[0x91, 2, 0xc4, 2, 7, 8],
                ]
                .concat(),
            ),
            (
                Value::Bytes(Bytes::from_static(&[7, 8])),
                vec![0xc4, 2, 7, 8],
            ),
            (Value::Float(1.5), vec![0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode(&value).unwrap(), bytes, "{value:?}");
        }
    }

    #[test]
    fn nan_survives() {
        match round_trip(&Value::Float(f64::NAN)) {
            Value::Float(f) => assert!(f.is_nan()),
            other => panic!("expected a float, got {other:?}"),
        }
    }

    #[test]
    fn u64_beyond_i64_becomes_a_big_integer() {
        let mut bytes = vec![0xcf];
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            decode(&bytes).unwrap(),
            Value::BigInt(BigInt::from(u64::MAX))
        );
    }

    fn limits(max_payload_size: usize, max_elements: usize) -> Limits {
        crate::codec::Budgets {
            max_payload_size,
            max_result_size: max_payload_size,
            max_elements,
        }
        .from_python("the result")
    }

    #[test]
    fn a_hundred_million_elements_are_refused_at_their_header() {
        // [0, 0, ...]: an array32 header and 100M positive fixints, each one byte. The
        // element after the header is malformed (0xc1 is never used): only a decoder that
        // refuses at the header, before reading or building an element, reports the budget.
        let n: u32 = 100_000_000;
        let mut bytes = Vec::with_capacity(5 + n as usize);
        bytes.push(0xdd);
        bytes.extend_from_slice(&n.to_be_bytes());
        bytes.resize(5 + n as usize, 0);
        bytes[5] = 0xc1;
        let err = decode_within(&bytes, &[], limits(usize::MAX, 10_000_000)).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        assert!(
            err.to_string().contains("max_elements of 10000000"),
            "{err}"
        );
        // Without a budget the same bytes get as far as the malformed element.
        let err = decode(&bytes).unwrap_err();
        assert!(
            !err.is_too_large() && err.to_string().contains("0xc1"),
            "{err}"
        );
    }

    #[test]
    fn values_nested_anywhere_count_against_one_budget() {
        let row = |n: i64| Value::Map(vec![(Value::Str("id".into()), Value::Int(n))]);
        // 3 rows of 2 values each, and the 3 rows themselves: 9.
        let value = Value::List((0..3).map(row).collect());
        let bytes = encode(&value).unwrap();
        assert_eq!(
            decode_within(&bytes, &[], limits(usize::MAX, 9)).unwrap(),
            value
        );
        let err = decode_within(&bytes, &[], limits(usize::MAX, 8)).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn a_writer_within_limits_stops_where_the_payload_goes_over_them() {
        let many = Value::List(vec![Value::Int(1); 11]);
        let mut writer = Writer::out_of_band().within(limits(usize::MAX, 10));
        let err = write_value(&many, &mut writer).unwrap_err();
        assert!(
            err.is_too_large() && err.to_string().contains("max_elements"),
            "{err}"
        );

        // A large text is refused before it is copied; buffers count too.
        let text = Value::Str("x".repeat(1000));
        let mut writer = Writer::out_of_band().within(limits(999, usize::MAX));
        let err = write_value(&text, &mut writer).unwrap_err();
        assert!(
            err.to_string().contains("max_result_size of 999 bytes"),
            "{err}"
        );
        assert!(writer.into_parts().0.is_empty());
        let big = Value::Bytes(Bytes::from(vec![0u8; OUT_OF_BAND_MIN]));
        let two = Value::List(vec![big.clone(), big]);
        let mut writer = Writer::out_of_band().within(limits(OUT_OF_BAND_MIN + 100, 10));
        assert!(write_value(&two, &mut writer).unwrap_err().is_too_large());

        // Many small values are caught by the final check.
        let ints = Value::List(vec![Value::Int(1000); 100]);
        let mut writer = Writer::out_of_band().within(limits(200, usize::MAX));
        write_value(&ints, &mut writer).unwrap();
        assert!(writer.finish().unwrap_err().is_too_large());
    }

    #[test]
    fn nesting_past_the_limit_is_refused_not_overflowed() {
        // The decoder's frames in a debug build take more than a test thread's 2 MiB
        // at the limit (release builds need a fraction of that, see tests/deep_nesting.rs).
        let checks = || {
            let mut v = Value::Nil;
            for _ in 0..(MAX_DEPTH + 5) {
                v = Value::List(vec![v]);
            }
            assert!(encode(&v).unwrap_err().to_string().contains("nested"));
            // Hand-made deep input: MAX_DEPTH + 5 one-element arrays.
            let mut bytes = vec![0x91; MAX_DEPTH + 5];
            bytes.push(0xc0);
            assert!(decode(&bytes).unwrap_err().to_string().contains("nested"));
        };
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(checks)
            .expect("thread starts")
            .join()
            .expect("no panic");
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_offset() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0xc1]).unwrap_err().to_string().contains("byte 1"));
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xa3, b'a']).is_err());
        assert!(decode(&[0xa1, 0xff])
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        assert!(decode(&[0xc0, 0xc0])
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        assert!(decode(&[0xd4, 99, 0])
            .unwrap_err()
            .to_string()
            .contains("unknown"));
    }

    proptest! {
        #[test]
        fn any_value_round_trips(v in crate::codec::sink::tests::arb_value()) {
            prop_assert_eq!(round_trip(&v), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
