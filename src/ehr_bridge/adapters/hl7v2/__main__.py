"""``python -m ehr_bridge.adapters.hl7v2 listen``: run a connection's MLLP listener.

The listener only stores messages into the drop folder (durably, before ``AA``); the
daemon's pull flow maps them. Running it as its own process keeps it answering while the
daemon restarts, and a stopped daemon loses nothing: the files wait in the drop folder.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ehr_bridge.adapters.hl7v2.adapter import Hl7v2Adapter
from ehr_bridge.adapters.registry import create_adapter
from ehr_bridge.config import DEFAULT_CONFIG_NAME, load_config
from ehr_bridge.errors import ConfigError
from ehr_bridge.logs import setup_logging


def _adapter(config_path: Path, connection: str | None) -> Hl7v2Adapter:
    app = load_config(config_path)
    chosen = [c for c in app.connection if c.trust.adapter == "hl7v2"]
    if connection is not None:
        chosen = [app.get_connection(connection)]
    if len(chosen) != 1:
        raise ConfigError("name one hl7v2 connection with --connection", key="--connection")
    index = app.connection.index(chosen[0])
    adapter = create_adapter(
        "trust",
        chosen[0].trust,
        base_dir=app.base_dir,
        key=f"connection[{index}].trust",
        provider_code=chosen[0].provider_org.code,
    )
    if not isinstance(adapter, Hl7v2Adapter):
        raise ConfigError("this connection's trust adapter is not hl7v2", key="--connection")
    setup_logging(app.logging.level, app.resolve(app.logging.file) if app.logging.file else None)
    return adapter


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the listener, serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m ehr_bridge.adapters.hl7v2")
    parser.add_argument("command", choices=["listen"])
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG_NAME))
    parser.add_argument("--connection", default=None)
    args = parser.parse_args(argv)
    try:
        listener = _adapter(args.config, args.connection).listener()
    except ConfigError as exc:
        print(f"error: {exc.safe_message}", file=sys.stderr)
        return 2
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    listener.start()
    print(f"listening for MLLP on port {listener.port}", flush=True)
    done.wait()
    listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
