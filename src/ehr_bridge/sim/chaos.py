"""Chaos runs: real daemon processes, simulator faults, SIGKILL at random moments.

The proof behind "nothing lost, nothing written twice": daemons run ``ehr-bridge run`` as
real processes against the trust simulator with faults on (5xx, 429 with Retry-After,
connection resets, writes committed then dropped, latency) and are killed with SIGKILL at
random moments, then restarted. Meanwhile the synthetic platform writes sessions. At the
end the simulator's own records are compared with what the platform produced: every
referral delivered once, every care contact, note and score present exactly once.

Used by the chaos tests (fixed seed, about 20 kills) and by ``benchmarks/chaos.py``
(hundreds of kills, random seeds).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ehr_bridge.demo import prepare_workdir
from ehr_bridge.security.files import open_private, write_private
from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.sim.platform import ExpectedArtefact, SyntheticPlatform
from ehr_bridge.sim.trust import TrustSimulator

TOKEN = "chaos-token"  # noqa: S105 (the simulator's own throwaway token)
TRUST_KEYS = ("care_contacts", "clinical_notes", "assessments", "status_events", "risk_alerts")
DEFAULT_FAULTS = FaultRates(
    error_5xx=0.05,
    rate_limit_429=0.03,
    reset=0.03,
    ambiguous=0.05,
    latency_ms=3,
    retry_after_seconds=0.2,
)
DAEMON_CONFIG = """
[connection.schedule]
pull_seconds = 0.3
deliver_seconds = 0.3
collect_seconds = 0.3
push_seconds = 0.2

[observability]
port = 0  # several daemons on one host: each takes a free port
"""


@dataclass
class ChaosSettings:
    """One chaos run."""

    workdir: Path
    database_url: str | None = None  # None: SQLite in the work folder
    seed: int = 1
    referrals: int = 12
    #: malformed records added to the trust (quarantined by design, left out of the counts)
    hostile: int = 0
    daemons: int = 1
    kills: int = 20
    kill_every: tuple[float, float] = (0.4, 1.6)  # seconds between kills, uniformly
    faults: FaultRates = field(default_factory=lambda: DEFAULT_FAULTS)
    settle_timeout: float = 120.0


@dataclass
class ChaosReport:
    """What happened and what the trust holds at the end."""

    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    referrals: int = 0
    delivered: int = 0
    expected: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    conflicts: int = 0
    settled: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The figures, one per line, for benchmarks and failure messages."""
        return [
            f"kills: {self.kills}",
            f"faults injected: {dict(sorted(self.faults.items()))}",
            f"referrals: {self.referrals} (delivered to the provider: {self.delivered})",
            f"artefacts expected: {dict(sorted(self.expected.items()))}",
            f"artefacts written:  {dict(sorted(self.written.items()))}",
            f"lost: {self.lost}, duplicated: {self.duplicated}, 409 conflicts: {self.conflicts}",
            f"settled: {self.settled} in {self.seconds:.1f} s",
        ]


