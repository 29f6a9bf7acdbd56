"""Synthetic, seed-deterministic referrals that look like a Talking Therapies caseload.

Everything comes from one ``random.Random(seed)`` and the reference instant ``now``, never
from the global RNG or the wall clock, so two simulators with the same seed export the same
bytes and a failing test can be replayed exactly. Identifiers are obviously synthetic:
NHS numbers in the 999 test range, phones in Ofcom's 07700 900xxx drama range, e-mail at
``example.invalid``.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from ehr_bridge.sim.hostile import HOSTILE_KINDS, HostileInfo, break_record
from ehr_bridge.sim.records import REFERENCE_NOW, JsonDict, format_date, format_timestamp

_GIVEN = {
    "1": ["Oliver", "Jack", "Harry", "George", "Mohammed", "Rhys", "Callum", "Daniel", "Aled"],
    "2": ["Amelia", "Olivia", "Isla", "Emily", "Siân", "Zoë", "Priya", "Chloe", "Megan"],
    "9": ["Alex", "Sam", "Charlie", "Jordan", "Robin"],
    "X": ["Jamie", "Morgan", "Taylor", "Frankie", "Rowan"],
}
_FAMILY = [
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Roberts", "Johnson", "Walker", "Wright", "Khan", "Ahmed", "Patel", "O'Neill", "Murphy",
    "Nowak", "Okafor", "Smith-Jones", "MacDonald", "Hughes", "Edwards", "Green", "Hall",
]  # fmt: skip
_OUTWARD = [
    "LS1", "LS6", "M14", "M20", "B15", "B29", "S10", "NE6", "BS7", "NG7",
    "L17", "CF24", "SO17", "EX4", "YO10", "HU5", "PL4", "BN2", "CB1", "OX4",
]  # fmt: skip
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_SOURCES = [("A1", 45), ("B1", 40), ("A2", 3), ("B2", 2), ("C1", 2), ("D1", 2), ("G1", 2),
            ("H1", 2), ("I1", 1), ("M3", 1)]  # fmt: skip
_PROBLEMS = [("F320", 10), ("F321", 12), ("F329", 6), ("F411", 30), ("F412", 10),
             ("F400", 5), ("F401", 8), ("F410", 8), ("F431", 11)]  # fmt: skip
#: an opt-in caseload whose provisional diagnoses all have an anxiety-disorder-specific
#: measure (agoraphobia, social phobia, panic, OCD, PTSD, health anxiety), for ADSM runs
ADSM_PROBLEMS = [("F400", 1), ("F401", 1), ("F410", 1), ("F42", 1), ("F431", 1),
                 ("F452", 1)]  # fmt: skip
_GENDERS = [("2", 60), ("1", 36), ("9", 2), ("X", 2)]
_OTHER_PROVIDERS = ["SILVER01", "TALKWELL02", "INHOUSE01"]
_BIRTH_FIRST = date(1950, 1, 1)
_BIRTH_LAST = date(2006, 12, 31)
_SPREAD_DAYS = 120


@dataclass
class Dataset:
    """The generated record system before any client writes, in creation order.

    ``keys`` runs beside ``referrals``: the referral id, or a marker for a hostile record
    that has no id, so the state can still store, list and page it.
    """

    referrals: list[JsonDict] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    hostile: list[HostileInfo] = field(default_factory=list)
    #: the generator that made them, kept so the state can add referrals later
    factory: ReferralFactory | None = None

    def add(self, record: JsonDict, hostile: HostileInfo | None = None) -> None:
        """Append one record under its id (or the hostile marker when it has none)."""
        self.referrals.append(record)
        self.keys.append(hostile.key if hostile else str(record["id"]))
        if hostile:
            self.hostile.append(hostile)


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus 11 check digit for nine digits, or None when the number cannot be issued (10).

    Private to the simulator on purpose: the engine's own validator is what the tests check,
    so the simulator must not reuse it.
    """
    total = sum(
        int(digit) * weight for digit, weight in zip(first_nine, range(10, 1, -1), strict=True)
    )
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def _weighted(rng: random.Random, options: list[tuple[str, int]]) -> str:
    values = [value for value, _ in options]
    weights = [weight for _, weight in options]
    return rng.choices(values, weights=weights, k=1)[0]


