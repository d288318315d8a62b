"""structlog set-up shared by the services and the CLI.

JSON lines when stdout is not a terminal (services under a supervisor, CI), readable console
output when it is. Context bound with ``structlog.contextvars`` (event id, type, topic,
partition, offset, consumer group, attempt, correlation id) appears on every line logged
while handling an event.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

# structlog is imported where it is used: a CLI command that logs nothing of its own sets up only
# the standard library's logging (:func:`configure_libraries`), and importing structlog costs
# 0.3 s of start-up (its console renderer imports rich).
if TYPE_CHECKING:
    import structlog


class _CurrentStdout:
    """``sys.stdout`` as it is at each write, not as it was when logging was configured: a command
    run in-process (typer's CliRunner, pytest's capture) swaps stdout and closes its own after,
    and loggers cached on the closed one would fail every later line ("I/O operation on closed
    file") - in whatever code logs next."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class _CurrentStderr:
    """``sys.stderr`` as it is at each write (the libraries' handler), for the same reason."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(service: str, *, fmt: str = "auto", level: str = "INFO") -> None:
    import structlog

    json_output = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStdout()),  # type: ignore[arg-type]  # a file-like writer
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    formatter: logging.Formatter | None = None
    if json_output:
        # The libraries' lines as JSON too, with the service's name: a log pipeline reads one format.
        formatter = structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        )
    configure_libraries(formatter)


class RepeatFilter(logging.Filter):
    """Lets a library's message through once per ``seconds`` for each logger and message template,
    and says how many like it it held back. With Kafka away, aiokafka logged its "unable to connect"
    some 100-160 times a second in each service (found by an attack: 1,578 lines in 10 s), drowning
    everything else. A stdlib filter of a few lines: nothing of the logging libraries does this."""

    def __init__(self, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # (logger, template) -> (let through at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.seconds:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} more like this held back in the last {self.seconds:g} s)"
        if len(self._seen) > 1000:  # templates are few; a flood of distinct ones is not kept forever
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


def configure_libraries(formatter: logging.Formatter | None = None) -> None:
    """Libraries (aiokafka, uvicorn, faststream, httpx) log through the standard library: keep
    their warnings on stderr, drop their chatter, and let each repeated message through once in 10
    s (:class:`RepeatFilter`). :func:`configure` calls it with its JSON formatter; a command that
    logs nothing of its own calls it alone (``homecare kpis``: structlog costs its start-up 0.3 s)."""
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(formatter or logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "homecare", False)]:
        root.removeHandler(old)  # configured again (a test, a second command in-process): one handler
    handler.homecare = True  # type: ignore[attr-defined]  # marks the handler this function added
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    import structlog

    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
