"""`ehr-bridge demo`: the whole product on the embedded default, in under a minute.

It starts the trust simulator in-process on a free loopback port, writes a real config
into the work folder, and runs real cycles (pull, deliver, the synthetic platform's
sessions, collect, push) until every seeded referral is delivered and every session's
note and scores are in the simulator. The work folder keeps the state database, the
config, the provider folders, the log and the simulator's final records, so `status`,
`referrals`, `outbox` and `quarantine` can be tried on it afterwards.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehr_bridge.config import load_config
from ehr_bridge.logs import setup_logging
from ehr_bridge.mapping.shipped import bundled_mapping
from ehr_bridge.security import generate_key
from ehr_bridge.security.files import open_private, private_dir, write_private
from ehr_bridge.security.keyring import open_store
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.cycle import run_cycle

CONNECTION = "demo-trust"
PROVIDER_CODE = "IESO01"
KEYRING_FILE = "secrets/keyring"
TOKEN_FILE = "secrets/trust-token"  # noqa: S105 (a path, not a secret)
TRUST_KEYS = {
    "care_contacts": "care contacts",
    "clinical_notes": "notes",
    "assessments": "scores",
    "risk_alerts": "risk alerts",
}

CONFIG_TEMPLATE = """\
# Written by `ehr-bridge demo`: the embedded default (SQLite + folder provider).
[database]
url = "sqlite:///state/ehr-bridge.db"

[logging]
level = "DEBUG"
file = "logs/ehr-bridge.log"

[security]                    # note text and raw payloads are encrypted at rest (AES-GCM)
encryption_key_file = "{keyring_file}"
require_encryption = true

[[connection]]
name = "{connection}"
test_connection = true        # a simulator: its 999-range synthetic NHS numbers are accepted
mapping = "mappings/iaptus.yaml"

[connection.provider_org]
code = "{provider_code}"
display = "Online typed therapy provider (demo)"

[connection.trust]
adapter = "iaptus"
base_url = "{base_url}/api/v1"
token_file = "{token_file}"
page_size = 20

[connection.provider]
adapter = "folder"
path = "provider"

[connection.retry]
max_attempts = 8
base_delay_seconds = 0.05
max_delay_seconds = 0.5
"""


@dataclass
class DemoResult:
    """What the demo did and what it found in the simulator at the end."""

    workdir: Path
    cycles: int = 0
    totals: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    at_trust: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    missing: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    good_referrals: int = 0
    delivered: int = 0

    @property
    def complete(self) -> bool:
        """Every good referral delivered and every artefact at the trust exactly once."""
        return self.missing == 0 and self.duplicates == 0 and self.delivered == self.good_referrals


def prepare_workdir(workdir: Path, base_url: str, token: str) -> Path:
    """Write the config, the token file and the mapping; return the config path."""
    private_dir(workdir)
    for stale in ("state", "provider", "logs"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    private_dir(workdir / "mappings")
    write_private(workdir / "mappings" / "iaptus.yaml", bundled_mapping("iaptus.yaml").read_bytes())
    token_path = workdir / TOKEN_FILE
    private_dir(token_path.parent)
    write_private(token_path, token)
    _write_private(workdir / KEYRING_FILE, generate_key() + "\n")
    config_path = workdir / "ehr-bridge.toml"
    write_private(
        config_path,
        CONFIG_TEMPLATE.format(
            connection=CONNECTION,
            provider_code=PROVIDER_CODE,
            base_url=base_url,
            token_file=TOKEN_FILE,
            keyring_file=KEYRING_FILE,
        ),
    )
    return config_path


def _write_private(path: Path, text: str) -> None:
    """A secret file created readable by its owner only (never group/world for a moment)."""
    private_dir(path.parent)
    if path.exists():
        path.unlink()
    with open_private(path, "x") as handle:
        handle.write(text)


def run_demo(
    workdir: Path,
    *,
    seed: int = 1,
    referrals: int = 50,
    hostile: int = 5,
    max_cycles: int = 15,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo end to end and return what happened."""
    token = f"demo-{seed}-token"
    simulator = TrustSimulator(
        seed=seed, referrals=referrals, hostile=hostile, provider_code=PROVIDER_CODE, token=token
    )
    base_url = simulator.start()
    try:
        config_path = prepare_workdir(workdir, base_url, token)
        config = load_config(config_path)
        setup_logging("DEBUG", config.resolve("logs/ehr-bridge.log"), stderr=False)
        say(
            f"trust simulator on {base_url}"
            f" (seed {seed}, {referrals} referrals, {hostile} malformed)"
        )
        result = _cycles(config_path, seed, max_cycles, say)
        export = simulator.export()
    finally:
        simulator.stop()
    write_private(workdir / "trust-export.json", json.dumps(export, indent=2))
    _check_trust(result, export, workdir, seed)
    return result


