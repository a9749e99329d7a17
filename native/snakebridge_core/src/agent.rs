//! The worker's own Python code, handed to each worker process rather than installed.
//!
//! A worker runs `python -m snakebridge_agent`. The `snakebridge_agent` package ships as
//! source in SnakeBridge's `priv/python/`, and its compiled half (`snakebridge_agent._native`,
//! built once for CPython's stable ABI) in `priv/native/`. [`environment`] puts the
//! package first on the worker's `PYTHONPATH` and names the extension's file in
//! [`NATIVE_ENV`], so any CPython ≥ 3.10 is a worker with nothing installed in it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// The Python module a worker runs.
pub const MODULE: &str = "snakebridge_agent";

/// The environment variable that names the extension's file for the worker's
/// `snakebridge_agent/__init__.py`.
pub const NATIVE_ENV: &str = "SNAKEBRIDGE_AGENT_NATIVE";

/// The extension's file name in `priv/native/`: `abi3`, so that one file serves every
/// supported CPython.
pub const NATIVE_FILE: &str = "snakebridge_agent_native.abi3.so";

/// Where the worker's Python code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The directory holding the `snakebridge_agent` package directory.
    pub package_dir: PathBuf,
    /// The compiled extension `snakebridge_agent._native`.
    pub native_library: PathBuf,
}

impl Agent {
    /// The agent in a SnakeBridge `priv` directory: `priv/python` and
    /// `priv/native/`[`NATIVE_FILE`].
    pub fn in_priv(priv_dir: &Path) -> Agent {
        Agent {
            package_dir: priv_dir.join("python"),
            native_library: priv_dir.join("native").join(NATIVE_FILE),
        }
    }

    /// Why this agent cannot start a worker, checked before spawning one: its package or
    /// its extension is missing.
    pub fn check(&self) -> Result<(), Error> {
        let init = self.package_dir.join(MODULE).join("__init__.py");
        if !init.is_file() {
            return Err(Error::new(
                ErrorKind::WorkerStartFailed,
                format!(
                    "the worker's Python package is missing: there is no {}",
                    init.display()
                ),
            ));
        }
        if !self.native_library.is_file() {
            return Err(Error::new(
                ErrorKind::WorkerStartFailed,
                format!(
                    "the worker's native extension is missing: there is no {} (SnakeBridge's \
                     Mix compiler builds or downloads it: run `mix compile`)",
                    self.native_library.display()
                ),
            ));
        }
        Ok(())
    }
}

/// The variables a worker process gets: `PYTHONPATH` with the agent's package directory
/// first (when there is an agent), then `python_path`, then the `inherited` value; and
/// [`NATIVE_ENV`]. Without an agent (its package installed in the interpreter) and without
/// `python_path`, nothing.
pub fn environment(
    agent: Option<&Agent>,
    python_path: &[PathBuf],
    inherited: Option<OsString>,
) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut paths: Vec<PathBuf> = agent.iter().map(|a| a.package_dir.clone()).collect();
    paths.extend(python_path.iter().cloned());
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    paths.extend(inherited.iter().flat_map(std::env::split_paths));
    let joined = std::env::join_paths(paths).map_err(|e| {
        Error::new(
            ErrorKind::WorkerStartFailed,
            format!("bad python_path: {e}"),
        )
    })?;
    let mut env = vec![("PYTHONPATH".into(), joined)];
    if let Some(agent) = agent {
        env.push((
            NATIVE_ENV.into(),
            agent.native_library.clone().into_os_string(),
        ));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_comes_first_on_the_python_path() {
        let agent = Agent::in_priv(Path::new("/sb/priv"));
        let env = environment(
            Some(&agent),
            &[PathBuf::from("/app/py")],
            Some("/a:/b".into()),
        )
        .unwrap();
        assert_eq!(
            env,
            vec![
                ("PYTHONPATH".into(), "/sb/priv/python:/app/py:/a:/b".into()),
                (
                    NATIVE_ENV.into(),
                    "/sb/priv/native/snakebridge_agent_native.abi3.so".into()
                ),
            ]
        );
    }

    #[test]
    fn a_path_with_the_separator_is_refused() {
        let agent = Agent::in_priv(Path::new("/sb/priv"));
        let err = environment(Some(&agent), &[PathBuf::from("/app:py")], None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::WorkerStartFailed);
    }

    #[test]
    fn without_an_agent_only_the_python_path_is_set() {
        assert_eq!(environment(None, &[], Some("/a".into())).unwrap(), vec![]);
        let env = environment(None, &[PathBuf::from("/p")], Some("/a".into())).unwrap();
        assert_eq!(env, vec![("PYTHONPATH".into(), "/p:/a".into())]);
    }

    #[test]
    fn a_missing_extension_is_named() {
        let dir = std::env::temp_dir().join(format!("sb-agent-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("python/snakebridge_agent")).unwrap();
        std::fs::write(dir.join("python/snakebridge_agent/__init__.py"), "").unwrap();
        let err = Agent::in_priv(&dir).check().unwrap_err();
        assert!(
            err.message.contains("snakebridge_agent_native.abi3.so"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
