//! Large payload buffers through shared memory instead of gRPC messages.
//!
//! Through gRPC a 100 MB tensor is copied four times on its way (into tonic's buffer, into
//! the socket, out of it, and into the assembled slot). Through a [`SharedDir`] it is
//! copied at most twice: the sender writes the buffer to a fresh file in a private
//! directory on a memory filesystem and sends the file's name in `Payload.shared`; the
//! receiver takes the file's bytes and removes it at once.
//!
//! How the receiver takes them depends on whom it trusts. The worker maps the pool's files
//! (read-only, zero-copy: Python reads them through an `np.frombuffer` view): only the BEAM
//! writes them. The pool's side never maps a worker's file: Python code in the worker
//! could keep the file open and truncate it (reading the mapping would then raise SIGBUS
//! and kill the VM) or write into it (changing an "immutable" binary under its owner).
//! It reads the file into memory of its own instead, with `read(2)`, which a truncation
//! can only cut short (failing that exchange); a copy at memory speed, measured in
//! `bench/tensor_bench.exs`.
//!
//! The pool creates a directory under `/dev/shm` (mode 0300: its owner may enter it, but
//! no one may list it) and, for each worker connection, a directory inside it with a
//! random 128-bit name (mode 0700), which it offers to that worker alone in the handshake.
//! A worker thus cannot find the files of the other workers, whose sessions may belong to
//! other users of the application; it would have to change the pool directory's mode
//! first, which processes of the same user can always do, so this is a fence against
//! discovery and not a boundary between users. The worker joins its directory only if it
//! is a directory of its own user that no one else may enter, and only reads plain file
//! names inside it. A file lives from the moment its frame is sent until its receiver
//! takes it; files of frames that never arrived (a connection that died) go with the
//! connection's directory, and the directories of a VM that was killed are removed by the
//! next pool that starts.
//!
//! Anything that goes wrong on the way falls back or fails small: a buffer that cannot be
//! written travels in the message as before, and a file that cannot be read fails that
//! exchange only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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

/// The mode of a pool's directory: its owner may create, enter and remove the connection
/// directories it knows the names of, but not list them.
const POOL_DIR_MODE: u32 = 0o300;

/// How a side takes the buffers it receives (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    /// Into memory of its own: the sender may be hostile.
    Copy,
    /// As a read-only mapping of the file: the sender is trusted.
    Map,
}

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
    receive: Receive,
    /// The connections' directories made inside this one (the pool's directory), so that
    /// removing it never needs to list it.
    connections: std::sync::Mutex<Vec<PathBuf>>,
}

impl SharedDir {
    /// Creates a fresh pool directory under `/dev/shm` for buffers of at least `min_size`
    /// bytes, first removing the directories of VMs that are gone. `None` when the machine
    /// has no `/dev/shm` or it cannot be written: buffers then travel in messages. Its
    /// connections use directories of their own (see [`SharedDir::connection`]).
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
        std::fs::DirBuilder::new()
            .mode(POOL_DIR_MODE)
            .create(&path)?;
        // The mode given to mkdir is narrowed by the umask, never widened: set it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(POOL_DIR_MODE))?;
        Ok(SharedDir::pool_side(path, min_size))
    }

    /// A directory of its own for one worker connection, inside this pool directory, named
    /// by 128 random bits (mode 0700). It is removed when the last reference to it goes.
    pub fn connection(&self) -> std::io::Result<SharedDir> {
        let path = self.path.join(&crate::auth::new_token()[..32]);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.clone());
        Ok(SharedDir::pool_side(path, self.min_size))
    }

    /// Removes the directory now (the pool's side: when the pool closes), without ever
    /// making it listable: the connections' directories it made by name, then the empty
    /// directory itself. Idempotent.
    pub fn remove(&self) {
        let connections =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for connection in connections {
            let _ = std::fs::remove_dir_all(connection);
        }
        match std::fs::remove_dir(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => remove_tree(&self.path),
            _ => {}
        }
    }

    /// The pool's side of a directory it created: it removes the directory when dropped,
    /// and reads (never maps) what workers write into it.
    fn pool_side(path: PathBuf, min_size: usize) -> SharedDir {
        SharedDir {
            path,
            min_size: min_size.max(1),
            writer: "c".to_owned(),
            next: AtomicU64::new(0),
            owner: true,
            receive: Receive::Copy,
            connections: Default::default(),
        }
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
            receive: Receive::Map,
            connections: Default::default(),
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

    /// Puts the files `payload.shared` names back into its buffers (read on the pool's
    /// side, mapped on the worker's: see the module docs) and removes them. `limit` bounds the bytes one payload may map. On an error every file
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
            *buffer = self.read(entry)?;
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

    fn read(&self, entry: &Shared) -> Result<Bytes, String> {
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
        let size = usize::try_from(entry.size).map_err(|_| "a shared buffer too large")?;
        if size == 0 {
            return Ok(Bytes::new());
        }
        match self.receive {
            Receive::Copy => copy_of(file, size).map_err(|e| {
                format!(
                    "shared buffer {}: {e} (the sender changed it while it was read)",
                    path.display()
                )
            }),
            Receive::Map => {
                // SAFETY: the file was written and closed by the BEAM, which the worker
                // trusts, before it sent the frame; it lives in a directory only this user
                // may enter and whose name only this worker was told, and is removed right
                // after this mapping.
                let map = unsafe { memmap2::MmapOptions::new().len(size).populate().map(&file) }
                    .map_err(fail)?;
                Ok(Bytes::from_owner(map))
            }
        }
    }
}

