//! Secret values (an integration's resolved `{:system, "ENV"}`) kept out of what
//! SnakeBridge reports.
//!
//! Pools register the secrets they hand to Python; every text that comes back from a
//! worker and may end up in an error, a log or an `inspect` (Python exception messages
//! and tracebacks, worker stderr, describe failures) passes through [`scrub`], which
//! replaces each registered value with [`REDACTED`]. The registry is process-wide: a value
//! secret for one pool is redacted everywhere, which costs nothing and leaks nothing.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not redacted (they would blank out ordinary words).
pub const MIN_SECRET_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `values` to the secrets redacted from now on (short ones are ignored).
pub fn register<I: IntoIterator<Item = String>>(values: I) {
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for value in values {
        if value.len() >= MIN_SECRET_LEN && !secrets.contains(&value) {
            secrets.push(value);
        }
    }
    // Longest first, so that a secret containing another is redacted whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// [`scrub`] in place.
pub fn scrub_in_place(text: &mut String) {
    if let Cow::Owned(scrubbed) = scrub(text) {
        *text = scrubbed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_redacted_wherever_they_appear() {
        register([
            "sk-test-0123456789".to_owned(),
            "sk-test-0123456789-long".to_owned(),
        ]);
        register(["abc".to_owned()]);
        assert_eq!(
            scrub("key sk-test-0123456789-long and sk-test-0123456789!"),
            "key [REDACTED] and [REDACTED]!"
        );
        assert!(matches!(scrub("nothing here: abc"), Cow::Borrowed(_)));
        let mut text = "Bearer sk-test-0123456789".to_owned();
        scrub_in_place(&mut text);
        assert_eq!(text, "Bearer [REDACTED]");
    }
}
