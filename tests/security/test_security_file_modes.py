"""Files ehr-bridge creates are 0600 and its folders 0700, whatever the umask (issue 15).

Each test runs with the umask at 0000 (the worst a shell can hand down: every file Python
creates by default would be world-writable), restored afterwards. ``ehr-bridge demo``
makes a whole work folder: config, token, keyring, mapping, the SQLite file and its WAL,
the log, the provider folder's referral bundles and session files, ``report.html`` and
``trust-export.json``; ``report all --html`` writes a page; the HL7 v2 adapter makes its
drop, received and send folders, and writes what the MLLP listener accepts and the
messages it sends; ``keys generate`` a keyring in a new folder. Every one is checked.
A folder that already exists (shared with the platform's group, say) keeps its mode.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.fhir import MarkerFile
from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.hl7v2 import create as create_hl7
from ehr_bridge.cli.app import app
from ehr_bridge.logs import setup_logging
from ehr_bridge.security.files import open_private, private_dir

runner = CliRunner()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0000 for the test (so only our own modes protect anything), then restored."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _not_private(root: Path) -> dict[str, str]:
    """Every file under ``root`` not 0600 and every folder not 0700, with its mode."""
    found = {}
    for path in [root, *root.rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        if _mode(path) != want:
            found[str(path.relative_to(root))] = oct(_mode(path))
    return found


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = os.umask(0)
    try:
        workdir = tmp_path_factory.mktemp("umask") / "demo"
        result = runner.invoke(
            app, ["demo", "--workdir", str(workdir), "--referrals", "3", "--hostile", "1"]
        )
        assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
    return workdir


def test_the_demo_leaves_only_private_files_and_folders(demo_workdir: Path) -> None:
    made = {str(p.relative_to(demo_workdir)) for p in demo_workdir.rglob("*")}
    expected = {
        "ehr-bridge.toml",
        "trust-export.json",
        "report.html",
        "logs/ehr-bridge.log",
        "state/ehr-bridge.db",
        "mappings/iaptus.yaml",
        "provider/sessions/processed",
        "provider/sessions/rejected",
    }
    assert expected <= made, sorted(made)
    assert any(name.startswith("provider/referrals/") for name in made)
    assert any(name.startswith("provider/sessions/processed/") for name in made)
    assert not _not_private(demo_workdir)


@pytest.mark.usefixtures("open_umask")
def test_a_report_page_is_private_even_over_an_older_open_one(demo_workdir: Path) -> None:
    page = demo_workdir.parent / "page.html"
    page.write_text("old", "utf-8")
    page.chmod(0o666)
    config = str(demo_workdir / "ehr-bridge.toml")
    result = runner.invoke(app, ["--config", config, "report", "all", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert _mode(page) == 0o600 and "<svg" in page.read_text("utf-8")


@pytest.mark.usefixtures("open_umask")
def test_the_log_file_and_its_folders_are_private(tmp_path: Path) -> None:
    log = tmp_path / "var" / "log" / "ehr-bridge.log"
    setup_logging("INFO", log, stderr=False)
    try:
        logging.getLogger("ehr_bridge.test").warning("a line")
    finally:
        setup_logging("INFO", None, stderr=False)
    assert log.read_text("utf-8").count("a line") == 1
    assert not _not_private(tmp_path / "var")


@pytest.mark.usefixtures("open_umask")
def test_the_hl7_folders_and_files_are_private(tmp_path: Path) -> None:
    root = tmp_path / "hl7"
    options = {"drop_folder": "hl7/in", "send": {"folder": "hl7/out"}, "settle_seconds": 0}
    adapter = create_hl7(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    adapter.source.inbox.accept(b"MSH|^~\\&|A|B|C|D|20261126||REF^I12^REF_I12|C-1|P|2.5\r")
    assert adapter.source.inbox.receive() == 1
    item = WriteItem(
        "clinical_note",
        "SR1",
        "ref-1",
        {
            "authored_at": "2026-11-10T19:35:00Z",
            "text": "note",
            "referral_id": "SR1",
            "client_reference": "ref-1",
        },
    )
    adapter.write(item)
    made = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert any(n.startswith("in/received/") and n.endswith(".hl7") for n in made), made
    assert any(n.startswith("out/") for n in made), made
    assert not _not_private(root)


@pytest.mark.usefixtures("open_umask")
def test_the_provider_folder_layout_is_private_and_a_shared_root_keeps_its_mode(
    tmp_path: Path,
) -> None:
    FolderProvider(tmp_path / "new").deliver_referral("sr-1", {"resourceType": "Bundle"})
    assert not _not_private(tmp_path / "new")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2770)  # made by the operator for the platform's group
    FolderProvider(shared)
    assert _mode(shared) == 0o2770
    assert _mode(shared / "sessions") == 0o700  # what ehr-bridge made itself


@pytest.mark.usefixtures("open_umask")
def test_keys_generate_makes_a_private_keyring_in_a_private_folder(tmp_path: Path) -> None:
    keyring = tmp_path / "etc" / "ehr-bridge" / "keyring"
    result = runner.invoke(app, ["keys", "generate", str(keyring)])
    assert result.exit_code == 0, result.output
    assert not _not_private(tmp_path / "etc")
    keyring.chmod(0o644)
    runner.invoke(app, ["keys", "generate", str(keyring)])  # a second key, put first
    assert _mode(keyring) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_the_helpers_mean_exactly_0600_and_0700(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "a" / "b")
    with open_private(folder / "f", "w") as handle:
        handle.write("x")
    open_existing = folder / "g"
    open_existing.write_text("y", "utf-8")  # 0666 under this umask
    with open_private(open_existing, "a") as handle:
        handle.write("z")
    assert open_existing.read_text("utf-8") == "yz"
    assert not _not_private(tmp_path / "a")


@pytest.mark.usefixtures("open_umask")
def test_the_fhir_providers_state_file_is_private(tmp_path: Path) -> None:
    marker = MarkerFile(tmp_path / "var" / "state" / "fhir-provider.json")
    marker.advance(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), "bundle-1")
    assert marker.load().ids == {"bundle-1"}
    assert not _not_private(tmp_path / "var")
