"""[observability]: loopback only, complete SMTP settings, secrets by environment name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_bridge.config import ObservabilityConfig, load_config
from ehr_bridge.errors import ConfigError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert ObservabilityConfig(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "metrics.example.org"])
def test_other_hosts_are_refused_naming_the_key(tmp_path: Path, host: str) -> None:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text(f'[observability]\nhost = "{host}"\n', "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "observability.host"
    assert "loopback" in caught.value.safe_message


def test_defaults_serve_on_loopback_and_alert_after_fifteen_minutes(tmp_path: Path) -> None:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text("", "utf-8")
    config = load_config(path).observability
    assert (config.enabled, config.host, config.port) == (True, "127.0.0.1", 9464)
    assert config.failure_alert_minutes == 15
    assert config.alert_webhook_env is None and config.smtp_host is None


def test_smtp_needs_sender_and_recipients(tmp_path: Path) -> None:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text('[observability]\nsmtp_host = "127.0.0.1"\n', "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "observability"
    assert "smtp_from" in caught.value.safe_message
