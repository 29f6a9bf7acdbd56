"""The folders a connection reads and writes: the provider folder, HL7 v2 drop and send.

Read only: doctor never creates a folder (run as another user than the daemon's, it would
leave folders the daemon cannot write). A folder the daemon creates at its first start is
a WARN until then; one it could not create, read or write is a FAIL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ehr_bridge.adapters.hl7v2 import Hl7v2Options
from ehr_bridge.config import AppConfig, ConnectionConfig
from ehr_bridge.observability.doctor.model import Findings

#: the folder provider's layout under its root (``adapters.folder.FolderProvider``)
PROVIDER_LAYOUT = ("referrals", "sessions", "sessions/processed", "sessions/rejected")
_RWX = os.R_OK | os.W_OK | os.X_OK


@dataclass(frozen=True)
class Folder:
    """A folder a connection uses, the config key naming it, and what it is for."""

    path: Path
    key: str
    what: str


def connection_folders(app: AppConfig, index: int, connection: ConnectionConfig) -> list[Folder]:
    """Every folder the connection's adapters use, as far as their options can be read."""
    key = f"connection[{index}]"
    found: list[Folder] = []
    provider = connection.provider.options()
    if connection.provider.adapter == "folder" and isinstance(provider.get("path"), str):
        found.append(
            Folder(app.resolve(provider["path"]), f"{key}.provider.path", "provider folder")
        )
    if connection.provider.adapter == "fhir-provider" and isinstance(
        provider.get("state_file"), str
    ):
        state = app.resolve(provider["state_file"]).parent
        found.append(Folder(state, f"{key}.provider.state_file", "collect marker's folder"))
    hl7 = hl7_options(connection.trust.adapter, connection.trust.options())
    if hl7 is not None:
        drop = app.resolve(hl7.drop_folder)
        found.append(Folder(drop, f"{key}.trust.drop_folder", "HL7 v2 drop folder"))
        received = app.resolve(hl7.received_folder) if hl7.received_folder else drop / "received"
        found.append(Folder(received, f"{key}.trust.received_folder", "HL7 v2 received folder"))
        if hl7.send is not None and hl7.send.folder is not None:
            out = app.resolve(hl7.send.folder)
            found.append(Folder(out, f"{key}.trust.send.folder", "HL7 v2 outbound folder"))
    return found


def hl7_options(adapter: str, options: dict[str, Any]) -> Hl7v2Options | None:
    """The HL7 v2 adapter's options, or None (another adapter, or options the build refuses)."""
    if adapter != "hl7v2":
        return None
    try:
        return Hl7v2Options.model_validate(options)
    except ValidationError:
        return None  # the connection's config check names the key


def check_folder(found: Findings, check: str, folder: Folder) -> bool:
    """One folder: there, a folder, and this user may list, read and write in it.

    Returns True when it is in place; a missing folder the daemon can create is a WARN.
    """
    path, where = folder.path, f"{folder.what} {folder.path} ({folder.key})"
    if not path.exists():
        parent = nearest_existing(path)
        if not os.access(parent, os.W_OK | os.X_OK):
            found.fail(
                check,
                f"{where} does not exist, and {parent} is not writable by this user",
                f"create it for the daemon's user: install -d -o ehr-bridge -m 0700 {path}",
            )
        else:
            found.warn(
                check,
                f"{where} does not exist yet",
                "the daemon creates it (0700) at its first start; create it now if another "
                "system's account must share it",
            )
        return False
    if not path.is_dir():
        found.fail(check, f"{where} is not a folder", f"point {folder.key} at a folder")
        return False
    if not os.access(path, _RWX):
        found.fail(
            check,
            f"{where} is not readable and writable by this user (uid {os.geteuid()})",
            f"give the daemon's user access: chown ehr-bridge {path} (or its group, g+rwx)",
        )
        return False
    return True


def check_provider_folder(found: Findings, folder: Folder) -> bool:
    """The folder provider: its root and ``PROVIDER_LAYOUT``, no subfolder a link out."""
    if not check_folder(found, "provider", folder):
        return False
    missing, bad = [], False
    for name in PROVIDER_LAYOUT:
        sub = folder.path / name
        if sub.is_symlink():
            found.fail(
                "provider",
                f"{sub} is a symbolic link: the folder adapter refuses to read or write through it",
                f"replace the link with a real folder: rm {sub}; install -d -m 0700 {sub}",
            )
            bad = True
        elif not sub.exists():
            missing.append(name)
        else:
            bad = not check_folder(found, "provider", Folder(sub, folder.key, "folder")) or bad
    if bad:
        return False
    if missing:
        found.warn(
            "provider",
            f"provider folder {folder.path}: {', '.join(missing)} missing",
            "the daemon creates the layout at its first start",
        )
        return False
    found.passed(
        "provider",
        f"provider folder {folder.path}: {', '.join(PROVIDER_LAYOUT)} in place and writable",
    )
    return True


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest ancestor that does."""
    step = path
    while not step.exists() and step.parent != step:
        step = step.parent
    return step
