"""How hard the fuzz tests try: a few seconds each in CI, as long as you like by hand.

    EHR_BRIDGE_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/security -k fuzz \
        --hypothesis-show-statistics

CI (the default) runs ``DEFAULT_EXAMPLES`` derandomized cases per test, so a run is
repeatable; a larger budget also draws fresh random cases each run.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DEFAULT_EXAMPLES = 150
EXAMPLES = int(os.environ.get("EHR_BRIDGE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),  # an example this slow is a hang in the making
    derandomize=EXAMPLES <= DEFAULT_EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "2026-02-31", "9434765919", "1", "-1", "null", "Z9", "\u0000", "\ud7ff"])
)
JSON: Any = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
