"""``ehr-bridge mapping``: the integrator's toolkit for mapping files.

``check`` validates a file and its code maps, ``test`` runs the golden fixtures beside it
and reports what the mapping never reads or never fills, ``preview`` shows the FHIR (or the
write payload) one record would become, ``diff`` shows what a change to a mapping would
change over a folder of records, and ``schema`` prints the JSON Schema editors use. None
of them reads the config, the state database or the network.

Exit codes follow docs/cli.md: 0 done, 1 failed (a golden case, a record that would be
quarantined, or ``diff --exit-code`` with changes), 2 a mapping file or input that is not
valid, 3 a file or folder that does not exist.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_FAILED, EXIT_NOT_FOUND, fail, print_json
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import ConfigError, RecordError
from ehr_bridge.mapping import Mapping, export_json_schema, load_mapping
from ehr_bridge.mapping.check import check_mapping
from ehr_bridge.mapping.golden import GoldenReport, golden_dir, run_golden
from ehr_bridge.mapping.preview import Change, changes, preview

app = typer.Typer(
    help="Mapping files: check, test against golden fixtures, preview a record, diff two versions.",
    no_args_is_help=True,
)

MappingArg = Annotated[Path, typer.Argument(help="Mapping file (YAML).", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ShowValues = Annotated[
    bool,
    typer.Option("--show-values", help="Print the values that differ (they may be patient data)."),
]


def _load(path: Path) -> Mapping:
    if not path.is_file():
        raise fail(f"mapping file not found: {path}", EXIT_NOT_FOUND)
    try:
        return load_mapping(path)
    except ConfigError as exc:
        raise fail(f"invalid mapping: {exc.safe_message}", EXIT_CONFIG) from None


def _read_json(path: Path) -> Any:
    if str(path) == "-":
        text = sys.stdin.read()
    elif not path.is_file():
        raise fail(f"record file not found: {path}", EXIT_NOT_FOUND)
    else:
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        raise fail(f"{path} is not JSON", EXIT_CONFIG) from None


@app.command()
def check(
    file: MappingArg,
    as_json: AsJson = False,
    adsm: Annotated[
        bool,
        typer.Option("--adsm", help="Also require codes for the ADSMs ([reports] adsm_enabled)."),
    ] = False,
) -> None:
    """Validate a mapping: schema, expressions, transforms, code-map names and contents."""
    mapping = _load(file)
    findings = check_mapping(mapping, adsm_enabled=adsm)
    errors = [f for f in findings if f.level == "error"]
    if as_json:
        print_json({"file": str(file), "ok": not errors, "findings": [asdict(f) for f in findings]})
    else:
        for finding in findings:
            typer.echo(f"{finding.level:8} {finding.key}: {finding.message}")
        kinds = ", ".join(sorted(mapping.outbound_kinds())) or "none"
        api = "yes" if mapping.api else "no"
        verdict = "invalid" if errors else "ok"
        typer.echo(f"{file}: {verdict} (mapping {mapping.name}; outbound: {kinds}; api: {api})")
    if errors:
        raise typer.Exit(EXIT_CONFIG)


@app.command("test")
def run_tests(
    file: MappingArg,
    golden: Annotated[
        Path | None, typer.Option(help="Fixture folder (default: <name>.golden/ beside FILE).")
    ] = None,
    show_values: ShowValues = False,
    as_json: AsJson = False,
) -> None:
    """Run the golden fixtures; report unread source fields and rules that never fired."""
    mapping = _load(file)
    folder = golden or golden_dir(file)
    if not folder.is_dir():
        raise fail(f"golden folder not found: {folder}", EXIT_NOT_FOUND)
    try:
        report = run_golden(mapping, folder)
    except ConfigError as exc:
        raise fail(f"bad fixture: {exc.safe_message}", EXIT_CONFIG) from None
    if not report.cases:
        raise fail(f"no golden cases (*.input.json) in {folder}", EXIT_NOT_FOUND)
    if as_json:
        print_json(_report_json(report, show_values))
    else:
        _print_report(report, show_values)
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def _change_json(change: Change, show_values: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"path": change.path, "kind": change.kind}
    if show_values:
        found.update(old=change.old, new=change.new)
    return found


def _report_json(report: GoldenReport, show_values: bool) -> dict[str, Any]:
    cases = [
        {
            "case": case.name,
            "section": case.section,
            "passed": case.passed,
            "error": case.error,
            "differences": {
                name: [_change_json(c, show_values) for c in found]
                for name, found in case.differences.items()
                if found
            },
        }
        for case in report.cases
    ]
    return {
        "passed": report.passed,
        "cases": cases,
        "unread_source_fields": report.unread_fields,
        "rules_never_fired": report.never_fired,
    }


def _change_line(change: Change, show_values: bool) -> str:
    line = f"    {change.kind:8} {change.path}"
    if show_values:
        line += f": {json.dumps(change.old)} -> {json.dumps(change.new)}"
    return line


def _print_report(report: GoldenReport, show_values: bool) -> None:
    for case in report.cases:
        typer.echo(f"{'PASS' if case.passed else 'FAIL'}  {case.name} ({case.section})")
        if case.error:
            typer.echo(f"    {case.error}")
        for name, found in case.differences.items():
            for change in found:
                typer.echo(_change_line(change, show_values) + f"  [{name}]")
    for title, table in (
        ("source fields no rule reads", report.unread_fields),
        ("rules that never produced a value", report.never_fired),
    ):
        for section, names in sorted(table.items(), key=lambda item: item[0] != "inbound"):
            if names:
                typer.echo(f"{title} ({section}): {', '.join(names)}")
    failed = sum(1 for case in report.cases if not case.passed)
    typer.echo(f"{len(report.cases)} cases, {failed} failed")


@app.command("preview")
def preview_command(
    file: MappingArg,
    record: Annotated[
        Path,
        typer.Argument(
            help="A trust record, or an outbound {kind, resource, context} (JSON; '-' for stdin).",
            show_default=False,
        ),
    ],
    connection: Annotated[str, typer.Option(help="Connection name (FHIR ids use it).")] = "preview",
    provider_code: Annotated[str, typer.Option(help="Provider code.")] = "IESO01",
    provider_display: Annotated[
        str, typer.Option(help="Provider name.")
    ] = "Online typed therapy provider",
    facts: Annotated[
        bool, typer.Option("--facts", help="Print the canonical facts instead.")
    ] = False,
) -> None:
    """Dry run: print the FHIR bundle (or write payload) one record would become."""
    mapping = _load(file)
    document = _read_json(record)
    provider = ProviderRef(code=provider_code, display=provider_display)
    try:
        shown = preview(mapping, document, connection=connection, provider=provider)
    except RecordError as exc:
        raise fail(f"the record would be set aside: {exc.safe_message}", EXIT_FAILED) from None
    except ConfigError as exc:
        raise fail(f"invalid mapping: {exc.safe_message}", EXIT_CONFIG) from None
    print_json(shown.facts if facts and shown.facts is not None else shown.output)


def _record_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder]
    inputs = sorted(folder.glob("*.input.json"))
    expected = (".facts.json", ".payload.json", ".fhir.json")
    return inputs or sorted(p for p in folder.glob("*.json") if not p.name.endswith(expected))


def _outcome(mapping: Mapping, document: Any) -> tuple[Any, str | None]:
    try:
        return preview(mapping, document).output, None
    except (RecordError, ConfigError) as exc:
        return None, exc.safe_message


def _compare(old: Mapping, new: Mapping, document: Any) -> dict[str, Any]:
    before, old_error = _outcome(old, document)
    after, new_error = _outcome(new, document)
    if old_error or new_error:
        status = "now fails" if not old_error else "now maps" if not new_error else "still fails"
        if old_error and new_error and old_error != new_error:
            status = "fails differently"
        return {"status": status, "old_error": old_error, "new_error": new_error, "changes": []}
    found = changes(before, after)
    return {"status": "changed" if found else "unchanged", "changes": found}


#: diff statuses that mean "this record's outcome would not change"
_SAME = frozenset({"unchanged", "still fails"})


@app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The mapping in use.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The changed mapping.", show_default=False)],
    records: Annotated[
        Path, typer.Option("--records", help="Folder (or file) of records to map with both.")
    ],
    show_values: ShowValues = False,
    as_json: AsJson = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when any record's output changes.")
    ] = False,
) -> None:
    """Map every record with OLD and NEW and show what would change, before deploying NEW."""
    old_mapping, new_mapping = _load(old), _load(new)
    if not records.exists():
        raise fail(f"records not found: {records}", EXIT_NOT_FOUND)
    files = _record_files(records)
    if not files:
        raise fail(f"no JSON records in {records}", EXIT_NOT_FOUND)
    results = {}
    for path in files:
        document = _read_json(path)
        for index, item in enumerate(document if isinstance(document, list) else [document]):
            label = path.name if not isinstance(document, list) else f"{path.name}#{index}"
            results[label] = _compare(old_mapping, new_mapping, item)
    _print_diff(results, show_values, as_json)
    if exit_code and any(r["status"] not in _SAME for r in results.values()):
        raise typer.Exit(EXIT_FAILED)


def _print_diff(results: dict[str, dict[str, Any]], show_values: bool, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                label: {**r, "changes": [_change_json(c, show_values) for c in r["changes"]]}
                for label, r in results.items()
            }
        )
        return
    for label, result in results.items():
        typer.echo(f"{label}: {result['status']}")
        for error_key in ("old_error", "new_error"):
            if result.get(error_key):
                typer.echo(f"    {error_key.replace('_', ' ')}: {result[error_key]}")
        for change in result["changes"]:
            typer.echo(_change_line(change, show_values))
    statuses = [r["status"] for r in results.values()]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    typer.echo(f"{len(results)} records: {counts}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of mapping files (the published mappings/mapping.schema.json)."""
    typer.echo(export_json_schema(), nl=False)
