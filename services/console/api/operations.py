"""Operations' pages: the overview (health at a glance: dead letters, failed notifications, consumer
groups behind, services not ready - each a count linking to its detail, and a badge on the menu and a
banner on every operations page while anything is wrong), the live event stream (server-sent events
from Kafka, decoded as ``homecare tail`` decodes them, filterable by zone and type; each row linked to
its package), consumer lag, failed notifications, dead letters (replayed with a button) and the KPIs
with charts (from the reporting service, as ``homecare kpis``'). The reading of Kafka is
:mod:`services.operations`', as the CLI's is."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.console import charts, domain
from services.console.api.pages import now, page, zones
from services.console.api.sessions import Sessions
from services.console.clients import ApiError, Client, ServiceUnavailable
from services.console.domain import Permission
from services.console.handlers import Session
from services.operations import dead_letters, lag, streams
from services.runtime.kafka import kafka_security

if TYPE_CHECKING:
    from services.console.app import Console


# Kafka not reachable when a page reads it itself (the overview's cached reading had none): the
# page says so, as the overview does, instead of a 500 (found by an attack with Kafka stopped).
KAFKA_AWAY = (KafkaError, OSError, asyncio.TimeoutError)


def kafka_away(request: Request, session: Session, what: str) -> Response:
    return page(
        request,
        "error.html",
        session,
        503,
        title="Kafka cannot be read now",
        message=f"Kafka did not answer, so {what} cannot be shown. The operations overview says when it is back.",
    )


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/ops/stream`` (and its ``/events``), ``/ops/lag``, ``/ops/dead-letters`` and ``/ops/kpis``."""
    router = APIRouter(include_in_schema=False)
    need, form_of = sessions.need, sessions.form_of
    # The console reads Kafka as its own principal (read-only: the topics, and the services' group
    # offsets for lag); a replay alone writes, as the ops principal (docs/guide/kafka-security.md).
    bootstrap, security = console.settings.kafka_bootstrap_servers, kafka_security(console.settings)

    async def readiness(name: str, client: Client) -> dict[str, Any]:
        """A service's /health/ready on its API port (the console's own token: any valid one may)."""
        try:
            response = await client.http.get("/health/ready", timeout=3.0)
        except Exception as exc:  # unreachable, for whatever reason, is "not ready"
            return {"name": name, "ready": False, "problem": f"not answering ({type(exc).__name__})"}
        if response.status_code == 200:
            return {"name": name, "ready": True, "problem": None}
        try:
            checks = response.json().get("checks") or {}
            failing = [k for k, v in checks.items() if v not in (True, "ok")]
        except ValueError:
            failing = []
        problem = ("cannot reach " + " and ".join(failing)) if failing else f"answered {response.status_code}"
        return {"name": name, "ready": False, "problem": problem}

    async def failed_notifications() -> int | None:
        try:
            return int((await console.services.notifications.get("/deliveries/failed", params={"limit": 1}))["count"])
        except (ApiError, ServiceUnavailable):
            return None

    async def health(force: bool = False) -> domain.Health:
        """Operations' health at a glance (domain.Health), read at most every HEALTH_TTL."""
        at = now()
        cached: domain.Health | None = console.health
        if cached is not None and not force and at - cached.at < domain.HEALTH_TTL:
            return cached
        clients = console.services
        named = [("brokerage", clients.brokerage), ("providers", clients.providers)]
        named += [("notifications", clients.notifications), ("reporting", clients.reporting)]
        letters, failed, lag_rows, *ready = await asyncio.gather(
            dead_letters.read_all(bootstrap, security),
            failed_notifications(),
            lag.lag(bootstrap, security),
            *(readiness(name, client) for name, client in named),
            return_exceptions=True,
        )
        console.health = fresh = domain.Health(
            at=at,
            dead_letters=len(letters) if isinstance(letters, list) else None,
            failed_notifications=failed if isinstance(failed, int) else None,
            lagging=domain.lagging_groups(lag_rows) if isinstance(lag_rows, list) else None,
            services=[r for r in ready if isinstance(r, dict)],
            lag_rows=lag_rows if isinstance(lag_rows, list) else None,
            letters=letters if isinstance(letters, list) else None,
        )
        return fresh

    async def watched(request: Request, *, fresh: bool = False) -> domain.Health:
        """Every operations page: the menu's badge and, while anything is wrong, the banner. The
        state is at most HEALTH_TTL old (``fresh``: read now): reading Kafka's offsets and the
        dead-letter topic is most of a second under load, too slow to do on every page."""
        state = await health(force=fresh)
        problems = state.problems()
        request.state.badges = {"/ops": len(problems)} if problems else {}
        request.state.health_banner = problems if request.url.path != "/ops" else None
        return state

    @router.get("/ops")
    async def overview(request: Request, session: Session = Depends(need(Permission.operations))) -> Response:
        """Health at a glance: each problem a count linking to its detail; the services' readiness."""
        state = await watched(request)
        return page(request, "ops_overview.html", session, health=state, problems=state.problems(), now=now())

    @router.get("/ops/notifications")
    async def failed_notifications_page(
        request: Request, session: Session = Depends(need(Permission.operations))
    ) -> Response:
        """Messages that could not be delivered after their retries, newest first, each linked to its package."""
        await watched(request)
        failed = await console.services.notifications.get("/deliveries/failed", params={"limit": 100})
        return page(request, "ops_notifications.html", session, failed=failed)

    @router.get("/ops/stream")
    async def stream_page(request: Request, session: Session = Depends(need(Permission.operations))) -> Response:
        await watched(request)
        chosen = {k: v for k in ("zone", "type") if (v := request.query_params.get(k))}
        return page(
            request,
            "stream.html",
            session,
            chosen=chosen,
            query=urlencode(chosen),
            zones=await zones(console),
            types=streams.event_types(),
        )

    @router.get("/ops/stream/events", response_class=EventSourceResponse)
    async def stream_events(
        request: Request,
        zone: str | None = None,
        type: str | None = None,
        session: Session = Depends(need(Permission.operations)),
    ) -> AsyncIterator[ServerSentEvent]:
        stopping = {"client": False}

        def stop() -> bool:
            return stopping["client"] or console.stopping()

        async for line in streams.live_lines(
            bootstrap, stop=stop, zone=zone or None, event_type=type or None, security=security
        ):
            if await request.is_disconnected():
                stopping["client"] = True
                continue
            if line is None:
                yield ServerSentEvent(comment="waiting")
            else:
                yield ServerSentEvent(event="line", data=line.__dict__)
        return

    @router.get("/ops/lag")
    async def lag_page(request: Request, session: Session = Depends(need(Permission.operations))) -> Response:
        """Consumer lag as read for the overview (at most HEALTH_TTL old; ``?fresh=1`` reads it now)."""
        state = await watched(request, fresh=request.query_params.get("fresh") == "1")
        try:
            rows = state.lag_rows if state.lag_rows is not None else await lag.lag(bootstrap, security)
        except KAFKA_AWAY:
            return kafka_away(request, session, "consumer lag")
        behind = set(domain.lagging_groups(rows))
        only_behind = request.query_params.get("behind") == "1"
        # Behind first; with ?behind=1 only the groups behind (the overview's link), not rows of zeros.
        rows = sorted(rows, key=lambda r: (r["group"] not in behind, -(r["lag"] or 0), r["group"], r["topic"]))
        shown = [r for r in rows if r["group"] in behind] if only_behind else rows
        return page(
            request,
            "lag.html",
            session,
            rows=shown,
            all_rows=len(rows),
            behind=behind,
            only_behind=only_behind,
            threshold=(domain.LAG_EVENTS, domain.LAG_AGE_SECONDS),
            total=sum(r["lag"] for r in rows),
            now=state.at,
        )

    @router.get("/ops/dead-letters")
    async def dead_letters_page(request: Request, session: Session = Depends(need(Permission.operations))) -> Response:
        """The dead letters as read for the overview (at most HEALTH_TTL old); read now with
        ``?fresh=1`` and just after a replay."""
        # ?replayed= names the letter just replayed: shown only when it is one's id (never free text).
        asked = request.query_params.get("replayed") or ""
        replayed = asked if re.fullmatch(r"[0-9]{1,6}:[0-9]{1,19}", asked) else None
        state = await watched(request, fresh=replayed is not None or request.query_params.get("fresh") == "1")
        try:
            read = state.letters if state.letters is not None else await dead_letters.read_all(bootstrap, security)
        except KAFKA_AWAY:
            return kafka_away(request, session, "the dead letters")
        letters = [{"id": dead_letters.letter_id(p, o), "letter": d} for p, o, d in reversed(read)]  # newest first
        return page(request, "dead_letters.html", session, letters=letters, replayed=replayed, read_at=state.at)

    @router.post("/ops/dead-letters/{letter_id}/replay")
    async def replay_letter(
        request: Request, letter_id: str, session: Session = Depends(need(Permission.operations))
    ) -> Response:
        await form_of(request, session)
        try:
            await dead_letters.replay_letters(bootstrap, [letter_id], dead_letters.replay_security(console.settings))
        except LookupError as unknown:
            return page(request, "error.html", session, 404, title="Page not found", message=str(unknown))
        except dead_letters.ReplayNotAllowed as refused:
            return page(request, "error.html", session, 403, title="Replay not allowed here", message=str(refused))
        except ValueError as cut:  # a letter cut to fit Kafka: its original bytes are not all there
            return page(
                request, "error.html", session, 409, title="This dead letter cannot be replayed", message=str(cut)
            )
        return RedirectResponse(f"/ops/dead-letters?replayed={quote(letter_id)}", status_code=303)

    @router.get("/ops/kpis")
    async def kpis_page(request: Request, session: Session = Depends(need(Permission.operations))) -> Response:
        await watched(request)
        days = domain.kpi_period_days(request.query_params.get("days", "7"))
        at = now()
        # From the reporting service's projection, as the staff member (operations may read KPIs).
        period = {"from": (at - dt.timedelta(days=days)).isoformat(), "to": at.isoformat()}
        figures = await console.services.reporting.get("/kpis", params=period)
        return page(request, "kpis.html", session, k=figures, days=days, charts=kpi_charts(figures))

    return router


