//! Map keys as Python sees them.
//!
//! Elixir tells `:a` from `"a"` and `1` from `1.0`; Python does not. Both `:a` and `"a"`
//! cross as the `str` `'a'`, and `1 == 1.0 == True` are one dict key. A map holding both
//! would silently lose an entry in Python: a user-supplied `"a"` could override an app's
//! `:a`. A binding gives each key of a map (or member of a set) its [`PyKey`] and refuses
//! the map when two keys have the same one ([`first_collision`]).
//!
//! Most maps cannot collide at all: a map whose keys are all binaries, or all integers,
//! already has distinct keys. [`KeyKinds`] tells the binding when the search is needed, so
//! that a large map of one kind of key costs one type check per key.

use std::collections::HashMap;

use num_bigint::BigInt;

/// A key's identity in Python: two keys with the same identity are one dict key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PyKey {
    /// A `str`, from an atom or a UTF-8 binary.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A number: `int`, `float` or `bool`, which compare equal across types.
    Num(Number),
    /// `None`.
    None,
    /// A tuple, equal to another when their items are.
    Tuple(Vec<PyKey>),
    /// A key that no key of another Elixir type equals in Python (a date, a reference,
    /// ...), identified by the binding (by its external term format, say).
    Opaque(Vec<u8>),
}

/// A number as Python compares it: an integral float is the integer it equals, and a bool
/// is 0 or 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Number {
    /// An integer that fits 64 bits.
    Int(i64),
    /// A larger integer, as its signed big-endian bytes.
    Big(Vec<u8>),
    /// A float that is not integral, by its bits.
    Float(u64),
}

impl Number {
    /// A big integer (in its compact form when it fits 64 bits).
    pub fn big(n: &BigInt) -> Number {
        match i64::try_from(n) {
            Ok(small) => Number::Int(small),
            Err(_) => Number::Big(n.to_signed_bytes_be()),
        }
    }

    /// A float: the integer it equals when it is integral (`-0.0` is `0`).
    pub fn float(f: f64) -> Number {
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        if !f.is_finite() || f.fract() != 0.0 {
            Number::Float(f.to_bits())
        } else if (-TWO_63..TWO_63).contains(&f) {
            // Integral and in range: the conversion is exact.
            Number::Int(f as i64)
        } else {
            // An integral float of 2^63 or more is its mantissa shifted left.
            let bits = f.to_bits();
            let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
            let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
            let magnitude = BigInt::from(mantissa) << (exponent as usize);
            Number::big(&if f < 0.0 { -magnitude } else { magnitude })
        }
    }

    /// `True` is 1 and `False` is 0.
    pub fn bool(b: bool) -> Number {
        Number::Int(i64::from(b))
    }
}

/// The Elixir type of a key, as far as collisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An atom that crosses as a string.
    Atom,
    /// A binary (text or bytes).
    Binary,
    /// An integer.
    Int,
    /// A float.
    Float,
    /// `true` or `false`.
    Bool,
    /// A tuple, whose items may collide with another tuple's.
    Tuple,
    /// Anything else: equal in Python only to a key of the same Elixir type, which the
    /// map cannot hold twice.
    Other,
}

/// The kinds of key one map holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyKinds {
    seen: u8,
    tuples: usize,
}

impl KeyKinds {
    const ATOM: u8 = 1;
    const BINARY: u8 = 2;
    const INT: u8 = 4;
    const FLOAT: u8 = 8;
    const BOOL: u8 = 16;

    /// Counts one key.
    #[inline]
    pub fn add(&mut self, kind: KeyKind) {
        self.seen |= match kind {
            KeyKind::Atom => Self::ATOM,
            KeyKind::Binary => Self::BINARY,
            KeyKind::Int => Self::INT,
            KeyKind::Float => Self::FLOAT,
            KeyKind::Bool => Self::BOOL,
            KeyKind::Tuple => {
                self.tuples += 1;
                0
            }
            KeyKind::Other => 0,
        };
    }

    /// Whether two of the keys counted could be one key in Python: strings from both
    /// atoms and binaries, numbers of two types, or two tuples.
    pub fn may_collide(&self) -> bool {
        let text = Self::ATOM | Self::BINARY;
        let numbers = (self.seen & (Self::INT | Self::FLOAT | Self::BOOL)).count_ones();
        self.seen & text == text || numbers >= 2 || self.tuples >= 2
    }
}

