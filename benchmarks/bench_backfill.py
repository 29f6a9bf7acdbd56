"""Backfill a trust's history: N referrals and 8 session artefacts each, time and peak RSS.

Targets: 100,000 referrals and 800,000 artefacts in under 10 minutes on this machine,
peak RSS under 300 MB, and peak RSS within 10% between a 10,000 and a 100,000 backlog.

Phase 1 is `ehr-bridge backfill` (its own process, measured with wait4) against the
simulator process. Phase 2 is the provider side of the same history: one first-session
bundle per referral (Encounter, PHQ-9, GAD-7 and WSAS each as QuestionnaireResponse plus
Observation, and the note: 8 artefacts) written into the provider folder, then collected
by `ehr-bridge sync --once --flow collect` (also measured), which validates and stores
them and queues their write-backs.

Collect commits 100 bundles per transaction with set-based writes, and once the backlog
passes 400 bundles it validates them in two worker processes (one per core) while it
writes the previous batch. Its figures are therefore wall seconds, CPU seconds of the
whole process tree (wait4), the peak RSS of its largest process (wait4, what the target
names) and the peak of the tree's summed RSS (sampled from /proc every 0.2 s), so
the workers' memory is not hidden. `EHR_BRIDGE_COLLECT_WORKERS=0` measures it without
the pool.

    .venv/bin/python benchmarks/bench_backfill.py --referrals 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_common import (
    PYTHON,
    bridge_config,
    result,
    run_measured,
    say,
    simulator_process,
    workdir,
)

from ehr_bridge.config import load_config
from ehr_bridge.domain.session import build_encounter, build_note, build_score, session_bundle
from ehr_bridge.security.keyring import open_store

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
    store = open_store(config)  # `backfill` sealed the rows with the config's key
    written = 0
    for number, referral in enumerate(store.list_referrals("demo-trust")):
        key = f"bench{number:07d}"
        text = template.replace(_SR, referral.id).replace(_PATIENT, referral.patient_id)
        (folder / f"{key}.json").write_text(text.replace(_KEY, key), "utf-8")
        written += 1
    store.close()
    return written


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (Linux)."""
    found = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                children = [int(c) for c in handle.read().split()]
        except OSError:
            continue
        for child in children:
            found += _tree(child)
    return found


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_measured_tree(args: list[str]) -> tuple[int, float, float, float, float]:
    """(exit code, seconds, CPU seconds, peak RSS MB, peak summed RSS MB of the tree)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "ehr_bridge", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], sum(_rss_mb(pid) for pid in _tree(process.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, seconds, cpu, usage.ru_maxrss / 1024, peak[0]


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
        bundles = _write_sessions_apart(config)
        sync = ["--config", str(config), "sync", "--once", "--flow", "collect"]
        code, seconds, cpu, rss, tree = run_measured_tree(sync)
        if code != 0:
            raise SystemExit(f"collect failed with exit code {code}")
        count = bundles * ARTEFACTS_PER_REFERRAL
        say(
            f"collect of {count} session artefacts ({bundles} bundles): {seconds:.1f} s "
            f"({seconds / bundles * 1000:.2f} ms a bundle), CPU {cpu:.1f} s, "
            f"peak RSS {rss:.0f} MB (process tree {tree:.0f} MB)"
        )
        figures.update(
            artefacts=count,
            collect_seconds=round(seconds, 1),
            collect_cpu_seconds=round(cpu, 1),
            collect_rss_mb=round(rss, 1),
            collect_tree_rss_mb=round(tree, 1),
        )
        figures["total_seconds"] = round(figures["backfill_seconds"] + seconds, 1)
    return figures


def _write_sessions_apart(config_path: Path) -> int:
    """``write_sessions`` in its own process, so this one stays small.

    A child's ``ru_maxrss`` starts from its parent's high-water mark (the memory image it
    was forked from, before exec), so a parent that had just loaded 100,000 ledger rows
    would lend its size to the collect it measures: 316 MB reported for a collect whose
    own VmHWM never passed 140 MB.
    """
    command = [PYTHON, __file__, "--write-sessions", str(config_path)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--no-artefacts", action="store_true", help="skip phase 2")
    parser.add_argument("--write-sessions", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_sessions is not None:  # the child of _write_sessions_apart
        print(write_sessions(args.write_sessions), flush=True)
        return
    runs = [run(n, artefacts=not args.no_artefacts) for n in args.referrals]
    rss = [r["backfill_rss_mb"] for r in runs]
    spread = _spread(rss)
    say(f"peak RSS spread across backlogs: {spread:.1f}% (target within 10%)")
    collect_rss = [r["collect_rss_mb"] for r in runs if "collect_rss_mb" in r]
    collect_spread = _spread(collect_rss)
    if collect_rss:
        say(f"collect peak RSS spread across backlogs: {collect_spread:.1f}%")
    result(
        "backfill",
        runs=runs,
        rss_spread_percent=round(spread, 1),
        collect_rss_spread_percent=round(collect_spread, 1),
        cpus=os.cpu_count(),
    )


def _spread(values: list[float]) -> float:
    """How far the largest figure is above the smallest, in percent."""
    return (max(values) - min(values)) / min(values) * 100 if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
