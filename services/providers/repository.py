"""Providers' tables (schema ``providers``), read and written with asyncpg. None commits."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from schemas.adapters import OfferClosedNotice
from schemas.events import OfferMade, PackageSpec, ProviderProfile
from services.providers.domain import AutomaticRules, Bid, Decline
from services.runtime import quality
from services.runtime.db import Connection, RowsInsert, fetch_one

PROFILE_FIELDS_IN_COLUMNS = ("weekly_capacity_hours", "committed_hours")


def profile_of(row: asyncpg.Record) -> ProviderProfile:
    data = json.loads(row["profile"])
    data["weekly_capacity_hours"] = row["weekly_capacity_hours"]
    data["committed_hours"] = row["committed_hours"]
    return ProviderProfile.model_validate(data)


def rules_of(row: asyncpg.Record) -> AutomaticRules:
    return AutomaticRules.model_validate_json(row["adapter"])


async def insert_provider(conn: Connection, seed: dict) -> asyncpg.Record | None:
    """Add a provider from the seed; None when it is already registered (the registry wins)."""
    profile = {k: v for k, v in seed.items() if k not in ("adapter", *PROFILE_FIELDS_IN_COLUMNS)}
    profile["committed_hours"] = str(seed.get("committed_hours", 0))
    profile["weekly_capacity_hours"] = str(seed["weekly_capacity_hours"])
    ProviderProfile.model_validate(profile)  # refuse a malformed seed entry loudly
    profile = {k: v for k, v in profile.items() if k not in PROFILE_FIELDS_IN_COLUMNS}
    return await conn.fetchrow(
        """INSERT INTO providers (provider_id, profile, adapter, weekly_capacity_hours, committed_hours)
           VALUES ($1, $2::jsonb, $3::jsonb, $4, $5) ON CONFLICT (provider_id) DO NOTHING RETURNING *""",
        seed["provider_id"],
        json.dumps(profile),
        json.dumps(seed.get("adapter") or {"kind": "automatic"}),
        Decimal(str(seed["weekly_capacity_hours"])),
        Decimal(str(seed.get("committed_hours", 0))),
    )


async def lock_provider(conn: Connection, provider_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM providers WHERE provider_id = $1 FOR UPDATE", provider_id)


# The providers a package ($1) concerns and those of {also} (text[]), locked in provider order. An
# array of ids, not IN (... UNION ...): a tenth of the planning and hashing per call.
LOCK_PACKAGE_PROVIDERS = """SELECT * FROM providers
                             WHERE provider_id = ANY(ARRAY(SELECT provider_id FROM offers WHERE package_id = $1
                                                           UNION ALL
                                                           SELECT provider_id FROM placements WHERE package_id = $1)
                                                     || {also}::text[])
                             ORDER BY provider_id FOR UPDATE"""
# The package's ($1) offers nobody answered, of the rounds before {before} (int; NULL: every round), closed.
CLOSE_UNANSWERED = """UPDATE offers SET status = 'closed'
                       WHERE package_id = $1 AND status = 'offered'
                         AND ({before}::int IS NULL OR offer_round < {before})"""


async def lock_package_providers(
    conn: Connection, package_id: uuid.UUID, also: Iterable[str] = ()
) -> dict[str, asyncpg.Record]:
    """Lock every provider the package concerns - offered it in any round, placed with it - and
    ``also``, in one statement in provider order (rows are locked as the sort hands them over):
    ``{provider_id: row}``.

    The lock order of this service (docs/decisions/0077): **providers first, in provider order,
    then the package's offers and placements**. The provider API takes its own provider before its
    offer; every handler that changes a package's offers or placements takes this first, so no two
    transactions wait for each other in opposite orders. (An award settling bids locked offers
    before providers and deadlocked with a bid arriving at the same moment.)"""
    rows = await conn.fetch(LOCK_PACKAGE_PROVIDERS.format(also="$2"), package_id, sorted(set(also)))
    return {r["provider_id"]: r for r in rows}


async def lock_and_close(
    conn: Connection, package_id: uuid.UUID, *, also: Iterable[str] = (), before_round: int | None = None
) -> tuple[dict[str, asyncpg.Record], list[dict[str, Any]]]:
    """:func:`lock_package_providers` then :func:`close_unanswered`, in one statement (a round trip
    fewer for every offer and award, decision 0148): ``({provider_id: row}, [closed offer: {provider_id,
    offer_round, window_closes_at}, ...])``.

    The close's condition reads the locked rows, an uncorrelated subquery that PostgreSQL runs once
    before the UPDATE scans a row: every provider's lock is taken before any offer is touched, so
    the service's lock order holds (``test_handlers_lock_the_packages_providers_before_its_offers``).
    The statement's snapshot is older than the locks it may wait for. An offer its provider
    answered in that wait is still not closed: PostgreSQL checks an UPDATE's condition again on a
    row's latest version (``test_a_bid_made_while_the_award_waited_for_its_provider_is_settled_not_closed``).
    An offer inserted in that wait would be missed; only this service's consumer inserts a
    package's offers, one event of the package at a time, so none is."""
    rows = await conn.fetch(
        f"""WITH locked AS ({LOCK_PACKAGE_PROVIDERS.format(also="$2")}),
                 closed AS ({CLOSE_UNANSWERED.format(before="$3")}
                              AND (SELECT count(*) FROM locked) >= 0
                            RETURNING provider_id, offer_round, window_closes_at)
            SELECT l.*, c.closed_rounds, c.closed_windows
              FROM locked l
              LEFT JOIN (SELECT provider_id, array_agg(offer_round ORDER BY offer_round) AS closed_rounds,
                                array_agg(window_closes_at ORDER BY offer_round) AS closed_windows
                           FROM closed GROUP BY provider_id) c USING (provider_id)
             ORDER BY l.provider_id""",
        package_id,
        sorted(set(also)),
        before_round,
    )
    closed = [
        {"provider_id": r["provider_id"], "offer_round": n, "window_closes_at": closes}
        for r in rows
        for n, closes in zip(r["closed_rounds"] or (), r["closed_windows"] or (), strict=True)
    ]
    return {r["provider_id"]: r for r in rows}, closed


async def insert_offers(
    conn: Connection,
    event: OfferMade,
    answers: dict[str, Bid | Decline | None],
    *,
    hours: Decimal,
    at: dt.datetime,
) -> set[str]:
    """The offer to each provider, with the automatic adapter's answer where there is one (None:
    the provider answers later, through the API); returns the providers whose offer is new (not
    a redelivery). A new bid holds the package's ``hours`` (carer hours a week) of its provider's
    capacity until the package is settled, in the same statement (decision 0145)."""
    ids = sorted(answers)
    bids = {i: a for i, a in answers.items() if isinstance(a, Bid)}
    declines = {i: a for i, a in answers.items() if isinstance(a, Decline)}
    rows = await conn.fetch(
        """WITH new AS (
               INSERT INTO offers (package_id, offer_round, tier, spec, band_rate, window_closes_at, provider_id,
                                   status, hourly_rate, earliest_start, held_hours, decline_reason, decline_text,
                                   answered_at, adapter)
               SELECT $1, $2, $3, $4::jsonb, $5, $6, t.*
                 FROM unnest($7::text[], $8::text[], $9::numeric[], $10::date[], $11::numeric[], $12::text[],
                             $13::text[], $14::timestamptz[], $15::text[]) AS t
               ON CONFLICT DO NOTHING RETURNING provider_id, held_hours),
           held AS (
               UPDATE providers p SET held_hours = p.held_hours + new.held_hours
                 FROM new WHERE p.provider_id = new.provider_id AND new.held_hours > 0)
           SELECT provider_id FROM new""",
        event.package_id,
        event.offer_round,
        event.tier.value,
        event.package.model_dump_json(),
        event.band_rate,
        event.window_closes_at,
        ids,
        ["offered" if answers[i] is None else "bid" if i in bids else "declined" for i in ids],
        [bids[i].hourly_rate if i in bids else None for i in ids],
        [bids[i].earliest_start if i in bids else None for i in ids],
        [hours if i in bids else 0 for i in ids],
        [declines[i].reason.value if i in declines else None for i in ids],
        [declines[i].text if i in declines else None for i in ids],
        [None if answers[i] is None else at for i in ids],
        [None if answers[i] is None else "automatic" for i in ids],
    )
    return {r["provider_id"] for r in rows}


