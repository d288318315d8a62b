"""The ``homecare`` command: operate the system from a terminal.

homecare db provision          create the database, roles and schemas (administrator)
homecare demo                  place a batch of synthetic packages through the HTTP API
homecare tail                  follow the event streams, one decoded line per event
homecare lag                   consumer lag per group and partition, oldest unprocessed event
homecare kpis                  brokerage and market KPIs over a period, with RAG status
homecare dead-letters list     what the consumers could not apply, with origin and error
homecare dead-letters show N   one dead letter in full
homecare dead-letters replay   put chosen dead letters back on their original topic
homecare staff add NAME        a web console account (broker, ops or admin)
homecare reference generate-market   rewrite deploy/reference/providers.yaml from a seed
homecare kafka acls            on a secured cluster: create the topics and each service's ACLs
homecare providers credentials issue|list|revoke   provider API credentials (a council administrator)
homecare token [USER]          an access token of a demo user, for curl (development identity provider)
homecare bench                 the whole pipeline under load: placements/s, latency, CPU, memory
homecare simulate              replay a year of synthetic demand once per allocation policy
"""

from __future__ import annotations

import asyncio

import typer

from services.cli import bench, demo, operations, providers, simulate, staff
from services.runtime.logging import configure

app = typer.Typer(no_args_is_help=True, help="Operate the home care brokerage platform.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
ref_app = typer.Typer(no_args_is_help=True, help="Reference data.")
app.add_typer(db_app, name="db")
app.add_typer(ref_app, name="reference")
app.add_typer(operations.dead_letters_app, name="dead-letters")
kafka_app = typer.Typer(no_args_is_help=True, help="The Kafka cluster.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(providers.app, name="providers")
app.add_typer(staff.app, name="staff")
app.command("demo")(demo.demo)
app.command("tail")(operations.tail)
app.command("lag")(operations.lag)
app.command("kpis")(operations.kpis_command)
app.command("simulate")(simulate.simulate)
app.command("bench")(bench.bench)


@app.command("token")
def token(
    user: str = typer.Argument("demo-broker", help="A demo user: demo-broker, demo-manager, demo-admin..."),
) -> None:
    """Print an access token of a demo user from the identity provider (the development-only
    password grant: OIDC_ISSUER and HOMECARE_DEMO_PASSWORD, or the local Keycloak's)."""
    from services.runtime.oidc_client import TokenError, user_auth

    try:
        typer.echo(user_auth(user).token())
    except TokenError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@app.callback()
def _setup(log_format: str = typer.Option("console", envvar="LOG_FORMAT", help="console or json")) -> None:
    configure("cli", fmt=log_format, level="WARNING")


@db_app.command("provision")
def provision() -> None:
    """Create the database, one login role and one schema per service. Safe to run again."""
    from services.runtime.db import provision as run
    from services.runtime.settings import admin_settings

    asyncio.run(run(admin_settings().database_url))
    typer.echo("database provisioned: roles and schemas brokerage, providers, notifications, console")


@ref_app.command("generate-market")
def generate_market(seed: int = typer.Option(2021, help="Same seed, same market")) -> None:
    """Rewrite deploy/reference/providers.yaml with a synthetic framework of providers."""
    import yaml

    from services.runtime.reference import load_framework, reference_dir
    from services.simulator.market import generate_market as generate

    providers = generate(load_framework(), seed)
    header = (
        f"# Synthetic framework of home care providers (seed {seed}), written by\n"
        "# `homecare reference generate-market`. Edit by hand or regenerate; the providers service\n"
        "# seeds its registry from this file at start-up.\n"
    )
    path = reference_dir() / "providers.yaml"
    path.write_text(header + yaml.safe_dump({"providers": providers}, sort_keys=False, width=120))
    typer.echo(f"wrote {len(providers)} providers to {path}")


@kafka_app.command("acls")
def kafka_acls() -> None:
    """As the cluster's administrator (KAFKA_USERNAME/KAFKA_PASSWORD, KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT):
    create the topics, and let each service's principal read and write only its own topics and group."""
    from services.runtime.kafka import acl_plan, grant_service_acls
    from services.runtime.settings import admin_settings

    created = asyncio.run(grant_service_acls(admin_settings().kafka_bootstrap_servers))
    for service, grants in acl_plan().items():
        typer.echo(f"User:{service}: {len(grants)} ACLs on {', '.join(sorted({g[1] for g in grants}))}")
    typer.echo(f"{created} ACLs in place")


if __name__ == "__main__":
    app()
