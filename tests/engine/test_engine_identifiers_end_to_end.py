"""End to end: ICD-10 in each place's own form, and NHS numbers by the connection's policy.

Issue 13 point 6, on each of the iaptus, PC-MIS, HL7 v2 and FHIR trusts, through the real
pull, deliver, collect and push flows (``support.trusts``):

- the trust writes the presenting problem in the code-system form (``F41.0``) on one
  referral and the data-set form (``F410``) on another; the provider platform receives
  ``ServiceRequest.reasonCode`` ``F41.0`` under ``http://hl7.org/fhir/sid/icd-10`` for
  both, while the referral facts and the reports hold ``F410``;
- the simulators' patients carry 999-range test NHS numbers: a live connection (no
  ``test_connection``) quarantines those referrals naming ``patient.nhs_number`` and
  delivers nothing; a test connection lets them flow, scores and all; ``0000000000`` is
  refused on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.reports.load import load_episodes
from support.trusts import (
    KINDS,
    NHS_NUMBER_SYSTEM,
    PHQ9_ITEMS,
    TrustHarness,
    score_bundle,
    trust_harness,
)

JsonDict = dict[str, Any]
PLACEHOLDER = "0000000000"


@pytest.fixture(scope="module", params=KINDS)
def test_trust(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrustHarness]:
    """A test connection: F41.0 and F410 on two referrals, a placeholder number on a third."""
    with trust_harness(
        request.param,
        tmp_path_factory.mktemp(f"test-{request.param}"),
        referrals=3,
        referral_problems=["F41.0", "F410"],
        nhs_numbers=[None, None, PLACEHOLDER],
    ) as harness:
        yield harness


@pytest.fixture(scope="module", params=KINDS)
def live_trust(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrustHarness]:
    """A live connection: the simulator's test-range number, then a placeholder."""
    with trust_harness(
        request.param,
        tmp_path_factory.mktemp(f"live-{request.param}"),
        referrals=2,
        nhs_numbers=[None, PLACEHOLDER],
        test_connection=False,
        expect_delivered=False,
    ) as harness:
        yield harness


def _delivered(harness: TrustHarness) -> list[list[JsonDict]]:
    """The resources of every referral bundle the provider platform received."""
    folder = harness.workdir / "provider" / "referrals"
    return [
        [e["resource"] for e in json.loads(path.read_text("utf-8"))["entry"]]
        for path in sorted(folder.glob("*.json"))
    ]


def _of_type(resources: list[JsonDict], kind: str) -> JsonDict:
    (found,) = [r for r in resources if r["resourceType"] == kind]
    return found


def _trust_records(harness: TrustHarness) -> dict[str, JsonDict]:
    """The trust's own referral records as its adapter reads them, by trust referral id."""
    page = harness.conn.source.fetch_referrals(updated_since=None, page=None)
    records = {}
    for record in page.records:
        facts = harness.conn.mapping.referral_facts(record)
        records[facts.trust_referral_id] = record
    return records


def _entries(harness: TrustHarness) -> list[tuple[str, str | None]]:
    return sorted((q.code, q.field) for q in harness.quarantined())


# --- ICD-10 --------------------------------------------------------------------------------
def test_either_icd10_form_reaches_the_provider_dotted_and_the_facts_undotted(
    test_trust: TrustHarness,
) -> None:
    delivered = _delivered(test_trust)
    assert len(delivered) == 2
    for resources in delivered:
        request = _of_type(resources, "ServiceRequest")
        assert request["reasonCode"] == [{"coding": [{"system": codes.ICD10, "code": "F41.0"}]}]

    ours = {r.trust_referral_id for r in test_trust.referrals}
    records = {k: v for k, v in _trust_records(test_trust).items() if k in ours}
    sent = sorted(
        form for record in records.values() for form in re.findall(r"F41\.?0", json.dumps(record))
    )
    assert sent == ["F41.0", "F410"]  # the trust really wrote each form once
    facts = [test_trust.conn.mapping.referral_facts(r) for r in records.values()]
    assert [f.presenting_problem for f in facts] == ["F410", "F410"]

    episodes = list(load_episodes(test_trust.store, test_trust.conn.name))
    assert [e.presenting_problem for e in episodes] == ["F410", "F410"]


# --- NHS numbers ---------------------------------------------------------------------------
def test_a_test_connection_lets_test_range_numbers_flow_to_the_trust(
    test_trust: TrustHarness,
) -> None:
    numbers = []
    for resources in _delivered(test_trust):
        patient = _of_type(resources, "Patient")
        numbers += [i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER_SYSTEM]
    assert len(numbers) == 2 and all(n.startswith("999") for n in numbers)

    referral = test_trust.referrals[0]
    before = test_trust.trust_scores()
    test_trust.submit(score_bundle(referral, "phq9", PHQ9_ITEMS, number=41))
    test_trust.sync()
    (score,) = [s for s in test_trust.trust_scores() if s not in before]
    assert "dead" not in test_trust.outbox_states().values(), test_trust.dead_errors()
    if test_trust.kind == "hl7v2":  # ORU^R01 files it under PID-3's NHS number (^^^NHS^NH)
        identifiers = score["raw"]["PID"][0]["3"]
        nhs = [i["1"] for i in identifiers if (i.get("4"), i.get("5")) == ("NHS", "NH")]
        assert len(nhs) == 1 and nhs[0] in numbers  # the delivered 999-range number


def test_a_placeholder_number_is_refused_on_a_test_connection(test_trust: TrustHarness) -> None:
    assert ("nhs_number_placeholder", "patient.nhs_number") in _entries(test_trust)
    refused = [q for q in test_trust.quarantined() if q.code == "nhs_number_placeholder"]
    assert len(refused) == 1
    assert refused[0].record_ref not in {r.trust_referral_id for r in test_trust.referrals}
    assert PLACEHOLDER not in refused[0].reason


def test_a_live_connection_refuses_test_range_and_placeholder_numbers_and_delivers_nothing(
    live_trust: TrustHarness,
) -> None:
    assert _entries(live_trust) == [
        ("nhs_number_placeholder", "patient.nhs_number"),
        ("nhs_number_test_range", "patient.nhs_number"),
    ]
    assert live_trust.referrals == []
    assert _delivered(live_trust) == []
    assert live_trust.store.referrals_to_deliver(live_trust.conn.name) == []
    shown = " ".join(q.reason for q in live_trust.quarantined())
    assert not re.search(r"\d{10}", shown)  # the rule is named, never the number
