"""A long chaos run: daemons SIGKILLed hundreds of times under simulator faults.

Prints kills, faults injected by kind, referrals, artefacts written, lost and duplicated.

    .venv/bin/python benchmarks/chaos.py --kills 200 --backend sqlite
    EHR_BRIDGE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/chaos.py --kills 200 --backend postgresql --daemons 3

PostgreSQL runs empty the database named by EHR_BRIDGE_TEST_DATABASE_URL first.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from ehr_bridge.sim.chaos import ChaosSettings, run_chaos
from ehr_bridge.store.migrate import upgrade


def _fresh_postgres() -> str:
    url = os.environ.get("EHR_BRIDGE_TEST_DATABASE_URL")
    if not url:
        sys.exit("set EHR_BRIDGE_TEST_DATABASE_URL for --backend postgresql")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--daemons", type=int, default=1)
    parser.add_argument("--referrals", type=int, default=30)
    parser.add_argument("--seed", default="random", help="a number, or 'random'")
    args = parser.parse_args()
    seed = random.SystemRandom().randrange(1, 10**6) if args.seed == "random" else int(args.seed)
    url = _fresh_postgres() if args.backend == "postgresql" else None
    workdir = Path(tempfile.mkdtemp(prefix="ehr-bridge-chaos-"))
    settings = ChaosSettings(
        workdir=workdir,
        database_url=url,
        seed=seed,
        referrals=args.referrals,
        daemons=args.daemons,
        kills=args.kills,
        kill_every=(0.3, 1.5),
        settle_timeout=300,
    )
    print(f"backend: {args.backend}, daemons: {args.daemons}, seed: {seed}, workdir: {workdir}")
    report = run_chaos(settings)
    print("\n".join(report.lines()))
    sys.exit(0 if report.settled and not report.lost and not report.duplicated else 1)


if __name__ == "__main__":
    main()
