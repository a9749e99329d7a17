//! Spawning Python worker processes on private Unix sockets, and tearing them
//! down again (children killed and reaped, socket files and directory removed)
//! on every exit path, including errors and panics.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A private temporary directory, removed with its contents on drop.
pub struct SocketDir(PathBuf);

impl SocketDir {
    pub fn create() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "snakebridge-bench-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating socket directory {}", path.display()))?;
        Ok(SocketDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            if err.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: removing {}: {err}", self.0.display());
            }
        }
    }
}

/// W Python processes, each serving on its own Unix socket.
pub struct WorkerSet {
    // Field order matters for drop: children are killed before the directory
    // holding their sockets is removed.
    children: Vec<Child>,
    sockets: Vec<PathBuf>,
    dir: SocketDir,
}

impl WorkerSet {
    /// Starts `count` copies of `python script SOCKET extra_args...` and waits
    /// for each to print its `READY` line.
    pub async fn spawn(
        python: &Path,
        script: &Path,
        extra_args: &[OsString],
        count: usize,
    ) -> Result<Self> {
        if !script.is_file() {
            bail!("worker script {} not found", script.display());
        }
        let mut set = WorkerSet {
            children: Vec::with_capacity(count),
            sockets: Vec::with_capacity(count),
            dir: SocketDir::create()?,
        };
        // Spawn all first so the interpreters start up in parallel; on any
        // error `set` is dropped, which kills whatever was already started.
        let mut stdouts = Vec::with_capacity(count);
        for i in 0..count {
            let socket = set.dir.0.join(format!("worker-{i}.sock"));
            let mut child = Command::new(python)
                .arg(script)
                .arg(&socket)
                .args(extra_args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("spawning {} {}", python.display(), script.display()))?;
            let stdout = child
                .stdout
                .take()
                .context("worker stdout was not captured")?;
            set.children.push(child);
            set.sockets.push(socket);
            stdouts.push(stdout);
        }
        for (i, stdout) in stdouts.into_iter().enumerate() {
            tokio::time::timeout(READY_TIMEOUT, wait_ready(stdout))
                .await
                .with_context(|| format!("worker {i} not ready within {READY_TIMEOUT:?}"))?
                .with_context(|| format!("worker {i} failed to start"))?;
            if !set.sockets[i].exists() {
                bail!(
                    "worker {i} reported ready but {} is missing",
                    set.sockets[i].display()
                );
            }
        }
        Ok(set)
    }

    pub fn sockets(&self) -> &[PathBuf] {
        &self.sockets
    }

    /// Kills and reaps every worker. The socket directory goes on drop.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut first_err = None;
        for child in &mut self.children {
            if let Err(err) = kill_and_wait(child).await {
                first_err.get_or_insert(err);
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for WorkerSet {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Already-exited children return an error here; nothing to do then.
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }
}

async fn kill_and_wait(child: &mut Child) -> Result<()> {
    if child.try_wait().context("polling worker")?.is_some() {
        return Ok(());
    }
    child.start_kill().context("killing worker")?;
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("worker did not exit after SIGKILL")?
        .context("reaping worker")?;
    Ok(())
}

async fn wait_ready(stdout: ChildStdout) -> Result<()> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await.context("reading worker stdout")? {
            Some(line) if line.starts_with("READY") => return Ok(()),
            Some(_) => continue,
            None => bail!("worker exited before printing READY"),
        }
    }
}
