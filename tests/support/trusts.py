"""One harness over the four kinds of trust: provider bundles in, the trust's own record out.

``trust_harness(kind, workdir)`` starts the project's own simulator of that kind of trust on
127.0.0.1 (IAPTUS-style ``TrustSimulator``, ``PcmisSimulator`` behind the generic ``rest``
adapter, hl7apy's MLLP server as an HL7 interface engine, ``FhirServerSimulator``), writes a
real config file (a test connection: the simulators use 999-range NHS numbers), opens a
SQLite store and a folder provider, and pulls and delivers a few referrals. A test then
drops provider session bundles where the folder provider reads them (``submit``), runs the
real collect and push flows (``sync``), and reads what the trust itself now holds
(``trust_scores`` and friends), normalised so one assertion fits every kind.

``score_bundle`` builds a session bundle through the domain builders, with the total's
``Observation.code`` replaced by whatever codings a test wants the provider to send;
``with_times`` rewrites its date/time strings as sent (date-only, offset-less, any offset).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter
from ehr_bridge.adapters.hl7v2.er7 import split_messages
from ehr_bridge.adapters.hl7v2.peer import RecordingPeer, uk_referral
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.config import load_config
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.session import build_encounter, build_note, build_score, session_bundle
from ehr_bridge.security.keyring import open_store
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.fhir_server import FhirServerSimulator
from ehr_bridge.sim.pcmis import PcmisSimulator
from ehr_bridge.store import QuarantineRow, Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle
from support.encryption import write_keyring

TrustKind = Literal["iaptus", "pcmis", "hl7v2", "fhir"]
KINDS: tuple[TrustKind, ...] = ("iaptus", "pcmis", "hl7v2", "fhir")
JsonDict = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "harness-token"
PROVIDER = "IESO01"
LOCAL_ID_AUTHORITY = "RXX"
SNOMED = "http://snomed.info/sct"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"
_LONDON = ZoneInfo("Europe/London")
_HEAD = """\
[database]
url = "sqlite:///state/ehr-bridge.db"

[security]
encryption_key_file = "{keyring}"

[[connection]]
name = "{name}"
test_connection = {test_connection}
mapping = "mappings/{mapping}"

[connection.provider_org]
code = "IESO01"
display = "Online typed therapy provider"

[connection.provider]
adapter = "folder"
path = "provider"

[connection.retry]
max_attempts = 3
base_delay_seconds = 0.01
max_delay_seconds = 0.02

"""
_TRUST = {
    "iaptus": """\
[connection.trust]
adapter = "iaptus"
base_url = "{url}/api/v1"
token_file = "secrets/token"
page_size = 20
""",
    "pcmis": """\
[connection.trust]
adapter = "rest"
base_url = "{url}"
mapping = "mappings/pcmis.yaml"
token_file = "secrets/token"
page_size = 20
""",
    "hl7v2": """\
[connection.trust]
adapter = "hl7v2"
drop_folder = "hl7/in"
settle_seconds = 0
segments = ["MSH", "RF1", "PRD", "PID", "DG1"]

[connection.trust.listen]
port = 0

[connection.trust.send]
host = "127.0.0.1"
port = {port}
timeout_seconds = 5
receiving_facility = "RXX"
local_id_authority = "RXX"
""",
    "fhir": """\
