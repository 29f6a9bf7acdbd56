"""Hostile files: traversal and links out of the folders, special files, code in mappings."""

from __future__ import annotations

import ast
import os
import socket
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.mllp import FrameReader
from ehr_bridge.adapters.hl7v2.source import DropFolderSource
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.errors import ConfigError, ConnectionStopError, TerminalError
from ehr_bridge.mapping import load_mapping

SRC = Path(__file__).resolve().parents[2] / "src" / "ehr_bridge"


@pytest.mark.parametrize("bad", ["../escape", "..", "a/b", ".hidden", "x\0y", "/etc/x", "a" * 65])
def test_a_referral_id_cannot_build_a_path_out_of_the_folder(tmp_path: Path, bad: str) -> None:
    provider = FolderProvider(tmp_path / "root")
    with pytest.raises(TerminalError) as caught:
        provider.deliver_referral(bad, {"resourceType": "Bundle"})
    assert caught.value.code == "unsafe_id"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


@pytest.mark.parametrize("bad", ["../../outside.json", "processed/../x.json", ".x.json", ""])
def test_a_handle_cannot_move_files_from_outside(tmp_path: Path, bad: str) -> None:
    provider = FolderProvider(tmp_path / "root")
    with pytest.raises(TerminalError, match="handle"):
        provider.acknowledge(bad)


def test_a_session_file_linking_out_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"resourceType": "Bundle", "stolen": true}')
    provider = FolderProvider(tmp_path / "root")
    (provider.sessions_dir / "a.json").symlink_to(secret)
    os.mkfifo(provider.sessions_dir / "b.json")  # would block a naive reader
    (provider.sessions_dir / "c.json").write_bytes(b"{" + b" " * 2048 + b"}")
    small = FolderProvider(tmp_path / "root", max_file_bytes=1024)
    found = {s.handle: s.bundle for s in small.pending_submissions()}
    assert found == {
        "a.json": {"_unreadable": "symlink"},
        "b.json": {"_unreadable": "not_regular_file"},
        "c.json": {"_unreadable": "too_large"},
    }


@pytest.mark.parametrize("folder", ["sessions", "referrals", "sessions/processed"])
def test_a_provider_folder_replaced_by_a_link_out_is_refused(tmp_path: Path, folder: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text('{"resourceType": "Bundle"}')
    provider = FolderProvider(tmp_path / "root")
    target = tmp_path / "root" / folder
    for child in sorted(target.rglob("*"), reverse=True):
        child.rmdir()
    target.rmdir()
    target.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConnectionStopError, match="link"):
        list(provider.pending_submissions())
    with pytest.raises(ConnectionStopError):
        provider.deliver_referral("sr-1", {"resourceType": "Bundle"})
    assert sorted(p.name for p in outside.iterdir()) == ["x.json"]
    with pytest.raises(ConfigError):
        FolderProvider(tmp_path / "root")


def test_a_provider_root_that_is_itself_a_link_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "mnt-share"
    real.mkdir()
    (tmp_path / "share").symlink_to(real, target_is_directory=True)
    provider = FolderProvider(tmp_path / "share")
    provider.deliver_referral("sr-1", {"resourceType": "Bundle"})
    assert (real / "referrals" / "sr-1.json").is_file()


def test_hl7_files_past_the_size_limit_or_linked_in_are_quarantined_unread(
    tmp_path: Path,
) -> None:
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=0)
    inbox.ensure()
    secret = tmp_path / "secret.hl7"
    secret.write_bytes(b"MSH|^~\\&|A|B|C|D|20260101||REF^I12|1|P|2.4\r")
    (inbox.drop / "linked.hl7").symlink_to(secret)
    (inbox.drop / "big.hl7").write_bytes(b"MSH|^~\\&|" + b"x" * 4096 + b"\r")
    inbox.max_file_bytes = 1024
    source = DropFolderSource(inbox, zone=ZoneInfo("Europe/London"))
    page = source.fetch_referrals(updated_since=None, page=None)
    assert [r.get("unreadable") for r in page.records] == ["too_large"]
    assert (inbox.drop / "linked.hl7").is_symlink()  # never received, never read
    day = next(p for p in inbox.received.iterdir() if p.is_dir())
    (day / "20990101T000000000000Z-planted.hl7").symlink_to(secret)
    records = source.records(f"{day.name}/20990101T000000000000Z-planted.hl7")
    assert records[0]["unreadable"] == "symlink"


def test_a_mapping_file_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = bundled_mapping("iaptus.yaml").read_text("utf-8")
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(f'x: !!python/object/apply:os.system ["touch {marker}"]\n{text}')
    with pytest.raises(ConfigError):
        load_mapping(hostile)
    assert not marker.exists()


_FORBIDDEN_MODULES = ("xml", "lxml", "pickle", "marshal", "shelve", "dill")
_FORBIDDEN_CALLS = ("eval", "exec", "compile", "__import__")


def _is_yaml_load(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("load", "unsafe_load", "full_load")
        and isinstance(node.value, ast.Name)
        and node.value.id == "yaml"
    )


def test_no_module_parses_xml_or_pickles_or_evaluates_text() -> None:
    """XML bombs cannot reach a parser we do not have; mappings are data, never code."""
    findings = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.split(".")[0] in _FORBIDDEN_MODULES]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                bad += [node.func.id] if node.func.id in _FORBIDDEN_CALLS else []
            if _is_yaml_load(node):
                bad.append("yaml.load")
            findings += [f"{path.relative_to(SRC)}: {b}" for b in bad]
    assert findings == []


@pytest.mark.parametrize("sent", [b"\x0b" + b"x" * 5000, b"no frame start at all " * 300])
def test_an_mllp_peer_cannot_make_us_buffer_more_than_the_frame_limit(sent: bytes) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(sent)
        reader = FrameReader(ours, max_bytes=1024)
        with pytest.raises(ConnectionError, match="larger than allowed"):
            reader.next(deadline=time.monotonic() + 5)
        assert len(reader.buffer) <= 1024 + 65536
