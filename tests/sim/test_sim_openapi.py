"""docs/simulator-openapi.yaml describes exactly what the simulator routes and answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sim_client as body
import yaml
from sim_client import Api, running

from ehr_bridge.sim.routes import ROUTES

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulator-openapi.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with running(seed=5, referrals=6) as client:
        yield client


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable`` becomes JSON Schema ``anyOf [..., null]``, recursively."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def check(doc: dict[str, Any], schema_name: str, instance: Any) -> None:
    root = {"components": as_json_schema(doc["components"])}
    schema = {**root, "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft7Validator(schema).validate(instance)


def test_every_routed_path_and_method_is_described_and_vice_versa(doc: dict[str, Any]) -> None:
    routed = {(route.template, method.lower()) for route in ROUTES for method in route.methods}
    described = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routed == described


def test_only_health_is_open_without_a_token(doc: dict[str, Any]) -> None:
    open_paths = {
        path for path, item in doc["paths"].items() if item.get("get", {}).get("security") == []
    }
    assert open_paths == {route.template for route in ROUTES if not route.auth}
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_listing_and_referrals_match_their_schemas(doc: dict[str, Any], api: Api) -> None:
    page = api.get("/referrals", referred_on_to="IESO01", page_size=3).json()
    check(doc, "ReferralPage", page)
    check(doc, "Referral", api.get(f"/referrals/{page['items'][0]['id']}").json())


@pytest.mark.parametrize(
    ("path", "maker", "request_schema", "answer_schema"),
    [
        ("care-contacts", body.care_contact, "CareContactCreate", "CareContact"),
        ("clinical-notes", body.clinical_note, "ClinicalNoteCreate", "ClinicalNote"),
        ("assessments", body.assessment, "AssessmentCreate", "Assessment"),
        ("status", body.status, "StatusEventCreate", "StatusEvent"),
        ("risk-alerts", body.risk_alert, "RiskAlertCreate", "RiskAlert"),
    ],
)
def test_write_bodies_and_answers_match_their_schemas(
    doc: dict[str, Any], api: Api, path: str, maker: Any, request_schema: str, answer_schema: str
) -> None:
    sent = maker(f"openapi-{path}")
    check(doc, request_schema, sent)
    answer = api.post(f"/referrals/SR0000002/{path}", sent)
    check(doc, answer_schema, answer.json())
    check(doc, "ConflictError", api.post(f"/referrals/SR0000002/{path}", sent).json())


def test_risk_alert_reads_and_acknowledgements_match_their_schemas(
    doc: dict[str, Any], api: Api
) -> None:
    alert = api.post("/referrals/SR0000003/risk-alerts", body.risk_alert("openapi-ack")).json()
    where = f"/referrals/SR0000003/risk-alerts/{alert['id']}"
    check(doc, "RiskAlert", api.get(where).json())
    sent = {"by": "duty.clinician1", "close": False}
    check(doc, "RiskAlertAcknowledge", sent)
    check(doc, "RiskAlert", api.post(f"{where}/acknowledge", sent).json())
    check(doc, "Error", api.post(f"{where}/acknowledge", {"by": "Dr Who"}).json())


def test_error_and_export_answers_match_their_schemas(doc: dict[str, Any], api: Api) -> None:
    check(doc, "Error", api.get("/referrals/SR9999999").json())
    check(doc, "Error", api.get("/referrals", page_size=0).json())
    check(doc, "Export", api.sim.export())
    with pytest.raises(jsonschema.ValidationError):
        check(doc, "CareContactCreate", body.care_contact(room="3"))