[connection.trust]
adapter = "fhir"
base_url = "{url}"
token_file = "secrets/token"
page_size = 20
""",
}
_MAPPINGS = {
    "iaptus": "iaptus.yaml",
    "pcmis": "pcmis.yaml",
    "hl7v2": "hl7v2-ref-i12.yaml",
    "fhir": "fhir-r4.yaml",
}


@dataclass(frozen=True)
class HarnessReferral:
    """A referral pulled from the trust and delivered to the provider folder."""

    service_request_id: str
    patient_id: str
    trust_referral_id: str


@dataclass(frozen=True)
class _Setup:
    """What a test asks the trust to hold on the referrals of ours, before the first pull."""

    #: ICD-10 in data-set form (``F410``) on every referral, written the trust's own way
    problem: str | None = None
    #: exact strings, one per referral of ours in order (None: the simulator's own value)
    problems: Sequence[str | None] = ()
    #: NHS numbers, one per referral of ours in order (None: the simulator's own number)
    nhs_numbers: Sequence[str | None] = ()

    def problem_of(self, index: int, trust_form: Callable[[str], str]) -> str | None:
        """The presenting problem the ``index``-th referral of ours gets, if any."""
        exact = self.problems[index] if index < len(self.problems) else None
        if exact is not None:
            return exact
        return trust_form(self.problem) if self.problem is not None else None

    def nhs_number_of(self, index: int) -> str | None:
        """The NHS number the ``index``-th referral of ours gets, if any."""
        return self.nhs_numbers[index] if index < len(self.nhs_numbers) else None


def _as_given(code: str) -> str:
    return code


class _Trust(Protocol):
    """What each kind of simulated trust gives the harness."""

    def scores(self, referrals: set[str]) -> list[JsonDict]: ...
    def contacts(self, referrals: set[str]) -> list[JsonDict]: ...
    def notes(self, referrals: set[str]) -> list[JsonDict]: ...


@dataclass
class TrustHarness:
    """A running connection to one simulated trust; see the module docstring."""

    kind: TrustKind
    conn: Connection
    store: Store
    workdir: Path
    trust: _Trust
    referrals: list[HarnessReferral] = field(default_factory=list)
    _sequence: int = 0

    @property
    def sessions_dir(self) -> Path:
        """Where the folder provider reads session bundles."""
        return self.workdir / "provider" / "sessions"

    def submit(self, bundle: JsonDict) -> None:
        """Drop one provider session bundle, as the platform would (written, then renamed)."""
        self._sequence += 1
        target = self.sessions_dir / f"{self._sequence:04d}-{bundle.get('id', 'bundle')}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(json.dumps(bundle, ensure_ascii=False), "utf-8")
        temporary.rename(target)

    def sync(self, max_cycles: int = 8) -> list[JsonDict]:
        """Collect and push (the real flows) until nothing is stored, written or due."""
        reports = []
        for _ in range(max_cycles):
            report = run_cycle(self.conn, self.store, flows=("collect", "push"))
            reports.append(report)
            for name in ("collect", "push"):
                if "error" in report.get(name, {}):
                    raise AssertionError(f"{name} failed: {report[name]['error']}")
            busy = report["collect"].get("stored") or report["push"].get("written")
            counts = self.store.outbox_counts(self.conn.name)
            if not busy and not counts.get("pending") and not counts.get("in_flight"):
                return reports
        raise AssertionError("the connection did not settle")

    def _trust_ids(self) -> set[str]:
        return {r.trust_referral_id for r in self.referrals}

    def trust_scores(self) -> list[JsonDict]:
        """Scores the trust holds for our referrals: tool_code, score, completed_at, raw.

        ``completed_at`` is an aware datetime where the trust keeps a time, else a date
        (PC-MIS keeps only the day). FHIR trusts add ``codings`` ((system, code) pairs).
        """
        return self.trust.scores(self._trust_ids())

    def trust_contacts(self) -> list[JsonDict]:
        """Care contacts the trust holds for our referrals, as the trust keeps them."""
        return self.trust.contacts(self._trust_ids())

    def trust_notes(self) -> list[JsonDict]:
        """Notes the trust holds for our referrals: ``text`` plus the raw record."""
        return self.trust.notes(self._trust_ids())

    def quarantined(self) -> list[QuarantineRow]:
        """Open quarantine entries of this connection (code, field, record_ref, reason)."""
        return self.store.quarantine_rows(connection=self.conn.name)

    def outbox_states(self) -> dict[str, str]:
        """Outbox key -> state, for every row of this connection."""
        return {r.id: r.state for r in self.store.outbox_rows(connection=self.conn.name)}

    def dead_errors(self) -> dict[str, str | None]:
        """Outbox key -> stored error of every dead-lettered row (for failure messages)."""
        rows = self.store.outbox_rows(connection=self.conn.name, state="dead")
        return {r.id: r.last_error for r in rows}


@contextmanager
def trust_harness(
    kind: TrustKind,
    workdir: Path,
    *,
    extra_config: str = "",
    referral_problem: str | None = None,
    referrals: int = 2,
    seed: int = 3,
    patient: JsonDict | None = None,
    test_connection: bool = True,
    referral_problems: Sequence[str | None] = (),
    nhs_numbers: Sequence[str | None] = (),
    expect_delivered: bool = True,
) -> Iterator[TrustHarness]:
    """A connection to a simulated ``kind`` trust with ``referrals`` of ours pulled and delivered.

    ``extra_config`` is appended to the config file (``[connection.scores]`` lands in the
    connection; ``[reports]`` at the top level). ``referral_problem`` sets the ICD-10
    provisional diagnosis (data-set form, ``F410``) on every referral at the trust, written
    the way that kind of trust writes it. ``patient`` (HL7 v2 only) overrides fields of
    every referral's patient in the trust simulator's shape (``family_name``,
    ``given_name``, ``birth_date``...), e.g. a name full of HL7 delimiters.

    ``test_connection=False`` makes it a live connection (the simulators' 999-range NHS
    numbers are then refused at pull). ``referral_problems`` and ``nhs_numbers`` set, one
    per referral of ours in pull order, the exact presenting-problem string (``F41.0`` or
    ``F410``, as sent, not re-formed) and patient NHS number the trust holds (None keeps
    the simulator's). ``expect_delivered=False`` lets a test expect every referral refused.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if patient is not None and kind != "hl7v2":
        raise ValueError("patient overrides are only supported for the hl7v2 trust")
    with ExitStack() as stack:
        starter = _STARTERS[kind]
        setup = _Setup(referral_problem, tuple(referral_problems), tuple(nhs_numbers))
        trust, text = starter(stack, workdir, referrals, seed, setup)
        if isinstance(trust, _Hl7Trust) and patient is not None:
            trust.referrals = [
                {**r, "patient": {**r["patient"], **patient}} for r in trust.referrals
            ]
        config_path = _write_config(workdir, kind, text, extra_config, test_connection)
        config = load_config(config_path)
        (conn,) = build_connections(config)
        store = open_store(config)
        stack.callback(store.close)
        if isinstance(trust, _Hl7Trust):
            trust.arrive(conn)
        harness = TrustHarness(kind, conn, store, workdir, trust)
        report = run_cycle(conn, store, flows=("pull", "deliver"))
        assert "error" not in report["pull"], report
        harness.referrals = _delivered(workdir / "provider" / "referrals")
        assert harness.referrals or not expect_delivered, f"nothing was delivered: {report}"
        yield harness


def _write_config(
    workdir: Path, kind: TrustKind, trust_section: str, extra: str, test_connection: bool = True
) -> Path:
    (workdir / "mappings").mkdir(exist_ok=True)
    mapping = _MAPPINGS[kind]
    shutil.copyfile(ROOT / "mappings" / mapping, workdir / "mappings" / mapping)
    (workdir / "secrets").mkdir(exist_ok=True)
    (workdir / "secrets" / "token").write_text(TOKEN)
    head = _HEAD.format(
        name=f"{kind}-trust",
        mapping=mapping,
        test_connection=str(test_connection).lower(),
        keyring=write_keyring(workdir).relative_to(workdir).as_posix(),
    )
    config_path = workdir / "ehr-bridge.toml"
    config_path.write_text(head + trust_section + "\n" + extra, "utf-8")
    return config_path


def _delivered(folder: Path) -> list[HarnessReferral]:
    found = []
    for path in sorted(folder.glob("*.json")):
        resources = [e["resource"] for e in json.loads(path.read_text("utf-8"))["entry"]]
        request = next(r for r in resources if r["resourceType"] == "ServiceRequest")
        found.append(
            HarnessReferral(
                service_request_id=request["id"],
                patient_id=request["subject"]["reference"].split("/")[1],
                trust_referral_id=str(request["identifier"][0]["value"]),
            )
        )
    return found


# --- bundles a provider sends --------------------------------------------------------------
PHQ9_ITEMS = (2, 1, 2, 1, 1, 2, 1, 1, 0)  # 11
GAD7_ITEMS = (2, 1, 1, 2, 1, 1, 1)  # 9


def national_coding(*, snomed: str | None = None, loinc: str | None = None) -> list[JsonDict]:
    """Observation.code.coding as a provider codes a total the national way, nothing private."""
    codings = []
    if snomed:
        codings.append({"system": SNOMED, "code": snomed})
    if loinc:
        codings.append({"system": LOINC, "code": loinc})
    return codings


def score_bundle(
    referral: HarnessReferral,
    measure: str,
    items: Sequence[int | None],
    *,
    coding: list[JsonDict] | None = None,
    number: int = 1,
    with_items: bool = True,
    note: str | None = None,
    start: datetime | None = None,
) -> JsonDict:
    """A provider's session bundle: an Encounter, one total (and its items), maybe a note.

    ``coding`` replaces the total's ``Observation.code.coding`` (the domain builder's is
    SNOMED + LOINC + our private key); ``with_items=False`` leaves the QuestionnaireResponse
    and the total's ``derivedFrom`` out.
    """
    key = f"{referral.service_request_id}|h{number:02d}"
    begin = start or datetime(2026, 10, 1, 18, 0, tzinfo=_LONDON) + timedelta(days=7 * number)
    encounter_id = _rid("Encounter", key)
    resources = [
        build_encounter(
            encounter_id=encounter_id,
            patient_id=referral.patient_id,
            service_request_id=referral.service_request_id,
            start=begin,
            end=begin + timedelta(minutes=50),
        )
    ]
    response, observation = build_score(
        observation_id=_rid("Observation", f"{key}|{measure}"),
        response_id=_rid("QuestionnaireResponse", f"{key}|{measure}"),
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        encounter_id=encounter_id,
        measure_key=measure,
        items=items,
        effective=begin + timedelta(minutes=45),
    )
    if coding is not None:
        observation["code"] = {"coding": coding}
    if with_items:
        resources.append(response)
    else:
        observation.pop("derivedFrom", None)
    resources.append(observation)
    if note:
        resources.append(
            build_note(
                document_id=_rid("DocumentReference", key),
                patient_id=referral.patient_id,
                service_request_id=referral.service_request_id,
                encounter_id=encounter_id,
                text=note,
                authored=begin + timedelta(minutes=55),
                title=f"Session {number} note",
            )
        )
    return session_bundle(_rid("Bundle", key), resources)


def _rid(kind: str, key: str) -> str:
    return resource_id(connection="harness-platform", kind=kind, key=key)


def with_times(
    bundle: JsonDict,
    *,
    start: str | None = None,
    end: str | None = None,
    effective: str | None = None,
    authored: str | None = None,
    bundle_id: str | None = None,
) -> JsonDict:
    """A copy of a session bundle with its times as a provider wrote them, strings as given.

    ``start`` / ``end`` go to ``Encounter.period``, ``effective`` to the total's
    ``effectiveDateTime``, ``authored`` to its response's ``authored`` and a note's
    ``date``, so a test can send a date-only, offset-less or any-offset time in exactly
    one field. ``bundle_id`` gives the copy an id of its own.
    """
    copied: JsonDict = json.loads(json.dumps(bundle))
    if bundle_id is not None:
        copied["id"] = bundle_id
    fields = {
        "Encounter": {"period.start": start, "period.end": end},
        "Observation": {"effectiveDateTime": effective},
        "QuestionnaireResponse": {"authored": authored},
        "DocumentReference": {"date": authored},
    }
    for entry in copied["entry"]:
        resource = entry["resource"]
        for dotted, value in fields.get(resource["resourceType"], {}).items():
            if value is not None:
                *parents, last = dotted.split(".")
                target = resource
                for part in parents:
                    target = target[part]
                target[last] = value
    return copied


# --- the IAPTUS-style trust ----------------------------------------------------------------
@dataclass
class _IaptusTrust:
    simulator: TrustSimulator

    def _entries(self, referrals: set[str]) -> list[JsonDict]:
        entries = self.simulator.export()["referrals"]
        return [e for e in entries if e["referral"]["id"] in referrals]

    def scores(self, referrals: set[str]) -> list[JsonDict]:
        return [
            {
                "tool_code": a["tool_code"],
                "score": a["score"],
                "completed_at": _instant(a["completed_at"]),
                "raw": a,
            }
            for e in self._entries(referrals)
            for a in e["assessments"]
        ]

    def contacts(self, referrals: set[str]) -> list[JsonDict]:
        return [c for e in self._entries(referrals) for c in e["care_contacts"]]

    def notes(self, referrals: set[str]) -> list[JsonDict]:
        return [
            {"text": n["text"], "raw": n}
            for e in self._entries(referrals)
            for n in e["clinical_notes"]
        ]


def _start_iaptus(
    stack: ExitStack, workdir: Path, referrals: int, seed: int, setup: _Setup
) -> tuple[_Trust, str]:
    simulator = TrustSimulator(seed=seed, referrals=2 * referrals, token=TOKEN)
    ours = _ours_first(
        [e["referral"] for e in simulator.export()["referrals"]], "referred_on_to", referrals
    )
    _limit(simulator.state.update_referral, ours, "referred_on_to", setup, "presenting_problem")
    url = simulator.start()
    stack.callback(simulator.stop)
    return _IaptusTrust(simulator), _TRUST["iaptus"].format(url=url)


def _ours_first(records: list[JsonDict], provider_key: str, wanted: int) -> dict[str, bool]:
    """Referral id -> keep as ours: the first ``wanted`` addressed to us stay ours."""
    keep: dict[str, bool] = {}
    for record in records:
        ident = str(record.get("id") or record.get("ReferralRef"))
        is_ours = _provider(record, provider_key) == PROVIDER
        keep[ident] = is_ours and sum(keep.values()) < wanted
    return keep


def _provider(record: JsonDict, key: str) -> str | None:
    value: Any = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def _limit(
    update: Any, keep: dict[str, bool], provider_key: str, setup: _Setup, problem_key: str
) -> None:
    """Readdress referrals beyond the wanted few; set the diagnosis and NHS number of ours."""
    index = 0
    for ident, ours in keep.items():
        changes: JsonDict = {}
        if not ours:
            changes.update(_nested(provider_key, "OTHER01"))
        else:
            if (problem := setup.problem_of(index, _as_given)) is not None:
                changes[problem_key] = problem
            if (number := setup.nhs_number_of(index)) is not None:
                changes["patient"] = {"nhs_number": number}
            index += 1
        if changes:
            update(ident, changes)


def _nested(path: str, value: str) -> JsonDict:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


# --- the PC-MIS-style trust ----------------------------------------------------------------
@dataclass
class _PcmisTrust:
    simulator: PcmisSimulator

    def _entries(self, referrals: set[str]) -> list[JsonDict]:
        entries = self.simulator.export()["referrals"]
        return [e for e in entries if e["referral"]["ReferralRef"] in referrals]

    def scores(self, referrals: set[str]) -> list[JsonDict]:
        return [
            {
                "tool_code": q["Measure"],
                "score": q["TotalScore"],
                "completed_at": datetime.strptime(q["DateCompleted"], "%d/%m/%Y").date(),
                "raw": q,
            }
            for e in self._entries(referrals)
            for q in e["questionnaire"]
        ]

    def contacts(self, referrals: set[str]) -> list[JsonDict]:
        return [a for e in self._entries(referrals) for a in e["appointment"]]

    def notes(self, referrals: set[str]) -> list[JsonDict]:
        return [{"text": n["Body"], "raw": n} for e in self._entries(referrals) for n in e["note"]]


def _start_pcmis(
    stack: ExitStack, workdir: Path, referrals: int, seed: int, setup: _Setup
) -> tuple[_Trust, str]:
    simulator = PcmisSimulator(seed=seed, referrals=2 * referrals, api_key=TOKEN)
    records = [e["referral"] for e in simulator.export()["referrals"]]
    keep = _ours_first(records, "Onward.ServiceCode", referrals)
    index = 0
    for record in records:
        ref = record["ReferralRef"]
        changes: JsonDict = {}
        if not keep[ref]:
            changes["Onward"] = {**record["Onward"], "ServiceCode": "OTHER01"}
        else:
            if (problem := setup.problem_of(index, _dotted)) is not None:
                changes["Diagnosis"] = problem
            if (number := setup.nhs_number_of(index)) is not None:
                changes["Client"] = {**record["Client"], "NHSNumber": number}
            index += 1
        if changes:
            simulator.state.update_referral(ref, changes)
    simulator.start()
    stack.callback(simulator.stop)
    return _PcmisTrust(simulator), _TRUST["pcmis"].format(url=simulator.api_url)


def _dotted(code: str) -> str:
    """ICD-10 in its own written form: ``F410`` -> ``F41.0``."""
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 and "." not in code else code


# --- the HL7 v2 trust ----------------------------------------------------------------------
def is_risk_oru(message: JsonDict) -> bool:
    """An ORU^R01 carrying a risk alert (OBX-3 ``RISK-ALERT``), not a score."""
    return bool(message["OBX"][0]["3"][0]["1"] == "RISK-ALERT")


@dataclass
class _Hl7Trust:
    peer: RecordingPeer
    workdir: Path
    referrals: list[JsonDict]

    def arrive(self, conn: Connection) -> None:
        """Every referral as a REF^I12 file in the drop folder the adapter reads."""
        assert isinstance(conn.source, Hl7v2Adapter)
        folder = self.workdir / "hl7" / "in"
        folder.mkdir(parents=True, exist_ok=True)
        for referral in self.referrals:
            message = uk_referral(referral, trust_code=LOCAL_ID_AUTHORITY)
            (folder / f"{referral['id']}.hl7").write_text(message.replace("\r", "\n"))

    def messages(self, kind: str) -> list[JsonDict]:
        """Filed messages of one type, decoded (``SEG[n]."field"[rep]."component"``)."""
        return [decode(split_messages(m)[0], ZoneInfo("UTC")) for m in self.peer.messages(kind)]

    def raw_messages(self, kind: str) -> list[str]:
        """Filed messages of one type as the ER7 text that arrived."""
        return self.peer.messages(kind)

    def scores(self, referrals: set[str]) -> list[JsonDict]:
        found = []
        for message in self.messages("ORU^R01"):
            if message["OBR"][0]["2"][0]["1"] not in referrals or is_risk_oru(message):
                continue
            obx = message["OBX"][0]
            found.append(
                {
                    "tool_code": obx["3"][0]["1"],
                    "tool_system": obx["3"][0].get("3"),
                    "score": _number(obx["5"][0]["1"]),
                    "completed_at": _instant(obx["14"][0]["1"]),
                    "raw": message,
                }
            )
        return found

    def contacts(self, referrals: set[str]) -> list[JsonDict]:
        return []  # an HL7 v2 trust takes scores and notes only

    def notes(self, referrals: set[str]) -> list[JsonDict]:
        found = []
        for message in self.messages("MDM^T02"):
            if message["TXA"][0]["14"][0]["1"] not in referrals:
                continue
            text = "\n".join(r.get("1", "") for r in message["OBX"][0]["5"])
            found.append({"text": text, "raw": message})
        return found


def _start_hl7v2(
    stack: ExitStack, workdir: Path, referrals: int, seed: int, setup: _Setup
) -> tuple[_Trust, str]:
    peer = RecordingPeer().start()
    stack.callback(peer.stop)
    generated = [
        e["referral"]
        for e in TrustSimulator(seed=seed, referrals=4 * referrals).export()["referrals"]
    ]
    ours = [r for r in generated if r["referred_on_to"] == PROVIDER][:referrals]
    ours = [_hl7_setup(r, index, setup) for index, r in enumerate(ours)]
    return _Hl7Trust(peer, workdir, ours), _TRUST["hl7v2"].format(port=peer.port)


def _hl7_setup(referral: JsonDict, index: int, setup: _Setup) -> JsonDict:
    changed = dict(referral)
    if (problem := setup.problem_of(index, _as_given)) is not None:
        changed["presenting_problem"] = problem
    if (number := setup.nhs_number_of(index)) is not None:
        changed["patient"] = {**referral["patient"], "nhs_number": number}
    return changed


# --- the FHIR trust ------------------------------------------------------------------------
@dataclass
class _FhirTrust:
    simulator: FhirServerSimulator

    def _ours(self, kind: str, referrals: set[str]) -> list[JsonDict]:
        wanted = {f"ServiceRequest/{r}" for r in referrals}
        return [r for r in self.simulator.store.all_of(kind) if _fhir_referral(r) in wanted]

    def scores(self, referrals: set[str]) -> list[JsonDict]:
        found = []
        for observation in self._ours("Observation", referrals):
            codings = [(c.get("system"), c.get("code")) for c in observation["code"]["coding"]]
            snomed = [code for system, code in codings if system == SNOMED]
            found.append(
                {
                    "tool_code": snomed[0] if snomed else None,
                    "codings": codings,
                    "score": observation["valueQuantity"]["value"],
                    "completed_at": _instant(observation["effectiveDateTime"]),
                    "raw": observation,
                }
            )
        return found

    def contacts(self, referrals: set[str]) -> list[JsonDict]:
        return self._ours("Encounter", referrals)

    def notes(self, referrals: set[str]) -> list[JsonDict]:
        return [
            {"text": _attachment_text(d), "raw": d}
            for d in self._ours("DocumentReference", referrals)
        ]


def _start_fhir(
    stack: ExitStack, workdir: Path, referrals: int, seed: int, setup: _Setup
) -> tuple[_Trust, str]:
    simulator = FhirServerSimulator.trust(seed=seed, referrals=2 * referrals, token=TOKEN)
    requests = sorted(simulator.store.all_of("ServiceRequest"), key=lambda r: str(r["id"]))
    kept = 0
    for request in requests:
        ours = request["performer"][0]["identifier"]["value"] == PROVIDER and kept < referrals
        changed = dict(request)
        if not ours:
            changed["performer"] = [
                {"identifier": {**request["performer"][0]["identifier"], "value": "OTHER01"}}
            ]
        else:
            if (problem := setup.problem_of(kept, _as_given)) is not None:
                exact = kept < len(setup.problems) and setup.problems[kept] is not None
                changed["reasonCode"] = [_fhir_reason(request, problem, exact=exact)]
            if (number := setup.nhs_number_of(kept)) is not None:
                _fhir_nhs_number(simulator, request, number)
        kept += ours
        if changed != request:
            simulator.store.put(changed)
    simulator.start()
    stack.callback(simulator.stop)
    return _FhirTrust(simulator), _TRUST["fhir"].format(url=simulator.base_url)


def _fhir_reason(request: JsonDict, problem: str, *, exact: bool = False) -> JsonDict:
    """The ICD-10 reason written as the seeded trust writes its own (dotted or not).

    ``exact``: written as given, whatever form the seeded trust uses.
    """
    old = request.get("reasonCode") or [{"coding": [{"system": "", "code": ""}]}]
    coding = dict(old[0]["coding"][0])
    dotted = "." in str(coding.get("code")) and not exact
    coding["code"] = _dotted(problem) if dotted else problem
    return {"coding": [coding]}


def _fhir_nhs_number(simulator: FhirServerSimulator, request: JsonDict, number: str) -> None:
    """Give the referral's Patient this NHS number (its other identifiers kept)."""
    patient_id = str(request["subject"]["reference"]).split("/")[1]
    patient = next(p for p in simulator.store.all_of("Patient") if p["id"] == patient_id)
    identifiers = [
        {**i, "value": number} if i.get("system") == NHS_NUMBER_SYSTEM else i
        for i in patient["identifier"]
    ]
    simulator.store.put({**patient, "identifier": identifiers})


def _fhir_referral(resource: JsonDict) -> str:
    if resource["resourceType"] == "Task":
        return str(resource["focus"]["reference"])
    if resource["resourceType"] == "DocumentReference":
        return str(resource["context"]["related"][0]["reference"])
    return str(resource["basedOn"][0]["reference"])


def _attachment_text(document: JsonDict) -> str:
    return base64.b64decode(document["content"][0]["attachment"]["data"]).decode("utf-8")


# --- shared --------------------------------------------------------------------------------
def _instant(value: Any) -> datetime | date:
    """An ISO 8601 or HL7 DTM value as an aware datetime (UTC when it has no offset)."""
    text = str(value)
    if text.isdigit() and len(text) in (8, 12, 14):  # HL7 DTM without offset
        moment = datetime.strptime(text.ljust(14, "0"), "%Y%m%d%H%M%S")
        return moment.replace(tzinfo=UTC)
    if len(text) == 10:
        return date.fromisoformat(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


_STARTERS = {
    "iaptus": _start_iaptus,
    "pcmis": _start_pcmis,
    "hl7v2": _start_hl7v2,
    "fhir": _start_fhir,
}