class ReferralFactory:
    """Mints referrals and patients with unique ids and NHS numbers from one seeded RNG."""

    def __init__(
        self, rng: random.Random, now: datetime, problems: list[tuple[str, int]] | None = None
    ) -> None:
        self.rng = rng
        self.now = now
        self.problems = problems or _PROBLEMS
        self._referral_seq = 0
        self._patient_seq = 0
        self._nhs_numbers: set[str] = set()

    def referral(self, referred_on_to: str) -> JsonDict:
        """A well-formed referral, referred on to ``referred_on_to``."""
        self._referral_seq += 1
        received = self.now.date() - timedelta(days=self.rng.randrange(_SPREAD_DAYS))
        referred_on = min(received + timedelta(days=self.rng.randint(0, 14)), self.now.date())
        return {
            "id": f"SR{self._referral_seq:07d}",
            "version": 1,
            "updated_at": format_timestamp(self._updated_at(referred_on)),
            "received_date": format_date(received),
            "source_of_referral": _weighted(self.rng, _SOURCES),
            "presenting_problem": _weighted(self.rng, self.problems),
            "status": "referred_on",
            "referred_on_to": referred_on_to,
            "referred_on_date": format_date(referred_on),
            "end_code": None,
            "discharge_date": None,
            "patient": self.patient(),
        }

    def patient(self) -> JsonDict:
        """A patient with a unique local id and a unique, Modulus 11 valid 999-range number."""
        self._patient_seq += 1
        gender = _weighted(self.rng, _GENDERS)
        given = self.rng.choice(_GIVEN[gender])
        family = self.rng.choice(_FAMILY)
        return {
            "local_id": f"P{self._patient_seq:07d}",
            "nhs_number": self.nhs_number(),
            "nhs_number_status": "01" if self.rng.random() < 0.9 else "02",
            "family_name": family,
            "given_name": given,
            "birth_date": format_date(self._birth_date()),
            "gender": gender,
            "postcode": self._postcode(),
            "phone": f"07700 900{self.rng.randrange(1000):03d}",
            "email": self._email(given, family),
        }

    def nhs_number(self) -> str:
        """A fresh 999-range NHS number, never issued before by this factory."""
        while True:
            first_nine = f"999{self.rng.randrange(1_000_000):06d}"
            check = nhs_check_digit(first_nine)
            number = f"{first_nine}{check}"
            if check is not None and number not in self._nhs_numbers:
                self._nhs_numbers.add(number)
                return number

    def _updated_at(self, referred_on: date) -> datetime:
        start = datetime.combine(referred_on, time(8, 0), tzinfo=UTC)
        moment = start + timedelta(seconds=self.rng.randrange(9 * 3600))
        if moment >= self.now:
            moment = self.now - timedelta(seconds=self.rng.randint(1, 3600))
        return moment

    def _birth_date(self) -> date:
        span = (_BIRTH_LAST - _BIRTH_FIRST).days
        return _BIRTH_FIRST + timedelta(days=self.rng.randint(0, span))

    def _postcode(self) -> str:
        letters = "".join(self.rng.choice(_INWARD_LETTERS) for _ in range(2))
        return f"{self.rng.choice(_OUTWARD)} {self.rng.randrange(10)}{letters}"

    def _email(self, given: str, family: str) -> str | None:
        if self.rng.random() < 0.1:
            return None
        local = f"{_ascii_word(given)}.{_ascii_word(family)}{self.rng.randint(1, 99)}"
        return f"{local}@example.invalid"


def _ascii_word(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(char for char in decomposed if char.isascii() and char.isalnum()).lower()


def destinations(rng: random.Random, referrals: int, provider_code: str) -> list[str]:
    """Provider codes in creation order: ``referrals`` ours plus about one in five elsewhere."""
    others = [code for code in _OTHER_PROVIDERS if code != provider_code]
    plan = [provider_code] * referrals
    plan += [rng.choice(others) for _ in range(round(referrals * 0.2))]
    rng.shuffle(plan)
    return plan


def generate(
    *,
    seed: int,
    referrals: int,
    hostile: int = 0,
    provider_code: str = "IESO01",
    now: datetime = REFERENCE_NOW,
    problems: list[tuple[str, int]] | None = None,
) -> Dataset:
    """The caseload for one seed: good referrals, then ``hostile`` malformed ones of ours.

    ``problems`` (weighted ICD-10 codes, e.g. ``ADSM_PROBLEMS``) replaces the default mix of
    provisional diagnoses; without it the output is the default caseload, byte for byte.

    Hostile records cycle through ``HOSTILE_KINDS`` so any run of twelve or more covers them
    all; their ``updated_at`` falls among the good ones, so they turn up mid-listing.
    """
    rng = random.Random(seed)
    factory = ReferralFactory(rng, now, problems)
    dataset = Dataset(factory=factory)
    for code in destinations(rng, referrals, provider_code):
        dataset.add(factory.referral(code))
    for index in range(hostile):
        kind = HOSTILE_KINDS[index % len(HOSTILE_KINDS)]
        record = factory.referral(provider_code)
        info = break_record(record, kind, variant=index // len(HOSTILE_KINDS), now=now)
        dataset.add(record, info)
    return dataset
