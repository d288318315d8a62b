"""structlog set-up shared by the services and the CLI.

JSON lines when stdout is not a terminal (services under a supervisor, CI), readable console
output when it is. Context bound with ``structlog.contextvars`` (event id, type, topic,
partition, offset, consumer group, attempt, correlation id) appears on every line logged
while handling an event.
"""

from __future__ import annotations

import logging
import sys
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
    configure_libraries()


def configure_libraries() -> None:
    """Libraries (aiokafka, uvicorn, faststream, httpx) log through the standard library: keep
    their warnings on stderr, drop their chatter. :func:`configure` calls it; a command that logs
    nothing of its own calls it alone (``homecare kpis``: structlog costs its start-up 0.3 s)."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    import structlog

    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
