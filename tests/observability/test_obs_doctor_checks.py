"""Doctor's checks one at a time: disk thresholds, schema versions, TLS files, the unit file."""

from __future__ import annotations

import shutil
import socket
from collections import namedtuple
from pathlib import Path

import pytest
from sqlalchemy import text

from ehr_bridge.config import load_config
from ehr_bridge.observability.doctor import run as doctor_run
from ehr_bridge.observability.doctor.model import Findings
from ehr_bridge.observability.doctor.network import check_tls
from ehr_bridge.observability.doctor.setup import GIB, MIB, check_database, check_disk
from ehr_bridge.observability.doctor.unit import read_unit
from ehr_bridge.store.migrate import head_revision, upgrade
from ehr_bridge.store.store import make_engine

Usage = namedtuple("Usage", "total used free")


def _statuses(found: Findings) -> list[str]:
    return [c.status for c in found.checks]


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [
        (50 * MIB, 100 * GIB, "FAIL"),  # under 100 MiB
        (500 * MIB, 2 * GIB, "WARN"),  # under 1 GiB
        (5 * GIB, 100 * GIB, "WARN"),  # under 10 %
        (50 * GIB, 100 * GIB, "PASS"),
    ],
)
def test_disk_thresholds(
    free: int, total: int, status: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: Usage(total, total - free, free))
    found = Findings()
    check_disk(found, [("state folder", tmp_path / "state"), ("log folder", tmp_path)])
    (check,) = found.checks  # one disk, one line naming both folders
    assert check.status == status
    assert f"state folder {tmp_path / 'state'}; log folder {tmp_path}" in check.message
    assert bool(check.fix) == (status != "PASS")


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[security]\nrequire_encryption = false\n')
    return config


def test_an_older_sqlite_schema_is_a_warning_naming_the_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    engine = make_engine(url)
    upgrade(engine, "0005")
    engine.dispose()
    found = Findings()
    check_database(found, load_config(_config(tmp_path, url)), None, keys_ok=True)
    (check,) = found.checks
    assert check.status == "WARN"
    assert f"at 0005; this version needs {head_revision()}" in check.message
    assert "upgrades SQLite when it starts" in check.fix


def test_a_schema_from_a_newer_version_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    found = Findings()
    check_database(found, load_config(_config(tmp_path, url)), None, keys_ok=True)
    (check,) = found.checks
    assert check.status == "FAIL" and "9999_future" in check.message
    assert "does not know" in check.message


def test_an_unreachable_postgresql_fails_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://ehr:s3cret-pw@127.0.0.1:{port}/state"
    found = Findings()
    check_database(found, load_config(_config(tmp_path, url)), None, keys_ok=True)
    (check,) = found.checks
    assert check.status == "FAIL" and f"127.0.0.1:{port}" in check.message
    assert "s3cret-pw" not in check.message + check.fix
    assert "database.url" in check.fix


def test_tls_files(tmp_path: Path) -> None:
    found = Findings()
    check_tls(
        found,
        "trust",
        {"base_url": "https://trust.example.nhs.uk/api"},
        base_dir=tmp_path,
        key="connection[0].trust",
    )
    assert _statuses(found) == ["PASS"] and "bundled CA list" in found.checks[0].message
    found = Findings()
    options = {"base_url": "https://trust.example.nhs.uk", "tls": {"ca_bundle": "ca.pem"}}
    check_tls(found, "trust", options, base_dir=tmp_path, key="connection[0].trust")
    assert (
        _statuses(found) == ["FAIL"] and "connection[0].trust.tls.ca_bundle" in found.checks[0].fix
    )
    (tmp_path / "ca.pem").write_text("not a certificate")
    found = Findings()
    check_tls(found, "trust", options, base_dir=tmp_path, key="connection[0].trust")
    assert _statuses(found) == ["FAIL"] and "not PEM" in found.checks[0].message
    found = Findings()
    check_tls(
        found,
        "trust",
        {"base_url": "http://trust.example.nhs.uk"},
        base_dir=tmp_path,
        key="connection[0].trust",
    )
    assert _statuses(found) == ["FAIL"] and found.checks[0].fix == "use https"
    found = Findings()
    mutual = {
        "base_url": "https://trust.example.nhs.uk",
        "tls": {"client_cert_file": "client.pem", "client_key_file": "client.key"},
    }
    check_tls(found, "trust", mutual, base_dir=tmp_path, key="connection[0].trust")
    assert _statuses(found) == ["FAIL"]
    assert "connection[0].trust.tls.client_cert_file" in found.checks[0].message


def test_unit_files_are_read_as_systemd_reads_them(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text(
        "[Service]\n# RestartPreventExitStatus=9\nReadWritePaths=/a \\\n  /b\n"
        "ReadWritePaths=/c\nRestartPreventExitStatus=1\nRestartPreventExitStatus=\n"
        "RestartPreventExitStatus=2\n"
    )
    directives = read_unit(unit)
    assert directives["RestartPreventExitStatus"] == ["2"]  # an empty value resets the list
    assert " ".join(directives["ReadWritePaths"]).split() == ["/a", "/b", "/c"]


def test_a_check_that_raises_is_a_fail_line_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("text that must not be printed")

    monkeypatch.setattr(doctor_run, "check_disk", broken)
    report = doctor_run.run_doctor(
        _config(tmp_path, "sqlite:///state.db"), config_exit=2, unit=tmp_path / "none"
    )
    disk = [c for c in report.checks if c.check == "disk"]
    assert [c.status for c in disk] == ["FAIL"] and "(RuntimeError)" in disk[0].message
    assert "must not be printed" not in disk[0].message
    assert any(c.check == "systemd" for c in report.checks)  # later checks still ran
