"""The ``homecare`` command: operate the system from a terminal.

homecare db provision          create the database, roles and schemas (administrator)
homecare demo                  place a batch of synthetic packages through the HTTP API
homecare tail                  follow the event streams, one decoded line per event
homecare lag                   consumer lag per group and partition, oldest unprocessed event
homecare kpis                  brokerage and market KPIs over a period, with RAG status (the reporting service's)
homecare reporting rebuild     replay what the event topics still hold into the reporting projection
homecare reporting bench       the projection's figures on a generated history (rebuild events/s, KPI p95)
homecare reporting generate    years of generated county demand onto the topics of a namespace (tests, benchmarks)
homecare dead-letters list     what the consumers could not apply, with origin and error
homecare dead-letters show N   one dead letter in full
homecare dead-letters replay   put chosen dead letters back on their original topic
homecare outbox parked         outbox rows Kafka refused for good; outbox retry|discard ID
homecare staff add NAME        a web console account (broker, ops or admin)
homecare reference generate-market   rewrite deploy/reference/providers.yaml from a seed
homecare kafka acls            on a secured cluster: create the topics and each service's ACLs
homecare providers credentials issue|list|revoke   provider API credentials (a council administrator)
homecare providers import-cqc FILE   CQC ratings from the CQC care directory CSV (contracts and quality)
homecare token [USER]          an access token of a demo user, for curl (development identity provider)
homecare bench                 the whole pipeline under load: placements/s, latency, CPU, memory
homecare bench-pages           every console page's time with 50,000 packages in the tables
homecare bench-rebalance       the rebalance pauses the other instances see when one dies and comes back
homecare simulate              replay a year of synthetic demand once per allocation policy
homecare sandbox start|stop|status|credential   the sandbox providers' developers build against
"""

from __future__ import annotations

import sys

# httpx imports its own command-line client when rich, click and pygments are installed (typer
# brings them): about 0.4 s of every `homecare` command's start, for a client this program never
# runs. A None entry makes that import fail, and httpx then defines a stub in its place.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import typer  # noqa: E402

from services.cli import bench, demo, operations, output, providers, reporting, sandbox, simulate, staff  # noqa: E402

# Commands that only ask an API over HTTP and log nothing of their own: structlog (which imports
# rich for its console renderer, about 0.3 s) is not configured for them; library warnings
# (httpx's, through the standard library) still reach stderr.
QUIET_COMMANDS = frozenset({"kpis", "token"})

app = typer.Typer(no_args_is_help=True, help="Operate the home care brokerage platform.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
ref_app = typer.Typer(no_args_is_help=True, help="Reference data.")
app.add_typer(db_app, name="db")
app.add_typer(ref_app, name="reference")
app.add_typer(operations.dead_letters_app, name="dead-letters")
app.add_typer(operations.outbox_app, name="outbox")
kafka_app = typer.Typer(no_args_is_help=True, help="The Kafka cluster.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(providers.app, name="providers")
app.add_typer(staff.app, name="staff")
app.add_typer(reporting.app, name="reporting")
app.add_typer(sandbox.app, name="sandbox")
app.command("demo")(demo.demo)
app.command("tail")(operations.tail)
app.command("lag")(operations.lag)
app.command("kpis")(operations.kpis_command)
app.command("simulate")(simulate.simulate)
app.command("bench-replay")(simulate.replay_bench)
app.command("bench")(bench.bench)
app.command("bench-pages")(bench.bench_pages)
app.command("bench-rebalance")(bench.bench_rebalance)


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
def _setup(
    ctx: typer.Context, log_format: str = typer.Option("console", envvar="LOG_FORMAT", help="console or json")
) -> None:
    if ctx.invoked_subcommand in QUIET_COMMANDS:
        from services.runtime.logging import configure_libraries

        configure_libraries()
        return
    from services.runtime.logging import configure

    configure("cli", fmt=log_format, level="WARNING")


@db_app.command("provision")
def provision() -> None:
    """Create the database, one login role and one schema per service. Safe to run again."""
    import asyncio

    from services.runtime.db import provision as run
    from services.runtime.settings import SCHEMA_OWNERS, admin_settings

    asyncio.run(run(admin_settings().database_url))
    # From the list provisioning works through (it had been written out here and left reporting out).
    typer.echo(output.paragraph(f"database provisioned: roles and schemas {', '.join(SCHEMA_OWNERS)}"))


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
    typer.echo(output.paragraph(f"wrote {len(providers)} providers to {path}"))


@kafka_app.command("acls")
def kafka_acls(
    list_only: bool = typer.Option(False, "--list", help="Only show the ACLs in place on this namespace's topics"),
) -> None:
    """As the cluster's administrator: create the topics, and grant each principal its rights (a
    service writes only its own topics and the dead letters, reads what it consumes, uses its own
    group; console and reporting only read; ops replays dead letters). Safe to run again.

    The administrator's identity: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_USERNAME and
    KAFKA_PASSWORD, or, on the local broker of deploy/kafka.sh, its credentials file."""
    import asyncio

    from services.runtime.kafka import describe_acls, grant_service_acls, kafka_security, secured
    from services.runtime.settings import admin_settings

    settings = admin_settings()
    security = kafka_security(settings)
    if not secured(security):
        typer.echo("this cluster is open (PLAINTEXT): no ACLs to grant; the services create their topics")
        return
    if not list_only:
        created = asyncio.run(grant_service_acls(settings.kafka_bootstrap_servers, security))
        typer.echo(f"{created} ACLs in place (list them: homecare kafka acls --list)")
        return
    for acl in asyncio.run(describe_acls(settings.kafka_bootstrap_servers, security)):
        typer.echo(str(acl))


if __name__ == "__main__":
    app()
