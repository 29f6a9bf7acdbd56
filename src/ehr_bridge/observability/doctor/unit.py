"""The systemd unit: it stops on a configuration error, restarts on anything else, may write.

``RestartPreventExitStatus`` must list the CLI's configuration-error exit code (2): a daemon
that cannot start would otherwise be restarted every ``RestartSec`` for ever, each time
failing the same way. With ``ProtectSystem=strict`` everything outside ``ReadWritePaths``
is read-only to the daemon, so each folder it writes must be under one of them.
"""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from ehr_bridge.observability.doctor.model import Findings

UNIT_NAME = "ehr-bridge.service"
#: where ``systemctl`` finds an installed unit, the administrator's copy first
UNIT_PLACES = (
    Path("/etc/systemd/system") / UNIT_NAME,
    Path("/usr/local/lib/systemd/system") / UNIT_NAME,
    Path("/usr/lib/systemd/system") / UNIT_NAME,
    Path("/lib/systemd/system") / UNIT_NAME,
)
_RESTARTING = frozenset({"on-failure", "always"})
_HIDDEN_BY_PROTECT_HOME = (Path("/home"), Path("/root"), Path("/run/user"))


def read_unit(path: Path) -> dict[str, list[str]]:
    """Directive -> every value it is given (continuation lines joined; an empty one resets)."""
    found: dict[str, list[str]] = {}
    lines = path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    for line in lines:
        text = line.strip()
        if not text or text[0] in "#;[" or "=" not in text:
            continue
        name, _, value = text.partition("=")
        values = found.setdefault(name.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return found


def check_unit(
    found: Findings,
    unit: Path | None,
    *,
    config_path: Path,
    config_exit: int,
    folders: list[tuple[str, Path]],
) -> None:
    """The ``systemd`` checks of ``unit`` (or the installed one, if any)."""
    path = unit or next((p for p in UNIT_PLACES if p.is_file()), None)
    if path is None:
        found.warn(
            "systemd",
            f"no unit installed at {UNIT_PLACES[0]}",
            "install config/ehr-bridge.service (docs/operations.md, Install) or pass "
            "--unit FILE; nothing to do if systemd does not run ehr-bridge",
        )
        return
    try:
        directives = read_unit(path)
    except (OSError, UnicodeDecodeError) as exc:
        found.fail(
            "systemd",
            f"cannot read the unit {path} ({type(exc).__name__})",
            "pass the unit's path: `systemctl show -p FragmentPath ehr-bridge`",
        )
        return
    _exit_codes(found, path, directives, config_exit)
    if _same_config(found, path, directives, config_path):
        _writable(found, path, directives, folders)


def _exit_codes(
    found: Findings, path: Path, directives: dict[str, list[str]], config_exit: int
) -> None:
    codes = " ".join(directives.get("RestartPreventExitStatus", [])).split()
    restart = (directives.get("Restart") or ["no"])[-1]
    wanted = str(config_exit)
    if wanted not in codes:
        listed = " ".join(codes) or "not set"
        found.fail(
            "systemd",
            f"{path}: RestartPreventExitStatus is {listed}, but ehr-bridge "
            f"exits {config_exit} on a configuration error: systemd would restart it "
            "to fail the same way for ever",
            f"set RestartPreventExitStatus={wanted}",
        )
    elif len(codes) > 1:
        others = " ".join(c for c in codes if c != wanted)
        found.warn(
            "systemd",
            f"{path}: RestartPreventExitStatus also lists {others}: a "
            "daemon failing with it is not restarted",
            f"set RestartPreventExitStatus={wanted} only",
        )
    if restart not in _RESTARTING:
        found.warn(
            "systemd",
            f"{path}: Restart={restart}: a daemon that fails is not restarted",
            "set Restart=on-failure",
        )
    elif codes == [wanted]:
        found.passed(
            "systemd",
            f"{path}: Restart={restart}, RestartPreventExitStatus={wanted} "
            "(the configuration-error exit: no restart loop)",
        )


def _same_config(
    found: Findings, path: Path, directives: dict[str, list[str]], config_path: Path
) -> bool:
    """True unless the unit runs another config than the one doctor checked."""
    command = (directives.get("ExecStart") or [""])[-1].lstrip("@-:+!")
    try:
        args = shlex.split(command)
    except ValueError:
        return True
    named = next((b for a, b in itertools.pairwise(args) if a == "--config"), None)
    if named is None or Path(named).resolve() == config_path.resolve():
        return True
    found.warn(
        "systemd",
        f"{path} runs the daemon with --config {named}, not {config_path}",
        f"run doctor with --config {named} to check what the daemon runs",
    )
    return False


def _writable(
    found: Findings, path: Path, directives: dict[str, list[str]], folders: list[tuple[str, Path]]
) -> None:
    strict = (directives.get("ProtectSystem") or [""])[-1] == "strict"
    hide_home = (directives.get("ProtectHome") or [""])[-1] in ("yes", "true", "read-only")
    allowed = [
        Path(p.lstrip("-+")) for v in directives.get("ReadWritePaths", []) for p in v.split()
    ]
    blocked = []
    for what, folder in folders:
        target = folder.resolve()
        if hide_home and any(target.is_relative_to(h) for h in _HIDDEN_BY_PROTECT_HOME):
            blocked.append(f"{what} {folder} (hidden by ProtectHome)")
        elif strict and not any(target.is_relative_to(a.resolve()) for a in allowed):
            blocked.append(f"{what} {folder}")
    if blocked:
        found.fail(
            "systemd",
            f"{path}: the daemon cannot write to {'; '.join(blocked)}",
            "add those folders to ReadWritePaths (ProtectSystem=strict leaves the rest "
            "read-only), or move them under /var/lib/ehr-bridge",
        )
