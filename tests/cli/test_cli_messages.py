"""Errors that say what to do: the host, the config key and the next step, said once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ehr_bridge.cli.app import app
from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_FAILED
from ehr_bridge.config import load_config
from ehr_bridge.demo import run_demo
from ehr_bridge.sync.connection import build_connections

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("messages")
    result = run_demo(workdir, seed=3, referrals=2, say=lambda _line: None)
    assert result.complete
    return workdir


def variant(demo_dir: Path, tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """The demo's config elsewhere, its paths made absolute, with ``changes`` made."""
    text = (demo_dir / "ehr-bridge.toml").read_text()
    for relative in ("mappings/iaptus.yaml", "secrets/trust-token", "secrets/keyring"):
        text = text.replace(f'"{relative}"', f'"{demo_dir / relative}"')
    text = text.replace('"sqlite:///state/', f'"sqlite:///{demo_dir}/state/')
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(text)
    return config


def invoke(config: Path, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(config), *args])


def said(result: Result) -> str:
    """What the command printed, with line breaks and indents folded to single spaces."""
    return " ".join((result.stdout + result.stderr).split())


def test_an_unreachable_trust_names_the_host_and_the_key(demo_dir: Path) -> None:
    config = demo_dir / "ehr-bridge.toml"
    port = re.search(r"127\.0\.0\.1:(\d+)", config.read_text())
    assert port is not None
    result = invoke(config, "sync", "--once", "--flow", "pull")  # the demo's simulator is gone
    assert result.exit_code == EXIT_FAILED
    text = said(result)
    assert f"the connection to 127.0.0.1:{port.group(1)} failed" in text
    assert "check the network and the address in connection[0].trust.base_url" in text
    status = said(invoke(config, "status"))
    assert "its latest run [unreachable]" in status and "connection[0].trust.base_url" in status


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("[logging]", '[logging]\nlevl = "INFO"'),
            "logging.levl: unknown key; did you mean level?",
        ),
        (
            ("page_size = 20", "page_sise = 20"),
            "connection[0].trust.page_sise: unknown key; did you mean page_size?",
        ),
        (
            ("[database]", "[database]\ncolour = 1"),
            "database.colour: unknown key (this section takes: url, allow_shared_sqlite)",
        ),
        (
            ("[connection.provider]", '[connection.provider]\npaht = "x"'),
            "connection[0].provider.paht: unknown key; did you mean path?",
        ),
        (
            ("[connection.retry]", "[connection.retry]\nmax_atempts = 3"),
            "connection[0].retry.max_atempts: unknown key; did you mean max_attempts?",
        ),
    ],
)
def test_an_unknown_key_gets_did_you_mean_and_its_path_once(
    demo_dir: Path, tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    result = invoke(variant(demo_dir, tmp_path, change), "sync", "--once")
    assert result.exit_code == EXIT_CONFIG
    text = said(result)
    assert f"error: configuration: {expected}" in text
    key = expected.split(":")[0]
    assert text.count(key) == 1, text
    assert "Extra inputs are not permitted" not in text


def test_a_misspelt_key_in_a_mapping_file_gets_did_you_mean_and_its_path_once(
    demo_dir: Path, tmp_path: Path
) -> None:
    mapping = tmp_path / "mine.yaml"
    original = (demo_dir / "mappings" / "iaptus.yaml").read_text()
    mapping.write_text(original.replace("\nname: iaptus", "\nnmae: iaptus", 1))
    config = variant(demo_dir, tmp_path, (str(demo_dir / "mappings/iaptus.yaml"), str(mapping)))
    result = invoke(config, "sync", "--once")
    assert result.exit_code == EXIT_CONFIG
    text = said(result)
    assert f"{mapping}:nmae: unknown key; did you mean name?" in text
    assert text.count(str(mapping)) == 1 and text.count("nmae") == 1
    assert "also name: Field required" in text


def test_a_missing_config_names_the_option_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(tmp_path / "nope.toml", "status")
    assert result.exit_code == EXIT_CONFIG
    text = said(result)
    assert f"config file not found: {tmp_path / 'nope.toml'}" in text
    assert "--config FILE" in text and "EHR_BRIDGE_CONFIG" in text
    monkeypatch.chdir(tmp_path)  # no --config, no variable: ./ehr-bridge.toml
    monkeypatch.delenv("EHR_BRIDGE_CONFIG", raising=False)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == EXIT_CONFIG
    assert f"config file not found: {tmp_path / 'ehr-bridge.toml'}" in said(result)


def test_a_bare_mapping_name_is_the_shipped_mapping(demo_dir: Path, tmp_path: Path) -> None:
    shipped = (str(demo_dir / "mappings/iaptus.yaml"), "iaptus")
    (connection,) = build_connections(load_config(variant(demo_dir, tmp_path, shipped)))
    assert connection.mapping.name == "iaptus"
    result = invoke(variant(demo_dir, tmp_path, (shipped[0], "iaptsu")), "sync", "--once")
    assert result.exit_code == EXIT_CONFIG
    text = said(result)
    assert "connection[0].mapping: mapping file not found" in text
    assert "did you mean the shipped mapping 'iaptus'?" in text and "pcmis" in text


def test_the_display_zone_is_checked_and_used(demo_dir: Path, tmp_path: Path) -> None:
    bad = variant(
        demo_dir, tmp_path, ("[logging]", '[display]\ntimezone = "Europe/Londn"\n[logging]')
    )
    result = invoke(bad, "referrals", "list")
    assert result.exit_code == EXIT_CONFIG
    assert "display.timezone: unknown time zone 'Europe/Londn'" in said(result)
    utc = variant(demo_dir, tmp_path, ("[logging]", '[display]\ntimezone = "UTC"\n[logging]'))
    listed = invoke(utc, "referrals", "list")
    assert listed.exit_code == 0 and "(times UTC)" in listed.stdout
