"""One doctor run: the shared checks, then each connection's, in a fixed order.

A check that raises something unforeseen becomes a FAIL of its own (by the exception's
type only) and the run goes on: doctor runs from monitoring, where a traceback tells
nobody what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ehr_bridge.config import AppConfig, ConnectionConfig
from ehr_bridge.observability.doctor.connection import check_connection
from ehr_bridge.observability.doctor.folders import connection_folders
from ehr_bridge.observability.doctor.model import Check, Findings, Report
from ehr_bridge.observability.doctor.network import DEFAULT_TIMEOUT
from ehr_bridge.observability.doctor.secrets import check_keyring
from ehr_bridge.observability.doctor.setup import (
    check_config,
    check_database,
    check_disk,
    sqlite_path,
)
from ehr_bridge.observability.doctor.unit import check_unit

T = TypeVar("T")


def run_doctor(
    config_path: Path,
    *,
    config_exit: int,
    only: str | None = None,
    unit: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Report:
    """Every check for the config at ``config_path`` (``only``: that connection's alone).

    ``config_exit`` is the exit code the CLI gives a configuration error, which the systemd
    unit must not restart on.

    Raises:
        ConfigError: ``only`` names no configured connection (key ``connection``).
    """
    shared = Findings()
    config = check_config(shared, config_path)
    if config is None:
        return Report(tuple(shared.checks), unreadable=True)
    if only is not None:
        config.get_connection(only)
    chosen = [(i, c) for i, c in enumerate(config.connection) if only in (None, c.name)]
    folders = written_folders(config, chosen)
    ring = guarded(shared, "keys", check_keyring, shared, config)
    keys_ok = not shared.failed("keys")
    guarded(shared, "database", check_database, shared, config, ring, keys_ok)
    guarded(shared, "disk", check_disk, shared, folders or [("config folder", config.base_dir)])
    guarded(
        shared,
        "systemd",
        check_unit,
        shared,
        unit,
        config_path=config_path,
        config_exit=config_exit,
        folders=folders,
    )
    checks: list[Check] = list(shared.checks)
    for index, connection in chosen:
        found = Findings(connection.name)
        guarded(
            found, "doctor", check_connection, found, config, index, connection, timeout=timeout
        )
        checks += found.checks
    return Report(tuple(checks))


def guarded(
    found: Findings, check: str, step: Callable[..., T], *args: Any, **kwargs: Any
) -> T | None:
    """``step(*args, **kwargs)``, or None and a FAIL naming the exception's type if it raises."""
    try:
        return step(*args, **kwargs)
    except Exception as exc:  # reported, never raised: see the module's docstring
        found.fail(
            check,
            f"the check could not finish ({type(exc).__name__})",
            "run it again; if it repeats, report it with this line",
        )
        return None


def written_folders(
    config: AppConfig, chosen: list[tuple[int, ConnectionConfig]]
) -> list[tuple[str, Path]]:
    """The folders the daemon writes: state, log, and each chosen enabled connection's."""
    found: list[tuple[str, Path]] = []
    state = sqlite_path(config)
    if state is not None:
        found.append(("state folder", state.parent))
    if config.logging.file:
        found.append(("log folder", config.resolve(config.logging.file).parent))
    for index, connection in chosen:
        if not connection.enabled:
            continue
        found += [(f.what, f.path) for f in connection_folders(config, index, connection)]
    return found
