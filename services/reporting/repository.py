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
from typing import Any

import asyncpg

from services.reporting.domain import EXPORT_TABLES, Period
from services.runtime.db import Connection, fetch_one

# The projection's one-row-per-event tables: each column and its PostgreSQL type (a batch's rows go
# in as one array per column, ``unnest``-ed: one statement a table a batch). ``provider_ids`` (a
# text[] per row) travels comma-joined, since unnest flattens an array of arrays; provider ids
# have no commas (their pattern: ``^[a-z0-9][a-z0-9-]{1,63}$``).
EVENT_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "offers": (
        ("event_id", "uuid"),
        ("package_id", "uuid"),
        ("offer_round", "integer"),
        ("tier", "text"),
        ("provider_ids", "text"),
        ("band_rate", "numeric"),
        ("offered_at", "timestamptz"),
        ("window_closes_at", "timestamptz"),
    ),
    "answers": (
        ("event_id", "uuid"),
        ("package_id", "uuid"),
        ("offer_round", "integer"),
        ("provider_id", "text"),
        ("kind", "text"),
        ("hourly_rate", "numeric"),
        ("reason", "text"),
        ("adapter", "text"),
        ("answered_at", "timestamptz"),
    ),
    "placements": (
        ("event_id", "uuid"),
        ("package_id", "uuid"),
        ("provider_id", "text"),
        ("offer_round", "integer"),
        ("tier", "text"),
        ("hourly_rate", "numeric"),
        ("hours_per_week", "numeric"),
        ("zone", "text"),
        ("band", "text"),
        ("urgency", "text"),
        ("rate_card", "text"),
        ("start_date", "date"),
        ("placed_at", "timestamptz"),
    ),
    "milestones": (
        ("event_id", "uuid"),
        ("package_id", "uuid"),
        ("event_type", "text"),
        ("provider_id", "text"),
        ("reason", "text"),
        ("decision", "text"),
        ("hourly_rate", "numeric"),
        ("band_rate", "numeric"),
        ("hours_per_week", "numeric"),
        ("on_date", "date"),
        ("occurred_at", "timestamptz"),
    ),
    "provider_quality": (
        ("event_id", "uuid"),
        ("provider_id", "text"),
        ("change", "text"),
        ("cqc_rating", "text"),
        ("cqc_inspected_on", "date"),
        ("local_risk", "text"),
        ("quality_score", "numeric"),
        ("hand_backs_12m", "integer"),
        ("late_starts_12m", "integer"),
        ("open_complaints", "integer"),
        ("open_improvement_plans", "integer"),
        ("recorded_at", "timestamptz"),
    ),
    "notification_outcomes": (
        ("event_id", "uuid"),
        ("package_id", "uuid"),
        ("outcome", "text"),
        ("provider_id", "text"),
        ("message", "text"),
        ("recipient_kind", "text"),
        ("channel", "text"),
        ("reason", "text"),
        ("recipients", "integer"),
        ("attempts", "integer"),
        ("occurred_at", "timestamptz"),
    ),
}
_SELECTED = {
    "provider_ids": "string_to_array(provider_ids, ',')",
    "calls": "string_to_array(calls, ',')::integer[]",
}


def _unnest(columns: tuple[tuple[str, str], ...]) -> str:
    arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, 1))
    return f"unnest({arrays}) AS u({', '.join(c for c, _ in columns)})"


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def insert_events(conn: Connection, table: str, rows: list[tuple[Any, ...]]) -> set[uuid.UUID]:
    """Rows of one event table (each a tuple in the order of ``EVENT_TABLES[table]``, its event id
    first); returns the ids of the events the table did not hold yet (the rest change nothing)."""
    columns = EVENT_TABLES[table]
    names = ", ".join(c for c, _ in columns)
    selected = ", ".join(_SELECTED.get(c, c) for c, _ in columns)
    inserted = await conn.fetch(
        f"""INSERT INTO {table} ({names}) SELECT {selected} FROM {_unnest(columns)}
            ON CONFLICT DO NOTHING RETURNING event_id""",
        *_columns(rows, len(columns)),
    )
    return {r["event_id"] for r in inserted}