async def record_bid(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    offer_round: int,
    provider_id: str,
    hourly_rate: Decimal,
    hold: Decimal,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE offers SET status = 'bid', hourly_rate = $4, held_hours = $5, answered_at = $6
            WHERE package_id = $1 AND offer_round = $2 AND provider_id = $3""",
        package_id,
        offer_round,
        provider_id,
        hourly_rate,
        hold,
        at,
    )
    await conn.execute("UPDATE providers SET held_hours = held_hours + $2 WHERE provider_id = $1", provider_id, hold)


async def record_decline(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    offer_round: int,
    provider_id: str,
    reason: str,
    text: str,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE offers SET status = 'declined', decline_reason = $4, decline_text = $5, answered_at = $6
            WHERE package_id = $1 AND offer_round = $2 AND provider_id = $3""",
        package_id,
        offer_round,
        provider_id,
        reason,
        text,
        at,
    )


# Every bid of the package ($1) still holding capacity closed - won by $2, lost by the others, or
# just closed when $2 is NULL - and the held hours given back: the bids locked first, in a fixed
# order of providers (no deadlocks). Its statement ends by reading ``settled`` (provider_id,
# offer_round, held_hours, status).
SETTLE_BIDS = """WITH held AS (
                     SELECT package_id, offer_round, provider_id, held_hours FROM offers
                      WHERE package_id = $1 AND status = 'bid' ORDER BY provider_id, offer_round FOR UPDATE),
                   settled AS (
                     UPDATE offers o SET status = CASE WHEN $2::text IS NULL THEN 'closed'
                                                       WHEN o.provider_id = $2 THEN 'won' ELSE 'lost' END,
                                         held_hours = 0
                       FROM held h
                      WHERE o.package_id = h.package_id AND o.offer_round = h.offer_round
                        AND o.provider_id = h.provider_id
                     RETURNING h.provider_id, h.offer_round, h.held_hours, o.status),
                   released AS (
                     UPDATE providers p SET held_hours = p.held_hours - r.hours
                       FROM (SELECT provider_id, sum(held_hours) AS hours FROM settled GROUP BY provider_id
                             ORDER BY provider_id) r
                      WHERE p.provider_id = r.provider_id)"""


async def settle_bids(conn: Connection, package_id: uuid.UUID, *, won_by: str | None = None) -> list[asyncpg.Record]:
    """Close every bid of the package still holding capacity - won by ``won_by``, lost by the
    others, or just closed when there is no winner - and give the providers the held hours back,
    in one statement (:data:`SETTLE_BIDS`). Returns the bids settled now: ``provider_id``,
    ``offer_round``, ``status`` (won, lost, closed)."""
    return await conn.fetch(
        f"{SETTLE_BIDS} SELECT provider_id, offer_round, status FROM settled ORDER BY provider_id, offer_round",
        package_id,
        won_by,
    )


# The package's ($1) live placement (at most one: a unique index), locked for the transaction.
LIVE_PLACEMENT = "SELECT * FROM placements WHERE package_id = $1 AND ended_at IS NULL FOR UPDATE"


@dataclass(frozen=True)
class Settled:
    """What an award finds once its bids are settled (:func:`settle_award`)."""

    bids: list[dict[str, Any]]  # provider_id, offer_round, status (won, lost), by provider and round
    cancelled: bool  # the package was cancelled (an award replayed late)
    live: asyncpg.Record | None  # its live placement, locked for this transaction


async def settle_award(conn: Connection, package_id: uuid.UUID, won_by: str) -> Settled:
    """:func:`settle_bids` for an award won by ``won_by``, and in the same statement what the award
    meets: whether the package was cancelled, and its live placement (the placement's columns, as
    :func:`live_placement` reads them, locked for this transaction; the record also carries the
    statement's ``settled`` and ``cancelled``). Run after the package's providers are locked
    (:func:`lock_and_close`), so its snapshot is taken after theirs: it sees what a transaction
    that held them committed. The placement's lock is taken here before the bids' (two
    statements took them the other way round): harmless, as every writer of either holds the
    package's providers first. One round trip an award fewer than two statements."""
    row = await conn.fetchrow(
        f"""{SETTLE_BIDS}
            SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('provider_id', provider_id,
                                                                 'offer_round', offer_round, 'status', status)
                                              ORDER BY provider_id, offer_round), '[]')::text FROM settled) AS settled,
                   EXISTS (SELECT 1 FROM cancelled_packages WHERE package_id = $1) AS cancelled, live.*
              FROM (SELECT 1) one
              LEFT JOIN LATERAL ({LIVE_PLACEMENT}) live ON true""",
        package_id,
        won_by,
    )
    assert row is not None  # one row always
    return Settled(json.loads(row["settled"]), row["cancelled"], row if row["package_id"] is not None else None)


async def remember_cancelled(conn: Connection, package_id: uuid.UUID, at: dt.datetime) -> None:
    await conn.execute("INSERT INTO cancelled_packages VALUES ($1, $2) ON CONFLICT DO NOTHING", package_id, at)


# The packages the brokerage requested (handlers.record_request), ignoring one recorded already.
KNOWN_PACKAGE_ROWS = RowsInsert(
    "known_packages", (("package_id", "uuid"), ("requested_at", "timestamptz")), suffix="ON CONFLICT DO NOTHING"
)


async def live_placement(conn: Connection, package_id: uuid.UUID) -> asyncpg.Record | None:
    """The package's live placement (at most one: a unique index), locked for this transaction."""
    return await conn.fetchrow(LIVE_PLACEMENT, package_id)


async def end_placement(
    conn: Connection,
    package_id: uuid.UUID,
    at: dt.datetime,
    *,
    why: str,
    provider_id: str | None = None,
    hold_until: dt.date | None = None,
) -> asyncpg.Record | None:
    """End the package's live placement if it was placed before ``at`` (and is ``provider_id``'s,
    when given); None when there was no such placement (none live, a redelivery, a later award's).
    With ``hold_until`` (a UK date: a hand-back's notice's last day) on or after the placement's
    start, its hours stay committed until then (:func:`due_held_hours`); ``hours_held_until`` in
    the row returned says whether they do."""
    return await conn.fetchrow(
        """UPDATE placements SET ended_at = $2, end_reason = $3,
                  hours_held_until = CASE WHEN $5::date >= start_date THEN $5::date END,
                  hours_released_at = CASE WHEN $5::date >= start_date THEN NULL ELSE $2 END
            WHERE package_id = $1 AND ended_at IS NULL AND placed_at <= $2
              AND ($4::text IS NULL OR provider_id = $4)
           RETURNING provider_id, hours_per_week, hours_held_until""",
        package_id,
        at,
        why,
        provider_id,
        hold_until,
    )


async def close_ignored_change(conn: Connection, change_id: uuid.UUID) -> None:
    """A change the placement could not take (not its hours, or no longer its package): closed."""
    await conn.execute("UPDATE change_offers SET status = 'closed' WHERE change_id = $1", change_id)


async def due_held_hours(conn: Connection | asyncpg.Pool, today: dt.date) -> tuple[uuid.UUID, str] | None:
    """An ended placement whose hours were held through a notice that ended before ``today`` (UK):
    (package id, provider id). Not locked here - the caller takes the providers' locks first."""
    row = await conn.fetchrow(
        """SELECT package_id, provider_id FROM placements
            WHERE hours_held_until < $1 AND hours_released_at IS NULL
            ORDER BY hours_held_until LIMIT 1""",
        today,
    )
    return None if row is None else (row["package_id"], row["provider_id"])


