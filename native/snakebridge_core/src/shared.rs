//! Large payload buffers through shared memory instead of gRPC messages.
//!
//! Through gRPC a 100 MB tensor is copied four times on its way (into tonic's buffer, into
//! the socket, out of it, and into the assembled slot). Through a [`SharedDir`] it is
//! copied once: the sender writes the buffer to a fresh file in a private directory on a
//! memory filesystem and sends the file's name in `Payload.shared`; the receiver maps the
//! file read-only, removes it at once, and uses the mapping as the buffer. Python reads it
//! through a zero-copy `np.frombuffer` view, the BEAM as a resource binary.
//!
//! The pool creates the directory (mode 0700, under `/dev/shm`), offers it to each worker
//! in the handshake, and removes it when it stops. The worker joins it only if it is a
//! directory of its own user that no one else may enter, and only reads plain file names
//! inside it. A file lives from the moment its frame is sent until its receiver maps it;
//! files of frames that never arrived (a connection that died) go with the directory, and
//! the directories of a VM that was killed are removed by the next pool that starts.
//!
//! Anything that goes wrong on the way falls back or fails small: a buffer that cannot be
//! written travels in the message as before, and a file that cannot be read fails that
//! exchange only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::proto::{Payload, Shared};

/// Buffers smaller than this stay in the messages: below it, a file's system calls cost
/// more than the copies they save.
pub const DEFAULT_MIN_SIZE: usize = 1 << 20;

/// Where pools put their directories, when the machine has it.
const BASE: &str = "/dev/shm";

/// Name prefix of the pools' directories under [`BASE`].
const PREFIX: &str = "snakebridge-";

/// A directory for the shared buffers of one pool's connections (see the module docs).
#[derive(Debug)]
pub struct SharedDir {
    path: PathBuf,
    min_size: usize,
    /// Prefixed to the files this side writes, so the two sides never pick the same name.
    writer: String,
    next: AtomicU64,
    /// Whether dropping this removes the directory (the pool's side does).
    owner: bool,
}

impl SharedDir {
    /// Creates a fresh private directory under `/dev/shm` for buffers of at least
    /// `min_size` bytes, first removing the directories of VMs that are gone. `None` when
    /// the machine has no `/dev/shm` or it cannot be written: buffers then travel in
    /// messages.
    pub fn create(min_size: usize) -> Option<SharedDir> {
        let base = Path::new(BASE);
        if !base.is_dir() {
            return None;
        }
        sweep(base);
        SharedDir::create_in(base, min_size).ok()
    }

    /// [`SharedDir::create`] under `base`.
    pub fn create_in(base: &Path, min_size: usize) -> std::io::Result<SharedDir> {
        let path = base.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            &crate::auth::new_token()[..12]
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(SharedDir {
            path,
            min_size: min_size.max(1),
            writer: "c".to_owned(),
            next: AtomicU64::new(0),
            owner: true,
        })
    }

    /// The worker's side of a directory the pool created: refused unless it is a
    /// directory owned by this process's user that no one else may enter.
    pub fn join(path: &Path, min_size: usize) -> Result<SharedDir, String> {
        if !path.is_absolute() {
            return Err(format!("{} is not an absolute path", path.display()));
        }
        let meta =
            std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", path.display()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(format!("{} belongs to another user", path.display()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!("{} may be entered by other users", path.display()));
        }
        Ok(SharedDir {
            path: path.to_path_buf(),
            min_size: min_size.max(1),
            writer: format!("w{}", std::process::id()),
            next: AtomicU64::new(0),
            owner: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers of at least this many bytes are shared.
    pub fn min_size(&self) -> usize {
        self.min_size
    }

    /// Moves the buffers of `payload` of at least the minimum size into files, listing
    /// them in `payload.shared` and leaving their entries empty. A buffer that cannot be
    /// written (the memory filesystem is full) stays where it is.
    pub fn share(&self, payload: &mut Payload) {
        for (index, buffer) in payload.buffers.iter_mut().enumerate() {
            if buffer.len() < self.min_size {
                continue;
            }
            let name = format!(
                "{}-{}",
                self.writer,
                self.next.fetch_add(1, Ordering::Relaxed)
            );
            let file = self.path.join(&name);
            match write_new(&file, buffer) {
                Ok(()) => {
                    payload.shared.push(Shared {
                        slot: index as i32,
                        name,
                        size: buffer.len() as u64,
                    });
                    *buffer = Bytes::new();
                }
                Err(err) => {
                    let _ = std::fs::remove_file(&file);
                    tracing::debug!(
                        "a {}-byte buffer travels in the message: {}: {err}",
                        buffer.len(),
                        file.display()
                    );
                }
            }
        }
    }

    /// Puts the files `payload.shared` names back into its buffers (mapped, not copied) and
    /// removes them. `limit` bounds the bytes one payload may map. On an error every file
    /// the payload names is removed.
    pub fn take(&self, payload: &mut Payload, limit: usize) -> Result<(), String> {
        let shared = std::mem::take(&mut payload.shared);
        let result = self.map_all(payload, &shared, limit);
        for entry in &shared {
            if let Ok(file) = self.file(&entry.name) {
                let _ = std::fs::remove_file(file);
            }
        }
        result
    }

    fn map_all(
        &self,
        payload: &mut Payload,
        shared: &[Shared],
        limit: usize,
    ) -> Result<(), String> {
        let total = shared
            .iter()
            .map(|s| s.size)
            .fold(0u64, u64::saturating_add);
        if total > limit as u64 {
            return Err(format!(
                "the payload's shared buffers hold {total} bytes, more than the {limit} allowed"
            ));
        }
        for entry in shared {
            let buffer = payload
                .buffers
                .get_mut(usize::try_from(entry.slot).unwrap_or(usize::MAX))
                .ok_or_else(|| format!("payload has no buffer {}", entry.slot))?;
            *buffer = self.map(entry)?;
        }
        Ok(())
    }

    /// The path of a file named by the other side: a plain name inside the directory.
    fn file(&self, name: &str) -> Result<PathBuf, String> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
            return Err(format!("{name:?} is not a shared buffer's name"));
        }
        Ok(self.path.join(name))
    }

