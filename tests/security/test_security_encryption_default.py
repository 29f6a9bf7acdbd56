"""Encryption by default, and fail closed (issue 15, point 6), driven as an operator would.

Real config files, the real CLI (Typer's CliRunner, and the daemon as the systemd unit
starts it: a separate process running the unit's own ``ExecStart`` arguments), the trust
simulator on loopback, and real databases: the SQLite file and its WAL are read byte by
byte, PostgreSQL table by table as text, for the simulator's family names, e-mail
addresses and postcodes. A test store that opts out is scanned the same way and the names
are found, so the scan is known to see plain text when there is some.

What must hold: a config without ``[security]`` refuses to open a store; ``keys generate``
makes the keyring the config names; every payload is then sealed; a store opened without
its key (no key, another key, a missing or broken key file, an unset variable) refuses
to run with exit 2 naming the key id, writing nothing; the opt-out is for test stores only.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_OK
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.security import KeyRing, generate_key
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store.store import make_engine
from support.databases import BACKENDS, database_url

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "ehr-bridge.service"
TOKEN = "enc-default-token"
KEY_ENV = "EHR_BRIDGE_TEST_KEYRING"
runner = CliRunner()

CONFIG = """\
[database]
url = "{url}"

{security}
[[connection]]
name = "north-trust"
test_connection = {test_connection}
mapping = "mappings/iaptus.yaml"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "iaptus"
base_url = "{base_url}/api/v1"
token_file = "secrets/token"
page_size = 20

[connection.provider]
adapter = "folder"
path = "provider"

[connection.retry]
max_attempts = 2
base_delay_seconds = 0.01
max_delay_seconds = 0.02

[observability]
port = 0
"""
KEYRING_SECTION = '[security]\nencryption_key_file = "secrets/keyring"\n'
OPT_OUT = "[security]\nrequire_encryption = false  # a test store\n"


@dataclass
class Trust:
    """The trust simulator on loopback and what it holds that must never be stored plainly."""

    base_url: str
    names: set[str]
    exact: set[str]


@pytest.fixture(scope="module")
def trust() -> Iterator[Trust]:
    simulator = TrustSimulator(seed=11, referrals=6, hostile=2, token=TOKEN)
    base_url = simulator.start()
    try:
        names, exact = _seeded(simulator.export())
        yield Trust(base_url, names, exact)
    finally:
        simulator.stop()


def _seeded(export: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Family names (matched as whole words) and e-mails and postcodes (matched anywhere)."""
    names: set[str] = set()
    exact: set[str] = set()
    for entry in export["referrals"]:
        patient = entry["referral"].get("patient")
        if not isinstance(patient, dict):
            continue
        if isinstance(patient.get("family_name"), str) and len(patient["family_name"]) >= 3:
            names.add(patient["family_name"])
        exact |= {patient[k] for k in ("email", "postcode") if isinstance(patient.get(k), str)}
    assert len(names) >= 3 and exact
    return names, exact


# --- operator's tools -------------------------------------------------------------------
def _workdir(folder: Path, trust: Trust, url: str, security: str, *, test: bool = True) -> Path:
    """A config folder as an operator lays it out: config, mapping, token file."""
    (folder / "mappings").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundled_mapping("iaptus.yaml"), folder / "mappings" / "iaptus.yaml")
    (folder / "secrets").mkdir(exist_ok=True)
    (folder / "secrets" / "token").write_text(TOKEN, "utf-8")
    config = folder / "ehr-bridge.toml"
    _set_security(config, trust, url, security, test=test)
    return config


def _set_security(
    config: Path, trust: Trust, url: str, security: str, *, test: bool = True
) -> None:
    config.write_text(
        CONFIG.format(
            url=url,
            security=security,
            test_connection=str(test).lower(),
            base_url=trust.base_url,
        ),
        "utf-8",
    )


def _cli(config: Path, *args: str) -> Any:
    """One command through the real CLI; the config always by ``--config``."""
    return runner.invoke(app, ["--config", str(config), *args], env={"COLUMNS": "200"})


