"""--log-format json: one JSON object per line, through the same redaction, with correlation ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ehr_bridge.logs import correlation, new_cycle_id, setup_logging


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "bridge.log"
    setup_logging("DEBUG", path, stderr=False, log_format="json")
    yield path
    setup_logging("WARNING", None, stderr=False)


def _lines(path: Path) -> list[dict[str, object]]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_json_lines_are_redacted_and_carry_extras(json_log: Path) -> None:
    log = logging.getLogger("ehr_bridge.test")
    log.info("patient %s at %s", "943 476 5919", "LS1 4AP", extra={"connection": "t", "n": 3})
    log.warning("mail %s", "someone@example.invalid", extra={"field": "call 07700 900123"})
    first, second = _lines(json_log)
    assert first["message"] == "patient [redacted] at [redacted]"
    assert first["level"] == "INFO"
    assert first["logger"] == "ehr_bridge.test"
    assert first["connection"] == "t"
    assert first["n"] == 3
    assert str(first["ts"]).endswith("+00:00")
    assert second["message"] == "mail [redacted]"
    assert second["field"] == "call [redacted]"
    assert "943" not in json_log.read_text("utf-8")


def test_exceptions_are_named_by_type_only(json_log: Path) -> None:
    try:
        raise ValueError("NHS number 9434765919 is wrong")
    except ValueError:
        logging.getLogger("ehr_bridge.test").exception("flow crashed")
    (line,) = _lines(json_log)
    assert line["exception"] == "ValueError"
    assert "9434765919" not in json_log.read_text("utf-8")


def test_correlation_ids_per_cycle_and_per_record(json_log: Path) -> None:
    log = logging.getLogger("ehr_bridge.test")
    cycle = new_cycle_id()
    with correlation(cycle=cycle):
        log.info("pull page committed")
        log.info("referral delivered", extra={"referral": "0b9e-internal-id"})
        with correlation(record="outbox-key-1"):
            log.info("written to trust")
        log.info("written to trust", extra={"outbox": "key-2", "referral": "r-2"})
    log.info("outside any cycle")
    lines = _lines(json_log)
    assert [line.get("cycle") for line in lines] == [cycle] * 4 + [None]
    assert [line.get("record") for line in lines] == [
        None,
        "0b9e-internal-id",
        "outbox-key-1",
        "key-2",
        None,
    ]
    assert cycle != new_cycle_id()


def test_text_format_is_unchanged_but_gains_the_ids(tmp_path: Path) -> None:
    path = tmp_path / "text.log"
    setup_logging("INFO", path, stderr=False)
    try:
        with correlation(cycle="cy-test"):
            logging.getLogger("ehr_bridge.test").info("hello", extra={"connection": "t"})
        for handler in logging.getLogger().handlers:
            handler.flush()
        line = path.read_text("utf-8").strip()
    finally:
        setup_logging("WARNING", None, stderr=False)
    assert line.endswith("ehr_bridge.test: hello connection=t cycle=cy-test")
