"""Shared set-up for the benchmarks: a trust simulator process, a bridge workdir, results.

Not a benchmark itself. Every benchmark talks to the simulator over loopback HTTP, as the
daemon talks to a trust, and prints one ``RESULT {json}`` line that ``bench_all.py`` reads.
The simulator runs in its own process (``ehr-bridge sim serve``) so its CPU time and
memory are not counted against the bridge; benchmarks that must add referrals while
running start it in-process instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ehr_bridge.demo import prepare_workdir

TOKEN = "bench-token"
PYTHON = sys.executable
_READY = re.compile(r"serving at (http://127\.0\.0\.1:\d+)")


@contextmanager
def simulator_process(
    referrals: int, *, seed: int = 1, latency_ms: float = 0.0, hostile: int = 0
) -> Iterator[str]:
    """``ehr-bridge sim serve`` on a free loopback port; yields its base URL."""
    args = [PYTHON, "-m", "ehr_bridge", "sim", "serve", "--port", "0", "--seed", str(seed)]
    args += ["--referrals", str(referrals), "--hostile", str(hostile)]
    args += ["--latency-ms", str(latency_ms)]
    env = dict(os.environ, EHR_BRIDGE_SIM_TOKEN=TOKEN)
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        yield _wait_ready(process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        found = _READY.search(line)
        if found:
            return found.group(1)
    raise RuntimeError("the simulator did not start")


def workdir(prefix: str) -> Path:
    """A fresh temporary folder for one benchmark's bridge."""
    return Path(tempfile.mkdtemp(prefix=f"ehr-bridge-bench-{prefix}-"))


def bridge_config(
    folder: Path,
    base_url: str,
    *,
    page_size: int = 500,
    schedule: str = "",
    level: str = "WARNING",
) -> Path:
    """The demo's config pointed at ``base_url``, with the benchmark's page size and schedule."""
    path = prepare_workdir(folder, base_url, TOKEN)
    text = path.read_text("utf-8")
    text = text.replace("page_size = 20", f"page_size = {page_size}")
    text = text.replace('level = "DEBUG"', f'level = "{level}"')
    path.write_text(text + schedule, "utf-8")
    return path


def run_measured(args: list[str]) -> tuple[int, float, float]:
    """Run an ``ehr-bridge`` command; (exit code, seconds, peak RSS in MB) of that process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "ehr_bridge", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, seconds, usage.ru_maxrss / 1024


def result(name: str, **figures: Any) -> None:
    """The machine-readable line ``bench_all.py`` collects."""
    print("RESULT " + json.dumps({"bench": name, **figures}), flush=True)


def say(text: str) -> None:
    """A progress line for people."""
    print(text, flush=True)
