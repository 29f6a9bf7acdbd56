"""The checks shared by every connection: the config file, the state database, free disk.

The database is looked at, never changed: a SQLite file that is not there yet is a WARN
(the daemon creates it), and an older schema is reported with the step that upgrades it
(``ehr-bridge db upgrade``; SQLite upgrades itself when the daemon starts).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ehr_bridge.config import AppConfig, load_config
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability.doctor.folders import nearest_existing
from ehr_bridge.observability.doctor.model import Findings
from ehr_bridge.security.crypto import KeyRing, PayloadCipher
from ehr_bridge.security.keyring import holds_plain_payloads
from ehr_bridge.store import Store
from ehr_bridge.store.migrate import MIGRATIONS, current_revision, head_revision
from ehr_bridge.store.store import make_engine

MIB = 1024 * 1024
GIB = 1024 * MIB
#: free space below which a folder's disk is a FAIL (SQLite and file writes start failing)
DISK_FAIL_BYTES = 100 * MIB
#: free space (or share of the disk) below which it is a WARN
DISK_WARN_BYTES = 1 * GIB
DISK_WARN_SHARE = 0.10
_SQLITE = "sqlite:///"


def check_config(found: Findings, path: Path) -> AppConfig | None:
    """The ``config`` check: the file reads and validates (None when it does not)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        if exc.key in (None, "--config"):  # the file itself: not found, not TOML
            fix = "pass --config FILE or set EHR_BRIDGE_CONFIG to the daemon's config file"
        else:
            fix = f"correct {exc.key} in {path} (docs/operations.md, Configure)"
        found.fail("config", exc.safe_message, fix)
        return None
    enabled = sum(1 for c in config.connection if c.enabled)
    found.passed("config", f"{path.resolve()} is valid ({enabled} enabled connection(s))")
    if not config.connection:
        found.warn("config", "no [[connection]] is configured", "add one (docs/operations.md)")
    return config


def sqlite_path(config: AppConfig) -> Path | None:
    """The SQLite state file, or None for PostgreSQL (or an in-memory database)."""
    url = config.database_url()
    if url.startswith(_SQLITE) and ":memory:" not in url:
        return Path(url[len(_SQLITE) :])
    return None


def check_database(found: Findings, config: AppConfig, ring: KeyRing | None, keys_ok: bool) -> None:
    """The ``database`` check: reachable, schema at this version's head, keys open it."""
    url = config.database_url()
    shown = _shown(url)
    path = sqlite_path(config)
    if path is not None and not path.exists():
        if not os.access(nearest_existing(path.parent), os.W_OK | os.X_OK):
            found.fail(
                "database",
                f"no state database at {path} (database.url), and this user cannot create it",
                f"create its folder for the daemon's user: install -d -o ehr-bridge -m 0700 "
                f"{path.parent}",
            )
            return
        found.warn(
            "database",
            f"no state database yet at {path} (database.url)",
            "the daemon creates it at its first start (SQLite)",
        )
        return
    try:
        engine = make_engine(_with_connect_timeout(url))
    except (OSError, SQLAlchemyError) as exc:
        found.fail(
            "database",
            f"cannot open {shown} ({type(exc).__name__})",
            "check database.url and that this user may read and write it",
        )
        return
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        found.fail(
            "database",
            f"cannot reach {shown} ({type(exc).__name__})",
            "check database.url, that the server runs, and its user and password",
        )
        return
    finally:
        engine.dispose()
    if not _schema(found, current, head_revision(), sqlite=path is not None):
        return
    if keys_ok:
        _store_keys(found, url, ring, shown)
    else:
        found.passed(
            "database",
            f"{shown}: schema at {head_revision()} (whether the keyring opens it is checked "
            "once the keyring loads)",
        )


