"""A run owns its folder: an exclusive lock held for the whole run, and a finished result never replaced.

The lock is `fcntl.flock` on an open file in the run folder (`.crownq.lock`). The kernel drops it when
the process ends, however it ends (crash, OOM kill, node reboot), so a dead run never leaves a stuck
lock; the file's text (pid, host, start time) is only there to name the holder in the refusal. On
Linux, flock on NFS is emulated with POSIX byte-range locks, so it also holds across the nodes of a
cluster sharing the folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from crownq.results import RESULT_FILENAME, holds_finished_run

LOCK_FILENAME = ".crownq.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds this run folder, or the folder holds a finished run."""


class RunLock:
    """`with RunLock(run_dir):` ... ; raises RunFolderBusy naming the holder when the folder is taken."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunFolderBusy(
                f"{self.run_dir} is in use by another run ({_holder(self.path)}); two runs in one folder "
                "would resume each other's checkpoint and overwrite each other's result. Wait for it, or "
                "start this run in another folder (hydra.run.dir=...)") from None
        # Who holds it, for the message a second run prints (the lock itself is the flock, not this text).
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"pid {info['pid']} on host {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its pid yet"


def refuse_finished_run(run_dir: str | os.PathLike) -> None:
    """A folder whose result.json says `ok` holds a finished run: nothing may overwrite it."""
    path = Path(run_dir) / RESULT_FILENAME
    if holds_finished_run(path):  # no result, or an unreadable one: nothing finished to protect
        raise RunFolderBusy(f"{path} holds a finished run (status ok); crownq never overwrites one. Start "
                            "this run in a new folder (hydra.run.dir=...), or move that folder away first")