async def release_held_hours(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    at: dt.datetime,
    provider_id: str | None = None,
    ended_before: dt.date | None = None,
) -> list[asyncpg.Record]:
    """Mark released the hours still held through a notice on the package's ended placements - of
    ``provider_id`` only, and only of notices that ended before ``ended_before`` (UK), when given
    (the endings timer); all of them when not (a cancellation). The placements released, none when
    released already or not due: provider id and hours to give back."""
    return await conn.fetch(
        """UPDATE placements SET hours_released_at = $2
            WHERE package_id = $1 AND hours_held_until IS NOT NULL AND hours_released_at IS NULL
              AND ($3::text IS NULL OR provider_id = $3) AND ($4::date IS NULL OR hours_held_until < $4)
           RETURNING provider_id, hours_per_week""",
        package_id,
        at,
        provider_id,
        ended_before,
    )


async def shorten_held_hours(conn: Connection, package_id: uuid.UUID, last_day: dt.date) -> None:
    """The package ended: hours held through a notice are held no later than its last day of care
    (the ending's effective date's eve)."""
    await conn.execute(
        """UPDATE placements SET hours_held_until = $2
            WHERE package_id = $1 AND hours_held_until > $2 AND hours_released_at IS NULL""",
        package_id,
        last_day,
    )


async def record_pause(
    conn: Connection,
    package_id: uuid.UUID,
    provider_id: str,
    *,
    paused_on: dt.date,
    reason: str,
    hold_expires_at: dt.datetime,
    paid: bool,
) -> bool:
    """The pause on the provider's live placement (its hours stay committed); False when there is
    none to pause, or it is paused already (a redelivery)."""
    return bool(
        await conn.fetchval(
            """UPDATE placements SET paused_on = $3, pause_reason = $4, hold_expires_at = $5, paid_during_hold = $6,
                                     pauses = pauses + 1
                WHERE package_id = $1 AND provider_id = $2 AND ended_at IS NULL AND paused_on IS NULL
               RETURNING true""",
            package_id,
            provider_id,
            paused_on,
            reason,
            hold_expires_at,
            paid,
        )
    )


async def record_resume(conn: Connection, package_id: uuid.UUID, provider_id: str) -> bool:
    """The live placement running again (the pause count stays); False when it was not paused."""
    return bool(
        await conn.fetchval(
            """UPDATE placements SET paused_on = NULL, pause_reason = NULL, hold_expires_at = NULL,
                                     paid_during_hold = NULL
                WHERE package_id = $1 AND provider_id = $2 AND ended_at IS NULL AND paused_on IS NOT NULL
               RETURNING true""",
            package_id,
            provider_id,
        )
    )


async def schedule_ending(
    conn: Connection, package_id: uuid.UUID, provider_id: str, *, ends_on: dt.date, reason: str
) -> bool:
    """An ending dated ahead, kept on the live placement until :func:`due_ending` finds it due."""
    return bool(
        await conn.fetchval(
            """UPDATE placements SET ends_on = $3, ending_reason = $4
                WHERE package_id = $1 AND provider_id = $2 AND ended_at IS NULL RETURNING true""",
            package_id,
            provider_id,
            ends_on,
            reason,
        )
    )


async def due_ending(conn: Connection | asyncpg.Pool, today: dt.date) -> tuple[uuid.UUID, str] | None:
    """A live placement whose ending's date has come: (package id, provider id). Not locked here -
    the caller takes the providers' locks first (the lock order, decision 0077)."""
    row = await conn.fetchrow(
        """SELECT package_id, provider_id FROM placements WHERE ended_at IS NULL AND ends_on <= $1
            ORDER BY ends_on LIMIT 1""",
        today,
    )
    return None if row is None else (row["package_id"], row["provider_id"])


async def commit_hours(conn: Connection, provider_id: str, hours: Decimal) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """UPDATE providers SET committed_hours = committed_hours + $2, revision = revision + 1, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        hours,
    )


async def insert_placement(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    offer_round: int,
    provider_id: str,
    hours: Decimal,
    hourly_rate: Decimal,
    start_date: dt.date,
    placed_at: dt.datetime,
) -> asyncpg.Record | None:
    """A live placement for this award, and its ``hours`` (carer hours a week) committed to the
    provider, in one statement: returns the provider's row after, or None when the award's
    placement exists already (nothing changed)."""
    return await conn.fetchrow(
        """WITH placed AS (
               INSERT INTO placements (package_id, offer_round, provider_id, hours_per_week, hourly_rate, start_date,
                                       placed_at)
               VALUES ($1, $7, $2, $3, $4, $5, $6) ON CONFLICT (package_id, offer_round) DO NOTHING
               RETURNING provider_id, hours_per_week)
           UPDATE providers p SET committed_hours = p.committed_hours + placed.hours_per_week,
                  revision = p.revision + 1, updated_at = now()
             FROM placed WHERE p.provider_id = placed.provider_id RETURNING p.*""",
        package_id,
        provider_id,
        hours,
        hourly_rate,
        start_date,
        placed_at,
        offer_round,
    )


async def date_hand_backs(conn: Connection, provider_id: str, today: dt.date) -> asyncpg.Record:
    """The profile's hand-backs from the dated record (decision 0119): ``hand_back_dates`` (the UK
    dates in the 12 months to ``today``) and ``hand_backs_12m`` (their number); the next revision.
    Returns the provider's row."""
    [row] = await date_many_hand_backs(conn, [provider_id], today)
    return row


async def date_many_hand_backs(conn: Connection, provider_ids: list[str], today: dt.date) -> list[asyncpg.Record]:
    """:func:`date_hand_backs` for several providers in one statement; their rows, in provider order.
    "In the 12 months to today": after the day 365 days before it, not after it (quality.in_last_12_months)."""
    rows = await conn.fetch(
        """UPDATE providers p SET profile = p.profile || jsonb_build_object('hand_back_dates', d.dates,
                                                                    'hand_backs_12m', d.n),
                                  revision = p.revision + 1, updated_at = now()
             FROM unnest($1::text[]) AS u(provider_id)
             CROSS JOIN LATERAL (
                 SELECT coalesce(jsonb_agg(i.on_date ORDER BY i.on_date), '[]'::jsonb) AS dates, count(*)::int AS n
                   FROM delivery_incidents i
                  WHERE i.provider_id = u.provider_id AND i.kind = 'hand_back'
                    AND i.on_date > $2::date - $3::int AND i.on_date <= $2::date) d
            WHERE p.provider_id = u.provider_id RETURNING p.*""",
        provider_ids,
        today,
        quality.WINDOW_DAYS,
    )
    return sorted(rows, key=lambda r: r["provider_id"])


async def hand_back_dates(conn: Connection | asyncpg.Pool, provider_id: str, today: dt.date) -> list[dt.date]:
    """The UK dates of the provider's hand-backs in the 12 months to ``today``, oldest first."""
    rows = await conn.fetch(
        """SELECT on_date FROM delivery_incidents
            WHERE provider_id = $1 AND kind = 'hand_back' AND on_date > $2::date - $3::int AND on_date <= $2::date
            ORDER BY on_date""",
        provider_id,
        today,
        quality.WINDOW_DAYS,
    )
    return [r["on_date"] for r in rows]


async def lock_undated_profiles(conn: Connection) -> list[str]:
    """Lock the providers whose profile has no dated hand-backs yet (seeded, or written before
    decision 0119), in provider order (the service's lock order); their ids."""
    rows = await conn.fetch(
        """SELECT provider_id FROM providers WHERE NOT profile ? 'hand_back_dates'
            ORDER BY provider_id FOR UPDATE"""
    )
    return [r["provider_id"] for r in rows]


async def insert_seeded_hand_backs(conn: Connection, seeded: list[tuple[str, dt.date]]) -> int:
    """Hand-backs the seed file dates ((provider id, UK date); before the platform: no package), once
    per provider: none are added for a provider with seeded ones already. Returns how many were added."""
    added = await conn.fetch(
        """INSERT INTO delivery_incidents (provider_id, package_id, kind, on_date, source)
           SELECT u.provider_id, NULL, 'hand_back', u.on_date, 'seed'
             FROM unnest($1::text[], $2::date[]) AS u(provider_id, on_date)
            WHERE NOT EXISTS (SELECT 1 FROM delivery_incidents i
                               WHERE i.provider_id = u.provider_id AND i.source = 'seed')
           RETURNING incident_id""",
        [p for p, _ in seeded],
        [d for _, d in seeded],
    )
    return len(added)


