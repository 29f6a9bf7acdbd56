"""One connection's checks: mapping, credentials, TLS, folders, the build, both sides reached.

The order is the order of dependence: a mapping that does not load or credentials that are
missing fail on their own line, and what needs them (building the connection as the
daemon does, asking the trust) is then not tried, so each problem is said once.
"""

from __future__ import annotations

from ehr_bridge.config import AppConfig, ConnectionConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping import Mapping, load_mapping
from ehr_bridge.mapping.check import check_mapping
from ehr_bridge.observability.doctor.folders import (
    Folder,
    check_folder,
    check_provider_folder,
    connection_folders,
    hl7_options,
)
from ehr_bridge.observability.doctor.model import Findings
from ehr_bridge.observability.doctor.network import (
    HTTP_TRUSTS,
    check_tls,
    probe_fhir_provider,
    probe_hl7,
    probe_trust,
)
from ehr_bridge.observability.doctor.secrets import check_token, quiet
from ehr_bridge.sync.connection import build_connection


def check_connection(
    found: Findings, app: AppConfig, index: int, connection: ConnectionConfig, *, timeout: float
) -> None:
    """Every check of one connection into ``found``, in the order the daemon depends on them."""
    if not connection.enabled:
        found.passed("config", "enabled = false: the daemon skips it, so doctor does too")
        return
    key = f"connection[{index}]"
    mapping = check_mapping_file(found, app, connection, key)
    credentials = True
    for side, adapter in (("trust", connection.trust), ("provider", connection.provider)):
        options, where = adapter.options(), f"{key}.{side}"
        ok = check_token(found, side, adapter.adapter, options, base_dir=app.base_dir, key=where)
        credentials = credentials and ok
        check_tls(found, side, options, base_dir=app.base_dir, key=where)
    folders = all([_check(found, folder) for folder in connection_folders(app, index, connection)])
    if mapping is not None and credentials:
        _build(found, app, index, connection, folders_in_place=folders)
    if credentials and not found.failed("config"):
        _reach(found, app, index, connection, mapping, timeout)


def check_mapping_file(
    found: Findings, app: AppConfig, connection: ConnectionConfig, key: str
) -> Mapping | None:
    """The ``mapping`` check: it loads and ``mapping check`` finds no error (else None)."""
    path = app.resolve(connection.mapping)
    if not path.is_file():
        found.fail(
            "mapping",
            f"mapping file {path} ({key}.mapping) does not exist",
            f"point {key}.mapping at the connection's mapping file",
        )
        return None
    fix = f"correct the mapping (`ehr-bridge mapping check {path}` lists every problem)"
    try:
        mapping = load_mapping(path)
    except ConfigError as exc:
        found.fail("mapping", exc.safe_message, fix)
        return None
    findings = check_mapping(mapping, adsm_enabled=app.reports.adsm_enabled)
    for finding in findings:
        said = f"{finding.key}: {finding.message}"
        if finding.level == "error":
            found.fail("mapping", said, fix)
        else:
            found.warn("mapping", said, fix)
    if any(f.level == "error" for f in findings):
        return None
    if not findings:
        found.passed(
            "mapping",
            f"mapping {mapping.name} ({path}) loads and covers every code each side sends",
        )
    return mapping


def _check(found: Findings, folder: Folder) -> bool:
    if folder.what == "provider folder":
        return check_provider_folder(found, folder)
    check = "provider" if folder.key.endswith("state_file") else "trust"
    if check_folder(found, check, folder):
        found.passed(check, f"{folder.what} {folder.path} is in place and writable")
        return True
    return False


def _build(
    found: Findings,
    app: AppConfig,
    index: int,
    connection: ConnectionConfig,
    *,
    folders_in_place: bool,
) -> None:
    """The ``config`` check of the connection: built as the daemon builds it at start-up.

    Building creates the adapters' folders, so it is done only once they all exist:
    doctor changes nothing on disk.
    """
    if not folders_in_place:
        found.warn(
            "config",
            "not built yet: the daemon creates the missing folders at its first start",
            "start it once (or `ehr-bridge sync --once` as its user), then run doctor again",
        )
        return
    try:
        with quiet("ehr_bridge.security.files"):
            built = build_connection(app, index, connection)
    except ConfigError as exc:
        found.fail("config", exc.safe_message, f"correct {exc.key or 'it'} in the config")
        return
    found.passed(
        "config",
        f"builds as the daemon builds it (trust {connection.trust.adapter}, "
        f"provider {connection.provider.adapter}, mapping {built.mapping.name})",
    )


def _reach(
    found: Findings,
    app: AppConfig,
    index: int,
    connection: ConnectionConfig,
    mapping: Mapping | None,
    timeout: float,
) -> None:
    key = f"connection[{index}]"
    trust, options = connection.trust.adapter, connection.trust.options()
    if trust in HTTP_TRUSTS:
        if mapping is not None or trust != "rest":  # rest reads its API from the mapping
            probe_trust(
                found,
                trust,
                options,
                base_dir=app.base_dir,
                key=f"{key}.trust",
                provider_code=connection.provider_org.code,
                mapping=mapping,
                timeout=timeout,
            )
    elif (hl7 := hl7_options(trust, options)) is not None:
        probe_hl7(found, hl7, key=f"{key}.trust", timeout=timeout)
    elif trust != "hl7v2":
        found.warn(
            "trust",
            f"doctor has no probe for adapter {trust!r}",
            f"check it with `ehr-bridge sync --once --connection {connection.name} --flow pull`",
        )
    provider = connection.provider.adapter
    if provider == "fhir-provider":
        probe_fhir_provider(
            found,
            connection.provider.options(),
            base_dir=app.base_dir,
            key=f"{key}.provider",
            timeout=timeout,
        )
    elif provider != "folder":
        found.warn(
            "provider",
            f"doctor has no probe for adapter {provider!r}",
            f"check it with `ehr-bridge sync --once --connection {connection.name} --flow deliver`",
        )
