"""``ehr-bridge sim``: run the IAPTUS-style trust simulator, or write its initial export.

The bearer token is read from an environment variable named on the command line, never
given on the command line itself, where it would land in shell history and ``ps``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from ehr_bridge.errors import ConfigError
from ehr_bridge.security.files import write_private
from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.sim.pcmis.cli import serve_pcmis
from ehr_bridge.sim.trust import DEFAULT_TOKEN, TrustSimulator

logger = logging.getLogger(__name__)

#: where ``serve`` looks for the token unless told otherwise (a variable name, not a secret)
TOKEN_ENV = "EHR_BRIDGE_SIM_TOKEN"  # noqa: S105
#: the CLI's exit code for a configuration problem (here: the port cannot be bound)
EXIT_CONFIG = 2

app = typer.Typer(
    help="Trust record system simulator (IAPTUS-style REST) for the demo and tests.",
    no_args_is_help=True,
)

Seed = Annotated[int, typer.Option(help="Seed of the synthetic caseload; same seed, same data.")]
Referrals = Annotated[
    int, typer.Option(min=0, help="Referrals referred on to the provider (plus ~1 in 5 elsewhere).")
]
Hostile = Annotated[int, typer.Option(min=0, help="Extra malformed referrals, of varied kinds.")]
ProviderCode = Annotated[str, typer.Option(help="Provider code referrals are referred on to.")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8765,
    seed: Seed = 1,
    referrals: Referrals = 50,
    hostile: Hostile = 0,
    provider_code: ProviderCode = "IESO01",
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the bearer token.")
    ] = TOKEN_ENV,
    fail_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of 503s.")] = 0.0,
    rate_limit_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of 429s (with Retry-After).")
    ] = 0.0,
    reset_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of resets.")] = 0.0,
    ambiguous_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of writes committed, then dropped.")
    ] = 0.0,
    latency_ms: Annotated[float, typer.Option(min=0, help="Added to every answer.")] = 0.0,
    retry_after: Annotated[float, typer.Option(min=0, help="Retry-After of 429s (s).")] = 1.0,
) -> None:
    """Serve the simulated trust API until Ctrl-C, so the bridge has a trust to talk to.

    The fault options can also be changed while it runs: PUT /_sim/faults.
    """
    token = os.environ.get(token_env) or DEFAULT_TOKEN
    simulator = TrustSimulator(
        seed=seed, referrals=referrals, hostile=hostile, provider_code=provider_code, token=token
    )
    simulator.faults.set_rates(
        FaultRates(
            error_5xx=fail_rate,
            rate_limit_429=rate_limit_rate,
            reset=reset_rate,
            ambiguous=ambiguous_rate,
            latency_ms=latency_ms,
            retry_after_seconds=retry_after,
        )
    )
    try:
        simulator.serve_forever(host, port, on_ready=_announce)
    except ConfigError as exc:
        typer.echo(f"error: {exc.safe_message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    typer.echo("Trust simulator stopped.")


def _announce(base_url: str) -> None:
    typer.echo(f"Trust simulator serving at {base_url} (API base {base_url}/api/v1)")
    logger.info("trust simulator listening")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="File to write the JSON export to ('-' for stdout).")],
    seed: Seed = 1,
    referrals: Referrals = 50,
    hostile: Hostile = 0,
    provider_code: ProviderCode = "IESO01",
) -> None:
    """Write the initial export without serving, e.g. to diff two seeds or feed a demo."""
    simulator = TrustSimulator(
        seed=seed, referrals=referrals, hostile=hostile, provider_code=provider_code
    )
    document = simulator.export()
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if str(out) == "-":
        typer.echo(text, nl=False)
        return
    write_private(out, text)
    typer.echo(f"Wrote {len(document['referrals'])} referrals to {out}")


app.command("serve-pcmis")(serve_pcmis)


if __name__ == "__main__":  # pragma: no cover - ``python -m ehr_bridge.cli.sim``
    app()