_REQUEST = (
    ("package_id", "uuid"),
    ("zone", "text"),
    ("band", "text"),
    ("urgency", "text"),
    ("hours_per_week", "numeric"),
    ("funding", "text"),
    ("start_date", "date"),
    ("requested_at", "timestamptz"),
    ("requested_on", "date"),
)


async def put_packages(conn: Connection, requests: list[tuple[Any, ...]], package_ids: list[uuid.UUID]) -> None:
    """The requests' columns of their packages' rows (each a tuple in the order of ``_REQUEST``, one
    a package), and a bare row for every other package named (an answer or a confirmation on
    another topic may arrive before its request)."""
    if requests:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c, _ in _REQUEST[1:])
        await conn.execute(
            f"""INSERT INTO packages ({", ".join(c for c, _ in _REQUEST)}) SELECT * FROM {_unnest(_REQUEST)}
               ON CONFLICT (package_id) DO UPDATE SET {updates}""",
            *_columns(requests, len(_REQUEST)),
        )
    if package_ids:
        await conn.execute(
            "INSERT INTO packages (package_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING", package_ids
        )


# How the package row's milestone columns take an event's values: counters add, first and last
# times keep the least or greatest, and a value that belongs to a time (the band rate to the
# latest offer, the provider to the latest placement, the state to the latest lifecycle event)
# follows the latest (or, for a first cancellation or ending, the earliest) of that time. Every
# rule is commutative and idempotent for a given set of events, so the order events arrive in,
# or a batch's events folded together first, gives the same row. A value comes before the time
# it follows (fold reads the time as it was).
ADD, LEAST, GREATEST = "add", "least", "greatest"
Rule = str | tuple[str, str]
PACKAGE_FOLDS: dict[str, tuple[str, Rule]] = {
    "offer_rounds": ("integer", ADD),
    "first_offered_at": ("timestamptz", LEAST),
    "band_rate": ("numeric", ("latest", "last_offered_at")),
    "last_offered_at": ("timestamptz", GREATEST),
    "placements": ("integer", ADD),
    "provider_id": ("text", ("latest", "placed_at")),
    "hourly_rate": ("numeric", ("latest", "placed_at")),
    "placed_hours": ("numeric", ("latest", "placed_at")),
    "placed_zone": ("text", ("latest", "placed_at")),
    "placed_band": ("text", ("latest", "placed_at")),
    "placed_at": ("timestamptz", GREATEST),
    "unplaced_reason": ("text", ("latest", "unplaced_at")),
    "unplaced_at": ("timestamptz", GREATEST),
    "cancel_reason": ("text", ("earliest", "cancelled_at")),
    "cancelled_at": ("timestamptz", LEAST),
    "started_on": ("date", GREATEST),
    "hand_backs": ("integer", ADD),
    "handed_back_at": ("timestamptz", GREATEST),
    "pauses": ("integer", ADD),
    "end_reason": ("text", ("earliest", "ended_on")),
    "ended_on": ("date", LEAST),
    "status": ("text", ("latest", "status_at")),
    "status_at": ("timestamptz", GREATEST),
}


def fold(row: dict[str, Any], values: dict[str, Any]) -> None:
    """Fold one event's values for a package's row (column -> value) into ``row``, by
    :data:`PACKAGE_FOLDS`: in Python what :func:`update_packages` does to the stored row."""
    for column, (_, rule) in PACKAGE_FOLDS.items():
        if column not in values:
            continue
        new, old = values[column], row.get(column)
        if rule == ADD:
            row[column] = (old or 0) + new
        elif rule == LEAST:
            row[column] = new if old is None else min(old, new)
        elif rule == GREATEST:
            row[column] = new if old is None else max(old, new)
        elif isinstance(rule, tuple):
            which, time = rule
            at, held = values[time], row.get(time)
            if held is None or (at >= held if which == "latest" else at < held):
                row[column] = new


