"""A tiny client for the simulator tests: a started simulator plus a token-bearing session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from ehr_bridge.sim import TrustSimulator

TOKEN = "test-token"


class Api:
    """Calls ``<base>/api/v1`` with the bearer token; raw responses, no raising."""

    def __init__(self, sim: TrustSimulator) -> None:
        self.sim = sim
        self.base = sim.base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.base}/api/v1{path}", params=params, timeout=5)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(f"{self.base}/api/v1{path}", json=body, timeout=5)

    def walk(self, **params: Any) -> list[dict[str, Any]]:
        """Every referral the listing serves for ``params``, following page tokens."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            extra: dict[str, str] = {"page_token": token} if token else {}
            page = self.get("/referrals", **params, **extra)
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            token = page.json()["next_page_token"]
            if token is None:
                return items


@contextmanager
def running(**options: Any) -> Iterator[Api]:
    """A simulator serving on a free port for the duration of the block."""
    options.setdefault("token", TOKEN)
    sim = TrustSimulator(**options)
    sim.start()
    try:
        yield Api(sim)
    finally:
        sim.stop()


def care_contact(reference: str = "cc-1", **changes: Any) -> dict[str, Any]:
    body = {
        "client_reference": reference,
        "date": "2026-11-10",
        "time": "19:30",
        "duration_minutes": 50,
        "appointment_type": "02",
        "attendance": "5",
        "consultation_mechanism": "10",
    }
    return {**body, **changes}


def clinical_note(reference: str = "cn-1", **changes: Any) -> dict[str, Any]:
    body = {
        "client_reference": reference,
        "care_contact_id": None,
        "authored_at": "2026-11-10T20:25:00Z",
        "title": "Session 3 note",
        "text": "Worked on thought records.",
    }
    return {**body, **changes}


def assessment(reference: str = "as-1", **changes: Any) -> dict[str, Any]:
    body = {
        "client_reference": reference,
        "tool_code": "720433000",
        "score": 14,
        "completed_at": "2026-11-10T19:35:00Z",
        "items": [2, 1, 2, 1, 2, 2, 1, 2, 1],
    }
    return {**body, **changes}


def status(reference: str = "st-1", **changes: Any) -> dict[str, Any]:
    return {
        **{"client_reference": reference, "status": "accepted", "date": "2026-11-02"},
        **changes,
    }


def risk_alert(reference: str = "ra-1", **changes: Any) -> dict[str, Any]:
    body = {
        "client_reference": reference,
        "level": "immediate",
        "priority": "stat",
        "reason": "phq9_item9",
        "raised_at": "2026-11-10T19:41:00Z",
        "risk_code": "225444004",
        "risk_display": "At risk for suicide",
        "summary": "Item 9 answered 3. Please contact today.",
    }
    return {**body, **changes}
