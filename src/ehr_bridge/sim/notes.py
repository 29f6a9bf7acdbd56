"""Plausible typed-CBT session notes for the synthetic therapy platform.

Real notes are free text that must survive the trip to the trust byte for byte (UTF-8,
line breaks, punctuation), so the demo needs text that reads like a therapist's summary
without containing anyone's data. Sentences come from fixed templates with no names or
places; the caller's seeded ``random.Random`` picks them, so a seed gives the same notes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_OPENINGS_FIRST = (
    "Initial assessment and treatment session completed by typed therapy.",
    "First session: reviewed the referral information and agreed goals for treatment.",
    "Assessment completed; the client described low mood and worry affecting work and sleep.",
)
_OPENINGS_LAST = (
    "Final session: reviewed progress across treatment against the goals set at assessment.",
    "Last planned session; we looked back over what has helped most during treatment.",
)
_MOOD = (
    "The client rated their mood as {mood}/10 at the start of the session.",
    "Mood rating today was {mood}/10 (previously {previous}/10).",
    "The client reported a mood of {mood}/10 this week, compared with {previous}/10 last week.",
)
_HOMEWORK_REVIEW = (
    "Reviewed the week's homework: {count} thought records completed.",
    "Homework review: the activity diary was kept on {count} days this week.",
    "The client had tried the breathing exercise on {count} occasions since the last session.",
)
_WORK = (
    "We worked on noticing unhelpful thinking patterns, particularly {pattern}.",
    "Used a thought record to weigh the evidence for and against a recent automatic thought.",
    "Introduced behavioural activation and scheduled {count} valued activities for the week.",
    "Practised a worry-time exercise and discussed postponing worries until then.",
    "Reviewed a sleep diary and agreed small changes to the evening routine.",
    "Planned the next step of the graded exposure hierarchy together.",
    "Discussed how avoidance keeps anxiety going and identified one situation to approach.",
)
_PATTERNS = (
    "catastrophising about work deadlines",
    "mind reading in social situations",
    "all-or-nothing thinking",
    "overestimating the likelihood of bad outcomes",
    "harsh self-criticism after small mistakes",
)
_HOMEWORK = (
    "Homework agreed: complete two thought records before the next session.",
    "Homework agreed: continue the activity diary and add one pleasant activity a day.",
    "Homework agreed: practise the breathing exercise once a day.",
    "Homework agreed: try one step from the exposure hierarchy and note anxiety ratings.",
    "Homework agreed: keep a worry log and use the planned worry time.",
)
_CLOSINGS_LAST = (
    "Completed a relapse-prevention blueprint and discussed warning signs to look out for.",
    "The client feels more confident using the techniques independently.",
)
_RISK = "Risk reviewed: no thoughts of self-harm reported; safety information was shared."


@dataclass(frozen=True)
class NoteContext:
    """What a note may mention about the session it summarises."""

    session_number: int
    first: bool
    last: bool
    mood: int
    previous_mood: int | None


def session_note(rng: random.Random, context: NoteContext) -> str:
    """A 2-5 sentence session summary; the same ``rng`` state always gives the same text."""
    sentences = [_opening(rng, context)]
    if not context.first:
        sentences.append(_mood_line(rng, context))
    sentences.append(_fill(rng, rng.choice(_WORK)))
    if context.last:
        sentences.append(rng.choice(_CLOSINGS_LAST))
    elif rng.random() < 0.8:
        sentences.append(rng.choice(_HOMEWORK))
    if len(sentences) < 5 and (context.first or rng.random() < 0.3):
        sentences.append(_RISK)
    return " ".join(sentences)


def _opening(rng: random.Random, context: NoteContext) -> str:
    """The first sentence: assessment, a homework review or the final review."""
    if context.first:
        return rng.choice(_OPENINGS_FIRST)
    if context.last:
        return rng.choice(_OPENINGS_LAST)
    return _fill(rng, rng.choice(_HOMEWORK_REVIEW))


def _mood_line(rng: random.Random, context: NoteContext) -> str:
    """The client's mood rating, with last week's when the template compares."""
    previous = context.previous_mood if context.previous_mood is not None else context.mood
    template = rng.choice(_MOOD)
    return template.format(mood=context.mood, previous=previous)


def _fill(rng: random.Random, template: str) -> str:
    """Fill a template's ``{count}`` and ``{pattern}`` slots (unused slots are ignored)."""
    return template.format(count=rng.randint(2, 5), pattern=rng.choice(_PATTERNS))
