"""What to tell an operator when a trust cannot be reached or refuses our credentials.

An HTTP adapter builds one ``Advice`` from its config key and options at start-up. When a
call fails to connect, the error names the host (from the config, never from an answer)
and the key that sets it; when the trust answers 401 or 403, it names the key that holds
the credential in use (``token_env``, ``token_file`` or the ``oauth2`` table) and says to
check it. The library's own text is never repeated (it can quote what the server sent),
and no credential is ever named, only where it is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ehr_bridge.errors import CredentialsRefusedError, UnreachableError
from ehr_bridge.security.foreign_text import exception_name


@dataclass(frozen=True)
class Advice:
    """The next step for connection failures of one adapter (``key`` is its config key)."""

    key: str
    host: str
    credential: str

    def unreachable(self, label: str, exc: BaseException, *, ambiguous: bool) -> UnreachableError:
        """The error for a call that could not connect (or lost its connection)."""
        return UnreachableError(
            f"{label}: {exception_name(exc)}: the connection to {self.host} failed;"
            f" check the network and the address in {self.key}.base_url",
            ambiguous=ambiguous,
        )

    def refused(self, detail: str, status: int) -> CredentialsRefusedError:
        """The error for a 401 or 403 answer (``detail``: what the answer reduces to)."""
        what = "refused our credentials" if status == 401 else "does not allow this to us"
        return CredentialsRefusedError(
            f"{detail}: the server {what} (HTTP {status}); check {self.credential}"
        )


def advice_for(options: Mapping[str, Any], key: str, base_url: str) -> Advice:
    """The advice for an adapter whose options are ``options`` at config key ``key``."""
    return Advice(key=key, host=host_of(base_url), credential=_credential(options, key))


def host_of(url: str) -> str:
    """``host`` or ``host:port`` of a URL, as the config writes it."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def _credential(options: Mapping[str, Any], key: str) -> str:
    """Where the credential in use is kept, as the config names it."""
    if options.get("oauth2"):
        return f"the OAuth2 client id and secret ({key}.oauth2)"
    if options.get("token_env"):
        name = options["token_env"]
        return f"the token in the environment variable {name} ({key}.token_env)"
    if options.get("token_file"):
        return f"the token in the file {options['token_file']} ({key}.token_file)"
    if options.get("auth") == "none":
        return f'whether the server needs a token ({key}.auth is "none")'
    return f"the token ({key}.token_env or {key}.token_file)"
