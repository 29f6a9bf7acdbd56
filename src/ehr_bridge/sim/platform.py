"""A synthetic typed-therapy platform: the provider side of the demo, tests and benchmarks.

It reads the referral bundles the ``folder`` adapter delivers into ``<root>/referrals/``
and answers with session bundles in ``<root>/sessions/``, as a real platform would: an
assessment-and-treatment session, weekly-ish treatment sessions (most out of office hours,
Europe/London time), a few missed ones, PHQ-9/GAD-7 at every attended session, WSAS at the
first and last, a typed note per attended session, and an episode end.

Everything is a pure function of (seed, ServiceRequest id, patient id, referral date): the
same referral always gets the same course, whatever order referrals arrive in, so tests can
compare byte for byte and ``expected_artefacts`` can regenerate what was written instead of
storing it. Resources are built only by ``ehr_bridge.domain.session``.

``now`` is the platform's clock: a session is written once it has ended (its note, if any,
written) by ``now``, the episode end once its date has passed. With ``now=None`` there is no
clock and a referral's whole course is written in one ``step()``. File times are set to when
each artefact was produced, so the folder's (mtime, name) order is the clinical order.

``adsm=True`` (off by default; the default output is unchanged byte for byte) adds the
anxiety-disorder-specific measure the catalogue pairs with the referral's provisional
diagnosis (``ServiceRequest.reasonCode``, ICD-10 either way: PDSS for F41.0, SPIN for F40.1,
...) at the first and last attended sessions, like WSAS, from an RNG of its own so the rest
of the course is the same course. A folder remembers the mode, as it remembers the seed.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ehr_bridge.domain.codes import ICD10
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.measures import MEASURES, Measure, measure_table, total_from_items
from ehr_bridge.domain.risk import DEFAULT_RULES
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    session_bundle,
)
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.files import open_private, private_dir
from ehr_bridge.sim.notes import NoteContext, session_note

__all__ = [
    "CONNECTION",
    "STATE_FILE",
    "ExpectedArtefact",
    "PlatformStepResult",
    "SyntheticPlatform",
]

JsonDict = dict[str, Any]

LONDON = ZoneInfo("Europe/London")
CONNECTION = "platform"
STATE_FILE = "platform-state.json"
_STOP_STATUSES = frozenset({"revoked", "entered-in-error"})
#: FHIR id rule, minus a leading dot: the ServiceRequest id becomes part of file names
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,63}")


@dataclass(frozen=True)
class PlatformStepResult:
    """What one ``step`` wrote, for the demo's progress line and the benchmarks."""

    referrals_taken: int = 0
    sessions_written: int = 0
    notes: int = 0
    scores: int = 0
    discharges: int = 0
    referrals_skipped: int = 0  # unreadable referral bundles, left where they are


@dataclass(frozen=True)
class ExpectedArtefact:
    """One resource the platform wrote, described as a test would look for it at the trust.

    ``kind`` is ``encounter``, ``score``, ``note`` or ``episode_end``; only the fields
    of that kind are set. ``at`` is the session start, score time or note time (local).
    """

    service_request_id: str
    kind: str
    resource_id: str
    bundle_file: str
    session: int | None = None
    at: datetime | None = None
    duration_minutes: int | None = None
    appointment_type: str | None = None
    attendance: str | None = None
    measure: str | None = None
    items: tuple[int | None, ...] = ()
    total: float | None = None
    text: str | None = None
    end_code: str | None = None
    end_date: date | None = None

    @property
    def raises_risk(self) -> bool:
        """A score the default risk rule fires on: one risk alert at the trust besides it."""
        return self.kind == "score" and any(
            rule.measure == self.measure
            and len(self.items) >= rule.item
            and (self.items[rule.item - 1] or 0) >= rule.at_least
            for rule in DEFAULT_RULES
        )


@dataclass(frozen=True)
class _Referral:
    service_request_id: str
    patient_id: str
    authored: date
    stopped: bool = False  # revoked by the trust: no (further) sessions
    sessions_written: int = 0
    ended: bool = False


