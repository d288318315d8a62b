"""``homecare sandbox start|stop|status|credential``: the sandbox for providers' developers.

The same four services, started as processes by the same code as the tests' and the benchmark's
stacks (:func:`services.bench.processes.start_stack`), on a topic namespace (``sandbox``) and a
database (``homecare_sandbox``) of their own on the same Kafka, PostgreSQL and identity provider,
with ``HOMECARE_SANDBOX=true``: test offers can be triggered (``POST /me/sandbox/offers``) and
nothing reaches a real person (the notifications service refuses to start with an SMTP server or a
GOV.UK Notify key, and sends email and texts to the log). docs/guide/sandbox.md, decision 0116.

Where it runs is kept in ``<state dir>/state.json`` (default ``.run/sandbox/``): the processes'
ids, the ports, the namespace and the database, for ``status`` and ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer

from services.cli import output

app = typer.Typer(no_args_is_help=True, help="The sandbox: the same API for providers' developers, nothing real.")

NAMESPACE = "sandbox"
DATABASE = "homecare_sandbox"
PORT_BASE = 8100  # brokerage 8101, providers 8102, notifications 8103, reporting 8105 (the usual + 100)
OFFSETS = {"brokerage": 1, "providers": 2, "notifications": 3, "reporting": 5}
# Every `homecare` command loads this module: no settings (pydantic) imported until a command runs.
ROOT = Path(__file__).resolve().parents[2]
# What could reach a real person, never inherited from the shell that starts the sandbox (a sandbox
# with them set would refuse to start anyway: ServiceSettings.sandbox_problems).
OUTSIDE_CHANNEL_SETTINGS = ("NOTIFICATIONS_SMTP_HOST", "NOTIFICATIONS_NOTIFY_API_KEY")

STATE_DIR = typer.Option(
    None, envvar="HOMECARE_SANDBOX_DIR", help="Where the sandbox keeps its state and logs (default .run/sandbox)"
)


def state_dir(given: Path | None) -> Path:
    return given or Path(os.environ.get("HOMECARE_RUN_DIR") or ROOT / ".run") / "sandbox"


def read_state(folder: Path) -> dict[str, Any] | None:
    path = folder / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def sandbox_env(folder: Path, *, allow_local_webhooks: bool) -> dict[str, str]:
    """The settings that make a stack the sandbox: ``HOMECARE_SANDBOX``, no outside channel, and a
    key sealing its secrets made once for this sandbox (kept in the state folder, mode 600)."""
    key_file = folder / "secrets-key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.touch(mode=0o600)
        key_file.write_text(Fernet.generate_key().decode())
    env = {"HOMECARE_SANDBOX": "true", "SECRETS_KEYS": key_file.read_text().strip()}
    env |= {name: "" for name in OUTSIDE_CHANNEL_SETTINGS}
    if allow_local_webhooks:  # a developer's receiver on this machine, over plain HTTP
        env |= {"OUTBOUND_ALLOW_HTTP": "true", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
    return env


def start_sandbox(
    folder: Path, *, namespace: str, database: str, port_base: int, allow_local_webhooks: bool
) -> dict[str, Any]:
    """Provision the sandbox's database and topics, start its services and wait until each is
    ready; returns the state written to ``folder/state.json``."""
    import asyncio

    from services.bench import processes
    from services.runtime.db import provision
    from services.runtime.settings import admin_settings

    folder.mkdir(parents=True, exist_ok=True)
    settings = admin_settings()
    parts = urlsplit(settings.database_url)
    database_url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    asyncio.run(provision(database_url))
    ports = {name: port_base + OFFSETS[name] for name in OFFSETS} if port_base else None
    stack = processes.start_stack(
        database_url,
        settings.kafka_bootstrap_servers,
        namespace,
        folder / "logs",
        extra_env=sandbox_env(folder, allow_local_webhooks=allow_local_webhooks),
        ports=ports,
    )
    state = {
        "namespace": namespace,
        "database": database,
        "urls": {name: stack.url(name) for name in stack.procs},
        "internal_urls": {name: stack.internal_url(name) for name in stack.procs},
        "pids": {name: proc.pid for name, proc in stack.procs.items()},
        "logs": str(folder / "logs"),
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    return state


def stop_sandbox(folder: Path, grace: float = 30) -> dict[str, str]:
    """SIGTERM each of the sandbox's processes, SIGKILL one still running after ``grace`` seconds;
    the state file goes. Returns how each ended (stopped, killed, not running)."""
    state = read_state(folder)
    if state is None:
        return {}
    ended = {}
    for name, pid in state["pids"].items():
        if not alive(pid):
            ended[name] = "not running"
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            ended[name] = "killed"
        else:
            ended[name] = "stopped"
    (folder / "state.json").unlink()
    return ended


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status when it is our child (the process that started the sandbox)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def sandbox_status(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each service: its URL, whether its process runs and whether it answers ready."""
    import httpx

    found = {}
    for name, pid in state["pids"].items():
        ready = False
        if alive(pid):
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{state['internal_urls'][name]}/health/ready", timeout=3).status_code == 200
        found[name] = {"url": state["urls"][name], "running": alive(pid), "ready": ready}
    return found


