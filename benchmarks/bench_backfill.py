"""Backfill a trust's history: N referrals and 8 session artefacts each, time and peak RSS.

Targets: 100,000 referrals and 800,000 artefacts in under 10 minutes on this machine,
peak RSS under 300 MB, and peak RSS within 10% between a 10,000 and a 100,000 backlog.

Phase 1 is `ehr-bridge backfill` (its own process, measured with wait4) against the
simulator process. Phase 2 is the provider side of the same history: one first-session
bundle per referral (Encounter, PHQ-9, GAD-7 and WSAS each as QuestionnaireResponse plus
Observation, and the note: 8 artefacts) written into the provider folder, then collected
by `ehr-bridge sync --once --flow collect` (also measured), which validates and stores
them and queues their write-backs.

    .venv/bin/python benchmarks/bench_backfill.py --referrals 100000
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_common import bridge_config, result, run_measured, say, simulator_process, workdir

from ehr_bridge.config import load_config
from ehr_bridge.domain.session import build_encounter, build_note, build_score, session_bundle
from ehr_bridge.store import Store

ARTEFACTS_PER_REFERRAL = 8
_SR, _PATIENT, _KEY = "SRPLACEHOLDER", "PATIENTPLACEHOLDER", "KEYPLACEHOLDER"


def _template() -> str:
    """A first-session bundle with placeholder ids, as JSON text to stamp per referral."""
    start = datetime(2026, 10, 1, 18, 0, tzinfo=UTC)
    ids = {"patient_id": _PATIENT, "service_request_id": _SR}
    resources = [
        build_encounter(
            encounter_id=f"{_KEY}-e", start=start, end=start + timedelta(minutes=50), **ids
        )
    ]
    for measure, items in (
        ("phq9", [2, 2, 1, 2, 1, 1, 2, 1, 0]),
        ("gad7", [2, 1, 2, 1, 1, 2, 1]),
        ("wsas", [3, 4, 2, 5, 3]),
    ):
        resources += build_score(
            observation_id=f"{_KEY}-o-{measure}",
            response_id=f"{_KEY}-q-{measure}",
            encounter_id=f"{_KEY}-e",
            measure_key=measure,
            items=items,
            effective=start + timedelta(minutes=45),
            **ids,
        )
    resources.append(
        build_note(
            document_id=f"{_KEY}-n",
            encounter_id=f"{_KEY}-e",
            text="Session 1: assessment, goals agreed, activity diary started.",
            authored=start + timedelta(minutes=55),
            **ids,
        )
    )
    assert len(resources) == ARTEFACTS_PER_REFERRAL
    return json.dumps(session_bundle(f"{_KEY}-b", resources))


def write_sessions(config_path: Path) -> int:
    """One session bundle per stored referral into the provider's sessions folder."""
    config = load_config(config_path)
    template = _template()
    folder = config.resolve("provider") / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url())
    written = 0
    for number, referral in enumerate(store.list_referrals("demo-trust")):
        key = f"bench{number:07d}"
        text = template.replace(_SR, referral.id).replace(_PATIENT, referral.patient_id)
        (folder / f"{key}.json").write_text(text.replace(_KEY, key), "utf-8")
        written += 1
    store.close()
    return written


def run(referrals: int, *, artefacts: bool) -> dict[str, float]:
    """Both phases for one backlog size; seconds and peak RSS of each."""
    figures: dict[str, float] = {"referrals": referrals}
    with simulator_process(referrals) as base_url:
        config = bridge_config(workdir(f"backfill-{referrals}"), base_url, level="WARNING")
        args = ["--config", str(config), "backfill", "-c", "demo-trust", "--since", "2026-01-01"]
        code, seconds, rss = run_measured([*args, "--no-progress"])
        if code != 0:
            raise SystemExit(f"backfill failed with exit code {code}")
    say(f"backfill of {referrals} referrals: {seconds:.1f} s, peak RSS {rss:.0f} MB")
    figures.update(backfill_seconds=round(seconds, 1), backfill_rss_mb=round(rss, 1))
    if artefacts:
        bundles = write_sessions(config)
        sync = ["--config", str(config), "sync", "--once", "--flow", "collect"]
        code, seconds, rss = run_measured(sync)
        count = bundles * ARTEFACTS_PER_REFERRAL
        say(f"collect of {count} session artefacts: {seconds:.1f} s, peak RSS {rss:.0f} MB")
        figures.update(
            artefacts=count, collect_seconds=round(seconds, 1), collect_rss_mb=round(rss, 1)
        )
        figures["total_seconds"] = round(figures["backfill_seconds"] + seconds, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--no-artefacts", action="store_true", help="skip phase 2")
    args = parser.parse_args()
    runs = [run(n, artefacts=not args.no_artefacts) for n in args.referrals]
    rss = [r["backfill_rss_mb"] for r in runs]
    spread = (max(rss) - min(rss)) / min(rss) * 100 if len(rss) > 1 else 0.0
    say(f"peak RSS spread across backlogs: {spread:.1f}% (target within 10%)")
    result("backfill", runs=runs, rss_spread_percent=round(spread, 1), cpus=os.cpu_count())


if __name__ == "__main__":
    main()
