"""Trust text on an operator's terminal: no control, bidi or markup character acts.

A trust id carrying a right-to-left override would make ``SR0000123`` read as another id,
and rich markup in it (``[link=...]``) would plant a hyperlink in the output. Every CLI
view shows such characters as visible ``\\uXXXX`` and square brackets as they are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from support_cli_kit import bridge_cli

from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.sync.pull import pull

HOSTILE_ID = "SR99\u202e321[link=https://example.invalid]x[/link]"


def test_a_hostile_trust_id_is_shown_inert_in_lists_and_lineage(tmp_path: Path) -> None:
    with bridge_cli(tmp_path, referrals=4) as cli:
        conn = cli.bridge.conn
        record = cli.bridge.simulator.export()["referrals"][0]["referral"]
        hostile = {**record, "id": HOSTILE_ID, "referred_on_to": conn.provider_ref.code}
        trust = MemoryTrust([hostile])
        fake = dataclasses.replace(conn, source=trust, writer=trust)
        assert pull(fake, cli.bridge.store).stored == 1
        (row,) = [
            r
            for r in cli.bridge.store.list_referrals(conn.name)
            if r.trust_referral_id == HOSTILE_ID
        ]
        for args in (("referrals", "list"), ("referrals", "show", row.id)):
            out = cli.ok(*args).output
            assert "\u202e" not in out and "\x1b]8" not in out, args
        shown = cli.ok("referrals", "show", row.id).output
        assert "\\u202e" in shown  # visible where the id is shown whole
        assert "[link=https://example.invalid]" in shown  # printed, not read as markup
