"""ADSM outcomes through the real flow: trust referral with a provisional diagnosis -> pull ->
deliver -> the synthetic platform (ADSM mode) -> collect -> push -> ``report outcomes``.

The expected figures are worked out here from what the platform says it wrote (its
``expected_artefacts``), independently of the store and the report loader, with the national
definitions: PHQ-9 plus the ADSM the catalogue pairs with the diagnosis, GAD-7 only when the
ADSM has no pair.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.domain.measures import Measure, measure_table
from ehr_bridge.sim.generator import ADSM_PROBLEMS, generate
from ehr_bridge.sim.platform import ExpectedArtefact, SyntheticPlatform
from support.trusts import trust_harness

ADSM_ON = "[reports]\nadsm_enabled = true\n"


def _pair(scores: list[ExpectedArtefact], key: str) -> tuple[float, float] | None:
    mine = sorted((s for s in scores if s.measure == key), key=lambda s: s.at)
    if len(mine) < 2 or mine[0].total is None or mine[-1].total is None:
        return None
    return float(mine[0].total), float(mine[-1].total)


def _flags(pairs: list[tuple[Measure, tuple[float, float]]]) -> dict[str, bool]:
    case = any(m.at_caseness(first) for m, (first, _) in pairs)
    below = not any(m.at_caseness(last) for m, (_, last) in pairs)
    changes = [(m, round(last - first, 2)) for m, (first, last) in pairs]
    worse = any(m.reliable_increase(c) for m, c in changes)
    better = any(m.reliable_decrease(c) for m, c in changes)
    return {"case": case, "recovered": case and below, "improved": better and not worse,
            "deteriorated": worse}  # fmt: skip


def expected_outcomes(artefacts: list[ExpectedArtefact], adsm: str) -> dict[str, int]:
    """Finished, not at caseness, recovered, improved, deteriorated, by the definitions."""
    table = measure_table(adsm_enabled=True)
    by_referral: dict[str, list[ExpectedArtefact]] = defaultdict(list)
    for artefact in artefacts:
        by_referral[artefact.service_request_id].append(artefact)
    counts = dict.fromkeys(("finished", "not_case", "recovered", "improved", "deteriorated",
                            "adsm_used"), 0)  # fmt: skip
    for items in by_referral.values():
        treated = [a for a in items if a.kind == "encounter" and a.attendance in ("5", "6")
                   and a.appointment_type in ("02", "03", "05")]  # fmt: skip
        if not any(a.kind == "episode_end" for a in items) or len(treated) < 2:
            continue
        counts["finished"] += 1
        scores = [a for a in items if a.kind == "score"]
        anxiety = adsm if _pair(scores, adsm) else "gad7"
        counts["adsm_used"] += anxiety == adsm
        phq, anx = _pair(scores, "phq9"), _pair(scores, anxiety)
        if phq is None or anx is None:
            continue
        flags = _flags([(table["phq9"], phq), (table[anxiety], anx)])
        counts["not_case"] += not flags["case"]
        for key in ("recovered", "improved", "deteriorated"):
            counts[key] += flags[key]
    return counts


@pytest.mark.parametrize(
    ("problem", "adsm"), [("F410", "pdss"), ("F400", "mi")], ids=["panic-pdss", "agoraphobia-mi"]
)
def test_adsm_outcomes_through_the_real_flow(tmp_path: Path, problem: str, adsm: str) -> None:
    with trust_harness(
        "iaptus", tmp_path, referral_problem=problem, referrals=4, extra_config=ADSM_ON
    ) as harness:
        platform = SyntheticPlatform(tmp_path / "provider", seed=3, adsm=True)
        platform.step()
        harness.sync()
        assert harness.quarantined() == []
        artefacts = platform.expected_artefacts()
        assert {a.measure for a in artefacts if a.kind == "score"} >= {"phq9", "gad7", adsm}
        want = expected_outcomes(artefacts, adsm)
        assert want["finished"] and want["adsm_used"], want
        outcome = CliRunner().invoke(
            app, ["--config", str(tmp_path / "ehr-bridge.toml"), "report", "outcomes", "--json"]
        )
    assert outcome.exit_code == 0, outcome.stdout[-2000:]
    (report,) = json.loads(outcome.stdout)
    assert report["adsm_enabled"] is True
    assert report["data_quality"]["unreadable"] == []
    got = {
        "finished": report["finished_treatment"],
        "not_case": report["not_at_caseness_at_start"],
        "recovered": report["recovery"]["count"],
        "improved": report["reliable_improvement"]["count"],
        "deteriorated": report["reliable_deterioration"]["count"],
    }
    assert got == {k: v for k, v in want.items() if k != "adsm_used"}
    assert report["recovery"]["denominator"] == want["finished"] - want["not_case"]


def test_the_generator_gives_adsm_problems_only_when_asked() -> None:
    default = {r["presenting_problem"] for r in generate(seed=3, referrals=40).referrals}
    adsm = {
        r["presenting_problem"]
        for r in generate(seed=3, referrals=40, problems=ADSM_PROBLEMS).referrals
    }
    assert adsm == {code for code, _ in ADSM_PROBLEMS}
    assert default != adsm and "F320" in default
