"""A small FHIR R4 REST server on 127.0.0.1, for the ``fhir`` adapters' tests and demos.

It plays either side: a trust's FHIR facade seeded with referrals
(``FhirServerSimulator.trust``: ServiceRequest + Patient per referral, some of them
deliberately broken) or an empty server a therapy platform keeps its records on. The
interactions it supports are listed in ``fhir_routes``; search in ``fhir_search``.

HTTP details (``sim.http_base``): the FHIR base is ``<http://host:port>/fhir``; bodies are
``application/fhir+json``; with a token every request needs ``Authorization: Bearer``
(401 otherwise); errors are OperationOutcomes. ``faults`` takes the trust simulator's
counted fault rules (``sim.faults.Fault``) matched on the method and the path template,
for example ``Fault("drop", "POST", "/fhir")`` commits a transaction and then withholds
the answer. The request log names the method, the template and the status only: query
strings and bodies hold identifiers.
"""

from __future__ import annotations

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.faults import FaultPlan
from ehr_bridge.sim.fhir_routes import BASE_PATH, ROUTES, outcome
from ehr_bridge.sim.fhir_rules import checked_write
from ehr_bridge.sim.fhir_seed import seed_trust
from ehr_bridge.sim.fhir_store import FhirSimError, FhirStore, JsonDict
from ehr_bridge.sim.http_base import Dialect, Response, Route, SimulatorBase
from ehr_bridge.sim.records import Clock, format_timestamp

#: the simulator's default bearer token (a test fixture, not a secret)
DEFAULT_FHIR_TOKEN = "fhir-sim-token"  # noqa: S105
MAX_BODY = 4 * 1024 * 1024


def refusal(exc: Exception) -> Response | None:
    """A refused interaction as its OperationOutcome (None: not a FHIR refusal)."""
    if isinstance(exc, FhirSimError):
        return outcome(exc.status, exc.code, exc.message, exc.expression)
    return None


DIALECT = Dialect(
    name="fhir-sim",
    error=outcome,
    refusal=refusal,
    max_body=MAX_BODY,
    content_type="application/fhir+json; charset=utf-8",
    challenge='Bearer realm="fhir-sim"',
    problems={
        "malformed": ("structure", "body is not UTF-8 JSON"),
        "unauthorised": ("login", "bearer token required"),
        "not_found": ("not-found", "no such path"),
        "method": ("not-supported", "interaction not supported on this path"),
        "too_large": ("too-costly", f"body larger than {MAX_BODY} bytes"),
        "fault": ("transient", "simulated fault, try again later"),
        "internal": ("exception", "internal simulator error"),
    },
)


class FhirServerSimulator(SimulatorBase):
    """A FHIR R4 server on loopback, deterministic by seed when seeded as a trust.

    Attributes:
        store: every resource, for direct inspection and edits in tests.
        faults: counted fault rules (off until a rule is added).
        hostile_fields: for a seeded trust, ServiceRequest id -> the ReferralFacts field its
            deliberate defect breaks (what quarantine must name).
    """

    routes = ROUTES
    dialect = DIALECT
    api_path = BASE_PATH
    state: FhirStore

    def __init__(self, *, token: str | None = DEFAULT_FHIR_TOKEN, clock: Clock | None = None):
        if token == "":
            raise ConfigError("must not be empty (use None for no authentication)", key="token")
        self.state = FhirStore(clock)
        self.faults = FaultPlan()
        self.token = token
        self.hostile_fields: dict[str, str] = {}

    @classmethod
    def trust(
        cls,
        *,
        seed: int = 1,
        referrals: int = 20,
        hostile: int = 0,
        provider_code: str = "IESO01",
        token: str | None = DEFAULT_FHIR_TOKEN,
    ) -> FhirServerSimulator:
        """A trust's FHIR facade holding generated referrals (see ``fhir_seed``)."""
        sim = cls(token=token)
        sim.hostile_fields = seed_trust(
            sim.store, seed=seed, referrals=referrals, hostile=hostile, provider_code=provider_code
        )
        return sim

    @property
    def store(self) -> FhirStore:
        """Every resource the server holds (the handlers' state)."""
        return self.state

    @property
    def base_url(self) -> str:
        """The FHIR base clients are configured with: ``http://host:port/fhir``.

        Raises:
            ConfigError: the simulator is not serving.
        """
        return self.api_url

    def risk_tasks(self) -> list[JsonDict]:
        """Every Task on a Flag (a risk alert for the duty team), oldest change first."""
        return [
            task
            for task in self.store.all_of("Task")
            if str((task.get("focus") or {}).get("reference", "")).startswith("Flag/")
        ]

    def acknowledge_task(
        self,
        task_id: str,
        *,
        status: str = "accepted",
        owner: str | None = "Practitioner/duty.clinician1",
    ) -> JsonDict:
        """Do what a duty clinician's system does: move a Task on, as the owner, now.

        The same as a client's ``PUT Task/<id>`` with the new ``status``, ``owner`` and
        ``lastModified`` (equal to the new ``meta.lastUpdated``); the Task is checked as
        any write is.

        Raises:
            FhirSimError: no such Task (404), or the result breaks a rule.
        """
        task = self.store.read("Task", task_id)
        if task is None:
            raise FhirSimError(404, "not-found", "no Task with this id")
        moment = self.store.tick()
        task.update(status=status, lastModified=format_timestamp(moment))
        if owner is not None:
            task["owner"] = {"reference": owner}
        task.pop("meta", None)
        return self.store.put(checked_write(task, "Task"), when=moment).resource

    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a path; empty segments are ignored (``/fhir/`` is the base)."""
        return super().resolve("/" + "/".join(part for part in path.split("/") if part))
