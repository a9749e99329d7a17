//! Budgets before building: how large a payload may be, in encoded bytes and in values,
//! checked while it is written or read, before the values or terms it holds are built.
//!
//! A pool has one [`Budgets`]: `max_payload_size` for what goes to Python (arguments,
//! callback results), `max_result_size` for what comes back (results, stream chunks,
//! callback arguments), and `max_elements` for both. Each crossing takes its [`Limits`]
//! from them ([`Budgets::to_python`], [`Budgets::from_python`]); the writers, the decoders
//! and the worker's conversion of Python objects spend a [`Budget`] of values as they
//! meet containers, so a payload announcing 100 million elements is refused at its
//! header, not after 100 million elements were built. Exceeding a limit is a
//! [`CodecError`] that [`CodecError::is_too_large`] recognises, which becomes a
//! `payload_too_large` error naming the limit and the option that sets it.

use super::CodecError;

/// A pool's budgets for everything that crosses between the BEAM and its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Most bytes (encoded value plus buffers) of a payload sent to Python.
    pub max_payload_size: usize,
    /// Most bytes of a payload that comes back from Python.
    pub max_result_size: usize,
    /// Most values in one payload, either way: list, tuple and set items, map keys and
    /// map values.
    pub max_elements: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_payload_size: crate::contract::DEFAULT_MAX_PAYLOAD_SIZE,
            max_result_size: crate::contract::DEFAULT_MAX_RESULT_SIZE,
            max_elements: crate::contract::DEFAULT_MAX_ELEMENTS,
        }
    }
}

impl Budgets {
    /// No limits at all (for values that do not cross: a user's own encoding).
    pub const UNLIMITED: Budgets = Budgets {
        max_payload_size: usize::MAX,
        max_result_size: usize::MAX,
        max_elements: usize::MAX,
    };

    /// The limits of a payload going to Python, which errors call `what` ("the
    /// arguments").
    pub fn to_python(&self, what: &'static str) -> Limits {
        Limits {
            what,
            max_size: self.max_payload_size,
            size_option: "max_payload_size",
            max_elements: self.max_elements,
        }
    }

    /// The limits of a payload coming back from Python, which errors call `what` ("the
    /// result", "a stream chunk").
    pub fn from_python(&self, what: &'static str) -> Limits {
        Limits {
            what,
            max_size: self.max_result_size,
            size_option: "max_result_size",
            max_elements: self.max_elements,
        }
    }
}

/// The limits of one payload, with what it is and the options that set them (for errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    what: &'static str,
    max_size: usize,
    size_option: &'static str,
    max_elements: usize,
}

impl Limits {
    /// No limits.
    pub const NONE: Limits = Limits {
        what: "the value",
        max_size: usize::MAX,
        size_option: "max_payload_size",
        max_elements: usize::MAX,
    };

    /// The most bytes the payload may take.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Refuses a payload of `size` bytes when it is larger than allowed.
    pub fn check_size(&self, size: usize) -> Result<(), CodecError> {
        if size > self.max_size {
            return Err(CodecError::too_large(format!(
                "{}: {size} bytes, more than the pool's {} of {} bytes",
                self.what, self.size_option, self.max_size
            )));
        }
        Ok(())
    }

    /// A fresh count of the values the payload may still hold.
    pub fn budget(&self) -> Budget {
        Budget {
            left: self.max_elements,
            limits: *self,
        }
    }
}

/// The values one payload may still hold, spent as its containers are met.
#[derive(Debug, Clone)]
pub struct Budget {
    left: usize,
    limits: Limits,
}

/// Unlimited.
impl Default for Budget {
    fn default() -> Self {
        Budget::unlimited()
    }
}

impl Budget {
    /// An unlimited budget.
    pub fn unlimited() -> Budget {
        Limits::NONE.budget()
    }

    /// Spends `n` values (a container's elements, before any is built); refused when
    /// fewer are left.
    #[inline]
    pub fn spend(&mut self, n: usize) -> Result<(), CodecError> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(self.too_many()),
        }
    }

    /// Spends the keys and values of a map of `entries` entries.
    #[inline]
    pub fn spend_entries(&mut self, entries: usize) -> Result<(), CodecError> {
        self.spend(entries.saturating_mul(2))
    }

    /// Refuses a payload that takes `size` bytes so far when that is more than allowed.
    #[inline]
    pub fn check_size(&self, size: usize) -> Result<(), CodecError> {
        if size > self.limits.max_size {
            return Err(self.too_big());
        }
        Ok(())
    }

    #[cold]
    fn too_big(&self) -> CodecError {
        let Limits {
            what,
            max_size,
            size_option,
            ..
        } = self.limits;
        CodecError::too_large(format!(
            "{what}: more than the pool's {size_option} of {max_size} bytes"
        ))
    }

    /// The limits this budget enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    #[cold]
    fn too_many(&self) -> CodecError {
        CodecError::too_large(format!(
            "{}: more than the pool's max_elements of {} values (list, tuple and set items, map keys and map values)",
            self.limits.what, self.limits.max_elements
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_the_container_that_would_overspend_it() {
        let limits = Budgets {
            max_elements: 10,
            ..Budgets::default()
        }
        .from_python("the result");
        let mut budget = limits.budget();
        budget.spend(4).unwrap();
        budget.spend_entries(3).unwrap();
        let err = budget.spend(1).unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(
            err.to_string(),
            "the result: more than the pool's max_elements of 10 values (list, tuple and set items, map keys and map values)"
        );
        assert!(budget.spend_entries(usize::MAX).is_err());
    }

    #[test]
    fn sizes_name_the_option_of_their_direction() {
        let budgets = Budgets {
            max_payload_size: 10,
            max_result_size: 20,
            max_elements: 1,
        };
        let err = budgets
            .to_python("the arguments")
            .check_size(11)
            .unwrap_err();
        assert!(err.is_too_large());
        assert!(
            err.to_string().contains("max_payload_size of 10 bytes"),
            "{err}"
        );
        assert!(budgets.from_python("the result").check_size(20).is_ok());
        let err = budgets
            .from_python("the result")
            .budget()
            .check_size(21)
            .unwrap_err();
        assert!(
            err.to_string().contains("max_result_size of 20 bytes"),
            "{err}"
        );
    }
}
