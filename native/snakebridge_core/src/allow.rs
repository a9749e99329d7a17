//! The allowlist of Python modules a pool may reach (`allowed_modules`).
//!
//! Enforced twice: here, on the names of every request before it is sent, and again in
//! the worker's agent (`snakebridge_agent/allowlist.py`) on the objects the names resolve
//! to, before any of them runs. Here, a call's target must lie inside an allowed module
//! (`"numpy"` allows `"numpy.linalg.norm"`, `"os.path"` allows `"os.path.join"` but not
//! `"os.system"`), and no name may be private (`_x`, `__x__`): dunder and private
//! attributes are how `getattr` chains escape (`x.__class__.__subclasses__()`,
//! `f.__globals__["os"]`, `sys._getframe`).

use crate::error::{Error, ErrorKind};

pub use crate::contract::ALWAYS_ALLOWED;

/// The modules a pool may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    modules: Vec<String>,
}

impl Allowlist {
    /// An allowlist of `modules` (dotted module names), plus [`ALWAYS_ALLOWED`]. Refuses
    /// names that are not dotted Python identifiers.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(modules: I) -> Result<Self, Error> {
        let mut list: Vec<String> = Vec::new();
        for module in modules {
            let module = module.into();
            if !is_dotted_identifier(&module) {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("allowed_modules: {module:?} is not a dotted module name"),
                ));
            }
            list.push(module);
        }
        list.extend(ALWAYS_ALLOWED.iter().map(|m| (*m).to_owned()));
        list.sort();
        list.dedup();
        Ok(Allowlist { modules: list })
    }

    /// The modules, sorted (what the worker is told).
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Whether `module` (or the object at that dotted path) lies inside an allowed module.
    pub fn allows(&self, path: &str) -> bool {
        self.modules.iter().any(|m| {
            path == m
                || (path.starts_with(m.as_str()) && path.as_bytes().get(m.len()) == Some(&b'.'))
        })
    }

    /// Refuses a call target outside the allowed modules, or with a private part.
    pub fn check_target(&self, target: &str) -> Result<(), Error> {
        if let Some(part) = target.split('.').find(|p| p.starts_with('_')) {
            return Err(not_allowed(format!(
                "{target:?}: the private name {part:?} may not be reached (allowed_modules is set)"
            )));
        }
        if !self.allows(target) {
            return Err(not_allowed(format!(
                "{target:?} is outside the pool's allowed_modules ({})",
                self.modules.join(", ")
            )));
        }
        Ok(())
    }

    /// Refuses a private method or attribute name (used on an object the pool holds).
    pub fn check_name(&self, name: &str) -> Result<(), Error> {
        if name.starts_with('_') {
            return Err(not_allowed(format!(
                "the private name {name:?} may not be reached (allowed_modules is set)"
            )));
        }
        Ok(())
    }
}

fn not_allowed(message: String) -> Error {
    Error::new(ErrorKind::NotAllowed, message)
}

fn is_dotted_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Allowlist {
        Allowlist::new(["numpy", "os.path"]).unwrap()
    }

    #[test]
    fn targets_inside_allowed_modules_pass() {
        let list = list();
        for target in [
            "numpy.linalg.norm",
            "numpy",
            "os.path.join",
            "snakebridge_agent.tools.register",
        ] {
            assert!(list.check_target(target).is_ok(), "{target}");
        }
    }

    #[test]
    fn targets_outside_or_private_are_not_allowed() {
        let list = list();
        for target in [
            "os.system",
            "os",
            "numpyx.f",
            "builtins.__import__",
            "builtins.eval",
            "numpy.__class__",
            "numpy._core.multiarray",
            "os.path.__builtins__",
            "subprocess.run",
        ] {
            let err = list.check_target(target).unwrap_err();
            assert_eq!(err.kind, ErrorKind::NotAllowed, "{target}");
            assert!(err.message.contains(target), "{}", err.message);
        }
        assert!(list.check_name("reshape").is_ok());
        for name in ["__class__", "__globals__", "_private", "__reduce_ex__"] {
            assert_eq!(
                list.check_name(name).unwrap_err().kind,
                ErrorKind::NotAllowed
            );
        }
    }

    #[test]
    fn module_names_must_be_dotted_identifiers() {
        for bad in ["", "os.", "a..b", "os path", "1x", "numpy/linalg"] {
            assert!(Allowlist::new([bad]).is_err(), "{bad:?}");
        }
        assert_eq!(
            Allowlist::new(["numpy", "numpy"]).unwrap().modules(),
            [
                "numpy",
                "snakebridge_agent.dispatch.call_nested",
                "snakebridge_agent.tools"
            ]
        );
    }
}
