"""The services as separate OS processes: for the end-to-end and fault tests and the benchmark."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from services.runtime.oidc_client import identity_env

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("providers", "brokerage", "notifications", "reporting")


def code_version(folder: Path = ROOT) -> dict[str, str | bool | None]:
    """Which code runs in ``folder``: ``{"folder", "commit", "changed"}`` - its git commit (None
    outside git, or without git) and whether its tracked files differ from that commit. The
    benchmark asks it of a started service's working folder (``python -m`` imports from there;
    :func:`start_stack` starts them in this module's checkout) and says it in its report, so that
    a comparison of two versions can be seen to have run both (decision 0149: a second clone
    started through the first's editable install ran the first's services)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"folder": str(folder), "commit": commit, "changed": bool(changes) if commit else None}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback TCP port free now, for a process started next, chosen *below* the kernel's
    ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``) and never the same twice in this
    process.

    Why not the kernel's choice (``bind(0)``): that is a port from the ephemeral range, and between
    our releasing it and the service binding it - after its start-up, seconds later - any outgoing
    connection on the machine (a Kafka client, a pool) may be given it as its own source port; the
    service then fails to bind (uvicorn exits with 3). A clean-clone CI run lost a test that way."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: a server of this machine's
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # a machine with next to no ports below its ephemeral range
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 where it cannot be read)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return low if low > 11_000 else 32768


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's log, for an error that says why it stopped."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(its log could not be read: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(its log is empty)"


@dataclass
class Stack:
    """Running service processes; restartable, so fault tests can kill and revive them."""

    env: dict[str, str]
    logs: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)  # process name -> service module
    instance_env: dict[str, dict[str, str]] = field(default_factory=dict)  # process name -> its own settings

    internal_ports: dict[str, int] = field(default_factory=dict)  # the internal listeners (health, metrics)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def internal_url(self, name: str) -> str:
        """The process's internal listener: health, readiness and metrics without a token."""
        return f"http://127.0.0.1:{self.internal_ports[name]}"

    def start(self, name: str, service: str | None = None, env: dict[str, str] | None = None) -> None:
        """Start ``service`` (default: ``name``) as process ``name``; a second instance of a service
        gets a name of its own (e.g. ``brokerage-2``), its own port and log, and ``env`` adds to its
        environment alone (kept for its restarts)."""
        service = service or self.services.get(name, name)
        self.services[name] = service
        self.ports.setdefault(name, free_port())
        self.internal_ports.setdefault(name, free_port())
        if env is not None:
            self.instance_env[name] = env
        env = (
            self.env
            | self.instance_env.get(name, {})
            | {
                f"{service.upper()}_HTTP_PORT": str(self.ports[name]),
                f"{service.upper()}_INTERNAL_PORT": str(self.internal_ports[name]),
            }
        )
        command = [sys.executable, "-m", f"services.{service}"]
        # The child keeps its own copy of the log's file descriptor; ours is closed at once.
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                log = self.logs / f"{name}.log"
                raise RuntimeError(
                    f"{name} exited with {self.procs[name].returncode}; see {log}; its last lines:\n{log_tail(log)}"
                )
            try:
                if httpx.get(f"{self.internal_url(name)}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        log = self.logs / f"{name}.log"
        raise TimeoutError(f"{name} not ready after {timeout} s; see {log}; its last lines:\n{log_tail(log)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)


def start_stack(
    database_url: str,
    kafka: str,
    namespace: str,
    logs: Path,
    *,
    extra_env: dict[str, str] | None = None,
    console: bool = False,
    ports: dict[str, int] | None = None,
) -> Stack:
    """The four services (``extra_env`` adds to their environment); with ``console``, then the
    web console as a client of their APIs. ``ports``: a service's API port (default: a free one)."""
    from services.runtime.kafka import provision_namespace

    logs.mkdir(parents=True, exist_ok=True)
    # On a secured cluster the services may not create topics: the operator makes them, and the
    # namespace's ACLs, first.
    provision_namespace(kafka, namespace)
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_HTTP_PORT", "_INTERNAL_PORT"))}
    env |= identity_env()  # the APIs validate tokens from this issuer; providers and the console get tokens from it
    env |= {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "HOMECARE_NAMESPACE": namespace,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    # A key sealing this stack's secrets at rest, unless the caller brings one (services/runtime/sealing.py).
    env.setdefault("SECRETS_KEYS", Fernet.generate_key().decode())
    # Known up front: providers calls the brokerage.
    ports = {name: (ports or {}).get(name) or free_port() for name in SERVICES}
    env["PROVIDERS_BROKERAGE_URL"] = f"http://127.0.0.1:{ports['brokerage']}"
    env |= extra_env or {}
    stack = Stack(env=env, logs=logs, ports=ports)
    try:
        for name in SERVICES:
            stack.start(name)
        for name in SERVICES:
            stack.wait_ready(name)
        if console:
            # Served over plain HTTP on loopback here: its cookies cannot be Secure-only.
            stack.env.setdefault("CONSOLE_COOKIE_SECURE", "false")
            stack.env |= {f"CONSOLE_{name.upper()}_URL": stack.url(name) for name in SERVICES}
            # Staff sign in through the identity provider, which sends them back to this address.
            stack.ports.setdefault("console", free_port())
            stack.env.setdefault("CONSOLE_PUBLIC_URL", stack.url("console"))
            stack.start("console")
            stack.wait_ready("console")
    except BaseException:
        for proc in stack.procs.values():  # none left running when one fails to start
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    return stack


def stop_stack(stack: Stack) -> dict[str, int]:
    """SIGTERM every running service; returns their exit codes (a clean shutdown is 0)."""
    return {name: stack.stop(name) for name, proc in stack.procs.items() if proc.poll() is None}
