"""HL7 v2 ingest throughput: REF^I12 files to stored FHIR, on one core, and where time goes.

    .venv/bin/python benchmarks/bench_hl7_ingest.py [--messages 5000]

Writes N synthetic UK REF^I12 messages (one file each) into a fresh drop folder, then:

1. parse only: our splitter (``record.decode``, the segments the mapping reads)
2. parse + map: ``Mapping.referral_facts`` with ``mappings/hl7v2-ref-i12.yaml``
3. parse + map + validate: the domain's UK Core Patient + ServiceRequest build and checks
4. end to end: the real pull flow over the drop folder into SQLite (receive, read, decode,
   map, validate, store, cursor), exactly what ``ehr-bridge sync --flow pull`` runs

and for comparison hl7apy's full parse and python-hl7's parse of the same message. The
process is pinned to one CPU. It prints figures; it asserts nothing (timings are not tests).

How the figure is reached: the read path parses only what the mapping reads, with our own
splitter (``er7`` + ``record``: ``str.split``, inline for segments without escapes or
subcomponents, delimiters and dates cached); hl7apy only builds outbound messages and
supplies the date dictionary. The mapping's JMESPath expressions are compiled once into
closures (``mapping.expressions``), and receiving files costs one rename per file plus one
folder fsync, with no second listing or per-name ``strptime``. The store reads a page's
state in a few IN queries and writes plain referrals with one INSERT ... ON CONFLICT per
table (``store.pull_batch``); the FHIR build checks primitive rules instead of re-parsing
with the pydantic model (``domain.primitives``). The end-to-end run starts, as
``ehr-bridge sync``, ``run`` and ``backfill`` do, with ``runtime.settle_heap()``: the
start-up objects frozen out of the cyclic collector's passes. The in-memory stage lines
run with the collector as Python sets it; "(parse, gc frozen)" shows the difference.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.hl7v2 import create
from ehr_bridge.adapters.hl7v2.er7 import split_messages
from ehr_bridge.adapters.hl7v2.peer import uk_referral
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.mapping import load_mapping
from ehr_bridge.runtime import settle_heap
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = ("MSH", "RF1", "PRD", "PID", "DG1")
TARGET = 2000.0


def messages(count: int) -> list[str]:
    """``count`` distinct REF^I12 messages (ids and local ids vary) from simulator referrals."""
    base = [
        e["referral"]
        for e in TrustSimulator(seed=7, referrals=60).export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    ]
    out = []
    for n in range(count):
        referral = copy.deepcopy(base[n % len(base)])
        referral["id"] = f"SR{n:07d}"
        referral["patient"]["local_id"] = f"P{n:07d}"
        referral["patient"]["nhs_number"] = None  # one patient per referral, none merged
        out.append(uk_referral(referral, control_id=f"MSG{n:07d}"))
    return out


def rate(label: str, count: int, work: Callable[[], object]) -> float:
    """Run ``work`` once, print and return messages per second."""
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    per_second = count / seconds
    print(f"  {label:<44} {per_second:>9,.0f} msg/s  ({seconds * 1000 / count:.3f} ms each)")
    return per_second


def stages(texts: list[str]) -> float:
    """Parse, map and validate in memory, one stage at a time; returns ms per message."""
    zone = ZoneInfo("Europe/London")
    mapping = load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")
    provider = ProviderRef("IESO01", "Online therapy provider")
    wanted = frozenset(SEGMENTS)
    records = [decode(split_messages(t)[0], zone, wanted) for t in texts]
    facts = [mapping.referral_facts(r) for r in records]
    total = 0.0
    for label, work in (
        (
            "parse: our splitter, mapped segments",
            lambda t=texts: [decode(split_messages(x)[0], zone, wanted) for x in t],
        ),
        (
            "map: hl7v2-ref-i12.yaml -> ReferralFacts",
            lambda: [mapping.referral_facts(r) for r in records],
        ),
        (
            "validate: domain checks + UK Core FHIR build",
            lambda: [
                build_referral_resources("bench", provider, f, allow_test_range=True) for f in facts
            ],
        ),
    ):
        total += 1000 / rate(label, len(texts), work)
    label = "parse + map + validate, in memory"
    print(f"  {label:<44} {1000 / total:>9,.0f} msg/s  ({total:.3f} ms each)")
    rate(
        "(parse, all segments)",
        len(texts),
        lambda: [decode(split_messages(t)[0], zone) for t in texts],
    )
    gc.freeze()
    try:
        rate(
            "(parse, gc frozen)",
            len(texts),
            lambda: [decode(split_messages(t)[0], zone, wanted) for t in texts],
        )
    finally:
        gc.unfreeze()
    return total


def end_to_end(texts: list[str], workdir: Path) -> float:
    """The real pull flow from a drop folder into a SQLite file."""
    adapter = create(
        {"drop_folder": "in", "settle_seconds": 0, "page_size": 500, "segments": list(SEGMENTS)},
        base_dir=workdir,
        key="trust",
        provider_code="IESO01",
    )
    for n, text in enumerate(texts):
        (workdir / "in" / f"m{n:07d}.hl7").write_text(text)
    store = Store(f"sqlite:///{workdir / 'state.db'}")
    conn = Connection(
        name="bench",
        mapping=load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml"),
        source=adapter,
        writer=adapter,
        provider=FolderProvider(workdir / "provider"),
        provider_ref=ProviderRef("IESO01", "Online therapy provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
    )
    result: dict[str, object] = {}
    settle_heap()  # as `ehr-bridge sync` does once the mapping and adapters are loaded
    figure = rate(
        "END TO END: pull into SQLite", len(texts), lambda: result.update(c=pull(conn, store))
    )
    counts = result["c"]
    print(f"  (pull counts: {counts})")
    store.close()
    return figure


def others(text: str, count: int = 200) -> None:
    """Third-party parsers on the same message, for comparison."""
    from hl7apy.parser import parse_message

    rate(
        "hl7apy parse_message (full parse)",
        count,
        lambda: [parse_message(text) for _ in range(count)],
    )
    try:
        import hl7  # type: ignore[import-untyped]
    except ImportError:
        return
    rate("python-hl7 hl7.parse", count * 10, lambda: [hl7.parse(text) for _ in range(count * 10)])


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    texts = messages(args.messages)
    size = sum(len(t) for t in texts) / len(texts)
    print(f"{args.messages} REF^I12 messages, {size:.0f} bytes each on average, one CPU")
    in_memory = stages(texts)
    others(texts[0].strip("\r"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-hl7-"))
    try:
        figure = end_to_end(texts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    verdict = "meets" if figure >= TARGET else "BELOW"
    print(f"end to end: {figure:,.0f} REF^I12 messages/s ({verdict} the {TARGET:,.0f}/s target)")
    summary = {"messages": args.messages, "in_memory_ms": round(in_memory, 3)}
    print("RESULT " + json.dumps({"bench": "hl7", "per_second": round(figure), **summary}))


if __name__ == "__main__":
    main()
