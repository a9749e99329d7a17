//! The dev-mode config watcher: reports changed `.exs` config manifests, one batch per
//! burst of file-system events.
//!
//! An editor's save is several events (truncate, write, close, sometimes a rename of a
//! temporary file). [`ConfigWatcher`] collects the `.exs` paths those events name and,
//! once nothing relevant happened for the quiet period (100 ms by default), calls its
//! callback once with the unique paths, sorted. The callback runs on the watcher's own
//! thread; a path in a batch may since have been deleted (the callback checks).
//!
//! Only changes to a file's content or existence count: opening or reading a config (as
//! regenerating its modules does) and metadata changes (access times) are ignored, so a
//! reload never triggers another.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

/// How long the directories must be quiet before a batch is delivered.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(100);

/// The extension of config manifests.
const CONFIG_EXTENSION: &str = "exs";

/// Why a watcher could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// A directory to watch does not exist.
    #[error("config directory {} does not exist", dir.display())]
    MissingDir {
        /// The directory, made absolute.
        dir: PathBuf,
    },
    /// A path to watch exists but is not a directory.
    #[error("{} is not a directory", dir.display())]
    NotADirectory {
        /// The path, made absolute.
        dir: PathBuf,
    },
    /// The OS refused to watch a directory (permissions, inotify limits, ...).
    #[error("cannot watch {}: {message}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The OS's reason.
        message: String,
    },
    /// The OS refused the watcher itself or its thread.
    #[error("cannot start the config watcher: {message}")]
    Start {
        /// The OS's reason.
        message: String,
    },
}

/// What the debounce thread receives.
enum Message {
    /// An event (or error) from the OS watcher.
    Fs(notify::Result<Event>),
    /// The watcher is being dropped: end without delivering what is pending.
    Stop,
}

/// Watches directories for changed `.exs` files and reports them in debounced batches.
/// Dropping it stops watching and ends its thread; once the drop returns, the callback
/// is never called again.
pub struct ConfigWatcher {
    dirs: Vec<PathBuf>,
    /// `None` only while dropping.
    os_watcher: Option<RecommendedWatcher>,
    stop: Sender<Message>,
    /// `None` only while dropping.
    thread: Option<JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Watches `dirs` (not their subdirectories) and calls `on_change` with the changed
    /// `.exs` paths after each burst of changes, with [`DEFAULT_QUIET`].
    pub fn start<I, P, F>(dirs: I, on_change: F) -> Result<ConfigWatcher, WatchError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
        F: Fn(Vec<PathBuf>) + Send + 'static,
    {
        Self::with_quiet(dirs, DEFAULT_QUIET, on_change)
    }

    /// As [`ConfigWatcher::start`], with the quiet period that ends a burst.
    pub fn with_quiet<I, P, F>(
        dirs: I,
        quiet: Duration,
        on_change: F,
    ) -> Result<ConfigWatcher, WatchError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
        F: Fn(Vec<PathBuf>) + Send + 'static,
    {
        let dirs = dirs
            .into_iter()
            .map(|dir| checked_dir(dir.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;

        let (sender, receiver) = mpsc::channel();
        let events = sender.clone();
        let mut os_watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only once the thread ended: nothing to report to.
            let _ = events.send(Message::Fs(event));
        })
        .map_err(|e| WatchError::Start {
            message: e.to_string(),
        })?;
        for dir in &dirs {
            os_watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| WatchError::Watch {
                    dir: dir.clone(),
                    message: e.to_string(),
                })?;
        }

        let thread = thread::Builder::new()
            .name("snakebridge-watch".into())
            .spawn(move || debounce(&receiver, quiet, &on_change))
            .map_err(|e| WatchError::Start {
                message: e.to_string(),
            })?;