async def set_status(
    conn: Connection, provider_id: str, *, status: str, reason: str, decided_by: str, at: dt.datetime
) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO status_changes (provider_id, status, reason, decided_by, decided_at) VALUES ($1, $2, $3, $4, $5)",
        provider_id,
        status,
        reason,
        decided_by,
        at,
    )
    return await fetch_one(
        conn,
        """UPDATE providers SET profile = jsonb_set(profile, '{status}', to_jsonb($2::text)),
                                revision = revision + 1, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        status,
    )


async def status_history(conn: Connection | asyncpg.Pool, provider_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT status, reason, decided_by, decided_at FROM status_changes WHERE provider_id = $1 ORDER BY id",
        provider_id,
    )


# ---- joining the framework: applications and due-diligence checks (decision 0112) -------------


async def insert_application(
    conn: Connection, application: dict, *, recorded_by: str, at: dt.datetime
) -> asyncpg.Record:
    """A received application. Raises ``asyncpg.UniqueViolationError`` when its tender reference was
    recorded before or its provider id has a live application (the caller says which)."""
    return await fetch_one(
        conn,
        """INSERT INTO applications (application_id, provider_id, name, zones, bands, skills, double_handed,
                                     weekly_capacity_hours, cqc_location_id, cqc_rating, adapter, tender_reference,
                                     received_on, window_id, recorded_by, recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16) RETURNING *""",
        application["application_id"],
        application["provider_id"],
        application["name"],
        application["zones"],
        application["bands"],
        application["skills"],
        application["double_handed"],
        application["weekly_capacity_hours"],
        application["cqc_location_id"],
        application["cqc_rating"],
        json.dumps(application["adapter"]),
        application["tender_reference"],
        application["received_on"],
        application["window_id"],
        recorded_by,
        at,
    )


async def application(
    conn: Connection | asyncpg.Pool, application_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM applications WHERE application_id = $1" + (" FOR UPDATE" if lock else ""), application_id
    )


async def applications(conn: Connection | asyncpg.Pool, status: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM applications WHERE ($1::text IS NULL OR status = $1)
            ORDER BY received_on DESC, recorded_at DESC LIMIT $2""",
        status,
        limit,
    )


