"""The services' and the CLI's logging (services/runtime/logging.py)."""

import io
import sys

import structlog

from services.runtime import logging as runtime_logging


def test_logging_writes_to_the_stdout_of_the_moment_not_the_one_closed_since(monkeypatch):
    """A command run in-process (CliRunner) configures logging on its own stdout and closes it
    after: the next line logged must go to the stdout in place then, not fail on the closed one."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    runtime_logging.configure("test", fmt="json")
    log = structlog.get_logger("test")
    log.info("first line")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stdout", second)
    log.info("second line")  # on a logger cached with the first stdout
    assert "second line" in second.getvalue()
