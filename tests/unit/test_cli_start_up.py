"""``homecare`` starts without the machinery its commands use: each command imports its own.

`homecare kpis` was ~3 s, two of them importing the event schemas, asyncpg and the simulator before
asking the reporting service anything (issue 17's target: a KPI over a year in under 2 s). This
checks what loads, not how long it takes (timings belong to benchmarks).
"""

import subprocess
import sys

HEAVY = ("schemas.events", "asyncpg", "aiokafka", "faststream", "pydantic", "services.simulator.simulation", "yaml")


def test_the_command_line_loads_none_of_its_commands_machinery_at_start_up():
    probe = "import sys, services.cli.main; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe, *HEAVY], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


# What `homecare kpis` has no use for, from asking the reporting service to printing its report:
# the services' frameworks and clients, the Parquet writer, the simulator, and rich (httpx's own
# command-line client and structlog's console renderer each import it: 0.7 s of the 2.25 s the
# command took on 1 December 2026) - decision 0134.
NOT_FOR_KPIS = (
    "schemas.events",
    "asyncpg",
    "aiokafka",
    "faststream",
    "services.simulator",
    "yaml",
    "pyarrow",
    "fastapi",
    "starlette",
    "uvicorn",
    "rich",
    "structlog",
    "httpx._main",
    "asyncio",
    "cryptography",
)


def test_homecare_kpis_runs_without_loading_what_it_does_not_use(tmp_path):
    """The whole command, in a process of its own, against an identity provider and a reporting
    service that are not there (port 1 refuses): it signs in, fails to connect and exits 1, having
    gone through every import its path makes; then the modules loaded are listed."""
    probe = (
        "import sys\n"
        "sys.argv = ['homecare', 'kpis', '--period', '365d']\n"
        "from services.cli.main import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print(code, ' '.join(m for m in sys.argv[1:] if sys.modules.get(m) is not None))\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(probe.replace("sys.argv[1:]", repr(list(NOT_FOR_KPIS))))
    env = {
        "PATH": "/usr/bin:/bin",
        "OIDC_ISSUER": "http://127.0.0.1:1/realms/homecare",
        "HOMECARE_DEMO_PASSWORD": "not-a-real-one",
        "REPORTING_URL": "http://127.0.0.1:1",
    }
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
    code, *loaded = done.stdout.split()
    assert code == "1", done.stderr  # it got as far as the call, which port 1 refused
    assert "did not answer" in done.stderr
    assert loaded == []