async def insert_check(
    conn: Connection,
    application_id: uuid.UUID,
    *,
    item: str,
    outcome: str,
    evidence_reference: str,
    reviewed_by: str,
    reviewed_on: dt.date,
    note: str | None,
    at: dt.datetime,
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """INSERT INTO due_diligence_checks (application_id, item, outcome, evidence_reference, reviewed_by,
                                             reviewed_on, note, recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        application_id,
        item,
        outcome,
        evidence_reference,
        reviewed_by,
        reviewed_on,
        note,
        at,
    )


async def checks(conn: Connection | asyncpg.Pool, application_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every check of the application, oldest first (the latest per item counts)."""
    return await conn.fetch("SELECT * FROM due_diligence_checks WHERE application_id = $1 ORDER BY id", application_id)


async def decide_application(
    conn: Connection,
    application_id: uuid.UUID,
    *,
    status: str,
    decided_by: str,
    at: dt.datetime,
    refusal_reason: str | None,
    note: str | None,
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """UPDATE applications SET status = $2, decided_by = $3, decided_at = $4, refusal_reason = $5,
                                   decision_note = $6
            WHERE application_id = $1 RETURNING *""",
        application_id,
        status,
        decided_by,
        at,
        refusal_reason,
        note,
    )


async def record_joining(conn: Connection, provider_id: str, *, reason: str, decided_by: str, at: dt.datetime) -> None:
    """The provider's first line of its status history: it joined, active."""
    await conn.execute(
        """INSERT INTO status_changes (provider_id, status, reason, decided_by, decided_at)
           VALUES ($1, 'active', $2, $3, $4)""",
        provider_id,
        reason,
        decided_by,
        at,
    )


# ---- credentials, self-service, adapters, webhook deliveries ------------------------------


async def insert_credential(
    conn: Connection, provider_id: str, credential_id: str, secret_sha256: str, label: str
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """INSERT INTO credentials (credential_id, provider_id, secret_sha256, label) VALUES ($1, $2, $3, $4)
           RETURNING credential_id, provider_id, label, created_at, revoked_at, last_used_at""",
        credential_id,
        provider_id,
        secret_sha256,
        label,
    )


async def revoke_credentials(conn: Connection, provider_id: str, credential_id: str | None = None) -> list[str]:
    """Revoke one credential (or, with None, every live one) of the provider; the ids revoked."""
    rows = await conn.fetch(
        """UPDATE credentials SET revoked_at = now()
            WHERE provider_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR credential_id = $2)
           RETURNING credential_id""",
        provider_id,
        credential_id,
    )
    return [r["credential_id"] for r in rows]


async def live_credential(conn: Connection | asyncpg.Pool, credential_id: str) -> asyncpg.Record | None:
    """A credential not revoked, of a provider still on the framework."""
    return await conn.fetchrow(
        """SELECT c.credential_id, c.provider_id, c.secret_sha256 FROM credentials c
             JOIN providers p USING (provider_id)
            WHERE c.credential_id = $1 AND c.revoked_at IS NULL AND p.profile->>'status' <> 'left'""",
        credential_id,
    )


async def latest_offer(
    conn: Connection, provider_id: str, package_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """The provider's own latest offer of the package (never another provider's)."""
    return await conn.fetchrow(
        f"""SELECT * FROM offers WHERE provider_id = $1 AND package_id = $2
             ORDER BY offer_round DESC LIMIT 1 {"FOR UPDATE" if lock else ""}""",
        provider_id,
        package_id,
    )


async def close_unanswered(
    conn: Connection, package_id: uuid.UUID, before_round: int | None = None
) -> list[asyncpg.Record]:
    """Offers nobody answered, of a round that is over (a later round began, or the package's outcome
    is known); returns those closed now: ``provider_id``, ``offer_round``, ``window_closes_at``."""
    return await conn.fetch(
        f"{CLOSE_UNANSWERED.format(before='$2')} RETURNING provider_id, offer_round, window_closes_at",
        package_id,
        before_round,
    )


# Pending webhook deliveries of the package's ($1) offers that can no longer be answered.
WITHDRAW_OFFER_DELIVERIES = """UPDATE webhook_deliveries d SET status = 'withdrawn'
                                 FROM offers o
                                WHERE d.package_id = $1 AND d.status = 'pending' AND d.kind = 'offer'
                                  AND o.package_id = d.package_id AND o.offer_round = d.offer_round
                                  AND o.provider_id = d.provider_id AND o.status <> 'offered'"""


async def withdraw_offer_deliveries(conn: Connection, package_id: uuid.UUID) -> int:
    """Pending webhook deliveries of the package's offers that can no longer be answered (answered,
    closed, settled): withdrawn, never sent again (an attempt already in flight records nothing).
    Returns how many."""
    result = await conn.execute(WITHDRAW_OFFER_DELIVERIES, package_id)
    return int(result.split()[-1])


async def record_closures(conn: Connection, package_id: uuid.UUID, notices: list[OfferClosedNotice]) -> set[uuid.UUID]:
    """Record the package's closed offers' notices (each once per offer) and withdraw its pending
    offer deliveries that can no longer be answered (:func:`withdraw_offer_deliveries`), in one
    statement: the ``notice_id`` of the notices recorded now (one recorded before is not among
    them). A round trip a notice, and one more, before (decision 0141)."""
    rows = await conn.fetch(
        f"WITH withdrawn AS ({WITHDRAW_OFFER_DELIVERIES}) "
        + """INSERT INTO offer_closures (notice_id, package_id, offer_round, provider_id, outcome, reason, rank,
                                         ranked_bids, closed_at)
             SELECT t.notice_id, $1, t.offer_round, t.provider_id, t.outcome, t.reason, t.rank, t.ranked_bids,
                    t.closed_at
               FROM unnest($2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[],
                           $9::timestamptz[])
                    AS t(notice_id, offer_round, provider_id, outcome, reason, rank, ranked_bids, closed_at)
             ON CONFLICT DO NOTHING RETURNING notice_id""",
        package_id,
        [n.notice_id for n in notices],
        [n.offer_round for n in notices],
        [n.provider_id for n in notices],
        [n.outcome for n in notices],
        [n.reason for n in notices],
        [n.rank for n in notices],
        [n.ranked_bids for n in notices],
        [n.closed_at for n in notices],
    )
    return {r["notice_id"] for r in rows}


async def closures_of(
    conn: Connection | asyncpg.Pool,
    provider_id: str,
    limit: int,
    since: dt.datetime | None = None,
    after: tuple[Any, ...] | None = None,
) -> list[asyncpg.Record]:
    """The provider's closing notices, newest first (``closed_at`` then ``notice_id``, descending),
    the page after the cursor ``after`` = (closed_at, notice_id)."""
    return await conn.fetch(
        """SELECT * FROM offer_closures WHERE provider_id = $1 AND ($3::timestamptz IS NULL OR closed_at > $3)
              AND ($4::timestamptz IS NULL OR (closed_at, notice_id) < ($4, $5::uuid))
            ORDER BY closed_at DESC, notice_id DESC LIMIT $2""",
        provider_id,
        limit,
        since,
        *(after or (None, None)),
    )


async def insert_notice_delivery(
    conn: Connection, *, delivery_id: uuid.UUID, notice: OfferClosedNotice, url: str, give_up_at: dt.datetime
) -> None:
    """An offer's closing notice, POSTed to the provider's webhook by the delivery loop."""
    await conn.execute(
        """INSERT INTO webhook_deliveries (delivery_id, provider_id, package_id, offer_round, url, body, give_up_at,
                                           kind)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'offer_closed') ON CONFLICT DO NOTHING""",
        delivery_id,
        notice.provider_id,
        notice.package_id,
        notice.offer_round,
        url,
        notice.model_dump_json(),
        give_up_at,
    )


async def update_adapter(
    conn: Connection, provider_id: str, adapter: dict, webhook_secret: str | None
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        "UPDATE providers SET adapter = $2::jsonb, webhook_secret = $3, updated_at = now() WHERE provider_id = $1 "
        "RETURNING *",
        provider_id,
        json.dumps(adapter),
        webhook_secret,
    )


async def update_capacity(conn: Connection, provider_id: str, hours: Decimal) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """UPDATE providers SET weekly_capacity_hours = $2, revision = revision + 1, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        hours,
    )


async def update_coverage(conn: Connection, provider_id: str, zones: list[str], bands: list[str]) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """UPDATE providers SET profile = profile || jsonb_build_object('zones', $2::jsonb, 'bands', $3::jsonb),
                                revision = revision + 1, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        json.dumps(zones),
        json.dumps(bands),
    )


async def insert_delivery(
    conn: Connection, *, delivery_id: uuid.UUID, provider_id: str, event: OfferMade, url: str, body: str
) -> None:
    await conn.execute(
        """INSERT INTO webhook_deliveries (delivery_id, provider_id, package_id, offer_round, url, body, give_up_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        delivery_id,
        provider_id,
        event.package_id,
        event.offer_round,
        url,
        body,
        event.window_closes_at,
    )


async def claim_due_deliveries(conn: Connection, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Due deliveries, leased: pushed ``lease_seconds`` ahead so that another loop (or this one after
    a crash) retries them only if this attempt never records its outcome."""
    return await conn.fetch(
        """UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts + 1,
                                           last_attempt_at = now()
             FROM providers p
            WHERE d.delivery_id IN (SELECT delivery_id FROM webhook_deliveries
                                     WHERE status = 'pending' AND next_attempt_at <= now()
                                     ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
              AND p.provider_id = d.provider_id
        RETURNING d.*, p.webhook_secret,
                  CASE WHEN p.previous_secret_expires_at > now() THEN p.previous_webhook_secret END
                      AS previous_webhook_secret""",
        limit,
        lease_seconds,
    )


async def record_delivery_outcome(
    conn: Connection,
    delivery_id: uuid.UUID,
    *,
    delivered: bool,
    status_code: int | None,
    error: str | None,
    retry_in: float,
    max_attempts: int,
    attempt: int,
    attempted_at: dt.datetime,
    duration_ms: int,
    signed_with: int,
) -> None:
    """The attempt's outcome on the delivery (its status, the next attempt) and in its history of
    attempts (every one kept, not only the last). An attempt whose delivery was withdrawn meanwhile
    is still kept in the history."""
    await conn.execute(
        """INSERT INTO webhook_delivery_attempts (delivery_id, attempt, attempted_at, duration_ms, status_code, error,
                                                  signed_with)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        delivery_id,
        attempt,
        attempted_at,
        duration_ms,
        status_code,
        error,
        signed_with,
    )
    await conn.execute(
        """UPDATE webhook_deliveries
              SET status = CASE WHEN $2 THEN 'delivered'
                                WHEN attempts >= $6 OR now() + make_interval(secs => $5) > give_up_at THEN 'failed'
                                ELSE 'pending' END,
                  delivered_at = CASE WHEN $2 THEN now() END,
                  last_status_code = $3, last_error = $4,
                  next_attempt_at = now() + make_interval(secs => $5)
            WHERE delivery_id = $1 AND status = 'pending'""",
        delivery_id,
        delivered,
        status_code,
        error,
        retry_in,
        max_attempts,
    )


# ---- changes to a running package (decision 0082) -------------------------------------------------


async def insert_change_offer(
    conn: Connection,
    *,
    change_id: uuid.UUID,
    package_id: uuid.UUID,
    provider_id: str,
    spec: PackageSpec,
    previous_hours: Decimal,
    effective_date: dt.date,
    window_closes_at: dt.datetime,
    at: dt.datetime,
) -> bool:
    """The change offered to the provider; False when it was already (a redelivery)."""
    return bool(
        await conn.fetchval(
            """INSERT INTO change_offers (change_id, package_id, provider_id, spec, previous_hours, hours_per_week,
                                          effective_date, window_closes_at, offered_at)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true""",
            change_id,
            package_id,
            provider_id,
            spec.model_dump_json(),
            previous_hours,
            spec.hours_per_week,
            effective_date,
            window_closes_at,
            at,
        )
    )


async def lock_change_offer(conn: Connection, change_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM change_offers WHERE change_id = $1 FOR UPDATE", change_id)


async def answer_change_offer(
    conn: Connection,
    change_id: uuid.UUID,
    *,
    accepted: bool,
    adapter: str,
    at: dt.datetime,
    reason: str | None = None,
    text: str | None = None,
    hold: Decimal = Decimal(0),
) -> None:
    """Record the answer; an accepted increase holds its extra ``hold`` hours (carer hours a week) on
    the provider until the change is settled (decision 0160)."""
    await conn.execute(
        """WITH answered AS (
               UPDATE change_offers SET status = $2, adapter = $3, answered_at = $4, decline_reason = $5,
                      decline_text = $6, held_hours = $7
                WHERE change_id = $1 RETURNING provider_id)
           UPDATE providers p SET held_hours = p.held_hours + $7 FROM answered a
            WHERE p.provider_id = a.provider_id AND $7 > 0""",
        change_id,
        "accepted" if accepted else "declined",
        adapter,
        at,
        reason,
        text,
        hold,
    )


async def settle_change_offer(conn: Connection, change_id: uuid.UUID, status: str) -> Decimal | None:
    """``applied`` (the brokerage changed the package) or ``closed`` (declined, timed out, withdrawn):
    the hours an accepted increase held are given back to the provider's free hours (an applied one's
    are then committed by the caller), and the hours that were held returned - None when it was
    settled already (a redelivery). Its webhook delivery still pending is withdrawn in the same
    statement: a settled change is never POSTed again (it had been retried until its window closed)."""
    return await conn.fetchval(
        """WITH withdrawn AS (
               UPDATE webhook_deliveries SET status = 'withdrawn' WHERE change_id = $1 AND status = 'pending'),
           settled AS (
               UPDATE change_offers c SET status = $2, held_hours = 0
                 FROM (SELECT held_hours FROM change_offers WHERE change_id = $1) before
                WHERE c.change_id = $1 AND c.status NOT IN ('applied', 'closed')
               RETURNING c.provider_id, before.held_hours),
           released AS (
               UPDATE providers p SET held_hours = p.held_hours - s.held_hours FROM settled s
                WHERE p.provider_id = s.provider_id AND s.held_hours > 0)
           SELECT held_hours FROM settled""",
        change_id,
        status,
    )


async def change_placement_hours(
    conn: Connection, package_id: uuid.UUID, provider_id: str, hours: Decimal
) -> asyncpg.Record | None:
    """The live placement's hours before the change (the row as it was), and sets them to ``hours``."""
    return await conn.fetchrow(
        """UPDATE placements p SET hours_per_week = $3 FROM (
               SELECT package_id, offer_round, hours_per_week AS before FROM placements
                WHERE package_id = $1 AND provider_id = $2 AND ended_at IS NULL FOR UPDATE) old
            WHERE p.package_id = old.package_id AND p.offer_round = old.offer_round
            RETURNING old.before""",
        package_id,
        provider_id,
        hours,
    )


async def insert_change_delivery(
    conn: Connection,
    *,
    delivery_id: uuid.UUID,
    provider_id: str,
    package_id: uuid.UUID,
    change_id: uuid.UUID,
    url: str,
    body: str,
    give_up_at: dt.datetime,
) -> None:
    """A change POSTed to the provider's webhook by the delivery loop, like an offer (decision 0082)."""
    await conn.execute(
        """INSERT INTO webhook_deliveries (delivery_id, provider_id, package_id, change_id, url, body, give_up_at,
                                           kind)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'change') ON CONFLICT DO NOTHING""",
        delivery_id,
        provider_id,
        package_id,
        change_id,
        url,
        body,
        give_up_at,
    )


# ---- the quality and risk register (decision 0103) ----------------------------------------


async def register_row(conn: Connection | asyncpg.Pool, provider_id: str) -> asyncpg.Record | None:
    """The provider's registry row joined with its register entry (created empty if missing); None
    for no such provider."""
    await conn.execute(
        """INSERT INTO quality_register (provider_id, cqc_source)
           SELECT provider_id, 'seed' FROM providers WHERE provider_id = $1 ON CONFLICT DO NOTHING""",
        provider_id,
    )
    return await conn.fetchrow(
        """SELECT p.*, q.cqc_location_id, q.cqc_inspected_on, q.cqc_source, q.local_risk_reviewed_by,
                  q.local_risk_reviewed_at, q.local_risk_reason
             FROM providers p JOIN quality_register q USING (provider_id) WHERE p.provider_id = $1""",
        provider_id,
    )


async def register_counts(conn: Connection | asyncpg.Pool, provider_id: str, today: dt.date) -> asyncpg.Record:
    """Late starts in the 12 months to ``today`` (UK dates; quality.in_last_12_months), open
    complaints and open improvement plans (the hand-backs: :func:`hand_back_dates`)."""
    return await fetch_one(
        conn,
        """SELECT (SELECT count(*) FROM delivery_incidents WHERE provider_id = $1 AND kind = 'late_start'
                      AND on_date > $2::date - $3::int AND on_date <= $2::date) AS late_starts_12m,
                  (SELECT count(*) FROM complaints WHERE provider_id = $1 AND closed_on IS NULL) AS open_complaints,
                  (SELECT count(*) FROM improvement_plans WHERE provider_id = $1 AND closed_on IS NULL)
                      AS open_improvement_plans""",
        provider_id,
        today,
        quality.WINDOW_DAYS,
    )


async def set_cqc(
    conn: Connection,
    provider_id: str,
    *,
    rating: str,
    inspected_on: dt.date | None,
    location_id: str | None,
    source: str,
) -> None:
    """The provider's CQC rating (in its profile: what the brokerage ranks with) and its date,
    location id and where it came from (in the register). Bumps the registry revision."""
    await conn.execute(
        """UPDATE providers SET profile = jsonb_set(profile, '{cqc_rating}', to_jsonb($2::text)),
                                revision = revision + 1, updated_at = now()
            WHERE provider_id = $1""",
        provider_id,
        rating,
    )
    await conn.execute(
        """UPDATE quality_register SET cqc_inspected_on = $2, cqc_location_id = coalesce($3, cqc_location_id),
                                       cqc_source = $4, updated_at = now()
            WHERE provider_id = $1""",
        provider_id,
        inspected_on,
        location_id,
        source,
    )


async def set_cqc_location(conn: Connection, provider_id: str, location_id: str) -> None:
    await conn.execute(
        "UPDATE quality_register SET cqc_location_id = $2, updated_at = now() WHERE provider_id = $1",
        provider_id,
        location_id,
    )


async def set_local_risk(
    conn: Connection, provider_id: str, *, risk: str, reason: str, reviewed_by: str, at: dt.datetime
) -> None:
    await conn.execute(
        """UPDATE providers SET profile = jsonb_set(profile, '{local_risk}', to_jsonb($2::text)),
                                revision = revision + 1, updated_at = now()
            WHERE provider_id = $1""",
        provider_id,
        risk,
    )
    await conn.execute(
        """UPDATE quality_register SET local_risk_reviewed_by = $2, local_risk_reviewed_at = $3,
                                       local_risk_reason = $4, updated_at = now()
            WHERE provider_id = $1""",
        provider_id,
        reviewed_by,
        at,
        reason,
    )


async def insert_quality_change(
    conn: Connection,
    *,
    event_id: uuid.UUID,
    provider_id: str,
    change: str,
    detail: dict,
    note: str | None,
    recorded_by: str,
    recorded_at: dt.datetime,
    import_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO quality_changes (event_id, provider_id, change, detail, note, recorded_by, recorded_at,
                                        import_id)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)""",
        event_id,
        provider_id,
        change,
        json.dumps(detail, default=str),
        note or None,
        recorded_by,
        recorded_at,
        import_id,
    )


async def quality_changes(conn: Connection | asyncpg.Pool, provider_id: str, limit: int = 200) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT event_id, change, detail, note, recorded_by, recorded_at, import_id FROM quality_changes
            WHERE provider_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT $2""",
        provider_id,
        limit,
    )


async def register_by_location(conn: Connection) -> dict[str, tuple[str, str, dt.date | None]]:
    """CQC location id -> (provider id, current rating, current publication date), for an import;
    the register rows locked (an import and a manual change cannot interleave)."""
    rows = await conn.fetch(
        """SELECT q.cqc_location_id, p.provider_id, p.profile->>'cqc_rating' AS rating, q.cqc_inspected_on
             FROM quality_register q JOIN providers p USING (provider_id)
            WHERE q.cqc_location_id IS NOT NULL ORDER BY p.provider_id FOR UPDATE OF p"""
    )
    return {r["cqc_location_id"]: (r["provider_id"], r["rating"], r["cqc_inspected_on"]) for r in rows}


async def insert_cqc_import(
    conn: Connection,
    *,
    import_id: uuid.UUID,
    imported_by: str,
    at: dt.datetime,
    file_name: str,
    rows: int,
    applied: bool,
    report: dict,
) -> None:
    await conn.execute(
        """INSERT INTO cqc_imports (import_id, imported_by, imported_at, file_name, rows, applied, report)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)""",
        import_id,
        imported_by,
        at,
        file_name,
        rows,
        applied,
        json.dumps(report, default=str),
    )


async def was_offered(conn: Connection, provider_id: str, package_id: uuid.UUID) -> bool:
    """Whether the provider was ever offered the package, or holds its placement."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM offers WHERE package_id = $1 AND provider_id = $2)
                   OR EXISTS (SELECT 1 FROM placements WHERE package_id = $1 AND provider_id = $2)""",
            package_id,
            provider_id,
        )
    )


