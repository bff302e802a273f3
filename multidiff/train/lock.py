"""A lock file that keeps two runs from writing the same run folder.

`out/.lock` holds {"pid", "host"} of its owner. It is created atomically with its content (written
to a private name, then hard-linked to `.lock`, which fails if the lock exists). A lock whose pid is
no longer alive on this host is stale (its run was killed) and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import RunLockedError

LOCK_FILE = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive lock on a run folder. Use as a context manager or call acquire()/release()."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        """Take the lock or raise RunLockedError naming its live owner (a dead owner's lock is taken over)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host, pid = socket.gethostname(), os.getpid()
        mine = self.path.with_name(f"{LOCK_FILE}.{host}.{pid}")
        mine.write_text(json.dumps({"pid": pid, "host": host, "time": time.time()}))
        try:
            for _ in range(3):
                try:
                    os.link(mine, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    owner = self._owner()
                    if owner is None:
                        continue  # released meanwhile
                    if owner.get("host") == host and owner.get("pid") == pid:
                        raise RunLockedError(f"{self.path.parent} is already used by this process; "
                                             "one Trainer per run folder")
                    if owner.get("host") == host and isinstance(owner.get("pid"), int) \
                            and not _pid_alive(owner["pid"]):
                        self.path.unlink(missing_ok=True)  # stale: its run is dead
                        continue
                    who = (f"process {owner.get('pid')} on host {owner.get('host')}" if owner
                           else "another process (unreadable lock file)")
                    raise RunLockedError(
                        f"run folder {self.path.parent} is in use by {who}. Wait for it, use another "
                        f"--out, or delete {self.path} if no run is using the folder.")
            raise RunLockedError(f"could not take the lock {self.path}; delete it if no run uses the folder")
        finally:
            mine.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            owner = self._owner()
            if owner and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
