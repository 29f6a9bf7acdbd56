"""The FHIR trust simulator files a total only under a tool it knows, as a real trust would.

So a wrong code from the engine (a panel code, a contradiction, a code the trust never
agreed) is a 422 naming the element, not a silently stored Observation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ehr_bridge.sim.fhir_server import FhirServerSimulator

TOKEN = "sim-coding-token"
SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
OURS = "https://fhir.ehr-bridge.dev/CodeSystem/outcome-measure"


@pytest.fixture(scope="module")
def server() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator(token=TOKEN) as sim:
        yield sim


def _observation(*codings: tuple[str, str], value: float = 11) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-08T18:45:00+01:00",
        "valueQuantity": {
            "value": value,
            "system": "http://unitsofmeasure.org",
            "code": "{ScoreOf}",
        },
    }


def _post(server: FhirServerSimulator, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{server.base_url}/Observation",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


@pytest.mark.parametrize(
    "codings",
    [
        ((SNOMED, "720433000"), (LOINC, "44261-6")),
        ((LOINC, "70274-6"),),
        ((OURS, "wsas"),),
    ],
)
def test_totals_under_a_known_tool_are_filed(
    server: FhirServerSimulator, codings: tuple[tuple[str, str], ...]
) -> None:
    assert _post(server, _observation(*codings)).status_code == 201


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_observation((SNOMED, "720433000"), (LOINC, "44249-1")), "Observation.code.coding[1]"),
        (_observation((LOINC, "69737-5"), (LOINC, "70274-6")), "Observation.code.coding[0]"),
        (_observation((SNOMED, "720433000"), (LOINC, "70274-6")), "Observation.code"),
        (_observation((SNOMED, "720433001")), "Observation.code"),
        (_observation((OURS, "PHQ9")), "Observation.code"),
        (_observation((SNOMED, "445455005"), value=22), "Observation.valueQuantity.value"),
    ],
    ids=["panel", "panel-first", "two-tools", "unknown-snomed", "unknown-local", "range"],
)
def test_what_the_trust_cannot_file_is_refused_naming_the_element(
    server: FhirServerSimulator, body: dict[str, Any], where: str
) -> None:
    before = len(server.store.all_of("Observation"))
    answer = _post(server, body)
    assert answer.status_code == 422
    (issue,) = answer.json()["issue"]
    assert issue["expression"] == [where]
    assert len(server.store.all_of("Observation")) == before