async def insert_complaint(
    conn: Connection,
    *,
    complaint_id: uuid.UUID,
    provider_id: str,
    theme: str,
    package_id: uuid.UUID | None,
    summary: str,
    received_on: dt.date,
    recorded_by: str,
) -> None:
    await conn.execute(
        """INSERT INTO complaints (complaint_id, provider_id, theme, package_id, summary, received_on, recorded_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        complaint_id,
        provider_id,
        theme,
        package_id,
        summary,
        received_on,
        recorded_by,
    )


async def close_complaint(
    conn: Connection, provider_id: str, complaint_id: uuid.UUID, *, outcome: str, on: dt.date, by: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE complaints SET closed_on = $3, outcome = $4, closed_by = $5
            WHERE provider_id = $1 AND complaint_id = $2 AND closed_on IS NULL RETURNING *""",
        provider_id,
        complaint_id,
        on,
        outcome,
        by,
    )


async def insert_plan(
    conn: Connection,
    *,
    plan_id: uuid.UUID,
    provider_id: str,
    area: str,
    actions: str,
    due_on: dt.date,
    opened_by: str,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO improvement_plans (plan_id, provider_id, area, actions, due_on, opened_by, opened_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        plan_id,
        provider_id,
        area,
        actions,
        due_on,
        opened_by,
        at,
    )


async def close_plan(
    conn: Connection, provider_id: str, plan_id: uuid.UUID, *, met: bool, on: dt.date, by: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE improvement_plans SET closed_on = $3, met = $4, closed_by = $5
            WHERE provider_id = $1 AND plan_id = $2 AND closed_on IS NULL RETURNING *""",
        provider_id,
        plan_id,
        on,
        met,
        by,
    )


async def insert_incident(
    conn: Connection, provider_id: str, package_id: uuid.UUID, kind: str, on: dt.date, days_late: int | None = None
) -> bool:
    """One hand-back or late start on the provider's record; False when recorded already."""
    return bool(
        await conn.fetchval(
            """INSERT INTO delivery_incidents (provider_id, package_id, kind, on_date, days_late)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
            provider_id,
            package_id,
            kind,
            on,
            days_late,
        )
    )


# ---- webhook self-service (decision 0100) -------------------------------------------------------

DELIVERY_COLUMNS = """delivery_id, kind, package_id, offer_round, change_id, redelivery_of, url, status, attempts,
                      last_attempt_at, last_status_code, last_error, next_attempt_at, give_up_at, created_at,
                      delivered_at"""


async def deliveries_of(
    conn: Connection | asyncpg.Pool,
    provider_id: str,
    limit: int,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """The provider's deliveries, newest first (``created_at`` descending, then ``delivery_id``
    descending): the page after the cursor ``after`` = (created_at, delivery_id) of the last row seen."""
    return await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE provider_id = $1
               AND ($3::timestamptz IS NULL OR (created_at, delivery_id) < ($3, $4::uuid))
             ORDER BY created_at DESC, delivery_id DESC LIMIT $2""",
        provider_id,
        limit,
        after[0] if after else None,
        after[1] if after else None,
    )


async def delivery_of(
    conn: Connection | asyncpg.Pool, provider_id: str, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    """One of the provider's deliveries (another provider's is None: not found)."""
    return await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries WHERE provider_id = $1 AND delivery_id = $2",
        provider_id,
        delivery_id,
    )


async def attempts_of(conn: Connection | asyncpg.Pool, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict]]:
    """Every recorded attempt of these deliveries, oldest first: {delivery id: [attempt, ...]}."""
    rows = await conn.fetch(
        """SELECT delivery_id, attempt, attempted_at, duration_ms, status_code, error, signed_with
             FROM webhook_delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt""",
        delivery_ids,
    )
    out: dict[uuid.UUID, list[dict]] = {}
    for r in rows:
        out.setdefault(r["delivery_id"], []).append({k: v for k, v in dict(r).items() if k != "delivery_id"})
    return out


async def insert_extra_delivery(
    conn: Connection,
    *,
    delivery_id: uuid.UUID,
    provider_id: str,
    kind: str,
    url: str,
    body: str,
    give_up_at: dt.datetime,
    package_id: uuid.UUID | None = None,
    offer_round: int | None = None,
    change_id: uuid.UUID | None = None,
    redelivery_of: uuid.UUID | None = None,
) -> asyncpg.Record:
    """A test delivery, or a redelivery of an earlier one (a new delivery id, the same body)."""
    return await fetch_one(
        conn,
        f"""INSERT INTO webhook_deliveries (delivery_id, provider_id, kind, url, body, give_up_at, package_id,
                                            offer_round, change_id, redelivery_of)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {DELIVERY_COLUMNS}""",
        delivery_id,
        provider_id,
        kind,
        url,
        body,
        give_up_at,
        package_id,
        offer_round,
        change_id,
        redelivery_of,
    )


async def pending_redeliveries(conn: Connection, provider_id: str) -> int:
    """The provider's redeliveries still being tried."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM webhook_deliveries
                WHERE provider_id = $1 AND redelivery_of IS NOT NULL AND status = 'pending'""",
            provider_id,
        )
    )


