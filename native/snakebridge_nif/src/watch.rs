//! The dev-mode config watcher: `watch_start` watches directories of `.exs` config
//! manifests and sends `{:snakebridge_config_changed, watcher, [path]}` to a process after
//! each burst of changes; `watch_stop` ends it.
//!
//! Every message carries the watcher's own resource, so the watcher's thread holds a
//! handle on it and garbage collection alone cannot end it. It ends with `watch_stop`, or
//! when the process it reports to exits (a monitor); the resource's drop stops it too.

use std::path::PathBuf;
use std::sync::Mutex;

use rustler::env::OwnedEnv;
use rustler::{Encoder, Env, LocalPid, Monitor, ResourceArc, Term};

use snakebridge_core::watch::ConfigWatcher;

use crate::atoms;

mod tags {
    rustler::atoms! { snakebridge_config_changed }
}

/// One running watcher, owned by the process it reports to.
pub(crate) struct WatchResource {
    watcher: Mutex<Option<ConfigWatcher>>,
}

#[rustler::resource_impl]
impl rustler::Resource for WatchResource {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.stop();
    }
}

impl WatchResource {
    /// Stops watching; once this returns no message is sent any more. Idempotent.
    fn stop(&self) {
        // Taken out first: dropping it joins the watcher's thread, which must not wait on
        // this lock (its last handle on the resource may run the destructor there).
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(watcher);
    }
}

impl Drop for WatchResource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Watches `dirs` (each must exist) and reports changed `.exs` files to `pid`.
/// Returns `{:ok, watcher}` or `{:error, message}` (naming the directory at fault).
#[rustler::nif]
fn watch_start(env: Env<'_>, dirs: Vec<String>, pid: LocalPid) -> Term<'_> {
    let resource = ResourceArc::new(WatchResource {
        watcher: Mutex::new(None),
    });
    let handle = resource.clone();
    // Runs on the watcher's own thread, never a scheduler: sending from there is safe.
    let report = move |paths: Vec<PathBuf>| {
        let paths: Vec<String> = paths
            .iter()
            .map(|path| path.to_string_lossy().into_owned())
            .collect();
        let mut message_env = OwnedEnv::new();
        // A dead recipient is not an error here: its monitor stops the watcher.
        let _ = message_env.send_and_clear(&pid, |env| {
            (tags::snakebridge_config_changed(), &handle, paths).encode(env)
        });
    };
    let watcher = match ConfigWatcher::start(&dirs, report) {
        Ok(watcher) => watcher,
        Err(err) => return (atoms::error(), err.to_string()).encode(env),
    };
    *resource.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
    if env.monitor(&resource, &pid).is_none() {
        resource.stop();
        let message = "the process to report config changes to is not alive";
        return (atoms::error(), message).encode(env);
    }
    (atoms::ok(), resource).encode(env)
}

/// Stops the watcher; no message is sent after this returns. Always `:ok`.
#[rustler::nif]
fn watch_stop(watcher: ResourceArc<WatchResource>) -> rustler::Atom {
    watcher.stop();
    atoms::ok()
}
