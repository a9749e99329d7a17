//! Signed config manifests (see `snakebridge_core::signing`). Each NIF is a few
//! microseconds of hashing: a normal scheduler is fine.

use rustler::Binary;
use snakebridge_core::signing;

/// `{secret_key_hex, public_key_hex}`.
#[rustler::nif]
fn manifest_keygen() -> (String, String) {
    signing::keygen()
}

/// `{:ok, signature_file_line}` or `{:error, message}`.
#[rustler::nif]
fn manifest_sign(manifest: Binary, secret_key: String) -> Result<String, String> {
    signing::sign(manifest.as_slice(), &secret_key)
}

/// `{:ok, signer_public_key_hex}` or `{:error, message}`.
#[rustler::nif]
fn manifest_verify(
    manifest: Binary,
    signature_line: String,
    trusted_keys: Vec<String>,
) -> Result<String, String> {
    signing::verify(manifest.as_slice(), &signature_line, &trusted_keys)
}
