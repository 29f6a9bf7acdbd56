"""Checking provider bundles in worker processes: same verdicts, and a crash loses nothing."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ehr_bridge.domain.session import build_encounter, build_note, session_bundle
from ehr_bridge.domain.validate import SessionArtefacts
from ehr_bridge.sync.bundle_checks import (
    WORKERS_ENV,
    BundleChecker,
    Refusal,
    check_bundles,
    default_workers,
)

JsonDict = dict[str, Any]
START = datetime(2026, 10, 1, 18, 0, tzinfo=UTC)


def _bundles(count: int) -> list[JsonDict]:
    """Good bundles, with every third one broken in a different way."""
    bundles: list[JsonDict] = []
    for n in range(count):
        ids = {"patient_id": f"p{n}", "service_request_id": f"sr{n}"}
        encounter = build_encounter(
            encounter_id=f"e{n}", start=START, end=START + timedelta(minutes=50), **ids
        )
        note = build_note(
            document_id=f"n{n}", encounter_id=f"e{n}", text="ok", authored=START, **ids
        )
        bundle = session_bundle(f"b{n}", [encounter, note])
        if n % 3 == 1:
            bundle["entry"][1]["resource"]["content"][0]["attachment"]["data"] = "ICAg"  # "   "
        if n % 3 == 2:
            bundle = {"_unreadable": "not_json"}
        bundles.append(bundle)
    return bundles


def _summary(verdicts: list[SessionArtefacts | Refusal]) -> list[tuple[str, str | None]]:
    return [
        (v.service_request_id, None) if isinstance(v, SessionArtefacts) else (v.code, v.field)
        for v in verdicts
    ]


def test_the_pool_gives_the_verdicts_checking_in_process_gives() -> None:
    bundles = _bundles(9)
    expected = _summary(check_bundles(bundles))
    with BundleChecker(2, pool_after=0) as checker:
        pending = checker.submit(bundles)
        assert _summary(pending.result()) == expected
    note = "entry[1].resource.content[0].attachment.data"
    assert expected[:3] == [("sr0", None), ("note_empty", note), ("unreadable", "(file)")]


def test_a_broken_pool_falls_back_to_checking_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundles = _bundles(6)
    expected = _summary(check_bundles(bundles))
    with BundleChecker(2, pool_after=0) as checker:
        assert _summary(checker.submit(bundles).result()) == expected  # the pool is up
        for worker in multiprocessing.active_children():
            worker.kill()
            worker.join()
        with caplog.at_level(logging.WARNING):
            verdicts = checker.submit(bundles).result()
            again = checker.submit(bundles).result()
    assert _summary(verdicts) == expected
    assert _summary(again) == expected
    assert any("checking in process" in r.getMessage() for r in caplog.records)


def test_no_pool_for_a_small_collect_or_a_single_worker() -> None:
    bundles = _bundles(3)
    with BundleChecker(2, pool_after=10) as small, BundleChecker(1, pool_after=0) as single:
        for checker in (small, single):
            checker.submit(bundles).result()
    assert multiprocessing.active_children() == []


def test_the_worker_count_can_be_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(WORKERS_ENV, "0")
    assert default_workers() == 0
    monkeypatch.setenv(WORKERS_ENV, "lots")
    assert 1 <= default_workers() <= 2