async def pending_tests(conn: Connection, provider_id: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE provider_id = $1 AND kind = 'test' AND status = 'pending'",
            provider_id,
        )
    )


async def rotate_webhook_secret(
    conn: Connection, provider_id: str, sealed_new: str, overlap_until: dt.datetime | None
) -> asyncpg.Record:
    """The new secret signs from now; the one it replaces keeps signing too until ``overlap_until``
    (None: no overlap, it stops at once)."""
    return await fetch_one(
        conn,
        """UPDATE providers SET previous_webhook_secret = CASE WHEN $3::timestamptz IS NULL THEN NULL
                                                               ELSE webhook_secret END,
                                previous_secret_expires_at = $3, webhook_secret = $2, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        sealed_new,
        overlap_until,
    )


# ---- safeguarding concerns (decision records 0106-0108) -----------------------------------------

# What the safeguarding queue shows of a concern: never its words or the adult's name.
CONCERN_SUMMARY = """concern_id, reference, package_id, provider_id, category, immediate_risk, raised_by,
    raised_by_kind, raised_by_role, raised_at, status, paused, outcome, closed_by, closed_at"""


async def insert_concern(conn: Connection, **values: Any) -> asyncpg.Record:
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await fetch_one(
        conn, f"INSERT INTO concerns ({columns}) VALUES ({params}) RETURNING {CONCERN_SUMMARY}", *values.values()
    )


async def lock_concern(conn: Connection, concern_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CONCERN_SUMMARY} FROM concerns WHERE concern_id = $1 FOR UPDATE", concern_id)


async def add_concern_decision(
    conn: Connection, concern_id: uuid.UUID, decision: str, code: str, decided_by: str, at: dt.datetime
) -> None:
    await conn.execute(
        """INSERT INTO concern_decisions (concern_id, decision, code, decided_by, decided_at)
           VALUES ($1, $2, $3, $4, $5)""",
        concern_id,
        decision,
        code,
        decided_by,
        at,
    )


async def pausing_concerns(conn: Connection, provider_id: str) -> int:
    """Open concerns about the provider that hold a pause of its new offers."""
    return int(await conn.fetchval("SELECT count(*) FROM concerns WHERE provider_id = $1 AND paused", provider_id))


async def set_offers_paused(conn: Connection, provider_id: str, paused: bool) -> asyncpg.Record:
    """The provider's profile with ``offers_paused`` set: a new revision, for ProviderUpdated."""
    return await fetch_one(
        conn,
        """UPDATE providers SET profile = jsonb_set(profile, '{offers_paused}', to_jsonb($2::boolean)),
                                revision = revision + 1, updated_at = now()
            WHERE provider_id = $1 RETURNING *""",
        provider_id,
        paused,
    )


async def concern_queue(conn: Connection | asyncpg.Pool, status: str | None, limit: int) -> list[asyncpg.Record]:
    """Concerns for the safeguarding queue: open ones first (immediate risk, then oldest), then closed ones."""
    return await conn.fetch(
        f"""SELECT {CONCERN_SUMMARY} FROM concerns WHERE ($1::text IS NULL OR status = $1)
             ORDER BY status = 'closed', immediate_risk DESC, raised_at LIMIT $2""",
        status,
        limit,
    )


async def read_concern_audited(
    conn: Connection, concern_id: uuid.UUID, reader: str, reader_role: str
) -> tuple[asyncpg.Record, list[asyncpg.Record], list[asyncpg.Record], str | None] | None:
    """The whole concern, its decisions, the log of its reads (this one included) and who holds its
    package now; the read is written to the audit log in the same transaction, or nothing is read."""
    row = await conn.fetchrow("SELECT * FROM concerns WHERE concern_id = $1", concern_id)
    if row is None:
        return None
    await conn.execute(
        "INSERT INTO audit.concern_reads (concern_id, reader, reader_role) VALUES ($1, $2, $3)",
        concern_id,
        reader,
        reader_role,
    )
    decisions = await conn.fetch(
        """SELECT decision, code, decided_by, decided_at FROM concern_decisions
            WHERE concern_id = $1 ORDER BY decision_id""",
        concern_id,
    )
    reads = await conn.fetch(
        "SELECT reader, reader_role, read_at FROM audit.concern_reads WHERE concern_id = $1 ORDER BY read_id",
        concern_id,
    )
    held_by = (
        await conn.fetchval(
            "SELECT provider_id FROM placements WHERE package_id = $1 AND ended_at IS NULL", row["package_id"]
        )
        if row["package_id"]
        else None
    )
    return row, decisions, reads, held_by


# ---- named staff users (decision 0126), unread offers and the history (decision 0127) --------------

USER_COLUMNS = "user_id, provider_id, username, name, role, added_at, added_by, removed_at, removed_by"


async def live_member(conn: Connection | asyncpg.Pool, username: str, provider_id: str) -> asyncpg.Record | None:
    """The live membership of an identity provider's user (canonical username) in ``provider_id``
    (the organisation their token asserts, decision 0165), a provider still on the framework; None
    when they are not its user (or were removed)."""
    return await conn.fetchrow(
        f"""SELECT {", ".join("u." + c for c in USER_COLUMNS.split(", "))} FROM provider_users u
              JOIN providers p USING (provider_id)
             WHERE u.provider_id = $2 AND lower(u.username) = $1 AND u.removed_at IS NULL
               AND p.profile->>'status' <> 'left'""",
        username,
        provider_id,
    )


async def staff_users(conn: Connection | asyncpg.Pool, provider_id: str) -> list[asyncpg.Record]:
    """A provider's live users, oldest first."""
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM provider_users WHERE provider_id = $1 AND removed_at IS NULL "
        "ORDER BY added_at, user_id",
        provider_id,
    )


