"""No echo: after we write back to every referral, the next pull redelivers none (target: 0).

A trust record carries what we write into it (the referral's status, its version and
last-change time), so after one write-back per referral every record of the trust looks
changed. The pull compares what each record means (the FHIR built from it) with what is
stored and what we wrote, so none of them is a new version or a delivery: a 10,000-referral
trust does not become a 10,000-bundle redelivery storm at the provider after every push.

Steps, all real flows against the simulator in its own process on loopback: pull and
deliver every referral (deliver queues the "accepted" status write for each); the
provider ends every course (one EpisodeOfCare bundle per referral in the folder provider's
sessions folder), collect queues the discharge; push writes both to the trust; then pull
again and deliver again, counting. Every trust record now shows our discharge.

    .venv/bin/python benchmarks/bench_echo.py --referrals 10000
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from bench_common import bridge_config, result, say, simulator_process, workdir

from ehr_bridge.config import load_config
from ehr_bridge.domain.session import build_episode_end, session_bundle
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push


def _deliver_all(conn: Connection, store: Store) -> tuple[int, int]:
    """Deliver until nothing is left (one call hands over at most a batch)."""
    delivered = redelivered = 0
    while True:
        counts = deliver(conn, store)
        delivered, redelivered = delivered + counts.delivered, redelivered + counts.redelivered
        if not counts.delivered and not counts.redelivered:
            return delivered, redelivered


def _end_every_course(store: Store, connection: str, sessions: Path) -> None:
    """The provider's end of treatment for every delivered referral, as its platform sends it."""
    sessions.mkdir(parents=True, exist_ok=True)
    for row in store.list_referrals(connection):
        episode = build_episode_end(
            episode_id=f"end-{row.id}",
            patient_id=row.patient_id,
            service_request_id=row.id,
            start=date(2026, 9, 1),
            end=date(2026, 11, 20),
            end_code="46",
        )
        bundle = session_bundle(f"bundle-end-{row.id}", [episode])
        (sessions / f"end-{row.id}.json").write_text(json.dumps(bundle), "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10000)
    args = parser.parse_args()
    with simulator_process(args.referrals) as base_url:
        config = load_config(bridge_config(workdir("echo"), base_url))
        (conn,) = build_connections(config)
        store = Store(config.database_url())
        first = pull(conn, store)
        delivered, _ = _deliver_all(conn, store)
        _end_every_course(store, conn.name, config.resolve("provider") / "sessions")
        collect(conn, store)
        started = time.perf_counter()
        written = push(conn, store).written
        push_seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = pull(conn, store)
        repull_seconds = time.perf_counter() - started
        _, redelivered = _deliver_all(conn, store)
        versions = sum(len(store.referral_versions(r.id)) for r in store.list_referrals(conn.name))
        store.close()
    say(f"first pull stored {first.stored} referrals; delivered {delivered}")
    say(f"wrote back {written} status items (accepted, discharged) in {push_seconds:.1f} s")
    say(
        f"next pull: {again.seen} records seen, {again.stored} new or changed, "
        f"{again.echoes} echoes, {again.unchanged} unchanged in {repull_seconds:.1f} s;"
        f" redelivered {redelivered} (target 0); {versions} versions for {first.stored} referrals"
    )
    result(
        "echo",
        referrals=first.stored,
        written=written,
        repull_seen=again.seen,
        repull_stored=again.stored,
        repull_echoes=again.echoes,
        redelivered=redelivered,
        versions=versions,
        repull_seconds=round(repull_seconds, 1),
    )


if __name__ == "__main__":
    main()
