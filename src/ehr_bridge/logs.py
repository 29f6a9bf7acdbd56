"""Logging set-up with one redaction path, as text for people or JSON lines for machines.

Our own log calls carry only internal ids, codes and counts (the ``extra`` keys are
printed as ``key=value``, or as JSON members). The redacting filter is the second line of
defence: anything that looks like an NHS number, an e-mail address, a UK phone number or
a postcode is masked in every record, whichever library logged it, before either
formatter sees it.

Correlation ids tie lines together without naming anyone: ``cycle`` is minted for each
flow run (``correlation``), and ``record`` is the internal id of the record in hand (an
outbox key or our ServiceRequest id), taken from the ``correlation`` context or from the
``outbox``/``referral`` extra the flows already log.

Libraries' chatter is DEBUG: APScheduler's "Running job ..." / "executed successfully"
and Alembic's "Context impl SQLiteImpl." are INFO to them, so their loggers are set to
WARNING below DEBUG, and at DEBUG their INFO lines are written as DEBUG. What stays at
INFO is ours: one line per flow run with its counts (``sync.cycle``), and the events
that matter (a referral delivered, an item written, a daemon started or stopped).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ehr_bridge.security.files import open_private, private_dir

LogFormat = Literal["text", "json"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_cycle: ContextVar[str | None] = ContextVar("ehr_bridge_cycle", default=None)
_record: ContextVar[str | None] = ContextVar("ehr_bridge_record", default=None)

_PATTERNS = [
    re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)"),  # NHS number, 10-digit phones
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),  # e-mail
    re.compile(r"(?<!\w)0\d{4} ?\d{6}(?!\d)"),  # UK phone, 11 digits
    re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b"),  # postcode
]
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Mask anything shaped like a patient identifier."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders each record's message, masks identifiers, and drops the raw args."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops a record."""
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def new_cycle_id() -> str:
    """A short random id for one flow run (random, so it says nothing about the data)."""
    return "cy-" + secrets.token_urlsafe(6)


@contextmanager
def correlation(*, cycle: str | None = None, record: str | None = None) -> Iterator[None]:
    """Stamp every log line emitted inside with a cycle and/or record id (internal ids only).

    Context variables follow the thread (and asyncio task), so the daemon's flows, which
    run in a thread pool, never see each other's ids.
    """
    tokens = []
    if cycle is not None:
        tokens.append((_cycle, _cycle.set(cycle)))
    if record is not None:
        tokens.append((_record, _record.set(record)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class CorrelationFilter(logging.Filter):
    """Adds ``cycle`` and ``record`` to each record that has them; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy the ids from the context, falling back to the record's own internal id."""
        cycle = _cycle.get()
        if cycle is not None and not hasattr(record, "cycle"):
            record.cycle = cycle
        if not hasattr(record, "record"):
            own = getattr(record, "outbox", None) or getattr(record, "referral", None)
            current = _record.get() or own
            if current is not None:
                record.record = str(current)
        return True


class KeyValueFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` with the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Append extras, and print exceptions by type only (their text may hold data)."""
        base = super().format(record)
        extras = " ".join(
            f"{k}={v}" for k, v in sorted(record.__dict__.items()) if k not in _STANDARD
        )
        return f"{base} {extras}".rstrip()

    def formatException(self, ei: object) -> str:
        """Only the exception type: a traceback's text may quote patient data."""
        exc_type = ei[0] if isinstance(ei, tuple) else None
        return f"exception: {getattr(exc_type, '__name__', 'unknown')}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation ids, extras.

    Records reach it already redacted. Values that are not JSON scalars are written as
    their (redacted) text, and exceptions by type only, as in the text format.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a single line of JSON."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in sorted(record.__dict__.items()):
            if key not in _STANDARD and key not in line:
                line[key] = _json_value(value)
        if record.exc_info:
            exc_type = record.exc_info[0]
            line["exception"] = getattr(exc_type, "__name__", "unknown")
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _json_value(value: object) -> object:
    """Scalars as they are; anything else as redacted text (its repr might quote data)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


#: libraries whose INFO lines are routine: DEBUG for us
CHATTY = ("apscheduler", "alembic")


class ChatterFilter(logging.Filter):
    """Writes the INFO lines of ``CHATTY`` libraries as DEBUG; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Relabel an INFO record from a chatty library as DEBUG."""
        if record.levelno == logging.INFO and record.name.split(".", 1)[0] in CHATTY:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_libraries(level: str | int = "INFO") -> None:
    """Set the libraries' loggers for our ``level``: their INFO only when we log DEBUG.

    SQLAlchemy logs statements *with their parameters* at INFO, so it never goes below
    WARNING whatever the level.
    """
    threshold = level if isinstance(level, int) else logging.getLevelName(level)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(max(threshold, logging.INFO))
    for name in CHATTY:
        logging.getLogger(name).setLevel(
            logging.DEBUG if threshold <= logging.DEBUG else logging.WARNING
        )


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def setup_logging(
    level: str = "INFO",
    file: Path | None = None,
    *,
    stderr: bool = True,
    log_format: LogFormat = "text",
) -> None:
    """Configure the ``ehr_bridge`` logger (and the root) with redaction on every handler."""
    formatter = _formatter(log_format)
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if file is not None:
        private_dir(file.parent)
        open_private(file, "a").close()  # created 0600 first: the handler keeps its mode
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ehr_bridge", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(ChatterFilter())
        handler.addFilter(RedactingFilter())
        handler.addFilter(CorrelationFilter())
        handler._ehr_bridge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level)
