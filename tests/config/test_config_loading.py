"""Config: validated at start-up, errors name the key, secrets by reference and masked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ehr_bridge.config import Secret, load_config, read_secret
from ehr_bridge.errors import ConfigError
from ehr_bridge.sync.connection import build_connections

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "ehr-bridge.example.toml"


def test_the_example_config_is_valid_and_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(EXAMPLE, config_dir / "ehr-bridge.toml")
    shutil.copytree(EXAMPLE.parents[1] / "mappings", tmp_path / "mappings")
    monkeypatch.setenv("EHR_BRIDGE_TRUST_TOKEN", "example-token")
    config = load_config(config_dir / "ehr-bridge.toml")
    (connection,) = build_connections(config)
    assert connection.name == "leeds-talking-therapies"
    assert config.database_url().startswith("sqlite:////")
    assert "example-token" not in repr(connection.source)


def test_a_missing_token_variable_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EHR_BRIDGE_TRUST_TOKEN", raising=False)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(EXAMPLE, config_dir / "ehr-bridge.toml")
    shutil.copytree(EXAMPLE.parents[1] / "mappings", tmp_path / "mappings")
    with pytest.raises(ConfigError) as info:
        build_connections(load_config(config_dir / "ehr-bridge.toml"))
    assert info.value.key == "connection[0].trust.token_env"


def test_a_secret_written_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_secret({"token": "abc"}, "token", base_dir=tmp_path, key="connection[0].trust")
    assert info.value.key == "connection[0].trust.token"
    assert "abc" not in str(info.value)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    secret = read_secret({"token_file": "token"}, "token", base_dir=tmp_path, key="k")
    assert secret.reveal() == "s3cret"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)
    assert "s3cret" not in repr(Secret("s3cret"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[database]\nurl = 5\n", "database.url"),
        ("[logging]\nlevel = 'LOUD'\n", "logging.level"),
        ("[[connection]]\nname = 'a'\n", "connection[0].mapping"),
        ("[unknown]\n", "unknown"),
        (
            "[[connection]]\nname='a'\nmapping='m'\nprovider_org={code='P'}\n"
            "trust={adapter='iaptus'}\nprovider={adapter='folder'}\nretry={max_attempts=0}\n",
            "connection[0].retry.max_attempts",
        ),
    ],
)
def test_invalid_values_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
