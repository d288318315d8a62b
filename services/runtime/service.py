"""The bootstrap every service uses: one process = HTTP API + Kafka consumers + outbox relay.

Start-up waits (with logged backoff) for PostgreSQL and Kafka, applies the service's
migrations, creates the topics, runs the service's own start-up steps, then starts consuming
and relaying. Shutdown (SIGTERM via uvicorn) stops consuming, lets in-flight handlers finish
within ``graceful_timeout``, stops the relay after its current batch, and closes the pool.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import FastAPI

from schemas.topics import CONSUMED_BY
from services.runtime import clock, metrics, outbox
from services.runtime import logging as runtime_logging
from services.runtime import topics as runtime_topics
from services.runtime.consumer import EventConsumer
from services.runtime.db import backoff_delays, connect, create_pool, migrate
from services.runtime.kafka import (
    LagProbe,
    ensure_topics,
    kafka_security,
    make_broker,
    partitions_of,
    topic_configs,
)
from services.runtime.oidc_client import service_account
from services.runtime.outbox import Relay
from services.runtime.settings import ServiceSettings

log = runtime_logging.get_logger(__name__)

StartupStep = Callable[["Service"], Awaitable[None]]
BackgroundTask = Callable[["Service"], Awaitable[None]]


class ConfigurationError(RuntimeError):
    """A configuration the service will not run with (missing or default secrets in production)."""


class Service:
    def __init__(self, settings: ServiceSettings, *, migrations: Path, events: bool = True) -> None:
        self.settings = settings
        refused = settings.sandbox_problems()
        if refused:  # nothing reaches a real person from the sandbox, whatever the environment (0116)
            raise ConfigurationError(f"{settings.service} refuses to start in the sandbox: " + "; ".join(refused))
        problems = settings.startup_problems()
        if problems and settings.environment == "production":
            raise ConfigurationError(
                f"{settings.service} refuses to start: "
                + "; ".join(problems)
                + " (HOMECARE_ENVIRONMENT=development runs a local trial anyway)"
            )
        for problem in problems:
            log.warning("unsafe configuration, accepted in development only", problem=problem)
        self.secrets = settings.secret_box()
        outbox.configure_buckets(settings.outbox_buckets)  # before any row is written (decision 0115)
        # Its own access tokens for calling another service (client credentials), if configured.
        self.client_auth = service_account(settings)
        # events=False: a process that neither consumes nor publishes (the web console): no relay
        # and no lag of its own to measure; it still waits for Kafka, which it reads from.
        self.events = events
        self.name = settings.service
        self.migrations = migrations
        self.broker = make_broker(settings)
        self._pool: asyncpg.Pool | None = None
        # The consumers' and the relay's own connections: a flood of HTTP requests queueing for
        # the main pool must not starve the pipeline behind it (the benchmark's burst did).
        self._pipeline_pool: asyncpg.Pool | None = None
        self.consumer = EventConsumer(
            service=self.name,
            group=runtime_topics.group(self.name),
            pool_provider=lambda: self._pipeline_pool or self.pool,
            broker=self.broker,
            max_attempts=settings.consumer_max_attempts,
            transient_give_up_seconds=settings.consumer_transient_give_up_seconds,
            backoff_initial=settings.consumer_backoff_initial_seconds,
            backoff_max=settings.consumer_backoff_max_seconds,
            batch_size=settings.consumer_batch_size,
            poll_wait_ms=settings.consumer_poll_wait_ms,
            fetch_min_bytes=settings.consumer_fetch_min_bytes,
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
            group_instance_id=settings.consumer_group_instance_id,
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
            topic_exists=self.topic_exists,
        )
        self.relay: Relay | None = None
        self.startup_steps: list[StartupStep] = []
        self.gauge_refreshers: list[StartupStep] = []
        self.background: list[BackgroundTask] = []
        self._tasks: list[asyncio.Task] = []
        # The consumer group's lag as last measured (every 15 s): events not yet applied and the
        # age of the oldest; shown on /health/ready when ``lag_on_health`` (reporting: how far its
        # projection is behind the topics).
        self.lag: dict[str, float | int | str | None] | None = None
        self.lag_on_health = False
        self.stopping = asyncio.Event()
        self.server: uvicorn.Server | None = None

    async def topic_exists(self, topic: str) -> bool:
        """Whether the topic exists on the cluster (an admin client's answer; raises if Kafka cannot say)."""
        return bool(await partitions_of(self.settings.kafka_bootstrap_servers, topic, kafka_security(self.settings)))

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the service has not started")
        return self._pool

    def on_startup(self, step: StartupStep) -> StartupStep:
        self.startup_steps.append(step)
        return step

    def in_background(self, task: BackgroundTask) -> BackgroundTask:
        self.background.append(task)
        return task

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        log.info("starting", kafka=s.kafka_bootstrap_servers, http=f"{s.http_host}:{s.http_port}")
        self._pool = await create_pool(s.service_dsn, schema=self.name, application=self.name, size=s.db_pool_size)
        await migrate(self._pool, self.name, self.migrations)
        if self.events:
            self._pipeline_pool = await create_pool(
                s.service_dsn, schema=self.name, application=f"{self.name}-pipeline", size=s.db_pipeline_pool_size
            )
        # Start-up steps (e.g. seeding the registry) run before consuming starts, so no event is
        # handled against a half-prepared database.
        for step in self.startup_steps:
            await step(self)
        await self._wait_for_kafka()
        if self.events:
            self.relay = Relay(
                self._pipeline_pool or self.pool,
                self.broker,
                service=self.name,
                batch_size=s.relay_batch_size,
                poll_seconds=s.relay_poll_seconds,
                retention_seconds=s.outbox_retention_seconds,
                topic_exists=self.topic_exists,
                listen=lambda: connect(s.service_dsn, schema=self.name, application=f"{self.name}-relay-listen"),
                idle_poll_seconds=s.relay_idle_poll_seconds,
                gather_seconds=s.relay_gather_seconds,
            )
            await self.relay.check_buckets()  # rows written with another OUTBOX_BUCKETS: refuse, saying why
            self.relay.start()
        self._tasks = [
            asyncio.create_task(self._guard(task), name=task.__name__)
            for task in [*self.background, *([_measure_lag] if self.events else [])]
        ]
        log.info("started")

    async def _wait_for_kafka(self) -> None:
        for attempt, delay in enumerate(backoff_delays(0.5, 5.0), start=1):
            try:
                # On a secured cluster the administrator creates the topics (`homecare kafka acls`):
                # a service's principal may not, by design.
                if self.settings.kafka_security_protocol == "PLAINTEXT":
                    await ensure_topics(
                        self.settings.kafka_bootstrap_servers,
                        self.settings.kafka_replication_factor,
                        configs=topic_configs(self.settings),
                        partitions=self.settings.kafka_partitions,
                    )
                await self.broker.start()
                return
            except (KafkaConnectionError, KafkaError, OSError) as exc:
                await self.broker.stop()  # a partial start must not leave a consumer behind
                log.warning(
                    "waiting for dependency",
                    dependency="kafka",
                    attempt=attempt,
                    retry_in=round(delay, 2),
                    error=repr(exc),
                )
                await asyncio.sleep(delay)

    async def _guard(self, task: BackgroundTask) -> None:
        """Keep a background loop alive: log and restart it after an unexpected error."""
        delays = backoff_delays(0.5, 10.0)
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            began = loop.time()
            try:
                await task(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() - began > 60:
                    delays = backoff_delays(0.5, 10.0)  # it had been healthy: start the backoff afresh
                delay = next(delays)
                log.warning(
                    "background task failed; restarting", task=task.__name__, error=repr(exc), retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        log.info("stopping")
        self.stopping.set()
        self.consumer.stopping.set()
        # Order matters: stop consuming (in-flight handlers finish, within graceful_timeout),
        # then the timers, then let the relay publish what they committed, and only then close
        # the producer and the pool.
        for subscriber in self.broker.subscribers:
            await subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.relay:
            await self.relay.stop()
            try:
                for _ in range(50):  # what the last handlers and timers committed, bounded
                    if not await self.relay.publish_batch():
                        break
            except Exception as exc:
                log.warning("final relay batch failed; it will be published after restart", error=repr(exc))
        await self.broker.stop()
        for pool in (self._pipeline_pool, self._pool):
            if pool:
                await pool.close()
        log.info("stopped")

    @asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        # Start-up may wait a long time for PostgreSQL or Kafka; a SIGTERM meanwhile must still
        # stop the process, so start-up races uvicorn's exit flag.
        starting = asyncio.create_task(self.start())
        exit_requested = asyncio.create_task(self._exit_requested())
        await asyncio.wait({starting, exit_requested}, return_when=asyncio.FIRST_COMPLETED)
        exit_requested.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            for pool in (self._pipeline_pool, self._pool):
                if pool:
                    await pool.close()
            raise RuntimeError("stopped while starting")
        starting.result()
        try:
            yield
        finally:
            await self.stop()

    async def _exit_requested(self) -> None:
        while not (self.server and self.server.should_exit):
            await asyncio.sleep(0.2)

    # ---- operations -----------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """``{"api", "postgresql", "kafka"}`` each reachable or not. ``api``: the API port is
        serving - the internal listener answers from the first moment, while start-up (which may
        wait for Kafka and PostgreSQL) still holds the API port back."""
        api_ok = self.server is not None and self.server.started
        db_ok = False
        with suppress(Exception):
            db_ok = await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=2) == 1
        kafka_ok = False
        with suppress(Exception):
            kafka_ok = await self.broker.ping(timeout=2)
        metrics.READY.labels(self.name).set(1 if api_ok and db_ok and kafka_ok else 0)
        return {"api": api_ok, "postgresql": db_ok, "kafka": kafka_ok}

    async def outbox_state(self) -> dict[str, int] | None:
        """``{"parked": rows Kafka refused for good, "held": rows waiting behind them}`` for the
        readiness detail (None when the service has no relay or the database cannot say)."""
        if not self.events:
            return None
        try:
            parked, held = await asyncio.wait_for(Relay.parked_rows(self.pool), timeout=2)
        except Exception:
            return None
        return {"parked": parked, "held": held}

    async def refresh_gauges(self) -> None:
        """Gauges read at scrape time; a failing reading leaves the last value rather than failing /metrics."""
        try:
            metrics.OUTBOX_BACKLOG.labels(self.name).set(await Relay.backlog(self.pool))
            parked, held = await Relay.parked_rows(self.pool)
            metrics.OUTBOX_PARKED.labels(self.name).set(parked)
            metrics.OUTBOX_HELD.labels(self.name).set(held)
            for refresh in self.gauge_refreshers:
                await refresh(self)
        except Exception as exc:
            log.warning("could not refresh gauges", error=repr(exc))

    def run(self, app: FastAPI) -> None:
        """Serve the HTTP app (and with it the consumers and relay) until SIGTERM/SIGINT, on the
        API port and on the internal listener (health, readiness and metrics without a token:
        docs/security.md). The app's lifespan (consumers, relay, timers) runs once, with the API
        port's server; the internal one follows it."""
        s = self.settings
        runtime_logging.configure(self.name, fmt=s.log_format, level=s.log_level)
        common: dict[str, Any] = {"log_level": "warning", "access_log": False}
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=s.http_host,
                port=s.http_port,
                timeout_graceful_shutdown=int(s.graceful_timeout_seconds),
                **common,
            )
        )
        internal = _InternalServer(
            uvicorn.Config(app, host=s.internal_host, port=s.internal_port, lifespan="off", **common)
        )

        async def serve() -> None:
            assert self.server is not None
            internal_task = asyncio.create_task(internal.serve())
            try:
                await self.server.serve()
            finally:
                internal.should_exit = True
                await internal_task

        tune_garbage_collector(s.gc_gen0_threshold)
        # The loop uvicorn's own run() would use (uvloop: "auto" picks it when installed). A bare
        # asyncio.run() here had quietly served on the default loop, at twice the CPU per request.
        with asyncio.Runner(loop_factory=self.server.config.get_loop_factory()) as runner:
            runner.run(serve())


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Freeze what is alive now (the service as built: modules, the app, its models) out of the
    cyclic garbage collector's work, and collect the youngest generation after ``gen0_threshold``
    more container objects instead of Python's 700. Nothing when 0 (decision 0142).

    Why: under load the collector ran every few events and walked the whole heap in its older
    generations - 1.7% of the machine's CPU in the benchmark - though the services' garbage is
    freed by reference counting; cycles are still collected, only less often."""
    if gen0_threshold == 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    log.info("garbage collector tuned", gen0_threshold=gen0_threshold, frozen_objects=gc.get_freeze_count())


class _InternalServer(uvicorn.Server):
    """The internal listener's server: the API port's server handles the signals for both."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _measure_lag(service: Service, every: float = 15.0) -> None:
    """Consumer lag of the service's own group, as Prometheus gauges (FastStream has none), with
    clients kept open between measurements (:class:`LagProbe`)."""
    subscription = {runtime_topics.group(service.name): [runtime_topics.resolve(t) for t in CONSUMED_BY[service.name]]}
    probe = LagProbe(service.settings.kafka_bootstrap_servers, kafka_security(service.settings))
    try:
        while not service.stopping.is_set():
            try:
                rows = await probe.measure(subscription)
                for row in rows:
                    metrics.CONSUMER_LAG.labels(service.name, row.topic, str(row.partition)).set(row.lag)
                ages = [r.oldest_unprocessed_age_s for r in rows if r.oldest_unprocessed_age_s is not None]
                metrics.CONSUMER_OLDEST_UNPROCESSED.labels(service.name).set(max(ages, default=0))
                service.lag = {
                    "events": sum(r.lag for r in rows),
                    "oldest_unprocessed_age_s": max(ages, default=None),
                    "measured_at": clock.now().isoformat(),
                }
            except Exception as exc:
                log.warning("could not measure consumer lag", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(service.stopping.wait(), timeout=every)
    finally:
        await probe.close()


def serve(build: Callable[[], tuple[Service, FastAPI]]) -> None:
    """``python -m services.<name>``: build the service from the environment and serve it."""
    service, app = build()
    service.run(app)
