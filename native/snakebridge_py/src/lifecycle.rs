//! Ending the worker when its owner is gone: standard input reaching end of file, or the
//! parent process dying. Both end the process at once (`_exit`), without waiting for
//! calls in progress: nobody is left to receive their results.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// How often the parent process is checked.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// Starts the two watcher threads. `socket_path` is removed before exiting.
pub fn watch(socket_path: PathBuf) -> std::io::Result<()> {
    let stdin_socket = socket_path.clone();
    std::thread::Builder::new()
        .name("snakebridge-stdin".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            exit_now(&stdin_socket);
        })?;
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    std::thread::Builder::new()
        .name("snakebridge-parent".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            std::thread::sleep(PARENT_POLL);
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                exit_now(&socket_path);
            }
        })?;
    Ok(())
}

fn exit_now(socket_path: &PathBuf) -> ! {
    let _ = std::fs::remove_file(socket_path);
    // SAFETY: _exit ends the process immediately; no Rust or Python state is used after.
    // Unlike exit(3) it runs no atexit handlers, which could block on threads that are
    // still running a call.
    unsafe { libc::_exit(0) }
}