async def add_staff_user(
    conn: Connection, *, provider_id: str, username: str, name: str, role: str, added_by: str
) -> asyncpg.Record | None:
    """A new live user; None when that username is already a live user of ``provider_id``."""
    return await conn.fetchrow(
        f"""INSERT INTO provider_users (user_id, provider_id, username, name, role, added_by)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}""",
        uuid.uuid4(),
        provider_id,
        username,
        name,
        role,
        added_by,
    )


async def remove_staff_user(
    conn: Connection, *, provider_id: str, user_id: uuid.UUID, removed_by: str
) -> asyncpg.Record | None:
    """The user removed (their answers keep naming them); None when not a live user of the provider."""
    return await conn.fetchrow(
        f"""UPDATE provider_users SET removed_at = now(), removed_by = $3
             WHERE provider_id = $1 AND user_id = $2 AND removed_at IS NULL RETURNING {USER_COLUMNS}""",
        provider_id,
        user_id,
        removed_by,
    )


async def live_admins(conn: Connection, provider_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM provider_users WHERE provider_id = $1 AND role = 'admin' AND removed_at IS NULL",
        provider_id,
    )


async def seed_staff_users(conn: Connection, entries: list[dict]) -> int:
    """The demo's named users (provider-staff.yaml), each added once ever: a user removed later is not
    added back at the next start."""
    added = 0
    for entry in entries:
        row = await conn.fetchrow(
            """INSERT INTO provider_users (user_id, provider_id, username, name, role, added_by)
               SELECT $1, $2, $3, $4, $5, 'seed'
                WHERE EXISTS (SELECT 1 FROM providers WHERE provider_id = $2)
                  AND NOT EXISTS (SELECT 1 FROM provider_users WHERE provider_id = $2 AND lower(username) = $3)
               RETURNING user_id""",
            uuid.uuid4(),
            entry["provider_id"],
            str(entry["username"]).strip().lower(),
            entry["name"],
            entry.get("role", "staff"),
        )
        added += row is not None
    return added


async def open_offers_with_reads(conn: Connection | asyncpg.Pool, provider_id: str) -> list[asyncpg.Record]:
    """The provider's open offers, soonest deadline first, with when one of its people first opened
    each (null: new to the organisation)."""
    return await conn.fetch(
        """SELECT * FROM offers WHERE provider_id = $1 AND status = 'offered' AND window_closes_at > now()
            ORDER BY window_closes_at, package_id, offer_round""",
        provider_id,
    )


async def mark_opened(
    conn: Connection, provider_id: str, package_id: uuid.UUID, user_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The provider's latest offer of the package, marked opened the first time (who and when kept);
    None when the package was never offered to it."""
    return await conn.fetchrow(
        """UPDATE offers SET opened_at = coalesce(opened_at, now()),
                             opened_by_user = CASE WHEN opened_at IS NULL THEN $3 ELSE opened_by_user END
            WHERE (package_id, offer_round, provider_id) = (
                  SELECT package_id, offer_round, provider_id FROM offers
                   WHERE provider_id = $1 AND package_id = $2 ORDER BY offer_round DESC LIMIT 1)
        RETURNING *""",
        provider_id,
        package_id,
        user_id,
    )


async def offer_history(
    conn: Connection | asyncpg.Pool,
    provider_id: str,
    *,
    limit: int,
    after: tuple[dt.datetime, uuid.UUID, int] | None,
) -> list[asyncpg.Record]:
    """The provider's offers that are no longer waiting for its answer (answered, settled, or past
    their window), newest first, with the closing notice's outcome and who answered."""
    return await conn.fetch(
        """SELECT o.package_id, o.offer_round, o.tier, o.spec, o.band_rate, o.window_closes_at, o.status,
                  o.hourly_rate, o.decline_reason, o.received_at, o.answered_at, o.adapter,
                  o.window_closes_at <= now() AS window_closed,
                  c.outcome, c.reason AS closed_reason, c.rank, c.ranked_bids, c.closed_at,
                  u.user_id AS answered_by_user, u.name AS answered_by_name,
                  o.answered_by_credential IS NOT NULL AS answered_with_credential
             FROM offers o
             LEFT JOIN offer_closures c USING (package_id, offer_round, provider_id)
             LEFT JOIN provider_users u ON u.user_id = o.answered_by_user
            WHERE o.provider_id = $1 AND (o.status <> 'offered' OR o.window_closes_at <= now())
              AND ($3::timestamptz IS NULL
                   OR (o.received_at, o.package_id, o.offer_round) < ($3, $4::uuid, $5::bigint))
            ORDER BY o.received_at DESC, o.package_id DESC, o.offer_round DESC
            LIMIT $2""",
        provider_id,
        limit,
        *(after or (None, None, None)),
    )


async def package_answerers(conn: Connection | asyncpg.Pool, package_id: uuid.UUID) -> list[asyncpg.Record]:
    """Who answered each offer of a package: the named user's name, or the organisation's credential."""
    return await conn.fetch(
        """SELECT o.provider_id, o.offer_round, o.status, o.answered_at, o.adapter,
                  u.user_id AS answered_by_user, u.name AS answered_by_name,
                  o.answered_by_credential IS NOT NULL AS answered_with_credential
             FROM offers o LEFT JOIN provider_users u ON u.user_id = o.answered_by_user
            WHERE o.package_id = $1 AND o.answered_at IS NOT NULL
            ORDER BY o.offer_round, o.provider_id""",
        package_id,
    )
