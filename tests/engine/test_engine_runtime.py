"""settle_heap: start-up objects frozen once, young objects collected less often."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from ehr_bridge.runtime import settle_heap, YOUNG_THRESHOLD
settle_heap()
frozen = gc.get_freeze_count()
later = [[i] for i in range(1000)]
settle_heap()
print(frozen > 0, gc.get_freeze_count() == frozen, gc.get_threshold()[0] == YOUNG_THRESHOLD)
"""


def test_settle_heap_freezes_once_and_raises_the_young_threshold() -> None:
    # its own process: freezing is process-wide and would outlive this test
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "True", "True"]
