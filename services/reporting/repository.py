"""The reporting service's SQL (asyncpg), schema ``reporting``: the projections written from the
events, the KPI queries over them, and the rows of an export.

Writes are idempotent on their own (one row per event id, ``ON CONFLICT DO NOTHING``; a package's
latest placement, offer and state kept by their time, not by arrival) so a rebuild over a
projection that already holds some events, or events of one package arriving on different topics
in another order, leaves the same rows as one ordered pass.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from services.reporting.domain import EXPORT_TABLES, Period
from services.runtime import clock
from services.runtime.db import Connection, fetch_one

EVENT_TABLES = ("offers", "answers", "placements", "milestones", "notification_outcomes")


class Batch:
    """The projection's writes for a batch of events, gathered and then sent as one ``executemany``
    per statement (:meth:`flush`) - the rebuild's way through a long history, where a round trip
    per statement was most of the cost.

    Valid because every write of the projection is idempotent and order-tolerant: a row per event
    id, a package's latest values kept by their time, counters added to only for a new event.
    :meth:`start` looks up which of the batch's events the projection already holds and makes the
    packages' rows, so the writers' questions ("is this event new?", "did the update find its
    row?") are answered without asking the database each time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.statements: dict[str, list[tuple[Any, ...]]] = {}
        self.known: set[uuid.UUID] = set()

    async def start(self, event_ids: list[uuid.UUID], package_ids: list[uuid.UUID]) -> None:
        held = " UNION ALL ".join(f"SELECT event_id FROM {t} WHERE event_id = ANY($1)" for t in EVENT_TABLES)
        self.known = {r["event_id"] for r in await self.conn.fetch(held, event_ids)}
        await self.conn.execute(
            "INSERT INTO packages (package_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING", package_ids
        )

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements.setdefault(sql, []).append(args)
        return "UPDATE 1"  # every package's row exists (start), so an update never has to create it

    async def fetchval(self, sql: str, *args: Any) -> bool:
        """Only ``INSERT ... RETURNING true`` of an event's row (its id first): whether it is new."""
        self.statements.setdefault(sql, []).append(args)
        new = args[0] not in self.known
        self.known.add(args[0])
        return new

    async def flush(self) -> None:
        for sql, rows in self.statements.items():
            await self.conn.executemany(sql, rows)
        self.statements.clear()


Writer = Connection | Batch


async def add_request(
    conn: Writer,
    package_id: uuid.UUID,
    spec: dict[str, Any],
    requested_at: dt.datetime,
) -> None:
    """The request's columns of the package's row (created if an earlier-arriving event has not)."""
    await conn.execute(
        """INSERT INTO packages (package_id, zone, band, urgency, hours_per_week, funding, start_date,
                                 requested_at, requested_on)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (package_id) DO UPDATE SET
             zone = EXCLUDED.zone, band = EXCLUDED.band, urgency = EXCLUDED.urgency,
             hours_per_week = EXCLUDED.hours_per_week, funding = EXCLUDED.funding,
             start_date = EXCLUDED.start_date, requested_at = EXCLUDED.requested_at,
             requested_on = EXCLUDED.requested_on""",
        package_id,
        spec["zone"],
        spec["band"],
        spec["urgency"],
        spec["hours_per_week"],
        spec["funding"],
        spec["start_date"],
        requested_at,
        clock.uk_date(requested_at),
    )


async def _update_package(conn: Writer, update: str, package_id: uuid.UUID, *args: Any) -> None:
    """Run ``update`` (an UPDATE of the package's row, ``$1`` its id). The row usually exists - the
    request comes first on its topic - so this is one statement; a package not seen yet (an answer
    or a confirmation on another topic came first) gets its row, then the update."""
    if await conn.execute(update, package_id, *args) == "UPDATE 0":
        created = await conn.execute("INSERT INTO packages (package_id) VALUES ($1) ON CONFLICT DO NOTHING", package_id)
        if created == "INSERT 0 1":  # else the row exists and the update's own condition said no
            await conn.execute(update, package_id, *args)


async def set_status(conn: Writer, package_id: uuid.UUID, event_type: str, at: dt.datetime) -> None:
    """The package's state is its latest lifecycle event; an older one arriving late changes nothing."""
    await _update_package(
        conn,
        """UPDATE packages SET status = $2, status_at = $3
            WHERE package_id = $1 AND (status_at IS NULL OR status_at <= $3)""",
        package_id,
        event_type,
        at,
    )


async def add_offer(conn: Writer, event: Any) -> bool:
    """An offer round; True when new. The package keeps its first offer time and latest band rate."""
    inserted = await conn.fetchval(
        """INSERT INTO offers (event_id, package_id, offer_round, tier, provider_ids, band_rate, offered_at,
                               window_closes_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING true""",
        event.event_id,
        event.package_id,
        event.offer_round,
        event.tier,
        list(event.provider_ids),
        event.band_rate,
        event.occurred_at,
        event.window_closes_at,
    )
    if not inserted:
        return False
    await _update_package(
        conn,
        """UPDATE packages SET
             offer_rounds = offer_rounds + 1,
             first_offered_at = LEAST(first_offered_at, $2),
             band_rate = CASE WHEN last_offered_at IS NULL OR last_offered_at <= $2 THEN $3 ELSE band_rate END,
             last_offered_at = GREATEST(last_offered_at, $2)
           WHERE package_id = $1""",
        event.package_id,
        event.occurred_at,
        event.band_rate,
    )
    return True


async def add_answer(conn: Writer, event: Any, kind: str) -> None:
    """A provider's bid (with its rate) or decline (with its reason code)."""
    await conn.execute(
        """INSERT INTO answers (event_id, package_id, offer_round, provider_id, kind, hourly_rate, reason, adapter,
                                answered_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
        event.event_id,
        event.package_id,
        event.offer_round,
        event.provider_id,
        kind,
        getattr(event, "hourly_rate", None),
        getattr(event, "reason", None),
        event.adapter,
        event.answered_at,
    )


async def add_placement(conn: Writer, event: Any) -> bool:
    """A placement; True when new. The package's row holds its latest placement (by time)."""
    inserted = await conn.fetchval(
        """INSERT INTO placements (event_id, package_id, provider_id, offer_round, tier, hourly_rate, hours_per_week,
                                   zone, band, urgency, rate_card, start_date, placed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING true""",
        event.event_id,
        event.package_id,
        event.provider_id,
        event.offer_round,
        event.tier,
        event.hourly_rate,
        event.hours_per_week,
        event.zone,
        event.band,
        event.urgency,
        event.rate_card,
        event.start_date,
        event.placed_at,
    )
    if not inserted:
        return False
    # The latest placement (by its time) is the package's; every right-hand side reads the row as
    # it was, so the conditions agree with each other.
    latest = "placed_at IS NULL OR placed_at <= $2"
    await _update_package(
        conn,
        f"""UPDATE packages SET placements = placements + 1,
             placed_at = CASE WHEN {latest} THEN $2 ELSE placed_at END,
             provider_id = CASE WHEN {latest} THEN $3 ELSE provider_id END,
             hourly_rate = CASE WHEN {latest} THEN $4 ELSE hourly_rate END,
             placed_hours = CASE WHEN {latest} THEN $5 ELSE placed_hours END,
             placed_zone = CASE WHEN {latest} THEN $6 ELSE placed_zone END,
             placed_band = CASE WHEN {latest} THEN $7 ELSE placed_band END
           WHERE package_id = $1""",
        event.package_id,
        event.placed_at,
        event.provider_id,
        event.hourly_rate,
        event.hours_per_week,
        event.zone,
        event.band,
    )
    return True


async def add_milestone(
    conn: Writer,
    event: Any,
    at: dt.datetime,
    *,
    provider_id: str | None = None,
    reason: str | None = None,
    decision: str | None = None,
    hourly_rate: Decimal | None = None,
    band_rate: Decimal | None = None,
    hours_per_week: Decimal | None = None,
    on_date: dt.date | None = None,
) -> bool:
    """A lifecycle event beyond request and placement; True when new."""
    inserted = await conn.fetchval(
        """INSERT INTO milestones (event_id, package_id, event_type, provider_id, reason, decision, hourly_rate,
                                   band_rate, hours_per_week, on_date, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING true""",
        event.event_id,
        event.package_id,
        event.event_type,
        provider_id,
        reason,
        decision,
        hourly_rate,
        band_rate,
        hours_per_week,
        on_date,
        at,
    )
    return bool(inserted)


async def mark(conn: Writer, package_id: uuid.UUID, sql_set: str, *args: Any) -> None:
    """Set a milestone's columns on the package's row (``sql_set`` is the handlers' own text)."""
    await _update_package(conn, f"UPDATE packages SET {sql_set} WHERE package_id = $1", package_id, *args)


async def add_notification_outcome(conn: Writer, event: Any, outcome: str) -> None:
    values: tuple[Any, ...]
    if outcome == "confirmed":
        values = (event.provider_id, None, None, None, None, len(event.recipients), None, event.confirmed_at)
    else:
        values = (
            None,
            event.message,
            event.recipient_kind,
            event.channel,
            event.reason,
            None,
            event.attempts,
            event.failed_at,
        )
    await conn.execute(
        """INSERT INTO notification_outcomes (event_id, package_id, outcome, provider_id, message, recipient_kind,
                                              channel, reason, recipients, attempts, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
        event.event_id,
        event.package_id,
        outcome,
        *values,
    )


async def put_provider(conn: Writer, event: Any) -> None:
    """The registry's latest profile of a provider (a lower revision arriving late changes nothing)."""
    p = event.profile
    await conn.execute(
        """INSERT INTO providers (provider_id, name, tier, status, revision, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (provider_id) DO UPDATE SET name = EXCLUDED.name, tier = EXCLUDED.tier,
             status = EXCLUDED.status, revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at
           WHERE providers.revision <= EXCLUDED.revision""",
        p.provider_id,
        p.name,
        p.tier,
        p.status,
        event.revision,
        event.occurred_at,
    )


async def add_dead_letter(
    conn: Connection,
    *,
    origin_topic: str,
    origin_partition: int,
    origin_offset: int,
    consumer_group: str,
    reason: str,
    event_type: str | None,
    recorded_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO dead_letters (origin_topic, origin_partition, origin_offset, consumer_group, reason,
                                     event_type, recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        origin_topic,
        origin_partition,
        origin_offset,
        consumer_group,
        reason,
        event_type,
        recorded_at,
    )


# ---- KPIs -------------------------------------------------------------------------------------

# The period's cohort: packages requested in [$1, $2), in zone $3 and band $4 when given
# (indexes packages_requested_at, packages_zone_band).
_COHORT = """WITH cohort AS (
    SELECT * FROM packages
     WHERE requested_at >= $1 AND requested_at < $2
       AND ($3::text IS NULL OR zone = $3) AND ($4::text IS NULL OR band = $4))
"""

_IN_CARE_AT_END = """placed_at < $2 AND (cancelled_at IS NULL OR cancelled_at >= $2)
       AND (handed_back_at IS NULL OR handed_back_at < placed_at OR handed_back_at >= $2)
       AND (ended_on IS NULL OR (ended_on::timestamp AT TIME ZONE 'Europe/London') >= $2)
       AND ($3::text IS NULL OR zone = $3) AND ($4::text IS NULL OR band = $4)
       AND $1::timestamptz IS NOT NULL"""

KPI_QUERIES: dict[str, str] = {
    "counts": _COHORT
    + """SELECT count(*) AS requested,
           count(*) FILTER (WHERE placed_at IS NOT NULL) AS placed,
           count(*) FILTER (WHERE status = 'PackageUnplaced') AS unplaced,
           count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled,
           count(*) FILTER (WHERE status = 'ExceptionRequested') AS awaiting_approval,
           coalesce(sum(hand_backs), 0)::int AS handed_back
      FROM cohort""",
    # Time to place: median (interpolated, as statistics.median) and 90th percentile (nearest rank).
    "by_urgency": _COHORT
    + """SELECT urgency AS key, count(*) AS count,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM placed_at - requested_at)) AS median_s,
           percentile_disc(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM placed_at - requested_at)) AS p90_s
      FROM cohort WHERE placed_at IS NOT NULL GROUP BY urgency ORDER BY urgency""",
    "by_zone": _COHORT
    + """SELECT zone AS key, count(*) AS count,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM placed_at - requested_at)) AS median_s,
           percentile_disc(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM placed_at - requested_at)) AS p90_s
      FROM cohort WHERE placed_at IS NOT NULL GROUP BY zone ORDER BY zone""",
    # The waiting list now ($5): the cohort's packages whose latest state is unplaced.
    "queue": _COHORT
    + """SELECT zone, band, count(*) AS packages, sum(hours_per_week) AS hours,
           max(extract(epoch FROM $5::timestamptz - requested_at)) AS longest_wait_s
      FROM cohort WHERE status = 'PackageUnplaced' GROUP BY zone, band ORDER BY zone, band""",
    "above_rate": _COHORT
    + """SELECT package_id::text AS package_id FROM cohort
      WHERE placed_at IS NOT NULL AND hourly_rate > band_rate ORDER BY 1""",
    # Committed hours and spend: placed and never cancelled.
    "spend_by_band": _COHORT
    + """SELECT placed_band AS band, sum(hourly_rate * placed_hours) AS spend
      FROM cohort WHERE placed_at IS NOT NULL AND cancelled_at IS NULL GROUP BY placed_band ORDER BY placed_band""",
    "hours_by_zone_provider": _COHORT
    + """SELECT placed_zone AS zone, provider_id, sum(placed_hours) AS hours
      FROM cohort WHERE placed_at IS NOT NULL AND cancelled_at IS NULL
     GROUP BY placed_zone, provider_id ORDER BY placed_zone, provider_id""",
    "declines": _COHORT
    + """SELECT c.band, c.zone, a.reason, count(*)::int AS n
      FROM answers a JOIN cohort c USING (package_id) WHERE a.kind = 'decline'
     GROUP BY c.band, c.zone, a.reason ORDER BY c.band, c.zone, a.reason""",
    "bidders": _COHORT
    + """SELECT DISTINCT c.zone, a.provider_id FROM answers a JOIN cohort c USING (package_id) WHERE a.kind = 'bid'""",
    "by_day": _COHORT
    + """SELECT requested_on AS day, 'requested' AS kind, count(*)::int AS n FROM cohort GROUP BY requested_on
     UNION ALL
     SELECT (placed_at AT TIME ZONE 'Europe/London')::date, 'placed', count(*)::int FROM cohort
      WHERE placed_at IS NOT NULL GROUP BY 1""",
    "starts_by_week": _COHORT
    + """SELECT date_trunc('week', m.on_date)::date AS week, count(*)::int AS n
      FROM milestones m JOIN cohort c USING (package_id) WHERE m.event_type = 'PackageStarted'
     GROUP BY 1 ORDER BY 1""",
    # ---- beyond the cohort: what happened in the period ----
    "starts_in_period": """SELECT date_trunc('week', m.on_date)::date AS week, count(*)::int AS n
      FROM milestones m JOIN packages p USING (package_id)
     WHERE m.event_type = 'PackageStarted'
       AND m.on_date >= ($1::timestamptz AT TIME ZONE 'Europe/London')::date
       AND m.on_date < ($2::timestamptz AT TIME ZONE 'Europe/London')::date
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)
     GROUP BY 1 ORDER BY 1""",
    "hand_backs_by_provider": """SELECT m.provider_id, count(*)::int AS n
      FROM milestones m JOIN packages p USING (package_id)
     WHERE m.event_type = 'PackageHandedBack' AND m.occurred_at >= $1 AND m.occurred_at < $2
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)
     GROUP BY m.provider_id ORDER BY m.provider_id""",
    "exceptions": """SELECT count(*) FILTER (WHERE m.event_type = 'ExceptionRequested')::int AS requested,
           count(*) FILTER (WHERE m.event_type = 'ExceptionDecided' AND m.decision = 'approved')::int AS approved,
           count(*) FILTER (WHERE m.event_type = 'ExceptionDecided' AND m.decision = 'rejected')::int AS rejected
      FROM milestones m JOIN packages p USING (package_id)
     WHERE m.event_type IN ('ExceptionRequested', 'ExceptionDecided') AND m.occurred_at >= $1 AND m.occurred_at < $2
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)""",
    # In care at the period's end: placed before it, neither cancelled nor handed back (since
    # that placement) before it, not ended (from the UK midnight of its effective date) by then; a
    # paused package counts (its provider holds the hours). One person per package (reporting
    # holds no person ids).
    "in_care": """SELECT count(*)::int AS people, sum(placed_hours) AS hours FROM packages
     WHERE """
    + _IN_CARE_AT_END,
    "spend_in_care_by_band": """SELECT placed_band AS band, sum(hourly_rate * placed_hours) AS spend FROM packages
     WHERE """
    + _IN_CARE_AT_END
    + " GROUP BY placed_band ORDER BY placed_band",
    # The decline mix as a trend: declines per UK week of the answer, by the package's band and zone.
    "declines_by_week": """SELECT date_trunc('week', a.answered_at AT TIME ZONE 'Europe/London')::date AS week,
           p.band, p.zone, a.reason, count(*)::int AS n
      FROM answers a JOIN packages p USING (package_id)
     WHERE a.kind = 'decline' AND a.answered_at >= $1 AND a.answered_at < $2
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)
     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",
}
_ONE_ROW = {"counts", "exceptions", "in_care"}
_WITH_NOW = {"queue"}


async def kpi_figures(conn: Connection, period: Period, now: dt.datetime) -> dict[str, Any]:
    """Every KPI query's rows for ``period`` (one row for counts, exceptions, in_care), read in one
    REPEATABLE READ transaction so the measures agree with each other."""
    figures: dict[str, Any] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, sql in KPI_QUERIES.items():
            args: list[Any] = [period.start, period.end, period.zone, period.band]
            if name in _WITH_NOW:
                args.append(now)
            rows = await conn.fetch(sql, *args)
            if name in _ONE_ROW:
                figures[name] = dict(rows[0])
            elif name == "above_rate":
                figures[name] = [r["package_id"] for r in rows]
            else:
                figures[name] = [dict(r) for r in rows]
    return figures


async def export_rows(conn: Connection, table: str) -> tuple[list[str], list[asyncpg.Record]]:
    """The column names and every row of a projection table (one of ``EXPORT_TABLES``)."""
    if table not in EXPORT_TABLES:  # the name goes into the SQL: only the known tables
        raise ValueError(f"not an exported table: {table}")
    columns = [
        r["column_name"]
        for r in await conn.fetch(
            """SELECT column_name FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position""",
            table,
        )
    ]
    rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")
    return columns, rows


async def projection_state(conn: Connection) -> dict[str, Any]:
    """How much the projection holds: dead letters counted, the latest event applied (UTC ISO)."""
    row = await fetch_one(
        conn,
        """SELECT (SELECT count(*) FROM dead_letters)::int AS dead_letters,
                  (SELECT max(processed_at) FROM inbox) AS last_applied_at,
                  (SELECT count(*) FROM packages WHERE requested_at IS NOT NULL)::int AS packages""",
    )
    return {
        "dead_letters": row["dead_letters"],
        "packages": row["packages"],
        "last_applied_at": row["last_applied_at"].isoformat() if row["last_applied_at"] else None,
    }


# ---- rebuild ----------------------------------------------------------------------------------

PROJECTION_TABLES = ("packages", "offers", "answers", "placements", "milestones", "notification_outcomes", "providers")


async def reset_projection(conn: Connection) -> None:
    """Empty the projection (not the dead-letter count, which the topics cannot give back) and the
    rebuild's progress: the start of a fresh rebuild."""
    await conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}, rebuild_progress")


async def rebuild_progress(conn: Connection) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset a rebuild reads there."""
    rows = await conn.fetch("SELECT topic, partition, next_offset FROM rebuild_progress")
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def save_progress(conn: Connection, topic: str, partition: int, next_offset: int) -> None:
    await conn.execute(
        """INSERT INTO rebuild_progress (topic, partition, next_offset) VALUES ($1, $2, $3)
           ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()""",
        topic,
        partition,
        next_offset,
    )
