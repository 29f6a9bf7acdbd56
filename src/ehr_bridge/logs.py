"""Logging set-up with one redaction path.

Our own log calls carry only internal ids, codes and counts (the ``extra`` keys are
printed as ``key=value``). The redacting filter is the second line of defence: anything
that looks like an NHS number, an e-mail address, a UK phone number or a postcode is
masked in every record, whichever library logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

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


def setup_logging(level: str = "INFO", file: Path | None = None, *, stderr: bool = True) -> None:
    """Configure the ``ehr_bridge`` logger (and the root) with redaction on every handler."""
    formatter = KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ehr_bridge", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
        handler._ehr_bridge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # SQLAlchemy logs statements *with their parameters* at INFO: never below WARNING here
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    for chatty in ("urllib3", "apscheduler"):
        logging.getLogger(chatty).setLevel(max(logging.getLevelName(level), logging.INFO))
