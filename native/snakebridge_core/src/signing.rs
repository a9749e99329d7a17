//! Signed config manifests: ed25519 signatures (`ed25519-dalek`) over a manifest's bytes.
//!
//! A manifest `dspy.exs` is signed by a file `dspy.exs.sig` beside it holding one line,
//! `ed25519 <public key, hex> <signature, hex>`. A manifest whose bytes changed after
//! signing no longer verifies; with trusted keys configured, a signature by any other key
//! is refused too. Keys are 32 bytes, written as 64 hex digits.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::hex::{decode as decode_hex, encode as hex};

/// A new key pair: (secret key, public key), hex.
pub fn keygen() -> (String, String) {
    let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    (
        hex(&signing.to_bytes()),
        hex(&signing.verifying_key().to_bytes()),
    )
}

/// The public key (hex) of a secret key (hex).
pub fn public_key(secret_hex: &str) -> Result<String, String> {
    let signing = SigningKey::from_bytes(&key_bytes(secret_hex, "secret key")?);
    Ok(hex(&signing.verifying_key().to_bytes()))
}

/// The signature file's line for `message` signed with `secret_hex`.
pub fn sign(message: &[u8], secret_hex: &str) -> Result<String, String> {
    let signing = SigningKey::from_bytes(&key_bytes(secret_hex, "secret key")?);
    let signature = signing.sign(message);
    Ok(format!(
        "ed25519 {} {}\n",
        hex(&signing.verifying_key().to_bytes()),
        hex(&signature.to_bytes())
    ))
}

/// Checks the signature file `signature_line` over `message`: its key must be one of
/// `trusted` (hex public keys; any key when empty) and its signature must verify. Returns
/// the signer's public key.
pub fn verify(message: &[u8], signature_line: &str, trusted: &[String]) -> Result<String, String> {
    let mut fields = signature_line.split_whitespace();
    let (Some("ed25519"), Some(key), Some(signature), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("the signature file is not `ed25519 <public key> <signature>`".to_owned());
    };
    let key = key.to_ascii_lowercase();
    if !trusted.is_empty() && !trusted.iter().any(|t| t.eq_ignore_ascii_case(&key)) {
        return Err(format!(
            "it is signed by {key}, which is not a trusted manifest key"
        ));
    }
    let verifying = VerifyingKey::from_bytes(&key_bytes(&key, "public key")?)
        .map_err(|e| format!("bad public key: {e}"))?;
    let bytes = decode_hex(signature)
        .filter(|b| b.len() == 64)
        .ok_or("the signature is not 128 hex digits")?;
    let mut array = [0u8; 64];
    array.copy_from_slice(&bytes);
    verifying
        .verify_strict(message, &Signature::from_bytes(&array))
        .map_err(|_| {
            "the signature does not match: the manifest changed after it was signed".to_owned()
        })?;
    Ok(key)
}

fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = decode_hex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("the {what} is not 64 hex digits"))?;
    let mut array = [0u8; 32];
    array.copy_from_slice(&bytes);
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_manifest_verifies_until_it_changes() {
        let (secret, public) = keygen();
        assert_eq!(public_key(&secret).unwrap(), public);
        let manifest = b"%{python_module: \"json\"}\n";
        let line = sign(manifest, &secret).unwrap();
        assert!(line.starts_with(&format!("ed25519 {public} ")));
        assert_eq!(verify(manifest, &line, &[]).unwrap(), public);
        assert_eq!(
            verify(manifest, &line, &[public.to_uppercase()]).unwrap(),
            public
        );

        let err = verify(b"%{python_module: \"os\"}\n", &line, &[]).unwrap_err();
        assert!(err.contains("changed after it was signed"), "{err}");
        let (_, other) = keygen();
        let err = verify(manifest, &line, &[other]).unwrap_err();
        assert!(err.contains("not a trusted manifest key"), "{err}");
    }

    #[test]
    fn malformed_signatures_and_keys_are_errors() {
        let (secret, public) = keygen();
        for line in [
            "",
            "rsa abc def",
            &format!("ed25519 {public}"),
            &format!("ed25519 {public} zz"),
            &format!("ed25519 abcd {}", "00".repeat(64)),
            &format!("ed25519 {public} {} extra", "00".repeat(64)),
        ] {
            assert!(verify(b"x", line, &[]).is_err(), "{line:?}");
        }
        assert!(verify(b"x", &format!("ed25519 {public} {}", "00".repeat(64)), &[]).is_err());
        assert!(sign(b"x", "short").is_err());
        assert!(sign(b"x", &secret).is_ok());
    }
}
