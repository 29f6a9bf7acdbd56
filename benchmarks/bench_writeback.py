"""Write-back with 50 ms simulated trust latency: writes per second per connection.

Target: at least 100 writes/s per connection with bounded concurrency (one at a time
would be 20/s). The outbox is filled for real (pull, deliver, the synthetic platform's
sessions, collect); then K push workers share one connection's outbox for a fixed time,
as the daemon would run them, claiming rows with leases (never one row twice, a note
only after its care contact). K = 1 is today's push; K > 1 measures what a per-connection
``push_concurrency`` setting would give (see docs/operations.md, "Performance").

    .venv/bin/python benchmarks/bench_writeback.py --workers 1 4 8 --seconds 10
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from bench_common import bridge_config, result, say, simulator_process, workdir

from ehr_bridge.config import load_config
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push

TARGET = 100.0
LATENCY_MS = 50.0


def fill_outbox(config_path: Path) -> int:
    """Pull, deliver, let the platform write every course, collect: the outbox is full."""
    config = load_config(config_path)
    (conn,) = build_connections(config)
    store = Store(config.database_url())
    pull(conn, store)
    deliver(conn, store)
    SyntheticPlatform(config.resolve("provider"), seed=1).step()
    collect(conn, store)
    pending = store.outbox_counts("demo-trust").get("pending", 0)
    store.close()
    return pending


def measure(config_path: Path, workers: int, seconds: float) -> float:
    """Writes per second of ``workers`` push workers on one connection for ``seconds``."""
    config = load_config(config_path)
    store = Store(config.database_url())
    connections = [build_connections(config)[0] for _ in range(workers)]  # own HTTP sessions
    stop = threading.Event()
    written = [0] * workers

    def work(index: int) -> None:
        written[index] = push(connections[index], store, stop).written

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    store.close()
    return sum(written) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--referrals", type=int, default=150)
    args = parser.parse_args()
    rates: dict[str, float] = {}
    with simulator_process(args.referrals, latency_ms=LATENCY_MS) as base_url:
        config = bridge_config(workdir("writeback"), base_url)
        say(f"outbox filled: {fill_outbox(config)} write-backs pending")
        for workers in args.workers:
            rate = measure(config, workers, args.seconds)
            rates[str(workers)] = round(rate, 1)
            say(f"{workers} worker(s), {LATENCY_MS:.0f} ms trust latency: {rate:.1f} writes/s")
    result("writeback", latency_ms=LATENCY_MS, writes_per_second_by_workers=rates)


if __name__ == "__main__":
    main()
