"""End to end: a score reaches the trust only after its items came and agreed, on every trust.

Provider bundles are dropped where the folder provider reads them; the real collect and
push flows run; what the trust simulator itself holds is checked (``support.trusts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain.session import session_bundle
from support.trusts import KINDS, PHQ9_ITEMS, TrustHarness, TrustKind, score_bundle, trust_harness

JsonDict = dict[str, Any]


def _split(bundle: JsonDict) -> tuple[JsonDict, JsonDict]:
    """The session without its item answers, and the item answers as a bundle of their own."""
    entries = bundle["entry"]
    response = next(
        e["resource"] for e in entries if e["resource"]["resourceType"] == "QuestionnaireResponse"
    )
    rest = [e["resource"] for e in entries if e["resource"] is not response]
    return session_bundle(f"{bundle['id']}-s", rest), session_bundle(
        f"{bundle['id']}-i", [response]
    )


def _scores(harness: TrustHarness) -> list[tuple[str, float]]:
    return [(str(s["tool_code"]), float(s["score"])) for s in harness.trust_scores()]


@pytest.mark.parametrize("kind", KINDS)
def test_the_trust_gets_the_score_only_once_its_later_items_arrived(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path, referrals=1) as harness:
        (referral,) = harness.referrals
        session, items = _split(score_bundle(referral, "phq9", PHQ9_ITEMS, note="Goals agreed."))
        harness.submit(session)
        harness.sync()

        assert harness.trust_scores() == []  # held: its items are not here yet
        assert [n["text"] for n in harness.trust_notes()] == ["Goals agreed."]
        assert harness.store.held_summary(harness.conn.name).count == 1

        harness.submit(items)
        harness.sync()

        (score,) = harness.trust_scores()
        assert float(score["score"]) == sum(PHQ9_ITEMS)
        assert harness.store.held_summary(harness.conn.name).count == 0
        assert harness.quarantined() == []
        assert set(harness.outbox_states().values()) == {"done"}, harness.dead_errors()


@pytest.mark.parametrize("kind", ["iaptus", "fhir"])
def test_later_items_that_disagree_keep_the_score_from_the_trust(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path, referrals=1) as harness:
        (referral,) = harness.referrals
        good = score_bundle(referral, "phq9", PHQ9_ITEMS)
        session, _ = _split(good)
        _, wrong_items = _split(score_bundle(referral, "phq9", (3,) * 9))  # same response id
        harness.submit(session)
        harness.sync()
        harness.submit(wrong_items)
        harness.sync()

        assert harness.trust_scores() == []
        (entry,) = harness.quarantined()
        assert (entry.source, entry.code) == ("score", "score_mismatch")
        assert entry.field == "entry[0].resource.valueQuantity.value"
        assert harness.store.held_summary(harness.conn.name).count == 0


@pytest.mark.parametrize("kind", ["iaptus", "pcmis"])
def test_items_sent_first_let_the_total_through_when_it_comes(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path, referrals=1) as harness:
        (referral,) = harness.referrals
        session, items = _split(score_bundle(referral, "phq9", PHQ9_ITEMS))
        harness.submit(items)
        harness.sync()
        harness.submit(session)
        harness.sync()

        assert [float(s["score"]) for s in harness.trust_scores()] == [sum(PHQ9_ITEMS)]
        assert harness.quarantined() == []


@pytest.mark.parametrize(
    ("extra", "written"),
    [("", False), ('[connection.scores]\nitemless_totals = ["phq9"]\n', True)],
    ids=["refused-by-default", "allowed-by-the-connection"],
)
def test_a_total_without_items_reaches_the_trust_only_where_the_connection_allows_it(
    extra: str, written: bool, tmp_path: Path
) -> None:
    with trust_harness("iaptus", tmp_path, referrals=1, extra_config=extra) as harness:
        (referral,) = harness.referrals
        harness.submit(score_bundle(referral, "phq9", PHQ9_ITEMS, with_items=False))
        harness.sync()

        assert len(harness.trust_scores()) == (1 if written else 0)
        codes = [(e.code, (e.field or "").endswith(".derivedFrom")) for e in harness.quarantined()]
        assert codes == ([] if written else [("items_missing", True)])
