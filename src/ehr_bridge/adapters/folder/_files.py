"""File-system primitives the folder adapter relies on: atomic writes and guarded reads.

A shared folder has two writers that never coordinate, so every write must appear whole or
not at all, and every read must refuse anything that could lead outside the folder
(symlinks, special files) or exhaust memory (oversize files).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path

#: what a file name we build from an id may look like (no separators, no leading dot)
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-\.]{0,63}")

#: what a temp file looks like, ours or the platform's: skipped by readers
TEMP_SUFFIX = ".tmp"


class UnreadableFileError(Exception):
    """A file in the folder cannot be offered as JSON; ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_safe_id(value: str) -> bool:
    """Whether ``value`` can become a file name without reaching outside its folder."""
    return SAFE_ID.fullmatch(value) is not None


def is_plain_name(name: str) -> bool:
    """Whether ``name`` names an entry directly inside a folder (not hidden, no separators)."""
    if not name or name.startswith(".") or "\0" in name:
        return False
    return os.sep not in name and (os.altsep is None or os.altsep not in name)


def no_link_out(folder: Path, root: Path) -> bool:
    """Whether ``folder`` (under ``root``) is a real folder there, not a link to elsewhere.

    Someone who can write to a shared root could replace ``sessions/`` with a symlink to
    another place; everything read or written "inside" would then be outside.

    Each step below ``root`` must be a directory by ``lstat`` (a symlink is not one):
    that is ``realpath(folder) == realpath(root)/relative`` without resolving the whole
    path, which collect does once per acknowledged file. ``root`` itself may be a link.
    """
    relative = os.path.relpath(folder, root)
    parts = Path(relative).parts
    if os.path.isabs(relative) or not parts or os.pardir in parts:
        return relative == os.curdir and os.path.isdir(root)
    step = Path(root)
    for part in parts:
        step = step / part
        try:
            mode = os.lstat(step).st_mode
        except OSError:
            return False
        if not stat.S_ISDIR(mode):
            return False
    return True


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` so a concurrent reader sees the old or the new file.

    The temp file lives in the same folder (``os.replace`` is atomic only within one file
    system) and is hidden with a ``.tmp`` suffix so readers skip it; it is fsynced before
    the rename and the folder after it, so a crash never leaves a truncated file behind.
    """
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename; some platforms cannot open folders, which only weakens durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file, refusing symlinks, special files and oversize files.

    ``O_NOFOLLOW`` plus ``fstat`` on the opened descriptor closes the gap between checking a
    path and reading it, so a file swapped for a symlink in between is still refused.

    Raises:
        UnreadableFileError: ``symlink``, ``not_regular_file``, ``too_large`` or ``read_error``.
        FileNotFoundError: the file went away (acknowledged or renamed meanwhile).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = "symlink" if path.is_symlink() else "read_error"
        raise UnreadableFileError(reason) from exc
    try:
        _check_opened(fd, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnreadableFileError("too_large")
    return data


def _check_opened(fd: int, max_bytes: int) -> None:
    """Refuse what was actually opened if it is not a regular file or is oversize."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError("not_regular_file")
    if info.st_size > max_bytes:
        raise UnreadableFileError("too_large")