def _shown(url: str) -> str:
    """The database URL to print: its password masked (or only its key, if it is malformed)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "database.url"


def _with_connect_timeout(url: str) -> str:
    """A PostgreSQL URL with a connect timeout, so a host that never answers ends soon."""
    if not url.startswith("postgresql") or "connect_timeout" in url:
        return url
    return url + ("&" if "?" in url else "?") + "connect_timeout=5"


def _schema(found: Findings, current: str | None, head: str, *, sqlite: bool) -> bool:
    """WARN/FAIL for a schema not at ``head``; True when it is at head."""
    if current == head:
        return True
    if current is not None and not _known(current):
        found.fail(
            "database",
            f"the schema is at {current}, which this version of ehr-bridge "
            f"does not know (it needs {head}): a newer version wrote it",
            "install the ehr-bridge version that wrote it (docs/operations.md, Upgrade)",
        )
        return False
    at = current or "nothing (an empty database)"
    if sqlite:
        found.warn(
            "database",
            f"the schema is at {at}; this version needs {head}",
            "the daemon upgrades SQLite when it starts (or `ehr-bridge db upgrade`)",
        )
    else:
        found.fail(
            "database",
            f"the schema is at {at}; this version needs {head}",
            "stop every daemon, then `ehr-bridge db upgrade` (docs/operations.md, Upgrade)",
        )
    return False


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False


def _store_keys(found: Findings, url: str, ring: KeyRing | None, shown: str) -> None:
    """The store opens with the keyring (every sealed payload's key is in it)."""
    try:
        store = Store(url, migrate=False, cipher=PayloadCipher(ring))
    except ConfigError as exc:
        found.fail(
            "database",
            exc.safe_message,
            "restore the keyring that holds those keys from its backup (docs/security.md)",
        )
        return
    except SQLAlchemyError as exc:
        found.fail(
            "database",
            f"cannot read {shown} ({type(exc).__name__})",
            "check database.url and this user's rights on it",
        )
        return
    try:
        plain = ring is not None and holds_plain_payloads(store)
    finally:
        store.close()
    found.passed(
        "database", f"{shown}: schema at {head_revision()}; the keyring opens every stored payload"
    )
    if plain:
        found.warn(
            "database",
            "some payloads are still in plain text (stored before a key was configured)",
            "`ehr-bridge keys rotate` seals them",
        )


@dataclass(frozen=True)
class Space:
    """Free space on the disk holding ``folders`` (a label and a path each)."""

    folders: tuple[tuple[str, Path], ...]
    free: int
    total: int


def check_disk(found: Findings, folders: list[tuple[str, Path]]) -> None:
    """The ``disk`` check: free space on each disk holding a folder ehr-bridge writes."""
    for space in _by_disk(folders):
        names = "; ".join(f"{what} {path}" for what, path in space.folders)
        share = space.free / space.total if space.total else 0.0
        said = f"{_size(space.free)} free ({share:.0%}) for {names}"
        if space.free < DISK_FAIL_BYTES:
            found.fail(
                "disk",
                said,
                "free space now: below 100 MiB the state database and "
                "the provider folder stop taking writes",
            )
        elif space.free < DISK_WARN_BYTES or share < DISK_WARN_SHARE:
            found.warn(
                "disk",
                said,
                "free space or grow the disk before it is under 100 MiB "
                "(docs/operations.md, Is it healthy?)",
            )
        else:
            found.passed("disk", said)


def _by_disk(folders: list[tuple[str, Path]]) -> list[Space]:
    groups: dict[int, list[tuple[str, Path]]] = {}
    anchors: dict[int, Path] = {}
    for what, path in folders:
        anchor = nearest_existing(path)
        try:
            device = anchor.stat().st_dev
        except OSError:
            continue
        anchors.setdefault(device, anchor)
        if (what, path) not in groups.setdefault(device, []):
            groups[device].append((what, path))
    spaces = []
    for device, group in groups.items():
        usage = shutil.disk_usage(anchors[device])
        spaces.append(Space(tuple(group), usage.free, usage.total))
    return spaces


def _size(count: int) -> str:
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{count / MIB:.0f} MiB"
