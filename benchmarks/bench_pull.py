"""Pull, map and store: referrals per second end to end on one core (target: 2,000/s).

The simulator serves N referrals from its own process; this process, pinned to one CPU,
runs the real pull flow (HTTP page fetch, inbound mapping, FHIR build and checks, patient
matching, SQLite upsert with the cursor) and times where each millisecond goes.

How it reaches the target: the stored state a page needs (hashes, open quarantine,
patients) is read in a few IN queries per page, not per record; plain referrals are
written with one INSERT ... ON CONFLICT per table per page (``store.pull_batch``); and
the FHIR our builders make is checked for the FHIR primitive rules, not re-parsed by the
pydantic model (docs/design-notes.md).

    .venv/bin/python benchmarks/bench_pull.py --referrals 20000 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench_common import bridge_config, result, say, simulator_process, workdir

from ehr_bridge.config import load_config
from ehr_bridge.runtime import settle_heap
from ehr_bridge.store import Store
from ehr_bridge.sync import pull as pull_module
from ehr_bridge.sync import pull_page
from ehr_bridge.sync.connection import build_connections

TARGET = 2000.0


def _timed(table: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - started

    return wrapper


def _instrument(conn: Any, store: Store) -> dict[str, float]:
    table: dict[str, float] = defaultdict(float)
    conn.source.fetch_referrals = _timed(table, "fetch (HTTP + JSON)", conn.source.fetch_referrals)
    conn.mapping.referral_facts = _timed(table, "map (mapping file)", conn.mapping.referral_facts)
    pull_page.build_referral_resources = _timed(  # type: ignore[attr-defined]
        table, "build + FHIR validation", pull_page.build_referral_resources
    )
    for name in ("pull_page_state", "resolve_patients", "save_pull_page"):
        setattr(store, name, _timed(table, f"store.{name}", getattr(store, name)))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile top 30")
    args = parser.parse_args()
    with simulator_process(args.referrals) as base_url:
        if hasattr(os, "sched_setaffinity"):  # the bridge on one core; the simulator apart
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        config = load_config(bridge_config(workdir("pull"), base_url))
        (conn,) = build_connections(config)
        store = Store(config.database_url())
        table = _instrument(conn, store) if not args.profile else {}
        settle_heap()  # as `ehr-bridge sync` does once the mapping and adapters are loaded
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        counts = pull_module.pull(conn, store)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    rate = counts.stored / seconds
    say(f"pulled {counts.stored} referrals in {seconds:.1f} s: {rate:.0f}/s (target {TARGET:.0f})")
    for name, spent in sorted(table.items(), key=lambda kv: -kv[1]):
        say(f"  {name:28} {spent:7.1f} s  {1000 * spent / max(counts.seen, 1):6.3f} ms/referral")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    result(
        "pull",
        referrals=counts.stored,
        seconds=round(seconds, 1),
        per_second=round(rate),
        ms_per_referral={k: round(1000 * v / max(counts.seen, 1), 3) for k, v in table.items()},
    )


if __name__ == "__main__":
    main()