def _cycles(
    config_path: Path, seed: int, max_cycles: int, say: Callable[[str], None]
) -> DemoResult:
    config = load_config(config_path)
    (conn,) = build_connections(config)
    store = open_store(config)
    platform = SyntheticPlatform(config.resolve("provider"), seed=seed)
    result = DemoResult(workdir=config.base_dir)

    def after(flow: str) -> None:
        if flow == "deliver":
            step = platform.step()
            result.totals["sessions written by the platform"] += step.sessions_written

    try:
        for number in range(1, max_cycles + 1):
            report = run_cycle(conn, store, between=after)
            result.cycles = number
            line = _tally(result, report)
            say(f"cycle {number}: {line}")
            if _settled(store, conn.name, report):
                break
        result.quarantined = sorted(
            (
                {"record": q.record_ref, "field": q.field, "reason": q.reason}
                for q in store.quarantine_rows(connection=conn.name)
            ),
            key=lambda entry: str(entry["record"]),
        )
        counts = store.referral_counts(conn.name)
        result.delivered = counts["delivered"]
    finally:
        store.close()
    return result


def _tally(result: DemoResult, report: dict[str, Any]) -> str:
    pulled = report.get("pull", {})
    delivered = report.get("deliver", {})
    collected = report.get("collect", {})
    pushed = report.get("push", {})
    result.totals["referrals stored"] += pulled.get("stored", 0)
    result.totals["referrals quarantined"] += pulled.get("quarantined", 0)
    result.totals["delivered"] += delivered.get("delivered", 0)
    result.totals["submissions collected"] += collected.get("stored", 0)
    result.totals["written to trust"] += pushed.get("written", 0)
    parts = [
        f"pulled {pulled.get('stored', 0)} new or changed"
        f" (+{pulled.get('quarantined', 0)} quarantined)",
        f"delivered {delivered.get('delivered', 0)} (+{delivered.get('redelivered', 0)} updated)",
        f"collected {collected.get('stored', 0)} session bundles",
        f"wrote {pushed.get('written', 0)} items to the trust",
    ]
    if pushed.get("retried_later"):
        parts.append(f"{pushed['retried_later']} to retry")
    errors = [f"{flow}: {r['error']}" for flow, r in report.items() if "error" in r]
    return ", ".join(parts) + (f"; errors: {'; '.join(errors)}" if errors else "")


def _settled(store: Store, connection: str, report: dict[str, Any]) -> bool:
    """Done once a whole cycle found nothing new to write (it also re-read our own updates)."""
    outbox = store.outbox_counts(connection)
    counts = store.referral_counts(connection)
    open_rows = outbox.get("pending", 0) + outbox.get("in_flight", 0)
    quiet = not report.get("push", {}).get("written") and not report.get("collect", {}).get(
        "stored"
    )
    return open_rows == 0 and counts["delivered"] == counts["pulled"] and quiet


def _check_trust(result: DemoResult, export: dict[str, Any], workdir: Path, seed: int) -> None:
    """Compare the platform's artefacts with the simulator's own records."""
    platform = SyntheticPlatform(workdir / "provider", seed=seed)
    kinds = {"encounter": "care contacts", "score": "scores", "note": "notes"}
    for artefact in platform.expected_artefacts():
        if artefact.kind in kinds:
            result.expected[kinds[artefact.kind]] += 1
        result.expected["risk alerts"] += artefact.raises_risk
    references: Counter[str] = Counter()
    hostile_ids = {h.get("referral_id") for h in export.get("hostile", [])}
    for entry in export.get("referrals", []):
        record = entry.get("referral", {})
        if record.get("referred_on_to") == PROVIDER_CODE and record.get("id") not in hostile_ids:
            result.good_referrals += 1
        for key, label in TRUST_KEYS.items():
            items = entry.get(key) or []
            result.at_trust[label] += len(items)
            references.update(f"{key}:{i.get('client_reference')}" for i in items)
    result.duplicates = sum(n - 1 for n in references.values() if n > 1)
    result.missing = sum(
        max(result.expected[k] - result.at_trust[k], 0) for k in TRUST_KEYS.values()
    )
