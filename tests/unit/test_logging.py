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


def test_a_librarys_repeated_message_goes_through_once_in_ten_seconds_with_a_count():
    """With Kafka away aiokafka logged "unable to connect" 100-160 times a second in each service
    (found by an attack): one line per logger and message template per 10 s, saying how many were
    held back; another message, or the same from another logger, is not held back by it."""
    import logging

    now = [0.0]
    repeat = runtime_logging.RepeatFilter(seconds=10, clock=lambda: now[0])

    def record(name: str, msg: str, *args) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)

    let_through = []
    for i in range(150):
        now[0] = i * 0.01  # 150 in 1.5 s
        r = record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
        if repeat.filter(r):
            let_through.append(r)
    assert len(let_through) == 1
    assert repeat.filter(record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused"))
    assert repeat.filter(record("aiokafka", "Heartbeat failed for group %s", "g"))
    now[0] = 10.5
    later = record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
    assert repeat.filter(later)
    assert later.getMessage().endswith("(149 more like this held back in the last 10 s)")


def test_a_librarys_warning_is_a_json_line_with_the_services_name(monkeypatch, capsys):
    import json
    import logging

    runtime_logging.configure("brokerage", fmt="json")
    logging.getLogger("aiokafka.test").warning("the broker went away: %s", "node 1")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["event"] == "the broker went away: node 1" and entry["level"] == "warning"
    assert entry["service"] == "brokerage" and entry["logger"] == "aiokafka.test"
