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
