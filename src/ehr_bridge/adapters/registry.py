"""Adapters by name: built-ins as lazy ``module:function`` aliases.

A factory takes the adapter's options from the config and returns an object that
satisfies the role's protocols. Options are validated when the factory runs, which is
at start-up, before any job. An unknown name is answered with "did you mean" and the fix.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ehr_bridge.config import AdapterConfig
from ehr_bridge.errors import ConfigError

Role = Literal["trust", "provider"]

#: name -> (roles it can fill, "module:factory")
BUILTIN: dict[str, tuple[frozenset[str], str]] = {
    "iaptus": (frozenset({"trust"}), "ehr_bridge.adapters.iaptus:create"),
    "folder": (frozenset({"provider"}), "ehr_bridge.adapters.registry:create_folder"),
}


class AdapterFactory(Protocol):
    """What a registered factory looks like."""

    def __call__(
        self, options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
    ) -> Any:
        """Build the adapter."""
        ...


@dataclass(frozen=True)
class AdapterInfo:
    """A registered adapter for `adapters list` and error messages."""

    name: str
    roles: frozenset[str]
    target: str


def available() -> list[AdapterInfo]:
    """Every registered adapter, sorted by name."""
    return [AdapterInfo(n, roles, target) for n, (roles, target) in sorted(BUILTIN.items())]


def create_adapter(
    role: Role, config: AdapterConfig, *, base_dir: Path, key: str, provider_code: str
) -> Any:
    """Build the adapter a connection's config names for ``role``."""
    entry = BUILTIN.get(config.adapter)
    if entry is None:
        raise ConfigError(_unknown(config.adapter, role), key=f"{key}.adapter")
    roles, target = entry
    if role not in roles:
        raise ConfigError(
            f"adapter {config.adapter!r} cannot be used as {role} (it serves {', '.join(roles)})",
            key=f"{key}.adapter",
        )
    factory = _load(target)
    return factory(config.options(), base_dir=base_dir, key=key, provider_code=provider_code)


def _unknown(name: str, role: str) -> str:
    names = [n for n, (roles, _) in BUILTIN.items() if role in roles]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown adapter {name!r}; {hint}set adapter to one of: {', '.join(sorted(names))}"


def _load(target: str) -> AdapterFactory:
    module_name, _, attribute = target.partition(":")
    factory: AdapterFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def create_folder(options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str) -> Any:
    """The ``folder`` provider: ``path`` (relative to the config file) is the shared folder."""
    from ehr_bridge.adapters.folder import FolderProvider

    unknown = sorted(set(options) - {"path", "max_file_bytes"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}", key=f"{key}.{unknown[0]}")
    path = options.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError("set path to the folder shared with the provider", key=f"{key}.path")
    root = Path(path) if Path(path).is_absolute() else base_dir / path
    max_bytes = options.get("max_file_bytes", 5 * 1024 * 1024)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ConfigError("must be a positive whole number", key=f"{key}.max_file_bytes")
    return FolderProvider(root, max_file_bytes=max_bytes)
