"""Risk alerts on a FHIR trust: the safety Flag, and the Task that puts it before the duty team.

The outbound mapping's ``risk_alert`` payload has two parts, ``flag`` (a whole Flag) and
``task`` (a whole Task). The adapter writes both in one transaction, each a conditional
create on our client reference, with ``Task.focus`` pointing at the Flag's entry; the
server either holds both afterwards or neither, and a repeat changes nothing. The Flag is
the record ("this patient has a safety risk"); the Task is the request to act on it, which
the trust's workflow assigns and moves on, so it is the Task that tells us whether anyone
has seen the risk:

====================================================  ====================================
Task.status                                           for us
====================================================  ====================================
received, accepted, in-progress, completed            acknowledged (``owner`` = by,
                                                      ``lastModified`` = at)
draft, requested, ready, on-hold                      not yet
rejected, cancelled, failed, entered-in-error         not acknowledged: nobody took the
                                                      risk on, so escalation goes on
====================================================  ====================================
"""

from __future__ import annotations

from datetime import UTC, datetime

from ehr_bridge.adapters.base import JsonDict, RiskAcknowledgement, staff_id
from ehr_bridge.adapters.fhir._bundles import as_object, entry_url
from ehr_bridge.errors import TerminalError

KIND = "risk_alert"
#: the payload parts, in the order they are written (the Flag first: the Task points at it)
PARTS = (("flag", "Flag"), ("task", "Task"))
#: Task statuses that mean someone at the trust has taken the risk on
ACKNOWLEDGED = frozenset({"received", "accepted", "in-progress", "completed"})


def parts(payload: JsonDict, reference: str) -> list[JsonDict]:
    """The Flag and the Task of a ``risk_alert`` payload, the Task's ``focus`` on the Flag.

    Raises:
        TerminalError: a part is missing or is not the resource type it must be.
    """
    found = []
    for key, kind in PARTS:
        part = payload.get(key)
        if not isinstance(part, dict) or part.get("resourceType") != kind:
            raise TerminalError(
                f"outbound {KIND} needs {key}: a whole {kind} (see mappings/fhir-r4.yaml)",
                code="mapping_shape",
            )
        found.append(dict(part))
    flag, task = found
    task["focus"] = {"reference": entry_url(reference, "Flag")}
    return [flag, task]


def acknowledgement(task: JsonDict) -> RiskAcknowledgement | None:
    """What the risk's Task says of its acknowledgement (see the table above)."""
    if task.get("status") not in ACKNOWLEDGED:
        return None
    at = _aware(task.get("lastModified")) or _aware(as_object(task.get("meta")).get("lastUpdated"))
    return RiskAcknowledgement(at=at or datetime.now(UTC), by=_owner(task.get("owner")))


def _owner(value: object) -> str | None:
    """The id part of ``owner.reference`` (``Practitioner/<id>``), else its identifier value."""
    owner = as_object(value)
    reference = owner.get("reference")
    if isinstance(reference, str) and "/" in reference:
        return staff_id(reference.rstrip("/").rsplit("/", 1)[-1])
    return staff_id(as_object(owner.get("identifier")).get("value"))


def _aware(value: object) -> datetime | None:
    """A FHIR dateTime/instant with its zone; a date or a time without a zone is None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None
