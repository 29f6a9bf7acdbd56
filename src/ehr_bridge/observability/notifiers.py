"""Where alerts go: a webhook (JSON POST) and/or e-mail over SMTP.

Destinations are secrets by reference: the config names the environment variables that
hold the webhook URL and the SMTP password, they are read once at start-up (a missing one
stops the daemon before the first job, naming the key), and neither ever reaches a log
line or an exception message.

The webhook goes through the same ``SecureSession`` as the adapters: TLS verified, no
redirect followed, no proxy but the configured one (``alert_webhook_proxy_url``; never the
environment's ``HTTPS_PROXY`` and friends), and a whole-request deadline that a receiver
dripping its answer cannot stretch. An SMTP session runs under the same watchdog
(``ehr_bridge.retry.watched``): socket timeouts alone never end a server that sends a byte
every few seconds, and the alert thread must get back to evaluating incidents.
"""

from __future__ import annotations

import os
import smtplib
import socket
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import requests

from ehr_bridge.config import ObservabilityConfig, Secret
from ehr_bridge.errors import ConfigError, TransientError
from ehr_bridge.observability.alerts import Alert, Notifier
from ehr_bridge.retry import Watch, watched
from ehr_bridge.security.transport import SecureSession

#: the whole POST, however slowly the receiver answers
WEBHOOK_TIMEOUT_SECONDS = 10.0
#: the whole SMTP session: connect, greeting, STARTTLS, login and the message
SMTP_TIMEOUT_SECONDS = 20.0


class WebhookNotifier:
    """POSTs each alert as JSON (``Alert.as_json``) to one URL."""

    def __init__(
        self, url: Secret, session: requests.Session | None = None, *, proxy_url: str | None = None
    ) -> None:
        self._url = url
        self._http = session or SecureSession(proxy_url=proxy_url)

    def __repr__(self) -> str:
        return f"WebhookNotifier(url={self._url!r})"

    def send(self, alert: Alert) -> None:
        """One POST; any failure or non-2xx answer raises TransientError (kept, retried)."""
        try:
            response = self._http.post(
                self._url.reveal(), json=alert.as_json(), timeout=WEBHOOK_TIMEOUT_SECONDS
            )
        except (requests.RequestException, TransientError) as exc:  # deadline: TransientError
            raise TransientError(f"alert webhook: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise TransientError(f"alert webhook answered HTTP {response.status_code}")


SmtpFactory = Callable[[str, int, Watch], Any]


def smtp_connect(host: str, port: int, watch: Watch) -> smtplib.SMTP:
    """A plain SMTP connection (upgraded with STARTTLS by the notifier when configured).

    The watch holds the session before it connects, so a server that drips its greeting
    is cut off at the deadline like one that drips anything later.
    """
    smtp = smtplib.SMTP(timeout=max(watch.remaining(), 0.001))
    watch.hold(lambda: _shut_down(smtp))
    try:
        smtp.connect(host, port)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _shut_down(smtp: smtplib.SMTP) -> None:
    """Wake the thread blocked on the session's socket (the plain one, under STARTTLS too)."""
    sock = getattr(smtp, "sock", None)
    if isinstance(sock, socket.socket):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class EmailNotifier:
    """Sends each alert as a short plain-text e-mail."""

    def __init__(
        self,
        config: ObservabilityConfig,
        password: Secret | None,
        username: str | None,
        smtp: SmtpFactory = smtp_connect,
    ) -> None:
        self._config = config
        self._password = password
        self._username = username
        self._smtp = smtp

    def send(self, alert: Alert) -> None:
        """One SMTP session per alert (alerts are rare); failures raise TransientError."""
        cfg = self._config
        with watched(SMTP_TIMEOUT_SECONDS, "alert e-mail") as watch:
            try:
                with self._smtp(cfg.smtp_host or "", cfg.smtp_port, watch) as smtp:
                    if cfg.smtp_starttls:
                        smtp.starttls()
                    if self._username and self._password is not None:
                        smtp.login(self._username, self._password.reveal())
                    smtp.send_message(self.message(alert))
            except (OSError, smtplib.SMTPException) as exc:
                if watch.fired is not None or watch.remaining() == 0:
                    raise watch.error("alert e-mail") from None
                raise TransientError(f"alert e-mail: {type(exc).__name__}") from None

    def message(self, alert: Alert) -> EmailMessage:
        """The e-mail for one alert."""
        message = EmailMessage()
        message["Subject"] = f"[ehr-bridge] {alert.state.upper()}: {alert.summary}"
        message["From"] = self._config.smtp_from or ""
        message["To"] = ", ".join(self._config.smtp_to)
        lines = [alert.summary, "", f"since: {alert.since.isoformat(timespec='seconds')}"]
        lines += [f"{key}: {value}" for key, value in alert.details.items()]
        lines += ["", "See docs/operations.md, 'When an alert arrives'."]
        message.set_content("\n".join(lines) + "\n")
        return message


def _env_secret(name: str, key: str) -> Secret:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set", key=key)
    return Secret(value)


def build_notifiers(config: ObservabilityConfig) -> list[Notifier]:
    """The notifiers the config asks for; a missing secret is a ConfigError naming its key."""
    notifiers: list[Notifier] = []
    if config.alert_webhook_env:
        url = _env_secret(config.alert_webhook_env, "observability.alert_webhook_env")
        if not url.reveal().startswith(("https://", "http://")):
            raise ConfigError("the webhook URL must start with https://", key="observability")
        notifiers.append(WebhookNotifier(url, proxy_url=config.alert_webhook_proxy_url))
    if config.smtp_host:
        username = None
        if config.smtp_username_env:
            key = "observability.smtp_username_env"
            username = _env_secret(config.smtp_username_env, key).reveal()
        password = None
        if config.smtp_password_env:
            password = _env_secret(config.smtp_password_env, "observability.smtp_password_env")
        notifiers.append(EmailNotifier(config, password, username))
    return notifiers