def _folded(column: str, rule: Rule) -> str:
    if rule == ADD:
        return f"p.{column} + coalesce(u.{column}, 0)"
    if isinstance(rule, str):  # least, greatest: both pass over a NULL
        return f"{rule.upper()}(p.{column}, u.{column})"
    which, time = rule
    later = f"p.{time} <= u.{time}" if which == "latest" else f"u.{time} < p.{time}"
    return f"CASE WHEN u.{time} IS NOT NULL AND (p.{time} IS NULL OR {later}) THEN u.{column} ELSE p.{column} END"


_FOLD_COLUMNS = (("package_id", "uuid"), *((c, kind) for c, (kind, _) in PACKAGE_FOLDS.items()))
_UPDATE_PACKAGES = (
    "UPDATE packages p SET "
    + ", ".join(f"{c} = {_folded(c, rule)}" for c, (_, rule) in PACKAGE_FOLDS.items())
    + f" FROM {_unnest(_FOLD_COLUMNS)} WHERE p.package_id = u.package_id"
)


async def update_packages(conn: Connection, rows: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Fold each package's folded values (:func:`fold`) into its stored row, in one statement.
    Every right-hand side reads the row as it was, so the conditions agree with each other."""
    if not rows:
        return
    table = [(pid, *(row.get(c) for c in PACKAGE_FOLDS)) for pid, row in rows.items()]
    await conn.execute(_UPDATE_PACKAGES, *_columns(table, len(_FOLD_COLUMNS)))


_PROVIDER = (
    ("provider_id", "text"),
    ("name", "text"),
    ("tier", "text"),
    ("status", "text"),
    ("revision", "integer"),
    ("updated_at", "timestamptz"),
    ("zones", "text"),  # comma-separated here, an array in the table
    ("bands", "text"),
)


async def put_providers(conn: Connection, profiles: list[tuple[Any, ...]]) -> None:
    """The registry's latest profile of each provider (id, name, tier, status, revision, updated
    at, zones and bands comma-separated; one a provider): a lower revision arriving late changes nothing."""
    if not profiles:
        return
    await conn.execute(
        f"""INSERT INTO providers (provider_id, name, tier, status, revision, updated_at, zones, bands)
           SELECT provider_id, name, tier, status, revision, updated_at, string_to_array(zones, ','),
                  string_to_array(bands, ',')
             FROM {_unnest(_PROVIDER)}
           ON CONFLICT (provider_id) DO UPDATE SET name = EXCLUDED.name, tier = EXCLUDED.tier,
             status = EXCLUDED.status, revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at,
             zones = EXCLUDED.zones, bands = EXCLUDED.bands
           WHERE providers.revision <= EXCLUDED.revision""",
        *_columns(profiles, len(_PROVIDER)),
    )


_AGREEMENT = (
    ("record_id", "uuid"),
    ("event_id", "uuid"),
    ("agreement_id", "uuid"),
    ("version", "integer"),
    ("supersedes", "uuid"),
    ("reason", "text"),
    ("status", "text"),
    ("package_id", "uuid"),
    ("provider_id", "text"),
    ("zone", "text"),
    ("band", "text"),
    ("hourly_rate", "numeric"),
    ("band_rate", "numeric"),
    ("hours_per_week", "numeric"),
    ("weekly_cost", "numeric"),
    ("start_date", "date"),
    ("end_date", "date"),
    ("funding_revision", "integer"),
    ("cost_centre", "text"),
    ("rate_card", "text"),
    ("recorded_at", "timestamptz"),
)
AGREEMENT_LINE = (
    ("record_id", "uuid"),
    ("part", "integer"),
    ("line", "integer"),
    ("funding_from", "date"),
    ("funding_to", "date"),
    ("funder", "text"),
    ("payer", "text"),
    ("basis", "text"),
    ("percent", "numeric"),
    ("pounds_per_week", "numeric"),
    ("calls", "text"),  # basis calls: "1,3" (a day's first and third); stored as integer[]
)


async def put_agreements(conn: Connection, records: list[tuple[Any, ...]], lines: list[tuple[Any, ...]]) -> None:
    """Service agreement records (each a tuple in the order of ``_AGREEMENT``) and their payer lines
    (``AGREEMENT_LINE``): appended once by record id; a record applied again changes nothing, and a
    correction is a record of its own (the one in force is the one nothing supersedes)."""
    for table, columns, rows in (
        ("service_agreements", _AGREEMENT, records),
        ("service_agreement_lines", AGREEMENT_LINE, lines),
    ):
        if rows:
            await conn.execute(
                f"""INSERT INTO {table} ({", ".join(c for c, _ in columns)})
                    SELECT {", ".join(_SELECTED.get(c, c) for c, _ in columns)} FROM {_unnest(columns)}
                    ON CONFLICT DO NOTHING""",
                *_columns(rows, len(columns)),
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

# The coalesce(ended_on, ...) bound is implied by the exact test on ended_on (a package ended
# before the UK date of $2 ended before $2); it is there for the index packages_not_ended_by.
_IN_CARE_AT_END = """placed_at IS NOT NULL AND placed_at < $2
       AND coalesce(ended_on, 'infinity'::date) >= ($2::timestamptz AT TIME ZONE 'Europe/London')::date
       AND (cancelled_at IS NULL OR cancelled_at >= $2)
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
    # The weekly spend committed at the period's end (decision 0118): the service agreement records in
    # force (the latest version, agreed) covering the UK day before the end, pounds per week by band.
    "spend_in_care_by_band": """SELECT s.band, sum(s.weekly_cost) AS spend FROM service_agreements s
     WHERE s.status = 'agreed'
       AND s.start_date <= (($2::timestamptz - interval '1 microsecond') AT TIME ZONE 'Europe/London')::date
       AND coalesce(s.end_date, 'infinity'::date)
           >= (($2::timestamptz - interval '1 microsecond') AT TIME ZONE 'Europe/London')::date
       AND NOT EXISTS (SELECT 1 FROM service_agreements later WHERE later.supersedes = s.record_id)
       AND ($3::text IS NULL OR s.zone = $3) AND ($4::text IS NULL OR s.band = $4)
       AND $1::timestamptz IS NOT NULL
     GROUP BY s.band ORDER BY s.band""",
    # The decline mix as a trend: declines per UK week of the answer, by the package's band and zone.
    "declines_by_week": """SELECT date_trunc('week', a.answered_at AT TIME ZONE 'Europe/London')::date AS week,
           p.band, p.zone, a.reason, count(*)::int AS n
      FROM answers a JOIN packages p USING (package_id)
     WHERE a.kind = 'decline' AND a.answered_at >= $1 AND a.answered_at < $2
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)
     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",
    # Hospital discharge (decision 0097; 000:66-68): the discharges whose medically-fit UK date falls in
    # the period, and the day care at home began - the first of an in-house referral's first day and
    # the provider's start - against that date (day 0 = the same day). One cancelled with no care is
    # left out (the person did not leave with care from the council).
    "discharges": """WITH d AS (
    SELECT m.package_id, m.on_date AS fit_on FROM milestones m JOIN packages p USING (package_id)
     WHERE m.event_type = 'DischargeRequested'
       AND m.on_date >= ($1::timestamptz AT TIME ZONE 'Europe/London')::date
       AND m.on_date < ($2::timestamptz AT TIME ZONE 'Europe/London')::date
       AND ($3::text IS NULL OR p.zone = $3) AND ($4::text IS NULL OR p.band = $4)),
    home AS (
    SELECT d.package_id, d.fit_on, p.cancelled_at, least(
           (SELECT min(r.on_date) FROM milestones r
             WHERE r.package_id = d.package_id AND r.event_type = 'DischargeReferred'),
           (SELECT min(pl.start_date) FROM placements pl WHERE pl.package_id = d.package_id)) AS home_on,
           (SELECT min(r.reason) FROM milestones r
             WHERE r.package_id = d.package_id AND r.event_type = 'DischargeReferred') AS service
      FROM d JOIN packages p USING (package_id))
    SELECT count(*)::int AS discharges,
           count(*) FILTER (WHERE home_on - fit_on <= 1)::int AS day_0_or_1,
           count(*) FILTER (WHERE home_on IS NOT NULL)::int AS with_care,
           count(*) FILTER (WHERE service = 'reablement')::int AS reablement,
           count(*) FILTER (WHERE service = 'crisis_response')::int AS crisis_response
      FROM home WHERE NOT (home_on IS NULL AND cancelled_at IS NOT NULL)""",
}
_ONE_ROW = {"counts", "exceptions", "in_care", "discharges"}
_WITH_NOW = {"queue"}


async def kpi_figures(conn: Connection, period: Period, now: dt.datetime) -> dict[str, Any]:
    """Every KPI query's rows for ``period`` (one row for counts, exceptions, in_care), read in one
    REPEATABLE READ transaction so the measures agree with each other."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await custom_plans(conn)
        return {name: await kpi_rows(conn, name, period, now) for name in KPI_QUERIES}


