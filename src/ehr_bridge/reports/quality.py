"""Data quality: what the reports could not use, or could use only in part.

A figure is only as good as the records under it, and a record a report cannot read must
never vanish silently (a finished course that loses a session becomes "not finished").
Every report therefore carries the same data-quality block for its connection: the
resources that could not be read (by internal reference and field, never a value), the
sessions without a time of day (left out of the hour-of-day figures), the resources
dated to a year or a month only, and how many total scores are held waiting for their
item answers (unchecked, so left out of the outcomes; a count only). It covers the whole
store, not just the period, since an unreadable date cannot be placed in a period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ehr_bridge.reports.model import Episode, Unreadable


@dataclass(frozen=True)
class DataQuality:
    """Counts and references of the records the reports could not fully use."""

    unreadable: tuple[Unreadable, ...] = ()
    sessions_without_time: int = 0
    imprecise_dates: tuple[str, ...] = ()
    scores_awaiting_items: int = 0

    @property
    def clean(self) -> bool:
        """True when every record was read in full and no score waits for its items."""
        return not (
            self.unreadable
            or self.sessions_without_time
            or self.imprecise_dates
            or self.scores_awaiting_items
        )


def data_quality(episodes: Iterable[Episode], skipped: Iterable[Unreadable] = ()) -> DataQuality:
    """The data-quality block over ``episodes`` plus referrals the loader ``skipped``."""
    unreadable = list(skipped)
    without_time = awaiting = 0
    imprecise: list[str] = []
    for episode in episodes:
        unreadable.extend(episode.unreadable)
        imprecise.extend(episode.imprecise)
        without_time += sum(not s.has_time for s in episode.sessions)
        awaiting += episode.awaiting_items
    return DataQuality(
        unreadable=tuple(sorted(unreadable, key=lambda u: (u.resource, u.field))),
        sessions_without_time=without_time,
        imprecise_dates=tuple(sorted(imprecise)),
        scores_awaiting_items=awaiting,
    )
