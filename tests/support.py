"""Running the three services as separate OS processes, for the end-to-end and fault tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("providers", "brokerage", "notifications")
ADMIN_TOKEN = "test-admin-token"  # the brokerage team's token for the providers service's admin operations
DISCLOSURE_TOKEN = "test-disclosure-token"  # providers -> brokerage, for a person's details


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """Running service processes; restartable, so fault tests can kill and revive them."""

    env: dict[str, str]
    logs: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)  # process name -> service module

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str, service: str | None = None) -> None:
        """Start ``service`` (default: ``name``) as process ``name``; a second instance of a service
        gets a name of its own (e.g. ``brokerage-2``), its own port and log."""
        service = service or self.services.get(name, name)
        self.services[name] = service
        self.ports.setdefault(name, free_port())
        env = self.env | {f"{service.upper()}_HTTP_PORT": str(self.ports[name])}
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", f"services.{service}"], cwd=ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}; see {self.logs / (name + '.log')}")
            try:
                if httpx.get(f"{self.url(name)}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready; see {self.logs / (name + '.log')}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)




def start_stack(database_url: str, kafka: str, namespace: str, logs: Path, extra_env: dict[str, str] | None = None, *,
                console: bool = False, **settings: str) -> Stack:
    """The three services (``extra_env``/``settings`` add to their environment, e.g. short offer windows);
    with ``console``, then the web console as a client of their APIs."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_HTTP_PORT")}
    env |= {"DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka, "HOMECARE_NAMESPACE": namespace,
            "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
            "PROVIDERS_ADMIN_TOKEN": ADMIN_TOKEN, "PROVIDERS_DISCLOSURE_TOKEN": DISCLOSURE_TOKEN,
            "BROKERAGE_DISCLOSURE_TOKEN": DISCLOSURE_TOKEN,
            # A receiver that was down is tried again within seconds, not minutes.
            "PROVIDERS_WEBHOOK_BACKOFF_INITIAL_SECONDS": "0.2", "PROVIDERS_WEBHOOK_BACKOFF_MAX_SECONDS": "1"}
    ports = {name: free_port() for name in SERVICES}  # known up front: providers calls the brokerage
    env["PROVIDERS_BROKERAGE_URL"] = f"http://127.0.0.1:{ports['brokerage']}"
    env |= (extra_env or {}) | settings
    stack = Stack(env=env, logs=logs, ports=ports)
    for name in SERVICES:
        stack.start(name)
    for name in SERVICES:
        stack.wait_ready(name)
    if console:
        stack.env |= {f"CONSOLE_{name.upper()}_URL": stack.url(name) for name in SERVICES}
        stack.start("console")
        stack.wait_ready("console")
    return stack


def stop_stack(stack: Stack) -> dict[str, int]:
    """SIGTERM every running service; returns their exit codes (a clean shutdown is 0)."""
    return {name: stack.stop(name) for name, proc in stack.procs.items() if proc.poll() is None}


def event_of(record) -> dict | None:
    """The event in a Kafka record, or None for the garbage other tests put on the topics."""
    try:
        event = json.loads(record.value)
    except (ValueError, TypeError):
        return None
    return event if isinstance(event, dict) and "event_type" in event else None


async def drop_database(infra, name: str) -> None:
    admin = await asyncpg.connect(infra.database_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


PERSONAL_FIELDS = ("full_name", "address", "postcode", "phone", "email", "nhs_number", "date_of_birth", "care_notes")


async def personal_values(database_url: str) -> set[str]:
    """Every personal value the brokerage holds in this session's database (every test's seeded
    persons), as the strings a leak would contain; NHS numbers also in their spaced form."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT {', '.join(PERSONAL_FIELDS)} FROM brokerage.persons")
    finally:
        await conn.close()
    found = set()
    for row in rows:
        for name in PERSONAL_FIELDS:
            if row[name]:
                found.add(str(row[name]))
        number = row["nhs_number"]
        found.add(f"{number[:3]} {number[3:6]} {number[6:]}")
    return found