        Ok(ConfigWatcher {
            dirs,
            os_watcher: Some(os_watcher),
            stop: sender,
            thread: Some(thread),
        })
    }

    /// The directories watched, made absolute against the current directory.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        // Stop first: whatever is still pending is not delivered.
        let _ = self.stop.send(Message::Stop);
        if let Some(os_watcher) = self.os_watcher.take() {
            // notify's own drop may panic if its event loop died; the thread below must
            // still be ended.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(os_watcher)));
        }
        if let Some(thread) = self.thread.take() {
            // The callback may own the last handle on what owns this watcher, so this
            // drop can run on the watcher's own thread, which is ending anyway.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// `dir` as an absolute path, if it is a directory.
fn checked_dir(dir: &Path) -> Result<PathBuf, WatchError> {
    let absolute = std::path::absolute(dir).map_err(|e| WatchError::Watch {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_dir() => Ok(absolute),
        Ok(_) => Err(WatchError::NotADirectory { dir: absolute }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(WatchError::MissingDir { dir: absolute })
        }
        Err(e) => Err(WatchError::Watch {
            dir: absolute,
            message: e.to_string(),
        }),
    }
}

/// Whether an event changes a file's content or existence.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

fn is_config(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == CONFIG_EXTENSION)
}

/// The watcher's thread: collects changed configs until `quiet` passed without a new
/// one, then delivers them. Ends on [`Message::Stop`] or when every sender is gone.
fn debounce<F>(receiver: &Receiver<Message>, quiet: Duration, on_change: &F)
where
    F: Fn(Vec<PathBuf>),
{
    let mut pending = BTreeSet::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let message = match deadline {
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => receiver.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(Message::Fs(Ok(event))) => {
                if is_change(&event.kind) {
                    let mut configs = event.paths.into_iter().filter(|p| is_config(p)).peekable();
                    if configs.peek().is_some() {
                        // Every event of the burst pushes the delivery back.
                        pending.extend(configs);
                        deadline = Some(Instant::now() + quiet);
                    }
                }
            }
            Ok(Message::Fs(Err(err))) => {
                tracing::warn!(error = %err, "the config watcher got an error from the OS");
            }
            Err(RecvTimeoutError::Timeout) => {
                deadline = None;
                let batch: Vec<PathBuf> = std::mem::take(&mut pending).into_iter().collect();
                if catch_unwind(AssertUnwindSafe(|| on_change(batch))).is_err() {
                    tracing::error!("the config watcher's callback panicked");
                }
            }
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough for a batch that should come; how long to wait for one that should not.
    const ARRIVES: Duration = Duration::from_secs(5);
    const SILENCE: Duration = Duration::from_millis(500);

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sb-watch-{}-{}",
            std::process::id(),
            &crate::auth::new_token()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A watcher on `dir` whose batches arrive on the returned channel.
    fn watch(dir: &Path) -> (ConfigWatcher, Receiver<Vec<PathBuf>>) {
        let (sender, receiver) = mpsc::channel();
        let watcher = ConfigWatcher::start([dir], move |batch| {
            let _ = sender.send(batch);
        })
        .unwrap();
        (watcher, receiver)
    }

    #[test]
    fn a_burst_of_writes_to_a_config_is_reported_once() {
        let dir = scratch();
        let (_watcher, batches) = watch(&dir);
        let file = dir.join("json.exs");
        // What an editor's save looks like: truncate and write, several times over.
        for n in 0..5 {
            std::fs::write(&file, format!("%{{python_module: \"json\", n: {n}}}")).unwrap();
        }

        assert_eq!(batches.recv_timeout(ARRIVES).unwrap(), vec![file]);
        assert!(
            batches.recv_timeout(SILENCE).is_err(),
            "a second batch came"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_holds_each_changed_config_once_sorted() {
        let dir = scratch();
        let (_watcher, batches) = watch(&dir);
        let (a, b) = (dir.join("a.exs"), dir.join("b.exs"));
        std::fs::write(&b, "%{}").unwrap();
        std::fs::write(&a, "%{}").unwrap();
        std::fs::write(&b, "%{python_module: \"json\"}").unwrap();

        assert_eq!(batches.recv_timeout(ARRIVES).unwrap(), vec![a.clone(), b]);

        // A deleted config is a change too.
        std::fs::remove_file(&a).unwrap();
        assert_eq!(batches.recv_timeout(ARRIVES).unwrap(), vec![a]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_that_are_not_configs_are_not_reported() {
        let dir = scratch();
        let (_watcher, batches) = watch(&dir);
        std::fs::write(dir.join("notes.txt"), "hello").unwrap();
        std::fs::write(dir.join("json.exs.swp"), "swap").unwrap();
        assert!(
            batches.recv_timeout(SILENCE).is_err(),
            "a non-config was reported"
        );

        // The watcher is alive: a config written now is reported, alone.
        let file = dir.join("json.exs");
        std::fs::write(dir.join("notes.txt"), "again").unwrap();
        std::fs::write(&file, "%{}").unwrap();
        assert_eq!(batches.recv_timeout(ARRIVES).unwrap(), vec![file]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reading_a_config_is_not_a_change() {
        let dir = scratch();
        let (_watcher, batches) = watch(&dir);
        let file = dir.join("json.exs");
        std::fs::write(&file, "%{}").unwrap();
        assert_eq!(batches.recv_timeout(ARRIVES).unwrap(), vec![file.clone()]);

        // Regenerating modules reads the config: that must not report it again.
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "%{}");
        assert!(
            batches.recv_timeout(SILENCE).is_err(),
            "a read was reported"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_is_reported_after_drop() {
        let dir = scratch();
        let (watcher, batches) = watch(&dir);
        // Pending when the watcher is dropped (inside the quiet period): never delivered.
        std::fs::write(dir.join("pending.exs"), "%{}").unwrap();
        drop(watcher);
        std::fs::write(dir.join("late.exs"), "%{}").unwrap();

        // Disconnected, not a timeout: the callback (and its sender) is gone for good.
        assert_eq!(
            batches.recv_timeout(SILENCE),
            Err(RecvTimeoutError::Disconnected)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = scratch();
        let missing = dir.join("no_such_dir");
        let err = ConfigWatcher::start([&dir, &missing], |_| {}).unwrap_err();
        assert_eq!(
            err,
            WatchError::MissingDir {
                dir: missing.clone()
            }
        );
        assert!(err.to_string().contains(&*missing.to_string_lossy()));

        let file = dir.join("file.exs");
        std::fs::write(&file, "%{}").unwrap();
        let err = ConfigWatcher::start([&file], |_| {}).unwrap_err();
        assert_eq!(err, WatchError::NotADirectory { dir: file });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
