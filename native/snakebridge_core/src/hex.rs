//! Lowercase hexadecimal, for hashes, tokens and keys.

/// `bytes` as lowercase hex, two digits per byte.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// The bytes of hex `text` (either case), or `None` if it is not an even number of hex
/// digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_lowercase_and_padded() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::encode(&[]), "");
        assert_eq!(
            super::decode("000FabfF"),
            Some(vec![0x00, 0x0f, 0xab, 0xff])
        );
        for bad in ["0", "zz", "0g", "é0"] {
            assert_eq!(super::decode(bad), None, "{bad}");
        }
    }
}
