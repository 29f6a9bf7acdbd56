"""An HL7 v2 connection over a drop folder (and its MLLP listener), with a SQLite store.

Several engine tests drive the real pull from REF^I12 files: this is their one config and
one way to drop a message so that arrival order is the order of ``drop`` calls.
"""

from __future__ import annotations

import os
from pathlib import Path

from ehr_bridge.config import load_config
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "mappings" / "hl7v2-ref-i12.yaml"
CONFIG = """
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "hl7-trust"
mapping = "{mapping}"
test_connection = true

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "hl7v2"
drop_folder = "hl7/in"
settle_seconds = 0

[connection.trust.listen]
port = 0

[connection.provider]
adapter = "folder"
path = "provider"
"""


class DropFolderTrust:
    """The connection, its store, and the drop folder of ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        (workdir / "ehr-bridge.toml").write_text(CONFIG.format(mapping=MAPPING))
        config = load_config(workdir / "ehr-bridge.toml")
        self.conn: Connection
        (self.conn,) = build_connections(config)
        self.store = Store(config.database_url())
        self.inbox = workdir / "hl7" / "in"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.provider = workdir / "provider"
        self._order = 0

    def drop(self, message: str | bytes) -> None:
        """One file in the drop folder, arriving after every earlier one."""
        self._order += 1
        path = self.inbox / f"{self._order:04d}.hl7"
        if isinstance(message, bytes):
            path.write_bytes(message)
        else:
            path.write_text(message, newline="")
        stamp = 1_700_000_000 + self._order
        os.utime(path, (stamp, stamp))
