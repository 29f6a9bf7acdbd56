"""The hl7v2 adapter's options: checked at start-up, each error naming its key."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter, create
from ehr_bridge.adapters.hl7v2.writer import FolderTransport, MllpTransport
from ehr_bridge.adapters.registry import specs
from ehr_bridge.errors import ConfigError


def _create(tmp_path: Path, **options: Any) -> Hl7v2Adapter:
    return create(
        {"drop_folder": "in", **options}, base_dir=tmp_path, key="trust", provider_code="IESO01"
    )


def test_the_spec_declares_what_the_adapter_can_do() -> None:
    spec = specs()["hl7v2"]
    assert spec.roles == {"trust"}
    assert spec.capabilities == {
        "updated_since",
        "write:assessment",
        "write:clinical_note",
        "write:risk_alert",
    }


def test_defaults_need_only_a_drop_folder(tmp_path: Path) -> None:
    adapter = _create(tmp_path)
    assert adapter.source.inbox.drop == tmp_path / "in"
    assert adapter.source.inbox.received == tmp_path / "in" / "received"
    assert (tmp_path / "in" / "received").is_dir()
    assert adapter.writer.transport is None and adapter.listen is None


def test_send_to_a_folder_or_over_mllp(tmp_path: Path) -> None:
    to_folder = _create(tmp_path, send={"folder": "out"})
    assert isinstance(to_folder.writer.transport, FolderTransport)
    assert (tmp_path / "out").is_dir()
    over_mllp = _create(tmp_path, send={"host": "engine.example", "port": 2576})
    assert isinstance(over_mllp.writer.transport, MllpTransport)
    assert over_mllp.writer.header.sending_facility == "IESO01"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"drop_folder": ""}, "trust.drop_folder"),
        ({"drop_folder": "in", "colour": "red"}, "trust.colour"),
        ({"drop_folder": "in", "timezone": "Mars/Olympus"}, "trust.timezone"),
        ({"drop_folder": "in", "segments": ["pid"]}, "trust.segments"),
        ({"drop_folder": "in", "page_size": 0}, "trust.page_size"),
        ({"drop_folder": "in", "send": {}}, "trust.send"),
        ({"drop_folder": "in", "send": {"host": "h"}}, "trust.send"),
        ({"drop_folder": "in", "send": {"folder": "o", "port": 1}}, "trust.send"),
        ({"drop_folder": "in", "send": {"folder": "o", "version": "2.9"}}, "trust.send.version"),
        ({"drop_folder": "in", "listen": {"port": 70000}}, "trust.listen.port"),
        ({"drop_folder": "in", "listen": {"port": 1, "message_types": ["REF"]}}, "trust.listen"),
    ],
)
def test_a_wrong_option_is_a_config_error_naming_its_key(
    tmp_path: Path, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    assert caught.value.key is not None and caught.value.key.startswith(key)


def test_a_drop_folder_that_cannot_be_created_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError) as caught:
        _create(tmp_path, drop_folder="file/in")
    assert caught.value.key == "trust.drop_folder"


def test_the_listener_needs_its_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _create(tmp_path).listener()
    listener = _create(tmp_path, listen={"port": 0}).listener()
    try:
        assert listener.port > 0
    finally:
        listener.server_close()


def test_the_listen_command_serves_until_sigterm(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    mapping = Path(__file__).resolve().parents[2] / "mappings" / "hl7v2-ref-i12.yaml"
    (tmp_path / "ehr-bridge.toml").write_text(
        f"""
[[connection]]
name = "hl7"
test_connection = true
mapping = "{mapping}"
provider_org = {{code = "IESO01"}}
trust = {{adapter = "hl7v2", drop_folder = "in", listen = {{port = {port}}}}}
provider = {{adapter = "folder", path = "provider"}}
"""
    )
    command = [sys.executable, "-m", "ehr_bridge.adapters.hl7v2", "listen", "--config"]
    process = subprocess.Popen(
        [*command, str(tmp_path / "ehr-bridge.toml")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert f"port {port}" in process.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            ref = "MSH|^~\\&|A|B|C|D|20261126||REF^I12|1|P|2.5\rRF1|A\rPID|1\r"
            sock.sendall(b"\x0b" + ref.encode() + b"\x1c\r")
            assert b"MSA|AA|1" in sock.recv(4096)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert len([p for p in (tmp_path / "in").iterdir() if p.is_file()]) == 1


def test_the_listen_command_refuses_a_connection_without_hl7v2(tmp_path: Path) -> None:
    (tmp_path / "ehr-bridge.toml").write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ehr_bridge.adapters.hl7v2",
            "listen",
            "--config",
            "ehr-bridge.toml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--connection" in result.stderr
