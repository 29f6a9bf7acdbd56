"""One daemon per SQLite file: an OS lock beside the database, held for the process's life.

SQLite is the store for one daemon on one host (PostgreSQL is the one to share: its
daemons split the work with leases). A second ``ehr-bridge run`` on the same file would
start silently and compete with the first for the file's write lock, so the daemon takes
``<database>.daemon.lock`` with ``flock`` before it opens the store, and a second one
is refused with a ConfigError (exit 2) naming the first's process id. The kernel drops
the lock when the process ends however it ends (SIGKILL and power loss included), so a
stale lock file never blocks a restart. ``[database] allow_shared_sqlite = true`` turns
the check off (the chaos tests run several daemons on one file on purpose).

Only ``run`` takes the lock: a ``sync --once``, a ``backfill`` or a support command
beside the daemon is as safe as before.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from ehr_bridge.config import AppConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.files import private_dir

SUFFIX = ".daemon.lock"


def lock_path(config: AppConfig) -> Path | None:
    """``<database file>.daemon.lock`` for a SQLite file; None for PostgreSQL or in-memory."""
    url = make_url(config.database_url())
    if not url.drivername.startswith("sqlite"):
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database + SUFFIX)


class DaemonLock:
    """The lock of one daemon's SQLite file; ``acquire`` until the process ends."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_config(cls, config: AppConfig) -> DaemonLock:
        """The lock this config asks for (none for PostgreSQL, or when sharing is allowed)."""
        return cls(None if config.database.allow_shared_sqlite else lock_path(config))

    def acquire(self) -> None:
        """Take the lock (again is a no-op); ConfigError if another daemon holds it.

        An OSError (the database's folder cannot be created yet) is left to the caller,
        which waits for the database as it would for the file itself.
        """
        if self.path is None or self._fd is not None:
            return
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(
                f"another `ehr-bridge run`{holder} is already using this SQLite database"
                f" (it holds {self.path}): SQLite is for one daemon; stop that one, use"
                " PostgreSQL to share the work, or set [database] allow_shared_sqlite = true",
                key="database.url",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race a starting daemon)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _holder(fd: int) -> str:
    """`` (pid N)`` as the holder wrote it, or nothing if it cannot be read."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""
