"""Files and folders ehr-bridge creates are its own: 0600 and 0700, whatever the umask.

What ehr-bridge writes to disk holds patient data or secrets: the log, reports, referral
bundles and session notes in the provider folder, HL7 messages, the keyring, the demo's
files. The systemd unit sets ``UMask=0077``, but a command run from a shell inherits the
shell's umask (0022 makes files world-readable, 0000 world-writable too), and Python's
defaults (0666 for files, 0777 for folders) keep whatever it lets through. So every file is
created through ``open_private`` (``O_CREAT`` with mode 0600, then ``fchmod``: a file that
was already there keeps its old mode otherwise) and every folder through ``private_dir``
(``mkdir`` 0700, then ``chmod``, exactly 0700 whatever the umask took). A folder that
already exists keeps its mode: the operator may have shared it with the therapy platform's
group on purpose.

``warn_if_shared`` reports a key file (the keyring, a TLS client key, a token or client
secret file) that its group or others may read or write, naming the path only
(``open_to_others`` is the test it applies).

Standard library only, so every layer may use it (``logs`` included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import IO, Literal, overload

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

TextMode = Literal["w", "a", "x"]
BinaryMode = Literal["wb", "ab", "xb"]

log = logging.getLogger(__name__)

_FLAGS = {
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def private_dir(path: Path) -> Path:
    """``path`` as a folder, creating it and any missing parent 0700; existing ones are kept."""
    missing: list[Path] = []
    step = Path(path)
    while not step.is_dir():
        missing.append(step)
        if step.parent == step:
            break
        step = step.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it meanwhile: its mode is its maker's
        os.chmod(folder, PRIVATE_DIR)  # exactly 0700, whatever the umask took away
    return path


@overload
def open_private(path: Path, mode: TextMode = "w", *, encoding: str = "utf-8") -> IO[str]: ...


@overload
def open_private(path: Path, mode: BinaryMode, *, encoding: str = "utf-8") -> IO[bytes]: ...


def open_private(path: Path, mode: str = "w", *, encoding: str = "utf-8") -> IO[str] | IO[bytes]:
    """Open ``path`` for writing as a 0600 file (``w`` truncates, ``a`` appends, ``x`` is new)."""
    binary = mode.endswith("b")
    fd = os.open(path, _FLAGS[mode[0]] | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    try:
        with contextlib.suppress(PermissionError):  # another user's file we may only write
            os.fchmod(fd, PRIVATE_FILE)
        if binary:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path``'s content with ``data`` in a 0600 file (its folder must exist)."""
    if isinstance(data, bytes):
        with open_private(path, "wb") as handle:
            handle.write(data)
    else:
        with open_private(path, "w") as handle:
            handle.write(data)


def open_to_others(path: Path) -> int | None:
    """The mode of ``path`` when its group or others may read or write it, else None.

    None too when the file cannot be read by ``stat`` (its reader reports that itself).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & (stat.S_IRWXG | stat.S_IRWXO) else None


def warn_if_shared(path: Path, key: str) -> bool:
    """Log a warning when group or others may read or write the key file ``path``.

    A finding, not a stop: container secrets are often mounted 0644 and the host's access
    control may still hold. The message names the file and its config key, never what is
    in it. Returns whether it warned. ``ehr-bridge doctor`` reports the same finding.
    """
    mode = open_to_others(path)
    if mode is None:
        return False
    log.warning(
        "key file %s (%s) is open to other users (mode %04o: its group or others may read"
        " or write it): chmod 600 it",
        path,
        key,
        mode,
    )
    return True
