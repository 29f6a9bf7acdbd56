"""Write-back with 50 ms simulated trust latency: writes per second per connection.

Target: at least 100 writes/s per connection with bounded concurrency (one at a time
would be 20/s). The outbox is filled for real (pull, deliver, the synthetic platform's
sessions, collect); then the real ``push`` runs on one connection for a fixed time with
``[connection.schedule] push_concurrency`` set to each value asked for ("default" leaves
the key out), as the daemon would run it: leased rows, never one row twice, a note only
after its care contact. Besides writes/s it prints the bridge's own CPU per write (all its
threads), which is what bounds the rate once enough writes wait on the trust at once.

    .venv/bin/python benchmarks/bench_writeback.py --concurrency 1 4 8 default --seconds 10
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


def measure(config_path: Path, concurrency: str, seconds: float) -> tuple[float, float]:
    """(writes per second, bridge CPU ms per write) of one push run for ``seconds``."""
    config = load_config(with_concurrency(config_path, concurrency))
    store = Store(config.database_url())
    (conn,) = build_connections(config)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    started, cpu = time.perf_counter(), time.process_time()
    written = push(conn, store, stop).written
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    timer.cancel()
    store.close()
    return written / elapsed, 1000 * cpu / max(written, 1)


def with_concurrency(config_path: Path, concurrency: str) -> Path:
    """A copy of the config with ``push_concurrency`` set ("default": the key left out)."""
    text = config_path.read_text("utf-8")
    if concurrency != "default":
        text = text.replace(
            "[connection.schedule]\n",
            f"[connection.schedule]\npush_concurrency = {int(concurrency)}\n",
        )
        if f"push_concurrency = {int(concurrency)}" not in text:
            text += f"\n[connection.schedule]\npush_concurrency = {int(concurrency)}\n"
    path = config_path.with_name(f"concurrency-{concurrency}.toml")
    path.write_text(text, "utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", nargs="+", default=["1", "4", "8", "default"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--referrals", type=int, default=150)
    args = parser.parse_args()
    rates: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with simulator_process(args.referrals, latency_ms=LATENCY_MS) as base_url:
        config = bridge_config(workdir("writeback"), base_url)
        say(f"outbox filled: {fill_outbox(config)} write-backs pending")
        for concurrency in args.concurrency:
            rate, cpu_ms = measure(config, concurrency, args.seconds)
            rates[concurrency], cpu[concurrency] = round(rate, 1), round(cpu_ms, 2)
            verdict = "meets" if rate >= TARGET else "below"
            say(
                f"push_concurrency {concurrency}, {LATENCY_MS:.0f} ms trust latency:"
                f" {rate:.1f} writes/s ({verdict} the {TARGET:.0f}/s target),"
                f" {cpu_ms:.2f} ms bridge CPU per write"
            )
    result(
        "writeback",
        latency_ms=LATENCY_MS,
        target_writes_per_second=TARGET,
        writes_per_second_by_concurrency=rates,
        cpu_ms_per_write_by_concurrency=cpu,
    )


if __name__ == "__main__":
    main()
