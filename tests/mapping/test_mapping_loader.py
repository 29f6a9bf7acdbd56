"""A broken mapping file fails at load time with a ConfigError naming the file and the rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping import load_mapping

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "iaptus.yaml"

Mutate = Callable[[dict[str, Any]], None]


def _write(tmp_path: Path, mutate: Mutate) -> Path:
    raw = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _load_error(tmp_path: Path, mutate: Mutate) -> ConfigError:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    assert str(path) in str(info.value.key)
    return info.value


def _inbound(raw: dict[str, Any]) -> dict[str, Any]:
    rules: dict[str, Any] = raw["inbound"]["referral"]
    return rules


def test_unchanged_copy_loads(tmp_path: Path) -> None:
    mapping = load_mapping(_write(tmp_path, lambda raw: None))
    assert mapping.name == "iaptus"
    assert mapping.spec_version == 1


def test_unknown_transform_suggests_the_close_one(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["presenting_problem"]["transform"] = ["strip", "uper"]

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("inbound.referral.presenting_problem")
    assert "unknown transform 'uper'" in str(err)
    assert "did you mean 'upper'" in str(err)


def test_bad_jmespath_names_rule_and_expression(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["outbound"]["care_contact"]["date"]["path"] = "resource.period[.start"

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("outbound.care_contact.date")
    assert "resource.period[.start" in str(err)


def test_bad_record_expression(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["record"]["updated_at"] = "updated_at ||"

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("record.updated_at")


def test_unknown_code_map(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["patient.gender"]["code_map"] = "gendr"

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("inbound.referral.patient.gender")
    assert "did you mean 'gender'" in str(err)


def test_unknown_target_field(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["patient.nhs_numbr"] = {"path": "patient.nhs_number"}

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("inbound.referral.patient.nhs_numbr")
    assert "did you mean 'patient.nhs_number'" in str(err)


def test_missing_required_target(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del _inbound(raw)["received_date"]

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("inbound.referral")
    assert "received_date" in str(err)


def test_typo_in_rule_key_is_refused(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["received_date"]["requird"] = True

    err = _load_error(tmp_path, mutate)
    assert "requird" in str(err)


def test_unknown_outbound_kind_is_refused(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["outbound"]["care_contacts"] = raw["outbound"].pop("care_contact")

    err = _load_error(tmp_path, mutate)
    assert "care_contacts" in str(err)


def test_outbound_kind_must_map_client_reference(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["outbound"]["assessment"]["client_reference"]

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("outbound.assessment")


def test_outbound_target_cannot_be_parent_of_another(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["outbound"]["assessment"]["score.value"] = {"const": 1}

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("outbound.assessment.score")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "a", "const": "b"}, "exactly one of path or const"),
        ({"transform": "strip"}, "exactly one of path or const"),
        ({"path": "a", "required": True, "default": "x"}, "contradict"),
        ({"path": "a", "on_unmapped": "drop"}, "on_unmapped"),
        ({"path": "a", "transform": {"zero_pad": {"width": 2}, "strip": {}}}, "one name"),
        ({"const": "2026-01-01", "default": None}, None),
    ],
)
def test_rule_shape(tmp_path: Path, rule: dict[str, Any], message: str | None) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["presenting_problem"] = rule

    if message is None:
        assert load_mapping(_write(tmp_path, mutate)).name == "iaptus"
        return
    assert message in str(_load_error(tmp_path, mutate))


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"zero_pad": {}}, "missing argument(s) width"),
        ({"zero_pad": {"width": 2, "fill": "x"}}, "unknown argument(s) fill"),
        ({"zero_pad": {"width": 0}}, "width must be"),
        ({"coding_code": {"system": "snowmed"}}, "aliases"),
        ({"extension_value": {"url": "attendence"}}, "aliases"),
        ({"strip": {"chars": " "}}, "unknown argument(s) chars"),
    ],
)
def test_transform_arguments_checked_at_load(
    tmp_path: Path, step: dict[str, Any], message: str
) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        _inbound(raw)["presenting_problem"]["transform"] = [step]

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("inbound.referral.presenting_problem")
    assert message in str(err)


def test_unquoted_code_map_keys_are_refused(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["code_maps"]["gender"] = {1: "male", 2: "female"}

    assert "quoted" in str(_load_error(tmp_path, mutate))


def test_unquoted_yaml_date_constant_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    text = MAPPING.read_text(encoding="utf-8").replace(
        "referred_on_date: {path: referred_on_date, transform: date}",
        "referred_on_date: {const: 2026-01-01}",
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="quote dates"):
        load_mapping(path)


@pytest.mark.parametrize("version", [None, 2, "1"])
def test_unsupported_spec_version(tmp_path: Path, version: Any) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["spec_version"] = version

    err = _load_error(tmp_path, mutate)
    assert err.key is not None and err.key.endswith("spec_version")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("spec_version: 1\nname: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line") as info:
        load_mapping(path)
    assert info.value.key == str(path)


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_file_must_be_an_object(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML object"):
        load_mapping(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")
