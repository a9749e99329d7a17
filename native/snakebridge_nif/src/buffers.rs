//! Large binaries between the BEAM and the core without copying them.
//!
//! Towards Python, a large binary is kept alive by an owned environment that holds the
//! term, and the core reads its bytes in place ([`bytes_of`]): encoding on the caller's
//! scheduler costs no copy. From Python, a large buffer (received zero-copy out of a gRPC
//! message) becomes a resource binary over the same memory ([`binary_term`]).

use rustler::{Binary, Encoder, Env, NewBinary, OwnedEnv, ResourceArc, Term};
use snakebridge_core::bytes::Bytes;

/// Binaries smaller than this are copied: holding them costs more than copying.
const ZERO_COPY_MIN: usize = 4096;

/// A binary term kept alive outside its process, with the address of its bytes.
struct HeldBinary {
    _env: OwnedEnv,
    ptr: *const u8,
    len: usize,
}

// The bytes belong to a reference-counted binary that the owned env keeps alive and that
// nothing mutates; the env itself may be dropped from any thread.
unsafe impl Send for HeldBinary {}

impl AsRef<[u8]> for HeldBinary {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` describe the binary held by `_env`, valid while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The bytes of `bin` (the binary `term`), without copying large ones.
pub(crate) fn bytes_of(term: Term, bin: &Binary) -> Bytes {
    if bin.len() < ZERO_COPY_MIN {
        return Bytes::copy_from_slice(bin.as_slice());
    }
    let env = OwnedEnv::new();
    let saved = env.save(term);
    let held = env.run(|env| {
        Binary::from_term(saved.load(env))
            .ok()
            .map(|b| (b.as_slice().as_ptr(), b.len()))
    });
    match held {
        Some((ptr, len)) => Bytes::from_owner(HeldBinary {
            _env: env,
            ptr,
            len,
        }),
        None => Bytes::copy_from_slice(bin.as_slice()),
    }
}

/// A core buffer kept alive for as long as a binary refers to it.
struct BufferResource(Bytes);

#[rustler::resource_impl]
impl rustler::Resource for BufferResource {}

/// A binary term with the bytes of `bytes`: a resource binary over the same memory when it
/// is large, else a copy.
pub(crate) fn binary_term<'a>(env: Env<'a>, bytes: &Bytes) -> Term<'a> {
    if bytes.len() < ZERO_COPY_MIN {
        let mut bin = NewBinary::new(env, bytes.len());
        bin.as_mut_slice().copy_from_slice(bytes);
        return Binary::from(bin).to_term(env);
    }
    let resource = ResourceArc::new(BufferResource(bytes.clone()));
    resource.make_binary(env, |r| &r.0[..]).encode(env)
}