async def custom_plans(conn: Connection) -> None:
    """For the rest of the transaction, plan each KPI query for its own period and filters: a
    generic plan (the one PostgreSQL may settle on for a prepared statement after five runs) cannot
    see that ``$3::text IS NULL`` or how many rows the period holds, and chooses scans that read
    every year."""
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")


async def kpi_rows(conn: Connection, name: str, period: Period, now: dt.datetime) -> Any:
    """One KPI query's answer (``KPI_QUERIES[name]``): a dict for the one-row measures, the
    package ids for above_rate, else a list of dicts."""
    args: list[Any] = [period.start, period.end, period.zone, period.band]
    if name in _WITH_NOW:
        args.append(now)
    rows = await conn.fetch(KPI_QUERIES[name], *args)
    if name in _ONE_ROW:
        return dict(rows[0])
    if name == "above_rate":
        return [r["package_id"] for r in rows]
    return [dict(r) for r in rows]


async def analyse(conn: Connection) -> None:
    """VACUUM and ANALYZE the projection after a rebuild: its planner statistics and visibility
    map would otherwise wait for autovacuum, and the KPI queries plan on a table of the wrong size
    and visit the heap for rows an index holds. Outside a transaction."""
    await conn.execute(f"VACUUM (ANALYZE) {', '.join(PROJECTION_TABLES)}")


