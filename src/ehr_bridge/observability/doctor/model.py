"""What a doctor check finds: one line with a status, what was seen and how to fix it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["PASS", "WARN", "FAIL"]
#: the connection column of a check that is not about one connection
SHARED = "-"


@dataclass(frozen=True)
class Check:
    """One finding; ``message`` and ``fix`` name keys, paths and hosts, never a secret."""

    connection: str
    check: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        """``PASS  <connection> <check>: <what> — <fix>`` (no fix on a pass)."""
        text = f"{self.status}  {self.connection} {self.check}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, str]:
        """The finding as the ``--json`` output lists it."""
        return asdict(self)


@dataclass
class Findings:
    """The checks of one part (the shared setup, or one connection), in the order found."""

    connection: str = SHARED
    checks: list[Check] = field(default_factory=list)

    def passed(self, check: str, message: str) -> None:
        """Record a check that found nothing to fix."""
        self.checks.append(Check(self.connection, check, "PASS", message))

    def warn(self, check: str, message: str, fix: str) -> None:
        """Record something worth a look that does not stop the daemon."""
        self.checks.append(Check(self.connection, check, "WARN", message, fix))

    def fail(self, check: str, message: str, fix: str) -> None:
        """Record something that stops the daemon or a flow until it is fixed."""
        self.checks.append(Check(self.connection, check, "FAIL", message, fix))

    def failed(self, check: str | None = None) -> bool:
        """True if a check (of this name, or any) failed."""
        return any(c.status == "FAIL" and check in (None, c.check) for c in self.checks)


@dataclass(frozen=True)
class Report:
    """Every check of one doctor run; ``unreadable`` when the config could not be read."""

    checks: tuple[Check, ...]
    unreadable: bool = False

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return any(c.status == "FAIL" for c in self.checks)

    def summary(self) -> str:
        """``doctor: 14 PASS, 2 WARN, 1 FAIL``."""
        counts = Counter(c.status for c in self.checks)
        parts = ", ".join(f"{counts[s]} {s}" for s in ("PASS", "WARN", "FAIL"))
        return f"doctor: {parts}"
