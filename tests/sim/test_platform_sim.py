"""The synthetic therapy platform: deterministic, plausible courses that collect accepts."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources, referral_bundle
from ehr_bridge.domain.validate import note_text, parse_session_bundle, questionnaire_items
from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.platform import ExpectedArtefact, PlatformStepResult, SyntheticPlatform

JsonDict = dict[str, Any]

PROVIDER = ProviderRef(code="IESO01", display="Example online therapy")
MANY = 30


def _referral(number: int, *, status: str = "active") -> tuple[str, JsonDict]:
    facts = ReferralFacts(
        trust_referral_id=f"SR{number:06d}",
        received_date=date(2026, 1, 5) + timedelta(days=number * 3),
        source_of_referral="A1",
        referred_on_to="IESO01",
        status=status,
        patient=PatientFacts(
            local_id=f"P{number:06d}",
            nhs_number="9434765919",
            family_name="Zzexample",
            given_names=["Qqalex"],
        ),
    )
    resources = build_referral_resources(
        "trust", PROVIDER, facts, today=date(2026, 12, 31), allow_test_range=True
    )
    return resources.service_request["id"], referral_bundle(resources)


def _deliver(root: Path, numbers: list[int], **kwargs: str) -> list[str]:
    provider = FolderProvider(root)
    ids = []
    for number in numbers:
        sr_id, bundle = _referral(number, **kwargs)
        provider.deliver_referral(sr_id, bundle)
        ids.append(sr_id)
    return ids


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "sessions").glob("*.json"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlatformStepResult]:
    root = tmp_path_factory.mktemp("platform")
    _deliver(root, list(range(MANY)))
    return root, SyntheticPlatform(root, seed=7).step()


@pytest.fixture(scope="module")
def bundles(run: tuple[Path, PlatformStepResult]) -> dict[str, JsonDict]:
    root, _ = run
    return {name: json.loads(data) for name, data in _files(root).items()}


def _encounters(bundles: dict[str, JsonDict]) -> list[JsonDict]:
    return [
        entry["resource"]
        for bundle in bundles.values()
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Encounter"
    ]


# --- what one step writes ---------------------------------------------------------------


def test_platform_step_counts_match_the_files(
    run: tuple[Path, PlatformStepResult], bundles: dict[str, JsonDict]
) -> None:
    _, result = run
    assert result.referrals_taken == MANY
    assert result.discharges == MANY
    assert result.sessions_written == sum(1 for name in bundles if "-s" in name)
    kinds = Counter(e["resource"]["resourceType"] for b in bundles.values() for e in b["entry"])
    assert kinds["Observation"] == kinds["QuestionnaireResponse"] == result.scores
    assert kinds["DocumentReference"] == result.notes
    assert kinds["EpisodeOfCare"] == MANY


def test_platform_every_bundle_passes_collect_validation(
    bundles: dict[str, JsonDict],
) -> None:
    for bundle in bundles.values():
        artefacts = parse_session_bundle(bundle)
        assert artefacts.service_request_id


def test_platform_sessions_per_referral_and_appointment_types(
    bundles: dict[str, JsonDict],
) -> None:
    per_referral: dict[str, list[str]] = defaultdict(list)
    for name in bundles:
        if "-s" in name:
            sr_id, _, number = name.removesuffix(".json").rpartition("-s")
            per_referral[sr_id].append(number)
    assert len(per_referral) == MANY
    for numbers in per_referral.values():
        assert 2 <= len(numbers) <= 8
        assert sorted(numbers) == [f"{n:02d}" for n in range(1, len(numbers) + 1)]
    for encounter in _encounters(bundles):
        app_type = encounter["type"][0]["coding"][0]["code"]
        first = encounter["id"] in {
            b["entry"][0]["resource"]["id"]
            for name, b in bundles.items()
            if name.endswith("-s01.json")
        }
        assert app_type == ("03" if first else "02")


def test_platform_timing_is_realistic(bundles: dict[str, JsonDict]) -> None:
    out_of_hours = 0
    encounters = _encounters(bundles)
    for encounter in encounters:
        start = datetime.fromisoformat(encounter["period"]["start"])
        end = datetime.fromisoformat(encounter["period"]["end"])
        assert start.utcoffset() in (timedelta(0), timedelta(hours=1))
        assert 30 <= (end - start).total_seconds() / 60 <= 60
        weekend, evening = start.weekday() >= 5, start.hour >= 18
        assert weekend or 9 <= start.hour < 17 or (evening and end.hour * 60 + end.minute <= 1320)
        out_of_hours += weekend or evening
    assert 0.5 <= out_of_hours / len(encounters) <= 0.7


def test_platform_missed_sessions_have_no_note_and_no_scores(
    bundles: dict[str, JsonDict],
) -> None:
    dna = attended = 0
    for bundle in bundles.values():
        resources = [e["resource"] for e in bundle["entry"]]
        if resources[0]["resourceType"] != "Encounter":
            continue
        code = resources[0]["extension"][0]["valueCoding"]["code"]
        if code == "3":
            dna += 1
            assert len(resources) == 1 and resources[0]["status"] == "cancelled"
        else:
            attended += 1
            kinds = Counter(r["resourceType"] for r in resources)
            assert kinds["DocumentReference"] == 1 and kinds["Observation"] in (2, 3)
    assert 0 < dna < attended / 4


def test_platform_scores_follow_mostly_improving_trajectories(
    bundles: dict[str, JsonDict],
) -> None:
    phq: dict[str, list[tuple[str, int]]] = defaultdict(list)
    wsas_count: Counter[str] = Counter()
    for bundle in bundles.values():
        for entry in bundle["entry"]:
            res = entry["resource"]
            if res["resourceType"] != "QuestionnaireResponse":
                continue
            items = questionnaire_items(res)
            sr_id = res["basedOn"][0]["reference"]
            key = res["questionnaire"].rsplit("/", 1)[1]
            size, top = {"phq9": (9, 3), "gad7": (7, 3), "wsas": (5, 8)}[key]
            assert len(items) == size and all(v is None or 0 <= v <= top for v in items)
            if key == "phq9":
                phq[sr_id].append((res["authored"], sum(v or 0 for v in items)))
            wsas_count[sr_id] += key == "wsas"
    changes = [sorted(s)[-1][1] - sorted(s)[0][1] for s in phq.values() if len(s) > 1]
    assert sum(c <= -6 for c in changes) > len(changes) / 2
    assert any(c >= 6 for c in changes)
    assert statistics.median(changes) < 0
    assert set(wsas_count.values()) <= {1, 2}


def test_platform_notes_are_short_and_carry_no_patient_data(
    bundles: dict[str, JsonDict],
) -> None:
    for bundle in bundles.values():
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "DocumentReference":
                text = note_text(entry["resource"])
                assert 2 <= text.count(". ") + 1 <= 5
                for secret in ("Zzexample", "Qqalex", "9434765919"):
                    assert secret not in text


def test_platform_files_sort_in_clinical_order(run: tuple[Path, PlatformStepResult]) -> None:
    root, _ = run
    order: dict[str, list[str]] = defaultdict(list)
    provider = FolderProvider(root)
    for submission in provider.pending_submissions():
        sr_id, _, rest = submission.handle.removesuffix(".json").rpartition("-")
        order[sr_id].append(rest)
    for names in order.values():
        assert names[-1] == "end" and names[:-1] == sorted(names[:-1])
    assert not list((root / "sessions").glob("*.tmp"))


# --- determinism and state --------------------------------------------------------------


def test_platform_same_seed_gives_same_bytes_in_any_order(
    run: tuple[Path, PlatformStepResult], tmp_path: Path
) -> None:
    root, _ = run
    numbers = [5, 3, 11]
    _deliver(tmp_path, numbers[:1])
    SyntheticPlatform(tmp_path, seed=7).step()
    _deliver(tmp_path, numbers[1:])
    SyntheticPlatform(tmp_path, seed=7).step()
    again, reference = _files(tmp_path), _files(root)
    assert again and all(reference[name] == data for name, data in again.items())
    for name in again:
        mtime = (tmp_path / "sessions" / name).stat().st_mtime_ns
        assert mtime == (root / "sessions" / name).stat().st_mtime_ns


def test_platform_other_seed_gives_other_courses(tmp_path: Path) -> None:
    _deliver(tmp_path / "a", [1, 2])
    _deliver(tmp_path / "b", [1, 2])
    SyntheticPlatform(tmp_path / "a", seed=1).step()
    SyntheticPlatform(tmp_path / "b", seed=2).step()
    assert _files(tmp_path / "a") != _files(tmp_path / "b")


def test_platform_second_step_writes_nothing_new(tmp_path: Path) -> None:
    _deliver(tmp_path, [1, 2])
    platform = SyntheticPlatform(tmp_path, seed=3)
    platform.step()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sessions").iterdir()}
    assert platform.step() == PlatformStepResult()
    assert SyntheticPlatform(tmp_path, seed=3).step() == PlatformStepResult()
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sessions").iterdir()}
    assert after == before


def test_platform_state_refuses_another_seed(tmp_path: Path) -> None:
    _deliver(tmp_path, [1])
    SyntheticPlatform(tmp_path, seed=3).step()
    with pytest.raises(ConfigError) as caught:
        SyntheticPlatform(tmp_path, seed=4)
    assert caught.value.key == "seed"


def test_platform_corrupt_state_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "platform-state.json").write_text("{nope")
    with pytest.raises(ConfigError):
        SyntheticPlatform(tmp_path)


def test_platform_revoked_referral_gets_no_sessions(tmp_path: Path) -> None:
    _deliver(tmp_path, [1], status="revoked")
    platform = SyntheticPlatform(tmp_path)
    assert platform.step() == PlatformStepResult()
    assert _files(tmp_path) == {}
    assert platform.expected_artefacts() == []


def test_platform_unusable_referral_files_are_skipped(tmp_path: Path) -> None:
    _deliver(tmp_path, [1])
    referrals = tmp_path / "referrals"
    (referrals / "broken.json").write_text("{")
    (referrals / "empty.json").write_text('{"resourceType": "Bundle", "entry": []}')
    _, hostile = _referral(2)
    hostile["entry"][1]["resource"]["id"] = "../../escape"
    (referrals / "hostile.json").write_text(json.dumps(hostile))
    result = SyntheticPlatform(tmp_path).step()
    assert (result.referrals_taken, result.referrals_skipped) == (1, 3)
    assert not any(p.name.startswith("..") for p in tmp_path.rglob("*"))


# --- the clock --------------------------------------------------------------------------


def test_platform_clock_writes_sessions_as_they_happen(tmp_path: Path) -> None:
    sr_ids = _deliver(tmp_path, [4])
    _deliver(tmp_path / "ref", [4])
    SyntheticPlatform(tmp_path / "ref", seed=5).step()
    whole = _files(tmp_path / "ref")
    written: list[int] = []
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    while len(_files(tmp_path)) < len(whole):
        result = SyntheticPlatform(tmp_path, seed=5, now=moment).step()
        written.append(result.sessions_written + result.discharges)
        moment += timedelta(days=4)
    assert written[0] == 0 and max(written) <= 2
    assert _files(tmp_path) == whole
    assert sr_ids[0] in next(iter(whole))


def test_platform_referral_revoked_mid_course_stops(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    _deliver(tmp_path, [4])
    platform = SyntheticPlatform(tmp_path, seed=5, now=moment + timedelta(days=40))
    platform.step()
    partial = _files(tmp_path)
    _deliver(tmp_path, [4], status="revoked")
    later = SyntheticPlatform(tmp_path, seed=5, now=moment + timedelta(days=400))
    assert later.step() == PlatformStepResult()
    assert _files(tmp_path) == partial and partial
    assert not any(name.endswith("-end.json") for name in partial)


def test_platform_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SyntheticPlatform(tmp_path, now=datetime(2026, 1, 1))


# --- expected artefacts -----------------------------------------------------------------


def test_platform_expected_artefacts_describe_the_files(
    run: tuple[Path, PlatformStepResult], bundles: dict[str, JsonDict]
) -> None:
    root, result = run
    expected = SyntheticPlatform(root, seed=7).expected_artefacts()
    kinds = Counter(a.kind for a in expected)
    assert kinds == {
        "encounter": result.sessions_written,
        "score": result.scores,
        "note": result.notes,
        "episode_end": result.discharges,
    }
    for artefact in expected:
        resource = _resource(bundles[artefact.bundle_file], artefact.resource_id)
        _assert_matches(artefact, resource)


def _resource(bundle: JsonDict, resource_id: str) -> JsonDict:
    found = [e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id]
    if len(found) == 1:
        resource: JsonDict = found[0]
        return resource
    raise AssertionError("artefact not in its bundle")


def _assert_matches(artefact: ExpectedArtefact, resource: JsonDict) -> None:
    assert artefact.service_request_id in json.dumps(resource)
    if artefact.kind == "encounter":
        assert artefact.at is not None
        start = resource["period"]["start"]
        assert datetime.fromisoformat(start) == artefact.at
    elif artefact.kind == "score":
        assert resource["valueQuantity"]["value"] == artefact.total
    elif artefact.kind == "note":
        assert note_text(resource) == artefact.text
    else:
        assert resource["period"]["end"] == str(artefact.end_date)
        assert artefact.end_code in {"46", "47", "48"}


def test_platform_state_file_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _deliver(tmp_path / name, [1, 2])
        SyntheticPlatform(tmp_path / name, seed=9).step()
    state = "platform-state.json"
    assert (tmp_path / "a" / state).read_bytes() == (tmp_path / "b" / state).read_bytes()
    assert os.listdir(tmp_path / "a") == os.listdir(tmp_path / "b")