# An export read from a view rather than its table: the records with whether each is in force.
EXPORT_SOURCES = {"service_agreements": "service_agreement_records"}


async def export_rows(conn: Connection, table: str) -> tuple[list[str], list[asyncpg.Record]]:
    """The column names and every row of a projection table (one of ``EXPORT_TABLES``; the
    service agreements with their ``in_force`` column)."""
    if table not in EXPORT_TABLES:  # the name goes into the SQL: only the known tables
        raise ValueError(f"not an exported table: {table}")
    table = EXPORT_SOURCES.get(table, table)
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

PROJECTION_TABLES = (
    "packages",
    "offers",
    "answers",
    "placements",
    "milestones",
    "notification_outcomes",
    "providers",
    "service_agreements",
    "service_agreement_lines",
)


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


# ---- reports for commissioners (decision 0105) -------------------------------------------


async def market_shares(conn: Connection, start: dt.datetime, end: dt.datetime, interval: str) -> list[asyncpg.Record]:
    """Placements in [start, end) by zone, UK week or month of the placement, and provider: count
    and carer hours per week."""
    return await conn.fetch(
        """SELECT zone, date_trunc($3, placed_at AT TIME ZONE 'Europe/London')::date AS period, provider_id,
                  count(*) AS placements, sum(hours_per_week) AS hours
             FROM placements WHERE placed_at >= $1 AND placed_at < $2
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        start,
        end,
        interval,
    )


async def answers_by_provider(conn: Connection, start: dt.datetime, end: dt.datetime) -> list[asyncpg.Record]:
    """Answers given in [start, end) by provider, the package's band and zone, and kind (bid,
    decline) with the decline's reason."""
    return await conn.fetch(
        """SELECT a.provider_id, p.band, p.zone, a.kind, a.reason, count(*) AS answers
             FROM answers a JOIN packages p USING (package_id)
            WHERE a.answered_at >= $1 AND a.answered_at < $2 AND p.band IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5""",
        start,
        end,
    )


