"""A service tunes Python's garbage collector once it is built (decision 0142), from its settings.

Each check runs in a fresh interpreter: freezing and thresholds are process-wide, and this test
process's collector must stay as pytest has it."""

from __future__ import annotations

import json
import subprocess
import sys

import pydantic
import pytest

from services.runtime import settings

PROBE = """
import gc, json, sys
from services.runtime.service import tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def probe(threshold: int) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # after the log line


def test_what_is_alive_is_frozen_and_the_youngest_generation_waits_longer():
    seen = probe(10_000)
    assert seen["after"] == [10_000, *seen["before"][1:]]
    assert seen["frozen"] > 10_000  # the imported modules' objects, at least


def test_zero_leaves_the_collector_as_python_sets_it():
    seen = probe(0)
    assert seen["after"] == seen["before"]
    assert seen["frozen"] == 0


def test_the_threshold_is_a_service_setting(monkeypatch):
    assert settings.load("brokerage").gc_gen0_threshold == 10_000
    monkeypatch.setenv("PROVIDERS_GC_GEN0_THRESHOLD", "0")
    assert settings.load("providers").gc_gen0_threshold == 0
    monkeypatch.setenv("PROVIDERS_GC_GEN0_THRESHOLD", "-1")
    with pytest.raises(pydantic.ValidationError, match="gc_gen0_threshold"):
        settings.load("providers")
