"""Session note text: short, deterministic, shaped by the session it summarises."""

from __future__ import annotations

import random

import pytest

from ehr_bridge.sim.notes import NoteContext, session_note

CONTEXTS = [
    NoteContext(session_number=1, first=True, last=False, mood=3, previous_mood=None),
    NoteContext(session_number=4, first=False, last=False, mood=6, previous_mood=4),
    NoteContext(session_number=8, first=False, last=True, mood=8, previous_mood=7),
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_platform_note_has_two_to_five_sentences(context: NoteContext) -> None:
    for seed in range(200):
        text = session_note(random.Random(seed), context)
        sentences = [s for s in text.split(". ") if s]
        assert 2 <= len(sentences) <= 5
        assert text.endswith(".") and "{" not in text


def test_platform_note_is_deterministic_for_a_seed() -> None:
    first = [session_note(random.Random(42), c) for c in CONTEXTS]
    again = [session_note(random.Random(42), c) for c in CONTEXTS]
    assert first == again
    assert len({session_note(random.Random(s), CONTEXTS[1]) for s in range(50)}) > 10


def test_platform_note_mentions_the_mood_rating_after_the_first_session() -> None:
    texts = [session_note(random.Random(s), CONTEXTS[1]) for s in range(30)]
    assert all("6/10" in text for text in texts)
    assert not any("/10" in session_note(random.Random(s), CONTEXTS[0]) for s in range(30))


def test_platform_final_note_looks_back_over_treatment() -> None:
    texts = [session_note(random.Random(s), CONTEXTS[2]) for s in range(30)]
    assert all("Homework agreed" not in text for text in texts)
    assert all("treatment" in text or "techniques" in text for text in texts)