    fn map(&self, entry: &Shared) -> Result<Bytes, String> {
        let path = self.file(&entry.name)?;
        let fail = |e: std::io::Error| format!("shared buffer {}: {e}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() || meta.len() != entry.size {
            return Err(format!(
                "shared buffer {} holds {} bytes, {} were announced",
                path.display(),
                meta.len(),
                entry.size
            ));
        }
        if entry.size == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: the file was written and closed by the other side before it sent the
        // frame, lives in a directory only this user may enter, and is removed right after
        // this mapping: nothing writes or truncates it while the mapping lives.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(entry.size as usize)
                .populate()
                .map(&file)
        }
        .map_err(fail)?;
        Ok(Bytes::from_owner(map))
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Removes the directories under `base` left by VMs that are gone (killed before their
/// pools could remove them).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid > 0 && !alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-shared-{}", crate::auth::new_token()));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn payload(buffers: Vec<Bytes>) -> Payload {
        Payload {
            buffers,
            ..Payload::default()
        }
    }

    #[test]
    fn large_buffers_cross_through_files_that_the_receiver_removes() {
        let base = scratch();
        let pool_side = SharedDir::create_in(&base, 1024).unwrap();
        let worker_side = SharedDir::join(pool_side.path(), 1024).unwrap();
        let big = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        let small = Bytes::from_static(b"small");
        let mut sent = payload(vec![small.clone(), big.clone()]);
        pool_side.share(&mut sent);
        assert_eq!(sent.shared.len(), 1);
        assert_eq!(sent.shared[0].slot, 1);
        assert!(sent.buffers[1].is_empty());
        assert_eq!(sent.buffers[0], small);

        worker_side.take(&mut sent, usize::MAX).unwrap();
        assert!(sent.shared.is_empty());
        assert_eq!(sent.buffers[1], big);
        assert_eq!(std::fs::read_dir(pool_side.path()).unwrap().count(), 0);

        let dir = pool_side.path().to_path_buf();
        drop(worker_side);
        assert!(
            dir.is_dir(),
            "the worker's side does not remove the directory"
        );
        drop(pool_side);
        assert!(!dir.exists(), "the pool's side removes it");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_directory_others_may_enter_is_refused() {
        let base = scratch();
        let open = base.join("open");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&open)
            .unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = SharedDir::join(&open, 1).unwrap_err();
        assert!(err.contains("other users"), "{err}");
        assert!(SharedDir::join(Path::new("relative"), 1).is_err());
        assert!(SharedDir::join(&base.join("missing"), 1).is_err());
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn names_outside_the_directory_and_wrong_sizes_fail_the_payload() {
        let base = scratch();
        let dir = SharedDir::create_in(&base, 1).unwrap();
        std::fs::write(base.join("outside"), b"secret").unwrap();
        for name in ["../outside", ".hidden", "", "a/b"] {
            let mut p = payload(vec![Bytes::new()]);
            p.shared.push(Shared {
                slot: 0,
                name: name.to_owned(),
                size: 6,
            });
            let err = dir.take(&mut p, usize::MAX).unwrap_err();
            assert!(err.contains("not a shared buffer's name"), "{err}");
        }
        assert!(base.join("outside").exists());

        let mut p = payload(vec![Bytes::from_static(b"abcdef")]);
        dir.share(&mut p);
        p.shared[0].size = 99;
        let err = dir.take(&mut p, usize::MAX).unwrap_err();
        assert!(err.contains("99 were announced"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut p = payload(vec![Bytes::from_static(b"abcdef")]);
        dir.share(&mut p);
        let err = dir.take(&mut p, 3).unwrap_err();
        assert!(err.contains("more than the 3 allowed"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed");

        let mut p = payload(vec![]);
        p.shared.push(Shared {
            slot: 4,
            name: "c-77".to_owned(),
            size: 0,
        });
        assert!(dir.take(&mut p, usize::MAX).is_err());
        drop(dir);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn directories_of_dead_vms_are_swept() {
        let base = scratch();
        // A pid that cannot exist (above the kernel's limit), and this process.
        let dead = base.join(format!("{PREFIX}{}-abc", i32::MAX));
        let live = base.join(format!("{PREFIX}{}-abc", std::process::id()));
        let other = base.join("unrelated-1");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep(&base);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
        std::fs::remove_dir_all(base).unwrap();
    }
}
