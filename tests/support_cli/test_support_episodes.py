"""Earlier episodes and merge links in the FHIR we deliver: valid R4, shaped as documented."""

from __future__ import annotations

from datetime import date

from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.referral import (
    ProviderRef,
    ReferralResources,
    build_referral_resources,
    prior_episode,
    referral_bundle,
    with_patient_links,
    with_subject,
)
from ehr_bridge.domain.session import build_episode_end
from support.fhir_schema import assert_valid_r4

PROVIDER = ProviderRef(code="IESO01", display="Provider")


def resources(trust_id: str, received: date, status: str = "active") -> ReferralResources:
    facts = ReferralFacts(
        trust_referral_id=trust_id,
        received_date=received,
        source_of_referral="B1",
        referred_on_to="IESO01",
        status=status,
        patient=PatientFacts(local_id="P1", nhs_number="9434765919", gender="female"),
    )
    return build_referral_resources(
        "trust-a", PROVIDER, facts, today=date(2026, 11, 26), allow_test_range=True
    )


def test_an_earlier_finished_referral_becomes_a_finished_episode_with_its_end_code() -> None:
    earlier = resources("SR1", date(2026, 1, 5), status="completed")
    patient_id = earlier.patient["id"]
    end = build_episode_end(
        episode_id="ep-provider",
        patient_id=patient_id,
        service_request_id=earlier.service_request["id"],
        start=date(2026, 1, 5),
        end=date(2026, 4, 1),
        end_code="46",
    )
    episode = prior_episode("trust-a", patient_id, earlier.service_request, end)
    assert_valid_r4(episode)
    assert episode["status"] == "finished"
    assert episode["period"] == {"start": "2026-01-05", "end": "2026-04-01"}
    assert episode["extension"] == end["extension"]
    assert (
        episode["id"] == prior_episode("trust-a", patient_id, earlier.service_request, None)["id"]
    )


def test_an_earlier_open_referral_is_an_active_episode_without_an_end() -> None:
    earlier = resources("SR1", date(2026, 1, 5))
    episode = prior_episode("trust-a", earlier.patient["id"], earlier.service_request, None)
    assert episode["status"] == "active" and "end" not in episode["period"]
    assert "extension" not in episode


def test_the_re_referral_bundle_links_its_episodes_and_keeps_its_request_last() -> None:
    earlier, now = resources("SR1", date(2026, 1, 5)), resources("SR2", date(2026, 9, 1))
    episode = prior_episode("trust-a", now.patient["id"], earlier.service_request, None)
    bundle = referral_bundle(now, [episode])
    assert_valid_r4(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Patient", "EpisodeOfCare", "ServiceRequest"]
    request = bundle["entry"][-1]["resource"]
    assert request["id"] == now.service_request["id"] == bundle["id"]
    assert [i["reference"] for i in request["supportingInfo"]] == [
        f"ServiceRequest/{earlier.service_request['id']}",
        f"EpisodeOfCare/{episode['id']}",
    ]
    assert "supportingInfo" not in referral_bundle(now)["entry"][-1]["resource"]


def test_merge_links_and_a_new_subject_are_valid_and_idempotent() -> None:
    res = resources("SR1", date(2026, 1, 5))
    retired = with_patient_links(res.patient, replaced_by="kept-id")
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": "Patient/kept-id"}, "type": "replaced-by"}]
    assert with_patient_links(retired, replaced_by="kept-id") == retired
    survivor = with_patient_links(res.patient, replaces=["a", "b"])
    assert [link["type"] for link in survivor["link"]] == ["replaces", "replaces"]
    assert "active" not in survivor
    assert with_patient_links(survivor) == res.patient
    for resource in (retired, survivor, with_subject(res.service_request, "kept-id")):
        assert_valid_r4(resource)
