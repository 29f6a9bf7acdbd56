"""docs/adding-an-ehr.md stays true: its draft mapping, excerpts and config load as shown."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ehr_bridge.config import load_config
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sync.connection import build_connections

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "adding-an-ehr.md").read_text(encoding="utf-8")
PCMIS = (ROOT / "mappings" / "pcmis.yaml").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def test_the_draft_mapping_loads_and_maps_a_golden_record(tmp_path: Path) -> None:
    draft = DOC.split("Save this as `pcmis.yaml`:", 1)[1]
    path = tmp_path / "pcmis.yaml"
    path.write_text(re.findall(r"```yaml\n(.*?)```", draft, re.DOTALL)[0])
    mapping = load_mapping(path)
    record = (ROOT / "mappings" / "pcmis.golden" / "referral-01-gp.input.json").read_text()
    facts = mapping.referral_facts(json.loads(record))
    assert facts.source_of_referral == "A1" and facts.patient.local_id == "45"


def test_every_mapping_excerpt_is_in_the_bundled_file() -> None:
    excerpts = [b for b in blocks("yaml") if b.startswith(("outbound:", "api:"))]
    assert len(excerpts) == 2
    for excerpt in excerpts:
        for line in excerpt.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                assert line in PCMIS, line


def test_the_config_builds_a_rest_connection(tmp_path: Path) -> None:
    (config_text,) = blocks("toml")
    (tmp_path / "ehr-bridge.toml").write_text(config_text)
    shutil.copyfile(ROOT / "mappings" / "pcmis.yaml", tmp_path / "pcmis.yaml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pcmis-key").write_text("trial-key")
    (conn,) = build_connections(load_config(tmp_path / "ehr-bridge.toml"))
    assert conn.mapping.name == "pcmis" and type(conn.source).__name__ == "RestClient"
    assert "pcmis-trial" in DOC and conn.name == "pcmis-trial"


def test_the_commands_in_the_guide_exist() -> None:
    commands = set(re.findall(r"ehr-bridge mapping (\w+)", DOC))
    assert commands == {"check", "test", "preview", "diff"}
    assert "ehr-bridge sim serve-pcmis" in DOC