def _daemon(config: Path) -> subprocess.CompletedProcess[str]:
    """``ehr-bridge run`` as the systemd unit starts it, in a process of its own."""
    program, *args = shlex.split(_unit()["ExecStart"])
    assert program.endswith("/ehr-bridge") and args[0] == "--config"
    args[1] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "ehr_bridge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _unit() -> dict[str, str]:
    found = {}
    for line in UNIT.read_text("utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def _not_restarted() -> set[int]:
    """The exit codes the unit never restarts on."""
    return {int(v) for v in _unit()["RestartPreventExitStatus"].split() if v.isdigit()}


def _active_key(folder: Path) -> str:
    return KeyRing.parse((folder / "secrets" / "keyring").read_text("utf-8")).active_id


def _url(backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'state' / 'ehr-bridge.db'}"
    return database_url(backend, folder)


# --- what the database holds ------------------------------------------------------------
def _database_text(url: str) -> list[bytes]:
    """Everything the database keeps: the SQLite file and WAL, or every PostgreSQL row."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        return [f.read_bytes() for f in files if f.exists()]
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            return [
                "\n".join(
                    str(row[0])
                    for row in db.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t'))
                ).encode("utf-8")
                for table in SQLModel.metadata.tables
            ]
    finally:
        engine.dispose()


def _plain_hits(url: str, trust: Trust) -> set[str]:
    """Seeded values found in clear: a name outside any base64 run, or an e-mail/postcode.

    A name is matched only where no base64url letter touches it, since random ciphertext
    holds short words (``Hall``) by chance; a plain JSON body has them in quotes.
    """
    hits: set[str] = set()
    for blob in _database_text(url):
        for name in trust.names:
            pattern = rb"(?<![A-Za-z0-9_-])" + re.escape(name.encode()) + rb"(?![A-Za-z0-9_-])"
            if re.search(pattern, blob):
                hits.add(name)
        hits |= {value for value in trust.exact if value.encode() in blob}
    return hits


def _payload_rows(url: str) -> list[tuple[Any, ...]]:
    """Every payload with the key id it is stored under, to prove a refusal changed nothing."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            resources = db.execute(
                text("SELECT resource_type, id, key_id, body FROM resource ORDER BY 1, 2")
            ).all()
            quarantined = db.execute(
                text("SELECT id, key_id, payload FROM quarantine ORDER BY 1")
            ).all()
            return [tuple(r) for r in [*resources, *quarantined]]
    finally:
        engine.dispose()


# --- a fresh install --------------------------------------------------------------------
def test_a_config_without_a_security_section_refuses_to_open_a_store(
    tmp_path: Path, trust: Trust
) -> None:
    url = _url("sqlite", tmp_path)
    config = _workdir(tmp_path, trust, url, security="")
    result = _cli(config, "sync", "--once")
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "security.encryption_key_file" in result.stderr
    assert "keys generate" in result.stderr and "require_encryption = false" in result.stderr
    daemon = _daemon(config)
    assert daemon.returncode == EXIT_CONFIG and daemon.returncode in _not_restarted()
    assert "Traceback" not in daemon.stderr and "encryption_key_file" in daemon.stderr
    assert not (tmp_path / "state" / "ehr-bridge.db").exists()  # nothing was written at all
    unnamed = _cli(config, "keys", "generate")  # no FILE, and the config names none
    assert unnamed.exit_code == EXIT_CONFIG and "security.encryption_key_file" in unnamed.stderr


# --- a new store, encrypted ---------------------------------------------------------------
@dataclass
class Sealed:
    """A new store the operator set up with a key, and what each step answered."""

    folder: Path
    config: Path
    url: str
    key_id: str
    steps: dict[str, Any]


@pytest.fixture(scope="module", params=BACKENDS)
def sealed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trust: Trust
) -> Sealed:
    """A config naming a keyring not made yet; then `keys generate`, `db upgrade`, `sync`."""
    folder = tmp_path_factory.mktemp(f"sealed-{request.param}")
    url = _url(request.param, folder)
    config = _workdir(folder, trust, url, KEYRING_SECTION)
    steps = {
        "sync before the key": _cli(config, "sync", "--once"),
        "keys generate": _cli(config, "keys", "generate"),  # no FILE: the config's file
        "db upgrade": _cli(config, "db", "upgrade"),
        "sync": _cli(config, "sync", "--max-cycles", "4"),
    }
    assert steps["db upgrade"].exit_code == EXIT_OK, steps["db upgrade"].output
    assert steps["sync"].exit_code == EXIT_OK, steps["sync"].output
    assert len(_payload_rows(url)) > 10
    return Sealed(folder, config, url, _active_key(folder), steps)


def test_keys_generate_makes_the_configured_keyring_and_no_payload_is_stored_plainly(
    sealed: Sealed, trust: Trust
) -> None:
    missing, generated = sealed.steps["sync before the key"], sealed.steps["keys generate"]
    assert missing.exit_code == EXIT_CONFIG and "does not exist" in missing.stderr
    assert "keys generate" in missing.stderr
    keyring = sealed.folder / "secrets" / "keyring"
    assert generated.exit_code == EXIT_OK, generated.output
    assert keyring.stat().st_mode & 0o777 == 0o600
    assert sealed.key_id in generated.stdout
    assert keyring.read_text("utf-8").strip() not in generated.stdout
    status = json.loads(_cli(sealed.config, "keys", "status", "--json").stdout)
    assert status["active_key"] == sealed.key_id
    assert status["rows"]["resource"] and status["rows"]["quarantine"]
    assert {key for rows in status["rows"].values() for key in rows} == {sealed.key_id}
    assert all(str(row[-1]).startswith("v1.") for row in _payload_rows(sealed.url))
    assert _plain_hits(sealed.url, trust) == set()