/// The positions of the first two keys that are one key in Python, if any.
pub fn first_collision(keys: impl IntoIterator<Item = PyKey>) -> Option<(usize, usize)> {
    let mut seen = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        if let Some(&first) = seen.get(&key) {
            return Some((first, i));
        }
        seen.insert(key, i);
    }
    None
}

/// How a key looks in Python, for error messages.
pub fn python_repr(key: &PyKey) -> String {
    match key {
        PyKey::Str(s) => format!("{s:?}").replace('"', "'"),
        PyKey::Bytes(b) => format!("b{:?}", String::from_utf8_lossy(b)).replace('"', "'"),
        PyKey::Num(Number::Int(n)) => n.to_string(),
        PyKey::Num(Number::Big(bytes)) => BigInt::from_signed_bytes_be(bytes).to_string(),
        PyKey::Num(Number::Float(bits)) => format!("{:?}", f64::from_bits(*bits)),
        PyKey::None => "None".to_owned(),
        PyKey::Tuple(items) => {
            let items: Vec<String> = items.iter().map(python_repr).collect();
            match items.as_slice() {
                [one] => format!("({one},)"),
                _ => format!("({})", items.join(", ")),
            }
        }
        PyKey::Opaque(_) => "<object>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(f: f64) -> PyKey {
        PyKey::Num(Number::float(f))
    }

    #[test]
    fn numbers_equal_in_python_are_one_key() {
        assert_eq!(num(1.0), PyKey::Num(Number::Int(1)));
        assert_eq!(num(-0.0), PyKey::Num(Number::Int(0)));
        assert_eq!(PyKey::Num(Number::bool(true)), PyKey::Num(Number::Int(1)));
        assert_ne!(num(1.5), PyKey::Num(Number::Int(1)));
        // 2^53 + 1 has no float: the float 2^53 is not the integer 2^53 + 1.
        let two_53 = 9_007_199_254_740_992_i64;
        assert_eq!(num(two_53 as f64), PyKey::Num(Number::Int(two_53)));
        assert_ne!(num(two_53 as f64), PyKey::Num(Number::Int(two_53 + 1)));
        // Beyond 64 bits the float is still the exact integer.
        let big = BigInt::from(1) << 70usize;
        assert_eq!(num(2f64.powi(70)), PyKey::Num(Number::big(&big)));
        assert_eq!(num(-(2f64.powi(70))), PyKey::Num(Number::big(&-big)));
        assert_eq!(num(-(2f64.powi(63))), PyKey::Num(Number::Int(i64::MIN)));
        assert_eq!(
            Number::big(&BigInt::from(7)),
            Number::Int(7),
            "a small big integer is compact"
        );
    }

    #[test]
    fn the_first_colliding_pair_is_found() {
        let keys = vec![
            PyKey::Str("b".into()),
            PyKey::Str("a".into()),
            PyKey::Bytes(b"a".to_vec()),
            PyKey::Str("a".into()),
        ];
        assert_eq!(first_collision(keys), Some((1, 3)));
        let tuples = vec![
            PyKey::Tuple(vec![PyKey::Str("a".into()), num(1.0)]),
            PyKey::Tuple(vec![PyKey::Str("a".into()), PyKey::Num(Number::Int(1))]),
        ];
        assert_eq!(first_collision(tuples), Some((0, 1)));
        assert_eq!(
            first_collision(vec![PyKey::None, PyKey::Str("None".into())]),
            None
        );
    }

    #[test]
    fn only_mixed_kinds_may_collide() {
        let kinds = |list: &[KeyKind]| {
            let mut kinds = KeyKinds::default();
            list.iter().for_each(|k| kinds.add(*k));
            kinds.may_collide()
        };
        assert!(!kinds(&[KeyKind::Binary, KeyKind::Binary, KeyKind::Other]));
        assert!(!kinds(&[KeyKind::Int, KeyKind::Atom, KeyKind::Tuple]));
        assert!(kinds(&[KeyKind::Atom, KeyKind::Binary]));
        assert!(kinds(&[KeyKind::Int, KeyKind::Float]));
        assert!(kinds(&[KeyKind::Bool, KeyKind::Int]));
        assert!(kinds(&[KeyKind::Tuple, KeyKind::Tuple]));
    }

    #[test]
    fn keys_read_as_python_writes_them() {
        let tuple = PyKey::Tuple(vec![PyKey::Str("a".into())]);
        assert_eq!(python_repr(&tuple), "('a',)");
        assert_eq!(python_repr(&num(2.5)), "2.5");
        assert_eq!(python_repr(&PyKey::Bytes(b"x".to_vec())), "b'x'");
    }
}