async def quality_history(conn: Connection, end: dt.datetime) -> list[asyncpg.Record]:
    """Every register change recorded before ``end``, by provider and time."""
    return await conn.fetch(
        """SELECT q.*, p.name, p.status FROM provider_quality q LEFT JOIN providers p USING (provider_id)
            WHERE q.recorded_at < $1 ORDER BY q.provider_id, q.recorded_at, q.event_id""",
        end,
    )


async def coverage(conn: Connection, start: dt.datetime, end: dt.datetime) -> tuple[list[asyncpg.Record], ...]:
    """(active providers and the zones they serve, providers that bid for a package in each zone in
    [start, end))."""
    serving = await conn.fetch("SELECT provider_id, zones FROM providers WHERE status = 'active'")
    willing = await conn.fetch(
        """SELECT p.zone, array_agg(DISTINCT a.provider_id ORDER BY a.provider_id) AS providers
             FROM answers a JOIN packages p USING (package_id)
            WHERE a.kind = 'bid' AND a.answered_at >= $1 AND a.answered_at < $2 AND p.zone IS NOT NULL
            GROUP BY p.zone""",
        start,
        end,
    )
    return serving, willing


# The weekly commitment (decision 0118): for each UK week from Monday $1 to Monday $2, each agreement's
# record in force (nothing supersedes it) that is agreed, each funding part's payer lines for the days
# of the week the part covers. Sums of pounds x days and hours x days (exact numerics); the caller
# divides by 7 and rounds once, as the brokerage's own weekly commitment does. A payer's hours are the
# agreement's carer hours in proportion to its pounds (the lines of a part add up to the weekly cost).
_COMMITMENT_PARTS = """WITH weeks AS (SELECT generate_series($1::date, $2::date, interval '7 days')::date AS week),
    parts AS (
    SELECT s.agreement_id, s.provider_id, s.hours_per_week, s.weekly_cost, l.*
      FROM service_agreements s JOIN service_agreement_lines l USING (record_id)
     WHERE s.status = 'agreed' AND s.start_date <= $2::date + 6 AND coalesce(s.end_date, 'infinity'::date) >= $1
       AND NOT EXISTS (SELECT 1 FROM service_agreements later WHERE later.supersedes = s.record_id)),
    covered AS (
    SELECT w.week, p.*, least(coalesce(p.funding_to, w.week + 6), w.week + 6) - greatest(p.funding_from, w.week) + 1
           AS days
      FROM weeks w JOIN parts p ON p.funding_from <= w.week + 6 AND coalesce(p.funding_to, w.week + 6) >= w.week)
"""


async def weekly_commitments(conn: Connection, first_week: dt.date, last_week: dt.date) -> list[asyncpg.Record]:
    """Per UK week (its Monday, from ``first_week`` to ``last_week``), provider and payer: ``pound_days``
    (pounds per week x days covered) and ``hour_days`` (the payer's share of carer hours per week x
    days); per week and provider, ``agreements`` (how many were in force in the week)."""
    return await conn.fetch(
        _COMMITMENT_PARTS
        + """, counted AS (
    SELECT week, provider_id, count(DISTINCT agreement_id)::int AS agreements FROM covered GROUP BY 1, 2)
    SELECT c.week, c.provider_id, pr.name AS provider_name, c.payer, n.agreements,
           sum(c.pounds_per_week * c.days) AS pound_days,
           sum(c.hours_per_week * c.pounds_per_week / nullif(c.weekly_cost, 0) * c.days) AS hour_days
      FROM covered c JOIN counted n USING (week, provider_id) LEFT JOIN providers pr USING (provider_id)
     GROUP BY c.week, c.provider_id, pr.name, c.payer, n.agreements ORDER BY c.week, c.provider_id, c.payer""",
        first_week,
        last_week,
    )