def _no_key(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    return OPT_OUT, "no encryption key is configured"


def _another_key(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    other = generate_key()
    (sealed.folder / "secrets" / "other-keyring").write_text(other + "\n", "utf-8")
    (sealed.folder / "secrets" / "other-keyring").chmod(0o600)
    section = '[security]\nencryption_key_file = "secrets/other-keyring"\n'
    return section, f"holds only {KeyRing.parse(other).active_id}"


def _another_key_by_variable(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    other = generate_key()
    monkeypatch.setenv(KEY_ENV, other)
    return f'[security]\nencryption_key_env = "{KEY_ENV}"\n', KeyRing.parse(other).active_id


def _missing_file(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    section = '[security]\nencryption_key_file = "secrets/gone"\n'
    return section, "restore it from its backup"


def _unset_variable(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    return f'[security]\nencryption_key_env = "{KEY_ENV}"\n', f"{KEY_ENV} is not set"


def _broken_file(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    (sealed.folder / "secrets" / "broken").write_text("not-a-key\n", "utf-8")
    return '[security]\nencryption_key_file = "secrets/broken"\n', "not a base64 256-bit key"


WRONG_KEYS = {
    "no key, test store opted out": (_no_key, True),
    "another key": (_another_key, True),
    "another key by variable": (_another_key_by_variable, True),
    "key file missing": (_missing_file, False),
    "key variable unset": (_unset_variable, False),
    "key file broken": (_broken_file, False),
}


@pytest.mark.parametrize("case", WRONG_KEYS)
def test_a_store_opened_without_its_key_refuses_with_exit_2_and_is_left_as_it_was(
    sealed: Sealed, trust: Trust, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, names_the_store_key = WRONG_KEYS[case]
    section, detail = make(sealed, monkeypatch)
    before = _payload_rows(sealed.url)
    _set_security(sealed.config, trust, sealed.url, section)
    try:
        for command in (
            ["sync", "--once"],
            ["status"],
            ["referrals", "list"],
            ["keys", "rotate"],
            ["keys", "status"],
        ):
            result = _cli(sealed.config, *command)
            assert result.exit_code == EXIT_CONFIG, (command, result.output)
            assert detail in result.stderr, (command, result.stderr)
            if names_the_store_key:
                assert f"encrypted with key {sealed.key_id}" in result.stderr
        daemon = _daemon(sealed.config)
        assert daemon.returncode == EXIT_CONFIG and daemon.returncode in _not_restarted()
        assert "Traceback" not in daemon.stderr and detail in daemon.stderr
    finally:
        _set_security(sealed.config, trust, sealed.url, KEYRING_SECTION)
    assert _payload_rows(sealed.url) == before  # nothing re-sealed, nothing plain
    assert _plain_hits(sealed.url, trust) == set()


def test_with_its_key_back_the_store_runs_again(sealed: Sealed) -> None:
    result = _cli(sealed.config, "sync", "--once")
    assert result.exit_code == EXIT_OK, result.output
    status = json.loads(_cli(sealed.config, "keys", "status", "--json").stdout)
    assert {key for rows in status["rows"].values() for key in rows} == {sealed.key_id}


# --- the opt-out --------------------------------------------------------------------------
def test_opting_out_is_for_test_stores_only_and_then_the_scan_sees_the_plain_text(
    tmp_path: Path, trust: Trust
) -> None:
    url = _url("sqlite", tmp_path)
    config = _workdir(tmp_path, trust, url, OPT_OUT, test=False)
    live = _cli(config, "sync", "--once")
    assert live.exit_code == EXIT_CONFIG
    assert "security.require_encryption" in live.stderr and "north-trust is live" in live.stderr
    assert _daemon(config).returncode in _not_restarted()
    _set_security(config, trust, url, OPT_OUT, test=True)
    result = _cli(config, "sync", "--max-cycles", "4")
    assert result.exit_code == EXIT_OK, result.output
    status = json.loads(_cli(config, "keys", "status", "--json").stdout)
    assert status["active_key"] is None and set(status["rows"]["resource"]) == {"plain"}
    assert _plain_hits(url, trust) & trust.names  # the scan does see plain text


def test_the_demo_writes_a_key_and_its_store_holds_no_plain_text(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = runner.invoke(
        app, ["demo", "--workdir", str(workdir), "--referrals", "6", "--hostile", "2"]
    )
    assert result.exit_code == EXIT_OK, result.output
    config = (workdir / "ehr-bridge.toml").read_text("utf-8")
    assert (
        "require_encryption = true" in config
        and 'encryption_key_file = "secrets/keyring"' in config
    )
    assert (workdir / "secrets" / "keyring").stat().st_mode & 0o777 == 0o600
    names, exact = _seeded(json.loads((workdir / "trust-export.json").read_text("utf-8")))
    url = f"sqlite:///{workdir / 'state' / 'ehr-bridge.db'}"
    assert _plain_hits(url, Trust("", names, exact)) == set()
    status = json.loads(_cli(workdir / "ehr-bridge.toml", "keys", "status", "--json").stdout)
    assert {key for rows in status["rows"].values() for key in rows} == {_active_key(workdir)}
