"""A mapping that cannot code a score the connection accepts fails at start-up, not mid-run.

Without this, such scores would be collected and then dead-lettered at push, one by one,
with "tool_code: required value is missing" (issue 13).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_bridge.config import load_config
from ehr_bridge.demo import prepare_workdir
from ehr_bridge.errors import ConfigError
from ehr_bridge.sync.connection import build_connections


def _config(tmp_path: Path, *, adsm: bool, drop_pdss: bool) -> Path:
    path = prepare_workdir(tmp_path, "http://127.0.0.1:9", "token")
    mapping = tmp_path / "mappings" / "iaptus.yaml"
    if drop_pdss:
        lines = mapping.read_text("utf-8").splitlines(keepends=True)
        mapping.write_text("".join(line for line in lines if "LOCAL-PDSS" not in line), "utf-8")
    if adsm:
        path.write_text(path.read_text("utf-8") + "\n[reports]\nadsm_enabled = true\n", "utf-8")
    return path


def test_the_shipped_mapping_starts_with_and_without_the_adsms(tmp_path: Path) -> None:
    for adsm, folder in ((False, tmp_path / "off"), (True, tmp_path / "on")):
        folder.mkdir()
        assert build_connections(load_config(_config(folder, adsm=adsm, drop_pdss=False)))


def test_a_missing_adsm_code_stops_start_up_only_where_adsms_are_used(tmp_path: Path) -> None:
    (tmp_path / "off").mkdir()
    assert build_connections(load_config(_config(tmp_path / "off", adsm=False, drop_pdss=True)))
    (tmp_path / "on").mkdir()
    with pytest.raises(ConfigError) as caught:
        build_connections(load_config(_config(tmp_path / "on", adsm=True, drop_pdss=True)))
    assert "outbound.assessment.tool_code" in str(caught.value.key)
    assert "pdss" in caught.value.safe_message