def kpi_charts(k: dict) -> dict[str, Any]:
    """The dashboard's four charts from ``homecare kpis``' figures."""
    slowest = max((r["p90_s"] or 0 for r in k["time_to_place"]["by_urgency"].values()), default=0)
    scale, unit = (3600, "h") if slowest >= 3 * 3600 else (60, "min") if slowest >= 180 else (1, "s")
    by_urgency = [
        (
            u.replace("_", " "),
            {
                "median": (r["median_s"] or 0) / scale,
                "90th percentile": max(0.0, ((r["p90_s"] or 0) - (r["median_s"] or 0)) / scale),
            },
        )
        for u, r in k["time_to_place"]["by_urgency"].items()
    ]
    unplaced = [(f"{r['zone']} ({r['band']})", {"hours a week": float(r["hours"])}) for r in k["unplaced_queue"]]
    # Concentration reads best by rank (names are in the table below the chart): the largest
    # provider's share, the next two, and everyone else.
    ranks = ["largest provider", "second", "third", "all others"]
    shares = []
    for zone, r in k["concentration_by_zone"].items():
        ordered = sorted(r["shares_percent"].values(), reverse=True)
        # strict=False: a zone may have fewer than three providers (the ranks are then cut short).
        shares.append((zone, dict(zip(ranks, [*ordered[:3], sum(ordered[3:])], strict=False))))
    reasons = sorted({r for row in k["declines_by_band"].values() for r in row})
    declines = [(band, {r: float(n) for r, n in row.items()}) for band, row in k["declines_by_band"].items()]
    return {
        "time_to_place": charts.bars(
            "chart-time",
            f"Time to place by urgency in {unit}: the median, then on to the 90th percentile",
            by_urgency,
            unit=f" {unit}",
            series=["median", "90th percentile"],
        ),
        "unplaced": charts.bars("chart-unplaced", "Unplaced hours a week by zone and band", unplaced, unit=" h"),
        "shares": charts.bars(
            "chart-shares", "Share of placed hours per zone by provider rank, percent", shares, unit="%", series=ranks
        ),
        "declines": charts.bars("chart-declines", "Decline reasons by band", declines, series=reasons),
    }
