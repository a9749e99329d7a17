"""Helpers shared by the benchmark worker scripts."""

import os
import sys
import threading
import time


def exit_when_orphaned(poll_seconds: float = 0.5) -> None:
    """Exit the process if the parent (the Rust bench driver) goes away.

    Guards against leaked workers if the driver is killed without cleaning up.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def remove_stale_socket(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def announce_ready(path: str) -> None:
    """Print the readiness line the driver waits for."""
    sys.stdout.write(f"READY {path}\n")
    sys.stdout.flush()
