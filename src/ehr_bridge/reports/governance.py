"""Governance aid: how often each protocol's phrases appear in session notes. Counts only.

A service's clinical audit checks that notes show the protocol was followed (for example
"behavioural activation" in depression treatment). ehr-bridge already carries every note,
so it can count configured phrases per episode and per therapist. It never returns or
stores the text: the loader counts while a note is in hand and keeps only the numbers.

Matching is on words, case-insensitively: text and phrase are both split into runs of
letters, digits and inner apostrophes, so "Worry-time" and "worry  time" match the phrase
"worry time", while "overexposure" does not match "exposure". Each position where the
phrase's words start counts once. A protocol applies to a referral when its ICD-10 prefix
list is empty or the presenting problem starts with one of them; phrases of protocols that
do not apply are not reported for that referral.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ehr_bridge.reports.model import Episode, Period, Session

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``, case-folded, punctuation and line breaks dropped."""
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def count_phrases(text: str, phrases: Iterable[str]) -> dict[str, int]:
    """Occurrences of each phrase in ``text`` (phrase as given -> count, zeros included)."""
    tokens = words(text)
    starts: dict[str, list[int]] = defaultdict(list)
    for index, token in enumerate(tokens):
        starts[token].append(index)
    counts: dict[str, int] = {}
    for phrase in phrases:
        wanted = words(phrase)
        if not wanted:
            counts[phrase] = 0
            continue
        size = len(wanted)
        counts[phrase] = sum(tokens[i : i + size] == wanted for i in starts.get(wanted[0], []))
    return counts


@dataclass(frozen=True)
class Protocol:
    """A treatment protocol's phrase list and the presenting problems it applies to."""

    name: str
    phrases: tuple[str, ...]
    problems: tuple[str, ...] = ()

    def applies_to(self, episode: Episode) -> bool:
        """True with no problem list, or when the presenting problem matches a prefix."""
        if not self.problems:
            return True
        problem = episode.problem_code()
        prefixes = [p.replace(".", "").upper() for p in self.problems]
        return problem is not None and any(problem.startswith(p) for p in prefixes)


def all_phrases(protocols: Sequence[Protocol]) -> list[str]:
    """Every phrase of every protocol once, in order (what the loader must count)."""
    return list(dict.fromkeys(p for protocol in protocols for p in protocol.phrases))


@dataclass
class ProtocolCounts:
    """One protocol's counts for one row (an episode or a therapist)."""

    protocol: str
    notes: int = 0
    notes_with_any: int = 0
    phrases: dict[str, int] = field(default_factory=dict)

    def add_note(self, protocol: Protocol, hits: Mapping[str, int]) -> None:
        """Count one note this protocol applies to."""
        self.notes += 1
        found = {p: hits.get(p, 0) for p in protocol.phrases}
        self.notes_with_any += any(found.values())
        for phrase, count in found.items():
            self.phrases[phrase] = self.phrases.get(phrase, 0) + count


@dataclass
class GovernanceRow:
    """Counts for one episode (by trust referral id) or one therapist."""

    key: str
    notes: int = 0
    protocols: dict[str, ProtocolCounts] = field(default_factory=dict)
    therapists: set[str] = field(default_factory=set)

    def add_note(self, applicable: Sequence[Protocol], hits: Mapping[str, int]) -> None:
        """Count one note against every protocol that applies to its referral."""
        self.notes += 1
        for protocol in applicable:
            counts = self.protocols.setdefault(protocol.name, ProtocolCounts(protocol.name))
            counts.add_note(protocol, hits)


@dataclass(frozen=True)
class GovernanceReport:
    """Per-episode and per-therapist phrase counts for notes of sessions in the period."""

    period: Period
    protocols: tuple[Protocol, ...]
    by_episode: tuple[GovernanceRow, ...]
    by_therapist: tuple[GovernanceRow, ...]


UNKNOWN_THERAPIST = "(not recorded)"


def governance_report(
    episodes: Iterable[Episode], period: Period, protocols: Sequence[Protocol]
) -> GovernanceReport:
    """Phrase counts of every note whose session's local day is in ``period``."""
    by_episode: list[GovernanceRow] = []
    by_therapist: dict[str, GovernanceRow] = {}
    for episode in episodes:
        applicable = [p for p in protocols if p.applies_to(episode)]
        row = GovernanceRow(episode.trust_referral_id)
        for session, hits in _notes_in(episode.sessions, period):
            therapist = session.therapist or UNKNOWN_THERAPIST
            row.add_note(applicable, hits)
            row.therapists.add(therapist)
            by_therapist.setdefault(therapist, GovernanceRow(therapist)).add_note(applicable, hits)
        if row.notes:
            by_episode.append(row)
    order = [p.name for p in protocols]
    return GovernanceReport(
        period=period,
        protocols=tuple(protocols),
        by_episode=tuple(_in_order(r, order) for r in sorted(by_episode, key=lambda r: r.key)),
        by_therapist=tuple(_in_order(by_therapist[k], order) for k in sorted(by_therapist)),
    )


def _in_order(row: GovernanceRow, order: Sequence[str]) -> GovernanceRow:
    """The row with its protocols in configuration order, whatever order notes came in."""
    row.protocols = {name: row.protocols[name] for name in order if name in row.protocols}
    return row


def _notes_in(
    sessions: Iterable[Session], period: Period
) -> Iterable[tuple[Session, Mapping[str, int]]]:
    """Each note of each session in the period, with its session."""
    for session in sorted(sessions, key=lambda s: s.local_start):
        if session.day in period:
            for hits in session.notes:
                yield session, hits
