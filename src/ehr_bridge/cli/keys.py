"""`ehr-bridge keys` (encryption at rest) and `ehr-bridge retention` (purging old payloads).

A new store: ``keys generate`` (no argument) creates the keyring file the config names;
without a key the store is not opened at all. Rotation, step by step (docs/security.md):
``keys generate [KEYFILE]`` puts a new key first in the keyring file, keeping the old
ones; ``keys rotate`` re-seals every row with it; ``keys status`` shows when no row uses
an old key any more, and the old key can then be removed from the file. Nothing here
ever prints a key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ehr_bridge.cli.context import EXIT_CONFIG, config_error, fail, obj, print_json
from ehr_bridge.errors import ConfigError, EhrBridgeError
from ehr_bridge.security.crypto import KeyRing, generate_key
from ehr_bridge.security.files import open_private, private_dir
from ehr_bridge.security.keyring import open_store, resolve
from ehr_bridge.security.rotation import key_usage, rotate
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.retention import (
    RETENTION_FLOW,
    STORE_WIDE,
    purge_retained,
    retention_counts,
)

app = typer.Typer(help="Encryption keys for payloads at rest.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention of payloads (purge after reconcile).")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _store(ctx: typer.Context) -> Store:
    try:
        return open_store(obj(ctx).config())
    except ConfigError as exc:
        raise config_error(exc) from None


@app.command("generate")
def generate_command(
    ctx: typer.Context,
    keyfile: Annotated[
        Path | None,
        typer.Argument(help="Keyring file (default: the config's encryption_key_file)."),
    ] = None,
) -> None:
    """Put a new random key first in KEYFILE (created 0600); older keys stay to decrypt.

    Without KEYFILE it is the file the config's ``encryption_key_file`` names: the step
    that makes a new config's store encrypted. The file is replaced in one rename, so a
    crash midway never loses the older keys.
    """
    keyfile = keyfile or _configured_keyfile(ctx)
    key = generate_key()
    try:
        old = keyfile.read_text("utf-8") if keyfile.exists() else ""
        _replace_private(keyfile, key + "\n" + old)
    except OSError as exc:
        raise fail(
            f"cannot write the keyring file {keyfile} ({exc.strerror})", EXIT_CONFIG
        ) from None
    ring = KeyRing.parse(key)
    typer.echo(f"new active key {ring.active_id} written to {keyfile}")
    if old.strip():
        typer.echo("run `ehr-bridge keys rotate` to re-encrypt the rows under older keys")


def _replace_private(path: Path, text: str) -> None:
    """Write ``path`` as a new 0600 file, then rename it over the old one."""
    private_dir(path.parent)
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    with open_private(fresh, "x") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(fresh, path)


def _configured_keyfile(ctx: typer.Context) -> Path:
    """The keyring file the config names, for ``keys generate`` without an argument."""
    config = obj(ctx).config()
    name = config.security.encryption_key_file
    if not name:
        raise config_error(
            ConfigError(
                "name the keyring file here first (or give KEYFILE): keys generate writes "
                "a file, never an environment variable",
                key="security.encryption_key_file",
            )
        )
    return resolve(name, config.base_dir)


@app.command("status")
def status_command(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The active key, the keys in the ring, and how many rows each key seals."""
    store = _store(ctx)
    try:
        ring = store.cipher.ring
        rows = key_usage(store)
    finally:
        store.close()
    active = ring.active_id if ring else None
    if as_json:
        print_json({"active_key": active, "keys": ring.ids if ring else [], "rows": rows})
        return
    typer.echo(f"active key: {active or 'none (payloads stored unencrypted)'}")
    for table, counts in rows.items():
        listed = ", ".join(f"{key}: {n}" for key, n in counts.items()) or "no rows"
        typer.echo(f"{table:>10}: {listed}")


@app.command("rotate")
def rotate_command(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Re-encrypt every payload not on the active key (plain rows included); resumable."""
    store = _store(ctx)
    try:
        counts = rotate(store)
    except ConfigError as exc:
        raise config_error(exc) from None
    except EhrBridgeError as exc:
        raise fail(exc.safe_message) from None
    finally:
        store.close()
    if as_json:
        print_json({"active_key": counts.active_key, "resealed": dict(counts.resealed)})
        return
    moved = ", ".join(f"{t}: {counts.resealed[t]}" for t in ("resource", "quarantine"))
    typer.echo(f"re-encrypted with key {counts.active_key}: {moved}")


@retention_app.command("purge")
def purge_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Empty payloads of reconciled referrals, and delete kept files, past retention_days.

    The files are the connections' plain copies of what the store holds: the provider
    folder's ``sessions/processed`` and ``sessions/rejected``, an HL7 v2 ``received``
    folder (docs/security.md, Retention). Only counts are printed, never a file's content.
    The daemon runs the same purge every ``retention_interval_hours``.
    """
    store = _store(ctx)
    config = obj(ctx).config()  # read already: _store opened the store it names
    try:
        connections = build_connections(config)
        payloads, files = purge_retained(connections, store, config.security, dry_run=dry_run)
    except ConfigError as exc:
        raise config_error(exc) from None
    except EhrBridgeError as exc:
        raise fail(exc.safe_message) from None
    except OSError as exc:
        raise fail(f"cannot delete a kept file ({type(exc).__name__})") from None
    finally:
        store.close()
    if as_json:
        print_json(retention_counts(payloads, files))
        return
    verb = "would empty" if dry_run else "emptied"
    typer.echo(
        f"{payloads.referrals} referrals reconciled and past retention: {verb} "
        f"{payloads.resources} resources, {payloads.patients} patients, "
        f"{payloads.quarantine} quarantine payloads"
    )
    listed = ", ".join(f"{folder}: {n}" for folder, n in sorted(files.items()))
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"kept files past retention: {verb} {files.total()}{f' ({listed})' if listed else ''}"
    )


@retention_app.command("status")
def retention_status_command(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The retention period, how often the daemon purges, and its last purge (counts only)."""
    store = _store(ctx)
    security = obj(ctx).config().security
    try:
        last = store.last_runs(STORE_WIDE).get(RETENTION_FLOW)
    finally:
        store.close()
    data: dict[str, Any] = {
        "retention_days": security.retention_days,
        "interval_hours": security.retention_interval_hours if security.retention_days else None,
        "last_purge": None,
    }
    if last is not None:
        data["last_purge"] = {
            "finished_at": last.finished_at.isoformat(timespec="seconds"),
            "ok": last.ok,
            "counts": json.loads(last.counts),
            "error": last.error,
        }
    if as_json:
        print_json(data)
        return
    if security.retention_days is None:
        typer.echo("retention: off (no [security] retention_days): payloads are kept")
    else:
        typer.echo(
            f"retention: {security.retention_days} days; the daemon purges every "
            f"{security.retention_interval_hours:g} h"
        )
    typer.echo(f"last purge: {_purge_line(data['last_purge'])}")


def _purge_line(last: dict[str, Any] | None) -> str:
    if last is None:
        return "none recorded"
    if not last["ok"]:
        return f"{last['finished_at']} FAILED: {last['error']}"
    counts = last["counts"]
    files = sum(counts.get("files", {}).values())
    return (
        f"{last['finished_at']} ok: {counts.get('referrals', 0)} referrals,"
        f" {counts.get('resources', 0)} resources, {counts.get('patients', 0)} patients,"
        f" {counts.get('quarantine', 0)} quarantine payloads, {files} kept files"
    )