@dataclass(frozen=True)
class _Session:
    number: int
    start: datetime
    minutes: int
    appointment_type: str
    attendance: str
    scores: tuple[tuple[str, tuple[int | None, ...]], ...] = ()
    note: str | None = None
    therapist: str = ""

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)

    @property
    def scored(self) -> datetime:
        """Questionnaires are completed in the first minutes of the session."""
        return self.start + timedelta(minutes=5)

    @property
    def produced(self) -> datetime:
        """When the platform has finished with the session (note written after the end)."""
        return self.end + timedelta(minutes=20 if self.note else 5)


@dataclass(frozen=True)
class _Course:
    sessions: tuple[_Session, ...]
    end_code: str
    end_date: date

    @property
    def end_produced(self) -> datetime:
        return datetime.combine(self.end_date, time(17, 0), LONDON)


class SyntheticPlatform:
    """Stands in for the provider's platform over the folder the ``folder`` adapter shares.

    Progress lives in ``<root>/platform-state.json`` (per referral: sessions written,
    ended, stopped), so a new instance on the same folder carries on where the last one
    stopped; the state remembers its seed and refuses another. A referral whose
    ServiceRequest is ``revoked`` (or ``entered-in-error``) gets no further sessions and
    no episode end. Unusable referral bundles are counted in ``referrals_skipped`` and
    left in place. State is saved at the end of a step; after a crash the next step
    writes the same files again, byte for byte, which collect treats as repeats.
    """

    def __init__(
        self, root: Path, *, seed: int = 1, now: datetime | None = None, adsm: bool = False
    ) -> None:
        if now is not None and now.tzinfo is None:
            raise ConfigError("must be timezone-aware", key="now")
        self.root = Path(root)
        self.seed = seed
        self.now = now
        self.adsm = adsm
        self.referrals_dir = self.root / "referrals"
        self.sessions_dir = self.root / "sessions"
        try:
            private_dir(self.sessions_dir)
            private_dir(self.referrals_dir)
        except OSError as exc:
            raise ConfigError("cannot create the shared folder layout", key="root") from exc
        self._state = self._load_state()

    def step(self) -> PlatformStepResult:
        """Take new referrals and write every session that has happened by ``now``."""
        result = PlatformStepResult()
        for path in sorted(self.referrals_dir.glob("*.json")):
            known = self._state.get(path.stem)
            if known is not None and (known.ended or known.stopped):
                continue
            referral = _read_referral(path)
            if referral is None:
                result = replace(result, referrals_skipped=result.referrals_skipped + 1)
                continue
            result = self._advance(referral, result)
        self._save_state()
        return result

    def expected_artefacts(self) -> list[ExpectedArtefact]:
        """Everything written so far, regenerated from the seed (nothing is stored twice)."""
        found: list[ExpectedArtefact] = []
        for referral in sorted(self._state.values(), key=lambda r: r.service_request_id):
            course = self._plan(referral)
            for session in course.sessions[: referral.sessions_written]:
                found.extend(_session_artefacts(referral, session))
            if referral.ended:
                found.append(_end_artefact(referral, course))
        return found

    def _advance(self, referral: _Referral, result: PlatformStepResult) -> PlatformStepResult:
        """Write what is due for one referral and record its progress."""
        sr_id = referral.service_request_id
        known = self._state.get(sr_id)
        if known is None and not referral.stopped:
            result = replace(result, referrals_taken=result.referrals_taken + 1)
        # the course stays the one planned when the referral was first taken
        progress = replace(known, stopped=referral.stopped) if known else referral
        if progress.stopped:
            self._state[sr_id] = progress
            return result
        course = self._plan(progress)
        for session in course.sessions[progress.sessions_written :]:
            if not self._due(session.produced):
                break
            bundle = _session_bundle(progress, session)
            self._write(_file_name(progress, session), bundle, session.produced)
            progress = replace(progress, sessions_written=session.number)
            result = _count_session(result, session)
        if progress.sessions_written == len(course.sessions) and self._due(course.end_produced):
            bundle = _end_bundle(progress, course)
            self._write(_file_name(progress, None), bundle, course.end_produced)
            progress = replace(progress, ended=True)
            result = replace(result, discharges=result.discharges + 1)
        self._state[sr_id] = progress
        return result

    def _plan(self, referral: _Referral) -> _Course:
        """The referral's course, with its ADSM in ADSM mode."""
        course = _plan_course(self.seed, referral)
        if not self.adsm:
            return course
        measure = _adsm_for(_referral_problem(self.referrals_dir, referral.service_request_id))
        return course if measure is None else _with_adsm(self.seed, referral, course, measure)

    def _due(self, produced: datetime) -> bool:
        return self.now is None or produced <= self.now

    def _write(self, name: str, bundle: JsonDict, produced: datetime) -> None:
        _atomic_write(self.sessions_dir / name, _encode(bundle), produced)

    # --- state --------------------------------------------------------------------------

    def _load_state(self) -> dict[str, _Referral]:
        path = self.root / STATE_FILE
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw["seed"] != self.seed:
                raise ConfigError("differs from the seed this folder was built with", key="seed")
            if raw.get("adsm", False) != self.adsm:
                raise ConfigError("differs from the mode this folder was built with", key="adsm")
            return {sr: _referral_from_json(item) for sr, item in raw["referrals"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError("is not a platform state file", key=STATE_FILE) from exc

    def _save_state(self) -> None:
        referrals = {sr: _referral_to_json(r) for sr, r in sorted(self._state.items())}
        body: JsonDict = {"version": 1, "seed": self.seed, "referrals": referrals}
        if self.adsm:
            body["adsm"] = True
        _atomic_write(self.root / STATE_FILE, _encode(body), None)


# --- reading referrals ---------------------------------------------------------------------


def _read_referral(path: Path) -> _Referral | None:
    """The few referral facts the platform acts on, or None if the bundle is unusable."""
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = {r["resourceType"]: r for r in _resources(bundle)}
        request = resources["ServiceRequest"]
        patient_id = resources["Patient"]["id"] if "Patient" in resources else None
        patient_id = patient_id or request["subject"]["reference"].rpartition("/")[2]
        referral = _Referral(
            service_request_id=request["id"],
            patient_id=patient_id,
            authored=date.fromisoformat(str(request["authoredOn"])[:10]),
            stopped=request.get("status") in _STOP_STATUSES,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    ids = (referral.service_request_id, referral.patient_id)
    return referral if all(isinstance(i, str) and _SAFE_ID.fullmatch(i) for i in ids) else None


def _resources(bundle: JsonDict) -> Iterator[JsonDict]:
    for entry in bundle.get("entry", []):
        yield entry["resource"]


def _referral_to_json(referral: _Referral) -> JsonDict:
    raw = asdict(referral)
    raw["authored"] = referral.authored.isoformat()
    return raw


def _referral_from_json(raw: JsonDict) -> _Referral:
    return _Referral(**{**raw, "authored": date.fromisoformat(raw["authored"])})


# --- planning a course ---------------------------------------------------------------------


@dataclass
class _Trajectory:
    """Where each measure starts and ends; values in between are interpolated with noise."""

    start: dict[str, float] = field(default_factory=dict)
    finish: dict[str, float] = field(default_factory=dict)
    no_work_item: bool = False


def _plan_course(seed: int, referral: _Referral) -> _Course:
    """The whole course for a referral, fixed by the seed and the referral's identity."""
    rng = random.Random(f"ehr-bridge-platform|{seed}|{referral.service_request_id}")
    end_code = rng.choices(("46", "48", "47"), weights=(70, 20, 10))[0]
    count = rng.randint(4, 8) if end_code == "46" else rng.randint(2, 4)
    starts = _schedule(rng, referral.authored + timedelta(days=rng.randint(3, 20)), count)
    attendance = _attendance(rng, count, end_code)
    trajectory = _trajectory(rng)
    therapist = f"therapist-{rng.randint(1, 60):03d}"
    attended = [i for i, code in enumerate(attendance) if code == "5"]
    sessions = []
    previous_mood: int | None = None
    for index, (start, minutes) in enumerate(starts):
        session = _Session(
            number=index + 1,
            start=start,
            minutes=minutes,
            appointment_type="03" if index == 0 else "02",
            attendance=attendance[index],
            therapist=therapist,
        )
        if index in attended:
            session, previous_mood = _with_content(
                rng, session, trajectory, attended, previous_mood
            )
        sessions.append(session)
    end_date = sessions[-1].start.date() + timedelta(days=rng.randint(1, 7))
    return _Course(sessions=tuple(sessions), end_code=end_code, end_date=end_date)


def _schedule(rng: random.Random, first: date, count: int) -> list[tuple[datetime, int]]:
    """Weekly-ish slots; about 60% in the evening (18:00-22:00) or at the weekend."""
    slots = []
    week = first
    for _ in range(count):
        kind = rng.choices(("evening", "weekend", "office"), weights=(40, 20, 40))[0]
        days = [week + timedelta(days=d) for d in range(7)]
        weekend = kind == "weekend"
        day = rng.choice([d for d in days if (d.weekday() >= 5) == weekend])
        minutes = rng.randrange(30, 61, 5)
        earliest, latest = {"evening": (18, 22), "weekend": (10, 18), "office": (9, 17)}[kind]
        start_minute = rng.randrange(earliest * 60, latest * 60 - minutes + 1, 15)
        start = datetime.combine(day, time(start_minute // 60, start_minute % 60), LONDON)
        slots.append((start, minutes))
        week += timedelta(days=14 if rng.random() < 0.1 else 7)
    return slots


def _attendance(rng: random.Random, count: int, end_code: str) -> list[str]:
    """AttendOrDNACode per session: the first always attended, a few DNAs ("3") later."""
    codes = ["5"] + ["3" if rng.random() < 0.12 else "5" for _ in range(count - 1)]
    if end_code == "46":
        codes[-1] = "5"  # a course completed by agreement ends with a session
    elif count > 2 and rng.random() < 0.5:
        codes[-1] = "3"  # dropped out: the last booked session was missed
    return codes


def _trajectory(rng: random.Random) -> _Trajectory:
    """Most improve, some stay put, a few reliably deteriorate."""
    course = rng.choices(("improve", "flat", "worse"), weights=(65, 25, 10))[0]
    traj = _Trajectory(no_work_item=rng.random() < 0.15)
    for key, low, high, worse_by in (("phq9", 8, 22, 7), ("gad7", 6, 19, 5), ("wsas", 8, 30, 8)):
        start = rng.randint(low, high)
        traj.start[key] = start
        if course == "improve":
            traj.finish[key] = start * rng.uniform(0.2, 0.6)
        elif course == "flat":
            traj.finish[key] = start * rng.uniform(0.85, 1.1)
        else:
            traj.finish[key] = start + worse_by + rng.randint(0, 2)
    return traj


def _with_content(
    rng: random.Random,
    session: _Session,
    traj: _Trajectory,
    attended: list[int],
    previous_mood: int | None,
) -> tuple[_Session, int]:
    """Scores (WSAS only at the first and last attended session) and the typed note."""
    index = session.number - 1
    first, last = index == attended[0], index == attended[-1]
    progress = attended.index(index) / max(len(attended) - 1, 1)
    keys = ["phq9", "gad7"] + (["wsas"] if first or last else [])
    scores = tuple((key, _items(rng, key, traj, progress, first or last)) for key in keys)
    phq = sum(v or 0 for v in scores[0][1])
    mood = max(1, min(10, round(9 - phq * 8 / 27)))
    context = NoteContext(session.number, first, last and len(attended) > 1, mood, previous_mood)
    return replace(session, scores=scores, note=session_note(rng, context)), mood


def _items(
    rng: random.Random, key: str, traj: _Trajectory, progress: float, exact: bool
) -> tuple[int | None, ...]:
    """Item answers whose total follows the trajectory (noise only between first and last)."""
    measure = MEASURES[key]
    value = traj.start[key] + (traj.finish[key] - traj.start[key]) * progress
    value += 0 if exact else rng.randint(-2, 2)
    skip_work = key == "wsas" and traj.no_work_item
    open_items = list(range(1, measure.item_count) if skip_work else range(measure.item_count))
    total = max(0, min(round(value), len(open_items) * measure.item_max))
    items: list[int | None] = [
        None if skip_work and i == 0 else 0 for i in range(measure.item_count)
    ]
    for _ in range(total):
        pick = rng.choice([i for i in open_items if (items[i] or 0) < measure.item_max])
        items[pick] = (items[pick] or 0) + 1
    return tuple(items)


# --- ADSM mode -----------------------------------------------------------------------------


def _referral_problem(folder: Path, service_request_id: str) -> str | None:
    """The ICD-10 provisional diagnosis of a delivered referral, in data-set form (F410)."""
    try:
        bundle = json.loads((folder / f"{service_request_id}.json").read_text(encoding="utf-8"))
        request = next(r for r in _resources(bundle) if r["resourceType"] == "ServiceRequest")
        codings = [c for concept in request.get("reasonCode", []) for c in concept["coding"]]
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None
    code = next((c.get("code") for c in codings if c.get("system") == ICD10), None)
    return code.replace(".", "").upper() if isinstance(code, str) else None


def _adsm_for(problem: str | None) -> Measure | None:
    """The first ADSM (catalogue order) the switched-on catalogue pairs with ``problem``."""
    if not problem:
        return None
    for measure in measure_table(adsm_enabled=True).values():
        if measure.enabled and any(problem.startswith(p) for p in measure.problems):
            return measure
    return None


def _with_adsm(seed: int, referral: _Referral, course: _Course, measure: Measure) -> _Course:
    """The course with ``measure`` at the first and last attended sessions.

    Its own RNG, so the PHQ-9/GAD-7/WSAS answers and the schedule stay those of the plain
    course; the ADSM starts above its cut-off and moves as PHQ-9 moves over the course.
    """
    rng = random.Random(f"ehr-bridge-platform-adsm|{seed}|{referral.service_request_id}")
    scored = [s for s in course.sessions if s.scores]
    if not scored:
        return course
    phq = [total_from_items(MEASURES["phq9"], dict(s.scores)["phq9"]) for s in scored]
    ratio = phq[-1] / phq[0] if phq[0] else 1.0
    cut = float(measure.caseness or measure.item_max)
    start = rng.uniform(cut * 1.1, cut + (float(measure.total_max) - cut) * 0.6)
    targets = {scored[0].number: start, scored[-1].number: start * ratio}
    sessions = tuple(
        replace(s, scores=(*s.scores, (measure.key, _adsm_items(rng, measure, targets[s.number]))))
        if s.number in targets
        else s
        for s in course.sessions
    )
    return replace(course, sessions=sessions)


def _adsm_items(rng: random.Random, measure: Measure, target: float) -> tuple[int | None, ...]:
    """Item answers whose total (a sum, or the mean for a mean measure) is near ``target``."""
    count = measure.item_count
    wanted = target * count if measure.total_kind == "mean" else target
    units = round(wanted) - measure.item_min * count
    units = max(0, min(units, (measure.item_max - measure.item_min) * count))
    items: list[int | None] = [measure.item_min] * count
    for _ in range(units):
        pick = rng.choice([i for i in range(count) if (items[i] or 0) < measure.item_max])
        items[pick] = (items[pick] or 0) + 1
    return tuple(items)


# --- building bundles ----------------------------------------------------------------------


def _rid(kind: str, key: str) -> str:
    return resource_id(connection=CONNECTION, kind=kind, key=key)


def _key(referral: _Referral, session: _Session | None) -> str:
    """Business key of a session (``<sr>|sNN``) or of the episode end (``<sr>|end``)."""
    suffix = f"s{session.number:02d}" if session else "end"
    return f"{referral.service_request_id}|{suffix}"


def _file_name(referral: _Referral, session: _Session | None) -> str:
    return _key(referral, session).replace("|", "-") + ".json"


def _session_bundle(referral: _Referral, session: _Session) -> JsonDict:
    """Encounter, then each score's QuestionnaireResponse and Observation, then the note."""
    key, sr_id, patient_id = (
        _key(referral, session),
        referral.service_request_id,
        referral.patient_id,
    )
    encounter_id = _rid("Encounter", key)
    resources = [
        build_encounter(
            encounter_id=encounter_id,
            patient_id=patient_id,
            service_request_id=sr_id,
            start=session.start,
            end=session.end,
            appointment_type=session.appointment_type,
            attendance=session.attendance,
            therapist=session.therapist,
        )
    ]
    for measure, items in session.scores:
        resources.extend(
            build_score(
                observation_id=_rid("Observation", f"{key}|{measure}"),
                response_id=_rid("QuestionnaireResponse", f"{key}|{measure}"),
                patient_id=patient_id,
                service_request_id=sr_id,
                encounter_id=encounter_id,
                measure_key=measure,
                items=items,
                effective=session.scored,
                adsm_enabled=True,  # only an ADSM-mode course holds ADSM scores
            )
        )
    if session.note:
        resources.append(
            build_note(
                document_id=_rid("DocumentReference", key),
                patient_id=patient_id,
                service_request_id=sr_id,
                encounter_id=encounter_id,
                text=session.note,
                authored=session.produced,
                author=session.therapist,
                title=f"Session {session.number} note",
            )
        )
    return session_bundle(_rid("Bundle", key), resources)


def _end_bundle(referral: _Referral, course: _Course) -> JsonDict:
    """The episode end on its own, so it arrives after every session of the course."""
    key = _key(referral, None)
    episode = build_episode_end(
        episode_id=_rid("EpisodeOfCare", key),
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        start=course.sessions[0].start.date(),
        end=course.end_date,
        end_code=course.end_code,
    )
    return session_bundle(_rid("Bundle", key), [episode])


def _count_session(result: PlatformStepResult, session: _Session) -> PlatformStepResult:
    return replace(
        result,
        sessions_written=result.sessions_written + 1,
        notes=result.notes + (1 if session.note else 0),
        scores=result.scores + len(session.scores),
    )


# --- expected artefacts --------------------------------------------------------------------


def _session_artefacts(referral: _Referral, session: _Session) -> Iterator[ExpectedArtefact]:
    """The encounter, scores and note of one session, in bundle order."""
    key = _key(referral, session)
    base = ExpectedArtefact(
        service_request_id=referral.service_request_id,
        kind="encounter",
        resource_id=_rid("Encounter", key),
        bundle_file=_file_name(referral, session),
        session=session.number,
        at=session.start,
    )
    yield replace(
        base,
        duration_minutes=session.minutes,
        appointment_type=session.appointment_type,
        attendance=session.attendance,
    )
    for measure, items in session.scores:
        yield replace(
            base,
            kind="score",
            resource_id=_rid("Observation", f"{key}|{measure}"),
            at=session.scored,
            measure=measure,
            items=items,
            total=total_from_items(MEASURES[measure], items),
        )
    if session.note:
        doc_id = _rid("DocumentReference", key)
        yield replace(base, kind="note", resource_id=doc_id, at=session.produced, text=session.note)


def _end_artefact(referral: _Referral, course: _Course) -> ExpectedArtefact:
    return ExpectedArtefact(
        service_request_id=referral.service_request_id,
        kind="episode_end",
        resource_id=_rid("EpisodeOfCare", _key(referral, None)),
        bundle_file=_file_name(referral, None),
        end_code=course.end_code,
        end_date=course.end_date,
    )


# --- files ---------------------------------------------------------------------------------


def _encode(body: JsonDict) -> bytes:
    return (json.dumps(body, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode()


def _atomic_write(target: Path, data: bytes, produced: datetime | None) -> None:
    """Write ``<name>.tmp``, fsync, set its time, then rename: readers see all or nothing."""
    tmp = target.with_name(target.name + ".tmp")
    with open_private(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if produced is not None:
        stamp = int(produced.timestamp()) * 1_000_000_000
        os.utime(tmp, ns=(stamp, stamp))
    os.replace(tmp, target)
