"""Process settings for the commands that move records in bulk (daemon, sync, backfill).

CPython's cyclic garbage collector runs a full pass every so often over *every* tracked
object, and after start-up that is mostly what never goes away: fhir.resources and
pydantic load hundreds of thousands of model objects, plus the mappings and config. On
the pull path (a page of 500 referrals builds a few hundred thousand short-lived dicts)
those passes cost about a quarter of the time per record (benchmarks/bench_hl7_ingest.py:
about 1,900 -> 2,500 REF^I12 messages/s end to end). ``settle_heap`` moves what start-up
loaded out of the collector's sight (``gc.freeze``) and lets young objects pile up a
little longer before a pass. Reference counting still frees almost everything at once;
only reference cycles wait, so memory stays bounded (see the RSS figures in
docs/operations.md).
"""

from __future__ import annotations

import gc

#: allocations between young-generation passes (CPython's default is 700)
YOUNG_THRESHOLD = 20_000
#: passes of a generation before the next older one is collected (default 10)
OLDER_THRESHOLD = 20


_settled = False


def settle_heap() -> None:
    """Freeze what is loaded now and collect less often, once per process, after start-up.

    Once only: freezing again later (tests run many commands in one process) would keep
    whatever became a reference cycle since out of every collection.
    """
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)


_paused = False


def pause_collector() -> None:
    """At a CLI start: no cyclic collection while the command's modules are imported.

    What imports load (classes, models, SQLAlchemy's and pydantic's tables) lives as long
    as the process, yet each collector pass walks all of it again: about a fifth of the
    CPU of a short command like ``status``. ``resume_collector`` ends the pause.
    """
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """After the imports: freeze what they loaded, out of every later pass, and collect again.

    Only after ``pause_collector`` (the console entry point calls it; tests running many
    commands in one process never do, so their garbage is never frozen). The few hundred
    cycles the imports left behind stay frozen with the rest: a few kilobytes.
    """
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
