"""The ``api:`` section and the relaxed client-reference rule, checked when a mapping loads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping import Mapping, load_mapping
from ehr_bridge.mapping.api import placeholders, render

ROOT = Path(__file__).resolve().parents[2]


def load_changed(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> Mapping:
    raw = yaml.safe_load((ROOT / "mappings" / "pcmis.yaml").read_text("utf-8"))
    mutate(raw)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    return load_mapping(path)


def refused(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_changed(tmp_path, mutate)
    return info.value


def api(raw: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = raw["api"]
    return found


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (
            lambda r: api(r)["referrals"].update(records="data[?"),
            "api.referrals.records",
            "JMESPath",
        ),
        (
            lambda r: api(r)["referrals"]["query"].update(onwardService="{provider}"),
            "api.referrals.query.onwardService",
            "{provider_code}",
        ),
        (
            lambda r: api(r)["referrals"].update(path="/referrals/{trust_referral_id}"),
            "api.referrals.path",
            "unknown placeholder",
        ),
        (
            lambda r: api(r)["writes"]["assessment"]["create"].update(path="/r/{trust_referral_id"),
            "api.writes.assessment.create.path",
            "unbalanced",
        ),
        (
            lambda r: api(r)["referrals"]["updated_since"].update(timezone="Europe/Londres"),
            "api.referrals.updated_since.timezone",
            "time zone",
        ),
        (
            lambda r: api(r)["referrals"]["updated_since"].update(format="modified"),
            "api.referrals.updated_since.format",
            "strftime",
        ),
        (
            lambda r: r["outbound"].pop("clinical_note"),
            "api.writes.clinical_note",
            "no outbound.clinical_note rules",
        ),
        (
            lambda r: api(r)["writes"]["care_contact"]["find"].update(id="[["),
            "api.writes.care_contact.find.id",
            "JMESPath",
        ),
        (
            lambda r: api(r)["writes"]["assessment"].pop("list"),
            "api.writes.assessment.list",
            "every write kind or for none",
        ),
        (
            lambda r: [w.pop("list") for w in api(r)["writes"].values()],
            "api.writes.care_contact.update",
            "needs list",
        ),
        (
            lambda r: api(r)["writes"]["clinical_note"]["list"].update(path="/n/{trust_id}"),
            "api.writes.clinical_note.list.path",
            "unknown placeholder",
        ),
        (
            lambda r: api(r)["referral"].update(query={"ref": "{client_reference}"}),
            "api.referral.query.ref",
            "unknown placeholder",
        ),
        (
            lambda r: api(r)["writes"]["care_contact"]["create"].update(path="/r/{trust_id}"),
            "api.writes.care_contact.create.path",
            "unknown placeholder",
        ),
        (
            lambda r: api(r)["writes"]["assessment"]["list"].update(fields="{Score: }"),
            "api.writes.assessment.list.fields",
            "JMESPath",
        ),
        (
            lambda r: api(r)["referral"].update(record="data[?"),
            "api.referral.record",
            "JMESPath",
        ),
    ],
)
def test_api_mistakes_fail_at_load_naming_the_key(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], key: str, words: str
) -> None:
    err = refused(tmp_path, mutate)
    assert err.key is not None and err.key.endswith(f":{key}")
    assert words in str(err)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: api(r)["referrals"].update(pagination={"style": "pages"}),
        lambda r: api(r)["referrals"]["pagination"].update(param=None),
        lambda r: api(r).update(auth={"header": "X-Key", "schema": ""}),
        lambda r: api(r)["writes"]["care_contact"]["create"].update(method="DELETE"),
        lambda r: api(r)["writes"]["care_contact"]["update"].update(method="DELETE"),
        lambda r: api(r)["writes"]["care_contact"]["list"].update(paging="none"),
        lambda r: api(r)["referral"].pop("path"),
    ],
)
def test_api_shape_mistakes_are_schema_errors(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None]
) -> None:
    err = refused(tmp_path, mutate)
    assert err.key is not None and ":api." in err.key


def test_the_reference_may_go_under_the_systems_own_name(tmp_path: Path) -> None:
    mapping = load_changed(tmp_path, lambda r: None)
    assert mapping.reference_target("care_contact") == "ExternalRef"
    err = refused(tmp_path, lambda r: r["outbound"]["care_contact"].pop("ExternalRef"))
    assert err.key is not None and err.key.endswith("outbound.care_contact")
    assert "context.client_reference" in str(err)


def test_since_is_written_in_the_apis_zone_and_format(tmp_path: Path) -> None:
    mapping = load_changed(tmp_path, lambda r: None)
    assert mapping.api is not None
    summer = datetime(2026, 7, 1, 8, 0, 0, 250000, tzinfo=UTC)
    assert mapping.api.format_since(summer) == "2026-07-01T09:00:00.250000+0100"
    assert (
        mapping.api.format_since(datetime(2026, 12, 1, 8, 0)) == "2026-12-01T08:00:00.000000+0000"
    )


def test_the_read_endpoints_say_what_can_be_read_back(tmp_path: Path) -> None:
    mapping = load_changed(tmp_path, lambda r: None)
    assert mapping.api is not None and mapping.api.reads_items() and mapping.api.updates_items()
    writes = {kind: mapping.api.write(kind) for kind in mapping.api.written_kinds()}
    updatable = [kind for kind, write in writes.items() if write and write.update]
    assert updatable == ["care_contact", "clinical_note", "assessment"]

    def without_reads(raw: dict[str, Any]) -> None:
        del api(raw)["referral"]
        for write in api(raw)["writes"].values():
            write.pop("list")
            write.pop("update", None)

    bare = load_changed(tmp_path, without_reads).api
    assert bare is not None and not bare.reads_items() and not bare.updates_items()


def test_a_mapping_without_api_loads_as_before() -> None:
    assert load_mapping(ROOT / "mappings" / "iaptus.yaml").api is None


def test_templates() -> None:
    assert placeholders("/r/{trust_referral_id}/x?{client_reference}") == [
        "trust_referral_id",
        "client_reference",
    ]
    assert render("/r/{trust_referral_id}", {"trust_referral_id": "A%2FB"}) == "/r/A%2FB"