class _Daemons:
    """The daemon processes of a run, started and killed on demand."""

    def __init__(self, config: Path, log: IO[bytes]) -> None:
        self.config, self.log = config, log
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and CLI)
            [sys.executable, "-m", "ehr_bridge", "--config", str(self.config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.processes.remove(process)

    def stop_all(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


def _write_config(settings: ChaosSettings, base_url: str) -> Path:
    config = prepare_workdir(settings.workdir, base_url, TOKEN)
    text = config.read_text("utf-8") + DAEMON_CONFIG
    text = text.replace("max_attempts = 8", "max_attempts = 100")
    text = text.replace("base_delay_seconds = 0.05", "base_delay_seconds = 0.02")
    text = text.replace("[connection.retry]", "[connection.retry]\nlease_seconds = 10")
    text = text.replace('level = "DEBUG"', 'level = "INFO"')
    if settings.database_url:
        text = text.replace(
            'url = "sqlite:///state/ehr-bridge.db"', f'url = "{settings.database_url}"'
        )
    elif settings.daemons > 1:  # several daemons on one SQLite file, on purpose
        text = text.replace("[database]", "[database]\nallow_shared_sqlite = true")
    write_private(config, text)
    return config


def run_chaos(settings: ChaosSettings) -> ChaosReport:
    """Run daemons under faults and kills until settled; compare the trust's records."""
    started = time.monotonic()
    simulator = TrustSimulator(
        seed=settings.seed, referrals=settings.referrals, hostile=settings.hostile, token=TOKEN
    )
    base_url = simulator.start()
    report = ChaosReport()
    try:
        config = _write_config(settings, base_url)
        platform = SyntheticPlatform(settings.workdir / "provider", seed=settings.seed)
        simulator.faults.set_rates(settings.faults)
        with open_private(settings.workdir / "daemons.log", "ab") as log:
            daemons = _Daemons(config, log)
            try:
                report.kills = _kill_loop(settings, daemons, platform)
                report.settled = _settle(settings, simulator, platform, started)
            finally:
                daemons.stop_all()
        report.faults = Counter(simulator.faults.snapshot()["fired"])
        _compare(report, simulator.export(), platform, settings)
        report.conflicts = simulator.state.conflicts
    finally:
        simulator.stop()
    report.seconds = time.monotonic() - started
    return report


def _kill_loop(settings: ChaosSettings, daemons: _Daemons, platform: SyntheticPlatform) -> int:
    rng = random.Random(settings.seed)
    for _ in range(settings.daemons):
        daemons.start()
    for _ in range(settings.kills):
        deadline = time.monotonic() + rng.uniform(*settings.kill_every)
        while time.monotonic() < deadline:
            platform.step()
            time.sleep(0.05)
        daemons.kill(rng.choice(daemons.processes))
        daemons.start()
    return settings.kills


def _settle(
    settings: ChaosSettings, simulator: TrustSimulator, platform: SyntheticPlatform, started: float
) -> bool:
    deadline = time.monotonic() + settings.settle_timeout
    while time.monotonic() < deadline:
        platform.step()
        if _complete(simulator.export(), platform, settings.referrals):
            time.sleep(1.0)  # a few more cycles: anything written now would be a duplicate
            return True
        time.sleep(0.3)
    return False


def _complete(export: dict[str, Any], platform: SyntheticPlatform, referrals: int) -> bool:
    expected = _expected_by_trust(platform, export)
    if len(expected) < referrals:
        return False
    written = sum(len(e[k]) for e in export["referrals"] for k in TRUST_KEYS)
    risks = sum(a.raises_risk for v in expected.values() for a in v)
    wanted = sum(len(v) for v in expected.values()) + risks + 2 * referrals
    return written >= wanted


def _expected_by_trust(
    platform: SyntheticPlatform, export: dict[str, Any]
) -> dict[str, list[ExpectedArtefact]]:
    by_sr: dict[str, list[ExpectedArtefact]] = {}
    for artefact in platform.expected_artefacts():
        if artefact.kind != "episode_end":
            by_sr.setdefault(artefact.service_request_id, []).append(artefact)
    trust_ids = _trust_ids(platform)
    return {trust_ids[sr]: items for sr, items in by_sr.items() if sr in trust_ids}


def _trust_ids(platform: SyntheticPlatform) -> dict[str, str]:
    ids: dict[str, str] = {}
    for path in platform.referrals_dir.glob("*.json"):
        try:
            bundle = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "ServiceRequest":
                ids[path.stem] = str(resource["identifier"][0]["value"])
    return ids


def _compare(
    report: ChaosReport,
    export: dict[str, Any],
    platform: SyntheticPlatform,
    settings: ChaosSettings,
) -> None:
    report.referrals = settings.referrals
    report.delivered = len(list(platform.referrals_dir.glob("*.json")))
    expected_by_trust = _expected_by_trust(platform, export)
    hostile = {h.get("referral_id") for h in export.get("hostile", [])}
    for entry in export["referrals"]:
        record = entry["referral"]
        if record.get("referred_on_to") != "IESO01" or record.get("id") in hostile | {None}:
            continue
        artefacts = expected_by_trust.get(record["id"], [])
        expected = Counter(_expected_key(a) for a in artefacts)
        expected.update({("status", "accepted"): 1, ("status", "discharged"): 1})
        expected.update(("risk", "phq9_item9") for a in artefacts if a.raises_risk)
        actual = Counter(_actual_key(kind, item) for kind in TRUST_KEYS for item in entry[kind])
        report.expected.update(k[0] for k in expected.elements())
        report.written.update(k[0] for k in actual.elements())
        report.lost += sum((expected - actual).values())
        report.duplicated += sum((actual - expected).values())


def _expected_key(artefact: ExpectedArtefact) -> tuple[Any, ...]:
    if artefact.kind == "encounter":
        assert artefact.at is not None
        at = artefact.at
        return ("contact", at.date().isoformat(), at.strftime("%H:%M"), artefact.attendance)
    if artefact.kind == "note":
        return ("note", artefact.text)
    return ("score", artefact.measure, artefact.total)


_TOOLS = {"720433000": "phq9", "445455005": "gad7", "LOCAL-WSAS": "wsas"}


def _actual_key(kind: str, item: dict[str, Any]) -> tuple[Any, ...]:
    if kind == "care_contacts":
        return ("contact", item["date"], item["time"], item["attendance"])
    if kind == "clinical_notes":
        return ("note", item["text"])
    if kind == "assessments":
        return ("score", _TOOLS.get(item["tool_code"], item["tool_code"]), item["score"])
    if kind == "risk_alerts":
        return ("risk", item["reason"])
    return ("status", item["status"])