/// The `size` bytes of `file`, read into fresh memory. A file that holds fewer bytes by the
/// time they are read (its writer truncated it) is an error, never a signal.
fn copy_of(mut file: File, size: usize) -> std::io::Result<Bytes> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(size)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
    (&mut file).take(size as u64).read_to_end(&mut buffer)?;
    if buffer.len() != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("only {} of its {size} bytes could be read", buffer.len()),
        ));
    }
    Ok(Bytes::from(buffer))
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        if self.owner {
            self.remove();
        }
    }
}

/// Removes a directory whose entries are not known (a dead VM's, or one that still holds
/// something it did not make), making it listable first.
pub(crate) fn remove_tree(path: &Path) {
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    let _ = std::fs::remove_dir_all(path);
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
            remove_tree(&entry.path());
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
    use std::sync::Arc;

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
        let pool = SharedDir::create_in(&base, 1024).unwrap();
        let pool_side = Arc::new(pool.connection().unwrap());
        let worker_side = SharedDir::join(pool_side.path(), 1024).unwrap();
        assert_eq!(pool_side.path().parent(), Some(pool.path()));
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

        // And back: the worker writes, the pool's side reads.
        let mut back = payload(vec![big.clone()]);
        worker_side.share(&mut back);
        assert_eq!(back.shared.len(), 1);
        pool_side.take(&mut back, usize::MAX).unwrap();
        assert_eq!(back.buffers[0], big);

        let dir = pool_side.path().to_path_buf();
        drop(worker_side);
        assert!(
            dir.is_dir(),
            "the worker's side does not remove the directory"
        );
        drop(pool_side);
        assert!(!dir.exists(), "the connection's side removes it");
        let pool_dir = pool.path().to_path_buf();
        drop(pool);
        assert!(!pool_dir.exists(), "the pool's side removes its own");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_closing_pool_removes_the_directories_it_made_by_name() {
        let base = scratch();
        let pool = SharedDir::create_in(&base, 1).unwrap();
        let connection = pool.connection().unwrap();
        std::fs::write(connection.path().join("c0"), b"data").unwrap();
        // The connection is still alive (its worker has not gone yet) when the pool closes.
        pool.remove();
        assert!(!pool.path().exists());
        assert!(!connection.path().exists());
        drop(connection);
        // Something the pool did not make is removed too (the directory is then opened
        // to be listed, as the sweep of a dead VM's directory does).
        let other = SharedDir::create_in(&base, 1).unwrap();
        std::fs::create_dir(other.path().join("unknown")).unwrap();
        drop(other);
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn connections_have_directories_that_others_cannot_list_or_guess() {
        let base = scratch();
        let pool = SharedDir::create_in(&base, 1).unwrap();
        let mode = std::fs::metadata(pool.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, POOL_DIR_MODE);
        let one = pool.connection().unwrap();
        let two = pool.connection().unwrap();
        assert_ne!(one.path(), two.path());
        for dir in [&one, &two] {
            let name = dir.path().file_name().unwrap().to_str().unwrap();
            assert_eq!(name.len(), 32, "128 bits in hex: {name}");
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // SAFETY: geteuid has no preconditions. Root may list any directory.
        if unsafe { libc::geteuid() } != 0 {
            let err = std::fs::read_dir(pool.path()).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        }
        drop(one);
        drop(two);
        drop(pool);
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_file_its_writer_changes_or_truncates_cannot_change_what_the_pool_received() {
        use std::os::unix::fs::FileExt;
        let base = scratch();
        let pool = SharedDir::create_in(&base, 1).unwrap();
        let pool_side = pool.connection().unwrap();
        let worker_side = SharedDir::join(pool_side.path(), 1).unwrap();
        let data = Bytes::from(vec![b'A'; 1 << 20]);

        // The hostile writer keeps the file open, and changes it after it was received.
        let mut sent = payload(vec![data.clone()]);
        worker_side.share(&mut sent);
        let kept = OpenOptions::new()
            .read(true)
            .write(true)
            .open(pool_side.path().join(&sent.shared[0].name))
            .unwrap();
        pool_side.take(&mut sent, usize::MAX).unwrap();
        kept.write_all_at(b"TAMPERED", 0).unwrap();
        kept.set_len(0).unwrap();
        assert_eq!(
            sent.buffers[0], data,
            "the received bytes are the pool's own"
        );

        // Truncated before it is read: that exchange fails, nothing else.
        let mut sent = payload(vec![data.clone()]);
        worker_side.share(&mut sent);
        let file = pool_side.path().join(&sent.shared[0].name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = pool_side.take(&mut sent, usize::MAX).unwrap_err();
        assert!(err.contains("holds 10 bytes"), "{err}");
        assert!(!file.exists());

        // Truncated between the check of its size and the read.
        let short = tempfile_with(&base, 100);
        short.set_len(40).unwrap();
        let err = copy_of(short, 100).unwrap_err();
        assert!(
            err.to_string().contains("only 40 of its 100 bytes"),
            "{err}"
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    fn tempfile_with(dir: &Path, size: usize) -> File {
        let path = dir.join("scratch-file");
        std::fs::write(&path, vec![1u8; size]).unwrap();
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
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