@app.command("start")
def start(
    namespace: str = typer.Option(NAMESPACE, help="The sandbox's topic namespace"),
    database: str = typer.Option(DATABASE, help="The sandbox's database, on the same PostgreSQL server"),
    port_base: int = typer.Option(PORT_BASE, help="API ports: base + 1 brokerage, +2 providers, ... (0: any free)"),
    allow_local_webhooks: bool = typer.Option(
        True, help="Let webhooks go to http:// addresses on this machine (a developer's receiver)"
    ),
    folder: Path | None = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the state as JSON only"),
) -> None:
    """Start the sandbox: the same services, on a namespace and a database of their own."""
    where = state_dir(folder)
    running = read_state(where)
    if running and any(alive(pid) for pid in running["pids"].values()):
        typer.echo(f"the sandbox is already running (homecare sandbox status; state in {where})", err=True)
        raise typer.Exit(1)
    state = start_sandbox(
        where, namespace=namespace, database=database, port_base=port_base, allow_local_webhooks=allow_local_webhooks
    )
    if as_json:
        output.echo_json(state)
        return
    room = output.width()
    lines = [f"sandbox running: namespace {namespace}, database {database}; logs in {state['logs']}"]
    lines += [f"  {name:<14} {url}" for name, url in state["urls"].items()]
    lines.append("A provider's credential: homecare sandbox credential PROVIDER_ID; stop: homecare sandbox stop")
    output.echo("\n".join(output.paragraph(line, room) for line in lines))


@app.command("stop")
def stop(folder: Path | None = STATE_DIR) -> None:
    """Stop the sandbox's services (its database and topics are kept for the next start)."""
    ended = stop_sandbox(state_dir(folder))
    if not ended:
        typer.echo("the sandbox is not running")
        return
    typer.echo(", ".join(f"{name} {how}" for name, how in ended.items()))


@app.command("status")
def status(
    folder: Path | None = STATE_DIR, as_json: bool = typer.Option(False, "--json", help="Print JSON only")
) -> None:
    """Whether each of the sandbox's services runs and is ready; exit 1 if any is not."""
    state = read_state(state_dir(folder))
    if state is None:
        typer.echo("the sandbox is not running")
        raise typer.Exit(1)
    found = sandbox_status(state)
    if as_json:
        output.echo_json(found)
    else:
        for name, s in found.items():
            word = "ready" if s["ready"] else ("running, not ready" if s["running"] else "stopped")
            typer.echo(f"{name:<14} {word:<20} {s['url']}")
    if not all(s["ready"] for s in found.values()):
        raise typer.Exit(1)


@app.command("credential")
def credential(
    provider_id: str,
    folder: Path | None = STATE_DIR,
) -> None:
    """Issue a sandbox credential for one of the sandbox's providers (its synthetic market), its
    adapter set to ``portal`` if it was ``automatic`` (so your system answers, not the rules);
    prints the token. As ``HOMECARE_CLI_USER`` (default demo-admin), a council administrator."""
    from services.cli.providers import _accepted, _client

    state = read_state(state_dir(folder))
    if state is None:
        typer.echo("the sandbox is not running: homecare sandbox start", err=True)
        raise typer.Exit(1)
    with _client(state["urls"]["providers"]) as client:
        provider = _accepted(client.get(f"/providers/{provider_id}")).json()
        if provider.get("adapter") == "automatic":
            _accepted(client.patch(f"/providers/{provider_id}/adapter", json={"kind": "portal"}))
        body = _accepted(client.post(f"/providers/{provider_id}/credentials", json={"label": "sandbox"})).json()
    typer.echo(f"sandbox credential {body['credential_id']} for {provider_id} at {state['urls']['providers']}")
    typer.echo(body["token"])
