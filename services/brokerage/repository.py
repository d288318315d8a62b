"""Brokerage's tables (schema ``brokerage``), read and written with asyncpg.

Every function takes the connection of the unit of work it runs in (the timeline: the unit of
work itself); none commits.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from schemas.events import PackageSpec, ProviderProfile, ServiceAgreementRecorded
from schemas.vocabulary import AgreementStatus
from services.brokerage.domain import AgreementTerms, Answer, Approval, FundingPart, PayerLine, Period, RoundState
from services.runtime.db import Connection, RowsInsert, fetch_one
from services.runtime.outbox import UnitOfWork


async def insert_package(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    spec: PackageSpec,
    requested_by: str,
    policy: str,
    rate_card: str,
    band_rate: Decimal,
    requested_at: dt.datetime,
    person: dict,
    sandbox_for: str | None = None,
) -> asyncpg.Record:
    # One statement for the package and its person; RETURNING the package: a row this
    # transaction inserted is as good as locked (no one else sees it yet).
    return await fetch_one(
        conn,
        """WITH person AS (
               INSERT INTO persons (package_id, full_name, address, postcode, phone, email, nhs_number, date_of_birth,
                                    care_notes)
               VALUES ($1, $13, $14, $15, $16, $17, $18, $19, $20))
           INSERT INTO packages (package_id, status, spec, zone, band, urgency, hours_per_week, start_date,
                                 requested_by, policy, rate_card, band_rate, requested_at, sandbox_for)
           VALUES ($1, 'requested', $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $21) RETURNING *""",
        package_id,
        spec.model_dump_json(),
        spec.zone,
        spec.band.value,
        spec.urgency.value,
        spec.hours_per_week,
        spec.start_date,
        requested_by,
        policy,
        rate_card,
        band_rate,
        requested_at,
        person["full_name"],
        person["address"],
        person["postcode"],
        person.get("phone"),
        person.get("email"),
        person["nhs_number"],
        person.get("date_of_birth"),
        person.get("care_notes"),
        sandbox_for,
    )


async def sandbox_provider(conn: Connection, package_id: uuid.UUID) -> str | None:
    """The provider a sandbox package is offered to alone (decision 0116); None for a real package."""
    return await conn.fetchval("SELECT sandbox_for FROM packages WHERE package_id = $1", package_id)


async def lock_package(conn: Connection, package_id: uuid.UUID) -> asyncpg.Record | None:
    """The package row, locked for this transaction: every change to a package goes through here,
    which is what serialises bids, window timers and broker actions on one package."""
    return await conn.fetchrow("SELECT * FROM packages WHERE package_id = $1 FOR UPDATE", package_id)


async def lock_package_for_answer(conn: Connection, package_id: uuid.UUID, offer_round: int) -> asyncpg.Record | None:
    """:func:`lock_package`, with the round the answer is for: ``round_offered`` (who it was offered
    to) and ``round_quality`` are NULL when there is no such round. One round trip per answer."""
    return await conn.fetchrow(
        """SELECT p.*, r.provider_ids AS round_offered, r.quality AS round_quality
             FROM packages p LEFT JOIN offer_rounds r ON r.package_id = p.package_id AND r.offer_round = $2
            WHERE p.package_id = $1 FOR UPDATE OF p""",
        package_id,
        offer_round,
    )


# An answer's row: as read (a record) or about to be written (its columns' names to values).
AnswerRow = asyncpg.Record | Mapping[str, Any]


# The distinct (package id, round) pairs of a batch of answers, from the arrays of _pairs(rounds).
_ROUNDS = """(SELECT DISTINCT package_id, offer_round
                FROM unnest($1::uuid[], $2::int[]) AS u(package_id, offer_round)) t"""


def _pairs(rounds: Sequence[tuple[uuid.UUID, int]]) -> tuple[list[uuid.UUID], list[int]]:
    return [package_id for package_id, _ in rounds], [offer_round for _, offer_round in rounds]


async def lock_packages_for_answers(
    conn: Connection, rounds: Sequence[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], asyncpg.Record]:
    """:func:`lock_package_for_answer` for a batch of answers in one statement: each (package id,
    round) of ``rounds`` to its package row, locked, with ``round_offered`` and ``round_quality``
    (NULL when there is no such round); a package that does not exist is absent. Locked in package
    id order, so two batches that share packages take their locks in the same order."""
    rows = await conn.fetch(
        f"""SELECT p.*, t.offer_round AS answer_round, r.provider_ids AS round_offered, r.quality AS round_quality
              FROM {_ROUNDS}
              JOIN packages p ON p.package_id = t.package_id
              LEFT JOIN offer_rounds r ON r.package_id = t.package_id AND r.offer_round = t.offer_round
             ORDER BY p.package_id, t.offer_round
               FOR UPDATE OF p""",
        *_pairs(rounds),
    )
    return {(r["package_id"], r["answer_round"]): r for r in rows}


async def answers_of_rounds(
    conn: Connection, rounds: Sequence[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], dict[str, AnswerRow]]:
    """Every answer already recorded for these (package id, round) pairs: round to provider id to
    the answer's row. Read after the packages are locked, so that it sees every answer committed
    before (a statement's snapshot is taken when it starts, not when it gets its locks)."""
    rows = await conn.fetch(
        f"SELECT a.* FROM {_ROUNDS} JOIN answers a ON a.package_id = t.package_id AND a.offer_round = t.offer_round",
        *_pairs(rounds),
    )
    answers: dict[tuple[uuid.UUID, int], dict[str, AnswerRow]] = {}
    for r in rows:
        answers.setdefault((r["package_id"], r["offer_round"]), {})[r["provider_id"]] = r
    return answers


async def everyone_offered(conn: Connection, package_id: uuid.UUID, *, cycle: int | None = None) -> list[str]:
    """Every provider offered the package in any round (the losing bidders are among them), or in
    the rounds of one cycle."""
    return await conn.fetchval(
        """SELECT coalesce(array_agg(DISTINCT p), '{}') FROM offer_rounds, unnest(provider_ids) p
            WHERE package_id = $1 AND ($2::int IS NULL OR cycle = $2)""",
        package_id,
        cycle,
    )


async def get_package(conn: Connection | asyncpg.Pool, package_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)


def spec_of(row: asyncpg.Record) -> PackageSpec:
    return PackageSpec.model_validate_json(row["spec"])


TIMELINE_ROWS = RowsInsert(
    "timeline",
    (("package_id", "uuid"), ("at", "timestamptz"), ("stage", "text"), ("detail", "text")),
    values={"at": "coalesce(t.at, now())", "detail": "t.detail::jsonb"},
)


def add_timeline(
    uow: UnitOfWork, package_id: uuid.UUID, stage: str, at: dt.datetime | None = None, **detail: Any
) -> None:
    """A stage of the package's life for its timeline; written with the unit of work's outbox
    rows at its end (nothing reads the timeline back in the transaction that writes it)."""
    uow.defer(TIMELINE_ROWS, (package_id, at, stage, json.dumps(detail, default=str)))


async def open_round(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    offer_round: int,
    tier: str,
    provider_ids: list[str],
    excluded: dict[str, list[str]],
    quality: dict[str, Decimal],
    opened_at: dt.datetime,
    window_closes_at: dt.datetime,
    cycle: int = 1,
    quality_inputs: dict[str, dict] | None = None,
) -> None:
    """``quality_inputs``: per provider, the score's inputs, points and weights (the decision record)."""
    await conn.execute(
        """WITH opened AS (
               INSERT INTO offer_rounds (package_id, offer_round, tier, provider_ids, excluded, quality, opened_at,
                                         window_closes_at, cycle, quality_inputs)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10::jsonb))
           UPDATE packages SET status = 'offered', current_round = $2, current_tier = $3, window_closes_at = $8
            WHERE package_id = $1""",
        package_id,
        offer_round,
        tier,
        provider_ids,
        json.dumps(excluded),
        json.dumps({k: str(v) for k, v in quality.items()}),
        opened_at,
        window_closes_at,
        cycle,
        json.dumps(quality_inputs or {}),
    )


async def close_round(
    conn: Connection,
    package_id: uuid.UUID,
    offer_round: int,
    outcome: str,
    *,
    tie_break: dict | None = None,
    answers: Sequence[Sequence[object]] = (),
) -> None:
    """``tie_break``: what the ranking at the close used to break ties (kept for the explanation);
    ``answers``: rows of :data:`ANSWER_ROWS` not yet written, written in the same statement."""
    answered, arrays = _answers_with(answers, 5)
    await conn.execute(
        ("WITH " + answered + " " if answered else "")
        + """UPDATE offer_rounds SET closed_at = now(), outcome = $3, tie_break = COALESCE($4::jsonb, tie_break)
            WHERE package_id = $1 AND offer_round = $2""",
        package_id,
        offer_round,
        outcome,
        None if tie_break is None else json.dumps(tie_break),
        *arrays,
    )


async def bidders_now(
    conn: Connection, zone: str, provider_ids: list[str], since: dt.datetime
) -> tuple[list[ProviderProfile], dict[str, int]]:
    """What an award needs of its bidders as they are now, in one statement: the current profiles
    of those in the registry's view, and each one's awards in ``zone`` from ``since`` on (providers
    with none are absent)."""
    rows = await conn.fetch(
        """WITH counts AS (
               SELECT provider_id, count(*) AS n FROM awards
                WHERE zone = $1 AND awarded_at >= $2 AND provider_id = ANY($3::text[]) GROUP BY provider_id)
           SELECT b.provider_id, v.profile, c.n
             FROM unnest($3::text[]) AS b(provider_id)
             LEFT JOIN provider_view v ON v.provider_id = b.provider_id
             LEFT JOIN counts c ON c.provider_id = b.provider_id
            ORDER BY b.provider_id""",
        zone,
        since,
        provider_ids,
    )
    profiles = [_profile(r["profile"]) for r in rows if r["profile"] is not None]
    return profiles, {r["provider_id"]: r["n"] for r in rows if r["n"] is not None}


async def round_state(
    conn: Connection, package_id: uuid.UUID, offer_round: int
) -> tuple[RoundState, dict[str, Decimal]]:
    """The round's offers and on-time answers, with its quality scores."""
    row = await conn.fetchrow(
        "SELECT provider_ids, quality FROM offer_rounds WHERE package_id = $1 AND offer_round = $2",
        package_id,
        offer_round,
    )
    answers = await conn.fetch(
        "SELECT * FROM answers WHERE package_id = $1 AND offer_round = $2", package_id, offer_round
    )
    if row is None:
        raise LookupError(f"no round {offer_round} of package {package_id}")
    return state_of(row["provider_ids"], row["quality"], answers)


def state_of(offered: list[str], quality: str, answers: Sequence[AnswerRow]) -> tuple[RoundState, dict[str, Decimal]]:
    """A round's state from its rows: only on-time answers of providers it was offered count."""
    state = RoundState(offered=list(offered))
    for a in answers:
        if a["late"] or a["provider_id"] not in state.offered:
            continue
        state.answers[a["provider_id"]] = Answer(
            provider_id=a["provider_id"],
            kind=a["kind"],
            answered_at=a["answered_at"],
            hourly_rate=a["hourly_rate"],
            earliest_start=a["earliest_start"],
            reason=a["reason"],
            offer_round=a["offer_round"],
        )
    return state, {k: Decimal(v) for k, v in json.loads(quality).items()}


# An answer's row, for a batch of answers (:func:`services.brokerage.handlers.record_answers`);
# a provider's second answer to one round (a redelivery) is not recorded.
ANSWER_ROWS = RowsInsert(
    "answers",
    (
        ("package_id", "uuid"),
        ("offer_round", "int"),
        ("provider_id", "text"),
        ("kind", "text"),
        ("hourly_rate", "numeric"),
        ("earliest_start", "date"),
        ("reason", "text"),
        ("reason_text", "text"),
        ("adapter", "text"),
        ("answered_at", "timestamptz"),
        ("event_id", "uuid"),
        ("late", "bool"),
    ),
    suffix="ON CONFLICT (package_id, offer_round, provider_id) DO NOTHING",
)
ANSWER_COLUMNS = ", ".join(ANSWER_ROWS.names)


def _answers_with(answers: Sequence[Sequence[object]], first: int) -> tuple[str, list[list[object]]]:
    """Answer rows (:data:`ANSWER_ROWS`) not yet written, as a data-modifying ``WITH`` query for a
    statement whose own parameters end before ``$first``: (its text, its array arguments); ("",
    []) when there are none. The round's close writes them in its own statement (decision 0145)."""
    if not answers:
        return "", []
    return f"answered AS ({ANSWER_ROWS.numbered_from(first)})", ANSWER_ROWS.arrays(answers)


async def insert_answer(conn: Connection, row: Sequence[Any]) -> list[asyncpg.Record] | None:
    """Record a provider's answer (``row``: a value for each of :data:`ANSWER_ROWS`' columns, in
    order); None if that provider already answered this round, else every answer of the round,
    this one included (read in the same statement: one round trip)."""
    rows = await conn.fetch(
        f"""WITH new AS (
                INSERT INTO answers ({ANSWER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT (package_id, offer_round, provider_id) DO NOTHING RETURNING {ANSWER_COLUMNS})
            SELECT true AS new, * FROM new
            UNION ALL
            SELECT false, {ANSWER_COLUMNS} FROM answers
             WHERE package_id = $1 AND offer_round = $2 AND EXISTS (SELECT 1 FROM new)""",
        *row,
    )
    return rows or None


@dataclass(frozen=True)
class Placed:
    """What :func:`mark_placed` read while placing the package."""

    offered: list[str]  # every provider offered the package in this cycle of offer rounds
    funding: asyncpg.Record | None  # its current funding record, as :func:`funding_of` reads it


async def mark_placed(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    provider_id: str,
    hourly_rate: Decimal,
    placed_at: dt.datetime,
    zone: str,
    cycle: int,
    closing: tuple[int, str, dict | None] | None = None,
    answers: Sequence[Sequence[object]] = (),
) -> Placed:
    """Place the package with ``provider_id`` at ``hourly_rate`` (pounds per hour) and count the
    award for the zone's tie-break (``awards``); returns every provider offered the package in this
    ``cycle`` of offer rounds (:func:`everyone_offered`), which PackagePlaced names as the losers,
    and the package's funding record, which its service agreement needs. ``closing``: the round
    this award closes, as :func:`close_round` takes it (offer round, outcome, tie-break), or None;
    ``answers``: its answers not yet written (:func:`close_round`'s). One statement: an award was
    three round trips (decision 0141), the funding, the round's close and its last answers three
    more (decision 0145)."""
    answered, arrays = _answers_with(answers, 10)
    row = await conn.fetchrow(
        ("WITH " + answered + ", " if answered else "WITH ")
        + """placed AS (
                UPDATE packages SET status = 'placed', provider_id = $2, hourly_rate = $3, placed_at = $4,
                       window_closes_at = NULL, carried_on_by = NULL, carried_hours = NULL
                 WHERE package_id = $1),
           award AS (INSERT INTO awards (package_id, provider_id, zone, awarded_at) VALUES ($1, $2, $5, $4)),
           closed AS (
                UPDATE offer_rounds SET closed_at = now(), outcome = $8, tie_break = COALESCE($9::jsonb, tie_break)
                 WHERE package_id = $1 AND offer_round = $7),
           offered AS (
                SELECT coalesce(array_agg(DISTINCT p), '{}') AS offered FROM offer_rounds, unnest(provider_ids) p
                 WHERE package_id = $1 AND cycle = $6)
           SELECT o.offered, f.* FROM offered o
             LEFT JOIN LATERAL (SELECT * FROM package_funding WHERE package_id = $1 ORDER BY revision DESC LIMIT 1) f
               ON true""",
        package_id,
        provider_id,
        hourly_rate,
        placed_at,
        zone,
        cycle,
        None if closing is None else closing[0],
        None if closing is None else closing[1],
        None if closing is None or closing[2] is None else json.dumps(closing[2]),
        *arrays,
    )
    assert row is not None  # one row always: `offered` is an aggregate
    # The funding's columns beside `offered` (periods_of and the agreement read them by name).
    return Placed(list(row["offered"]), row if row["revision"] is not None else None)


async def mark_unplaced(
    conn: Connection, package_id: uuid.UUID, *, unplaced_at: dt.datetime, next_reoffer_at: dt.datetime
) -> None:
    await conn.execute(
        """UPDATE packages SET status = 'unplaced', unplaced_at = $2, window_closes_at = NULL, next_reoffer_at = $3
            WHERE package_id = $1""",
        package_id,
        unplaced_at,
        next_reoffer_at,
    )


async def mark_cancelled(
    conn: Connection, package_id: uuid.UUID, *, reason: str, reason_text: str | None, at: dt.datetime
) -> None:
    """``reason``: a CancelReason code; ``reason_text``: the broker's words (kept here only)."""
    await conn.execute(
        """UPDATE packages SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3, cancel_reason_text = $4,
                               window_closes_at = NULL, next_reoffer_at = NULL, carried_on_by = NULL,
                               carried_hours = NULL WHERE package_id = $1""",
        package_id,
        at,
        reason,
        reason_text,
    )


async def mark_started(
    conn: Connection, package_id: uuid.UUID, *, started_on: dt.date, review_due_on: dt.date | None = None
) -> None:
    """Care started; its first review falls due on ``review_due_on`` (decision 0088)."""
    await conn.execute(
        "UPDATE packages SET status = 'started', started_on = $2, review_due_on = $3 WHERE package_id = $1",
        package_id,
        started_on,
        review_due_on,
    )


async def mark_paused(
    conn: Connection, package_id: uuid.UUID, *, paused_on: dt.date, reason: str, hold_expires_at: dt.datetime
) -> None:
    await conn.execute(
        """UPDATE packages SET status = 'paused', paused_on = $2, pause_reason = $3, hold_expires_at = $4
            WHERE package_id = $1""",
        package_id,
        paused_on,
        reason,
        hold_expires_at,
    )


async def mark_resumed(conn: Connection, package_id: uuid.UUID, resumed_on: dt.date) -> None:
    """Running again from ``resumed_on`` (a UK date, perhaps ahead): the pause's date and reason stay
    in the timeline, the hold timer is cleared."""
    await conn.execute(
        """UPDATE packages SET status = 'started', paused_on = NULL, pause_reason = NULL, hold_expires_at = NULL,
                               visits_restart_on = $2
            WHERE package_id = $1""",
        package_id,
        resumed_on,
    )


async def mark_ended(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    ended_on: dt.date,
    reason: str,
    reason_text: str | None,
    at: dt.datetime,
) -> None:
    """``reason``: an EndReason code; ``reason_text``: the broker's words (kept here only)."""
    await conn.execute(
        """UPDATE packages SET status = 'ended', ended_on = $2, end_reason = $3, end_reason_text = $4, ended_at = $5,
                               hold_expires_at = NULL, rebroker_due_at = NULL, rebroker_reason = NULL
            WHERE package_id = $1""",
        package_id,
        ended_on,
        reason,
        reason_text,
        at,
    )


async def start_cycle(conn: Connection, package_id: uuid.UUID) -> asyncpg.Record:
    """A new cycle of offers (every tier again) for an unplaced package; returns the package row."""
    return await fetch_one(
        conn,
        """UPDATE packages SET status = 'requested', cycle = cycle + 1, next_reoffer_at = NULL, unplaced_at = NULL
            WHERE package_id = $1 RETURNING *""",
        package_id,
    )


@dataclass(frozen=True)
class Timer:
    """A deadline column on packages, and which due package goes first. Used both to take the next
    due package and, by the timers' loop, to put off one that could not be handled."""

    due: str  # SQL condition for a package this timer is about
    deadline: str  # the column holding its deadline
    order: str  # who goes first among the due


# Hospital discharges first, then reablement, then community care; within each, priority
# (hand-backs, re-brokered packages) before the rest, then the longest waiting.
MOST_URGENT_FIRST = (
    "CASE urgency WHEN 'hospital_discharge' THEN 0 WHEN 'reablement_step_down' THEN 1 ELSE 2 END, priority DESC"
)
# An above-rate bid with its first of two approvals, waiting for the second (decision records 0123,
# 0133): the package awaits approval and its open exception has a first approval of the very bid it
# names (a first approval counts for that bid only; the console's package page reads it the same way).
AWAITING_SECOND_APPROVAL = """(packages.status = 'awaiting_approval' AND EXISTS (
    SELECT 1 FROM exceptions e JOIN exception_approvals a ON a.exception_id = e.id
     WHERE e.package_id = packages.package_id AND e.decision IS NULL AND a.step = 'first'
       AND a.provider_id = e.provider_id AND a.hourly_rate = e.hourly_rate))"""
WINDOWS = Timer("status = 'offered'", "window_closes_at", "window_closes_at")
REOFFERS = Timer("status = 'unplaced'", "next_reoffer_at", f"{MOST_URGENT_FIRST}, requested_at")
REBROKERING = Timer("status IN ('placed', 'started')", "rebroker_due_at", f"{MOST_URGENT_FIRST}, requested_at")
# A paused package whose provider's hold ran out with no resume: it ends (decision 0078).
HOLDS = Timer("status = 'paused'", "hold_expires_at", "hold_expires_at")
# A change offered to a running package's provider, unanswered when its window closed (decision 0082).
CHANGE_WINDOWS = Timer("pending_change_id IS NOT NULL", "change_window_closes_at", "change_window_closes_at")


async def take_due(conn: Connection, timer: Timer, at: dt.datetime) -> asyncpg.Record | None:
    """The first due package of a timer, its row locked as :func:`lock_package` would; SKIP LOCKED
    lets two brokerage instances share the work. Compared with the application's clock, which set
    the deadline."""
    return await conn.fetchrow(
        f"""SELECT * FROM packages WHERE {timer.due} AND {timer.deadline} <= $1
             ORDER BY {timer.order} LIMIT 1 FOR UPDATE SKIP LOCKED""",
        at,
    )


async def due_timers(conn: Connection | asyncpg.Pool, timers: list[Timer], at: dt.datetime) -> list[bool]:
    """Which of these timers have a package due at ``at``, in one statement: the timers' loop asks
    this twice a second and takes a transaction only for those that do (decision 0163; it had
    opened one for each of six timers every time, idle or not). Each look is an EXISTS on the
    timer's partial index, so rows locked by another instance still count: its job then finds
    them taken (SKIP LOCKED) and does nothing, as before."""
    looks = ", ".join(f"EXISTS (SELECT 1 FROM packages WHERE {t.due} AND {t.deadline} <= $1)" for t in timers)
    return list(await conn.fetchval(f"SELECT ARRAY[{looks}]", at))


async def put_off(conn: Connection | asyncpg.Pool, timer: Timer, seconds: int) -> uuid.UUID | None:
    """Move the timer's first due package (the one its job takes) a while later, in one statement."""
    return await conn.fetchval(
        f"""UPDATE packages SET {timer.deadline} = now() + make_interval(secs => $1)
             WHERE package_id = (SELECT package_id FROM packages WHERE {timer.due} AND {timer.deadline} <= now()
                                  ORDER BY {timer.order} LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING package_id""",
        seconds,
    )


# The packages a provider's suspension or departure marks: its running ones, and its paused ones too -
# those wait for their resume (the timer takes only REBROKERING.due), or end with their hold.
HELD_BY_PROVIDER = "status IN ('placed', 'started', 'paused')"


async def mark_for_rebrokering(conn: Connection, provider_id: str, *, reason: str, at: dt.datetime) -> int:
    """Every active package of a provider that was suspended or left, due for re-brokering now (a
    paused one once it resumes: decision 0078). A package marked already keeps its place in the
    queue and takes the newer reason (found by an attack: a provider suspended, then gone, was
    still said to be suspended)."""
    marked = await conn.execute(
        f"""UPDATE packages SET rebroker_due_at = COALESCE(rebroker_due_at, $3), rebroker_reason = $2
             WHERE provider_id = $1 AND {HELD_BY_PROVIDER}
               AND (rebroker_due_at IS NULL OR rebroker_reason IS DISTINCT FROM $2)""",
        provider_id,
        reason,
        at,
    )
    return int(marked.split()[-1])


async def unmark_for_rebrokering(conn: Connection, provider_id: str) -> int:
    """The provider is active again: its packages not yet re-brokered stay with it."""
    unmarked = await conn.execute(
        f"""UPDATE packages SET rebroker_due_at = NULL, rebroker_reason = NULL
             WHERE provider_id = $1 AND {HELD_BY_PROVIDER} AND rebroker_due_at IS NOT NULL""",
        provider_id,
    )
    return int(unmarked.split()[-1])


# ---- provider view ------------------------------------------------------------------------


async def upsert_provider(conn: Connection, profile: ProviderProfile, revision: int) -> tuple[bool, str | None]:
    """Keep the newest revision only: a stale or repeated update changes nothing. Returns whether
    it was applied, and the provider's status before it (None for a provider new here)."""
    row = await conn.fetchrow(
        """WITH before AS (SELECT profile->>'status' AS status FROM provider_view WHERE provider_id = $1)
           INSERT INTO provider_view (provider_id, revision, profile) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (provider_id) DO UPDATE SET revision = EXCLUDED.revision, profile = EXCLUDED.profile,
               updated_at = now()
           WHERE provider_view.revision < EXCLUDED.revision
           RETURNING (SELECT status FROM before) AS was""",
        profile.provider_id,
        revision,
        profile.model_dump_json(),
    )
    return row is not None, None if row is None else row["was"]


async def record_quality(
    conn: Connection,
    provider_id: str,
    *,
    inspected_on: dt.date | None,
    reviewed_on: dt.date | None,
    at: dt.datetime,
) -> None:
    """The register's dates of a provider (ProviderQualityRecorded): the newest record wins."""
    await conn.execute(
        """INSERT INTO provider_quality (provider_id, cqc_inspected_on, local_risk_reviewed_on, recorded_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (provider_id) DO UPDATE SET cqc_inspected_on = EXCLUDED.cqc_inspected_on,
               local_risk_reviewed_on = EXCLUDED.local_risk_reviewed_on, recorded_at = EXCLUDED.recorded_at
           WHERE provider_quality.recorded_at <= EXCLUDED.recorded_at""",
        provider_id,
        inspected_on,
        reviewed_on,
        at,
    )


async def providers_serving(
    conn: Connection, *zones: str
) -> tuple[list[ProviderProfile], dict[str, tuple[dt.date | None, dt.date | None]]]:
    """Providers serving any of the zones, by provider id; with the quality register's dates for
    those it told us of: provider id -> (CQC inspection date, local risk review date). One
    statement: an offer reads both."""
    rows = await conn.fetch(
        """SELECT v.profile, q.provider_id AS registered, q.cqc_inspected_on, q.local_risk_reviewed_on
             FROM provider_view v LEFT JOIN provider_quality q ON q.provider_id = v.provider_id
            WHERE v.profile->'zones' ?| $1::text[] ORDER BY v.provider_id""",
        list(zones),
    )
    dates = {r["registered"]: (r["cqc_inspected_on"], r["local_risk_reviewed_on"]) for r in rows if r["registered"]}
    return [_profile(r["profile"]) for r in rows], dates


_parsed_profiles: dict[str, ProviderProfile] = {}


def _profile(text: str) -> ProviderProfile:
    """Each version of a profile is parsed once: every offer and award reads a zone's providers,
    and parsing them was a tenth of the brokerage's time under load. Profiles are frozen models,
    so one parsed copy can be shared; the cache is emptied when it grows past any real market."""
    profile = _parsed_profiles.get(text)
    if profile is None:
        if len(_parsed_profiles) >= 20_000:
            _parsed_profiles.clear()
        profile = _parsed_profiles[text] = ProviderProfile.model_validate_json(text)
    return profile


async def provider_count(conn: Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT count(*) FROM provider_view")


# ---- above-rate exceptions -------------------------------------------------------------------


async def cycle_bids(conn: Connection, package_id: uuid.UUID, cycle: int) -> tuple[list[Answer], dict[str, Decimal]]:
    """Every on-time bid of the package's current cycle, with the quality scores used."""
    rounds = await conn.fetch(
        "SELECT quality FROM offer_rounds WHERE package_id = $1 AND cycle = $2", package_id, cycle
    )
    quality: dict[str, Decimal] = {}
    for r in rounds:
        quality |= {k: Decimal(v) for k, v in json.loads(r["quality"]).items()}
    rows = await conn.fetch(
        """SELECT a.* FROM answers a JOIN offer_rounds r USING (package_id, offer_round)
            WHERE a.package_id = $1 AND r.cycle = $2 AND a.kind = 'bid' AND NOT a.late AND a.provider_id =
                ANY(r.provider_ids)""",
        package_id,
        cycle,
    )
    answers = [
        Answer(
            provider_id=a["provider_id"],
            kind="bid",
            answered_at=a["answered_at"],
            hourly_rate=a["hourly_rate"],
            earliest_start=a["earliest_start"],
            offer_round=a["offer_round"],
        )
        for a in rows
    ]
    return answers, quality


async def round_of_answer(conn: Connection, package_id: uuid.UUID, provider_id: str, cycle: int) -> tuple[int, str]:
    row = await conn.fetchrow(
        """SELECT r.offer_round, r.tier FROM answers a JOIN offer_rounds r USING (package_id, offer_round)
            WHERE a.package_id = $1 AND a.provider_id = $2 AND r.cycle = $3 AND a.kind = 'bid'
            ORDER BY r.offer_round DESC LIMIT 1""",
        package_id,
        provider_id,
        cycle,
    )
    if row is None:
        raise LookupError(f"{provider_id} made no bid on package {package_id} in cycle {cycle}")
    return row["offer_round"], row["tier"]


async def open_exception(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    provider_id: str,
    hourly_rate: Decimal,
    band_rate: Decimal,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO exceptions (package_id, requested_at, provider_id, hourly_rate, band_rate) VALUES ($1, $2,
           $3, $4, $5)""",
        package_id,
        at,
        provider_id,
        hourly_rate,
        band_rate,
    )
    await conn.execute(
        "UPDATE packages SET status = 'awaiting_approval', window_closes_at = NULL WHERE package_id = $1", package_id
    )


async def decide_exception(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    decision: str,
    decided_by: str,
    reason: str,
    reason_text: str | None,
    at: dt.datetime,
) -> asyncpg.Record | None:
    """Record the decision on the open exception; returns its bid (provider_id, hourly_rate)."""
    return await conn.fetchrow(
        """UPDATE exceptions SET decision = $2, decided_by = $3, reason = $4, reason_text = $5, decided_at = $6
            WHERE package_id = $1 AND decision IS NULL RETURNING provider_id, hourly_rate""",
        package_id,
        decision,
        decided_by,
        reason,
        reason_text,
        at,
    )


async def exception_awaiting(conn: Connection, package_id: uuid.UUID) -> asyncpg.Record | None:
    """The package's exception awaiting a decision (id, provider_id, hourly_rate, band_rate), or None."""
    return await conn.fetchrow(
        "SELECT id, provider_id, hourly_rate, band_rate FROM exceptions WHERE package_id = $1 AND decision IS NULL",
        package_id,
    )


async def exception_approvals(conn: Connection, exception_id: int) -> list[asyncpg.Record]:
    """The approvals recorded for one exception, oldest first (decision record 0123)."""
    return await conn.fetch(
        "SELECT * FROM exception_approvals WHERE exception_id = $1 ORDER BY approval_id", exception_id
    )


async def record_approval(
    conn: Connection,
    *,
    exception_id: int,
    package_id: uuid.UUID,
    approval: Approval,
    provider_id: str,
    hourly_rate: Decimal,
    step: str,
    reason: str,
    reason_text: str | None,
    at: dt.datetime,
) -> None:
    """One approval of an above-rate bid (``approval``: domain.Approval): who, under which role's
    limit, whether it covered the bid; ``step`` "first" or "final". The unique key refuses a second
    approval of the same bid by the same person, whatever the handler checked."""
    await conn.execute(
        """INSERT INTO exception_approvals (exception_id, package_id, approver, approver_role, limit_percent,
                                            within_limit, provider_id, hourly_rate, step, reason, reason_text,
                                            approved_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        exception_id,
        package_id,
        approval.approver,
        approval.role,
        approval.limit_percent,
        approval.within_limit,
        provider_id,
        hourly_rate,
        step,
        reason,
        reason_text,
        at,
    )


async def reopen(
    conn: Connection, package_id: uuid.UUID, *, start_date: dt.date, exclude: str | None = None
) -> asyncpg.Record:
    """Back to the start of the ladder (a new cycle) with priority and continuity (the person already
    has care that must not lapse), the care to start on ``start_date``; ``exclude`` is never offered
    it again (a provider that handed it back)."""
    return await fetch_one(
        conn,
        """UPDATE packages SET status = 'requested', cycle = cycle + 1, priority = true, continuity = true,
                               excluded_providers = CASE WHEN $2::text IS NULL THEN excluded_providers
                                                         ELSE array_append(excluded_providers, $2) END,
                               provider_id = NULL, hourly_rate = NULL, placed_at = NULL, started_on = NULL,
                               rebroker_due_at = NULL, rebroker_reason = NULL, start_date = $3::date,
                               spec = jsonb_set(spec, '{start_date}', to_jsonb($3::date::text))
            WHERE package_id = $1 RETURNING *""",
        package_id,
        exclude,
        start_date,
    )


# ---- changes to a running package (decision 0082) -------------------------------------------------


async def insert_change(
    conn: Connection,
    *,
    change_id: uuid.UUID,
    package_id: uuid.UUID,
    provider_id: str,
    previous: PackageSpec,
    changed: PackageSpec,
    reason: str,
    reason_text: str | None,
    discussed_with_person: bool,
    effective_date: dt.date,
    changed_by: str,
    at: dt.datetime,
    window_closes_at: dt.datetime,
) -> None:
    """Record a change awaiting the provider's answer, and start the package's change window."""
    await conn.execute(
        """INSERT INTO package_changes (change_id, package_id, provider_id, previous_spec, spec, previous_hours,
                                        hours_per_week, reason, reason_text, discussed_with_person, effective_date,
                                        changed_by, requested_at, window_closes_at)
           VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        change_id,
        package_id,
        provider_id,
        previous.model_dump_json(),
        changed.model_dump_json(),
        previous.hours_per_week,
        changed.hours_per_week,
        reason,
        reason_text,
        discussed_with_person,
        effective_date,
        changed_by,
        at,
        window_closes_at,
    )
    await conn.execute(
        "UPDATE packages SET pending_change_id = $2, change_window_closes_at = $3 WHERE package_id = $1",
        package_id,
        change_id,
        window_closes_at,
    )


async def pending_change(conn: Connection, change_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM package_changes WHERE change_id = $1", change_id)


async def settle_change(
    conn: Connection, change_id: uuid.UUID, *, status: str, at: dt.datetime, decline_reason: str | None = None
) -> asyncpg.Record | None:
    """The change's outcome (accepted, declined, window_closed, withdrawn); the package's window stops.
    Returns the change's row as settled, None when it was not pending."""
    change = await conn.fetchrow(
        """UPDATE package_changes SET status = $2, answered_at = $3, decline_reason = $4
            WHERE change_id = $1 AND status = 'pending' RETURNING *""",
        change_id,
        status,
        at,
        decline_reason,
    )
    if change is not None:  # nothing was pending: no window to stop
        await conn.execute(
            """UPDATE packages SET pending_change_id = NULL, change_window_closes_at = NULL
                WHERE package_id = $1 AND pending_change_id = $2""",
            change["package_id"],
            change_id,
        )
    return change


async def apply_change(conn: Connection, package_id: uuid.UUID, spec: PackageSpec) -> asyncpg.Record:
    """The package is ``spec`` from now on (hours, visit pattern, needs); returns the package row."""
    return await fetch_one(
        conn,
        "UPDATE packages SET spec = $2::jsonb, hours_per_week = $3 WHERE package_id = $1 RETURNING *",
        package_id,
        spec.model_dump_json(),
        spec.hours_per_week,
    )


async def reopen_for_change(
    conn: Connection, package_id: uuid.UUID, spec: PackageSpec, *, carried_on_by: str, carried_hours: Decimal
) -> asyncpg.Record:
    """Re-broker a running package with its changed ``spec`` (a new cycle, priority and continuity),
    never offered again to the provider that declined the change, which carries on at
    ``carried_hours`` until a new placement replaces its own (decision 0082)."""
    return await fetch_one(
        conn,
        """UPDATE packages SET status = 'requested', cycle = cycle + 1, priority = true, continuity = true,
                               excluded_providers = array_append(excluded_providers, $4),
                               provider_id = NULL, hourly_rate = NULL, placed_at = NULL, started_on = NULL,
                               rebroker_due_at = NULL, rebroker_reason = NULL, start_date = $3,
                               spec = $2::jsonb, hours_per_week = $5, carried_on_by = $4, carried_hours = $6
            WHERE package_id = $1 RETURNING *""",
        package_id,
        spec.model_dump_json(),
        spec.start_date,
        carried_on_by,
        spec.hours_per_week,
        carried_hours,
    )


async def changes_of(conn: Connection, package_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM package_changes WHERE package_id = $1 ORDER BY requested_at", package_id)


# ---- reviews (decision 0088) ------------------------------------------------------------------------


async def insert_review(
    conn: Connection,
    *,
    review_id: uuid.UUID,
    package_id: uuid.UUID,
    provider_id: str,
    outcome: str,
    due_on: dt.date | None,
    reviewed_on: dt.date,
    technology: list[str],
    change_id: uuid.UUID | None,
    next_review_due_on: dt.date | None,
    notes: str | None,
    reviewed_by: str,
    at: dt.datetime,
) -> None:
    """Record a review's outcome, and when the package's next review falls due (none once ended)."""
    await conn.execute(
        """INSERT INTO package_reviews (review_id, package_id, provider_id, outcome, due_on, reviewed_on, technology,
                                        change_id, next_review_due_on, notes, reviewed_by, recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        review_id,
        package_id,
        provider_id,
        outcome,
        due_on,
        reviewed_on,
        technology,
        change_id,
        next_review_due_on,
        notes,
        reviewed_by,
        at,
    )
    await conn.execute("UPDATE packages SET review_due_on = $2 WHERE package_id = $1", package_id, next_review_due_on)


async def reviews_of(conn: Connection, package_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM package_reviews WHERE package_id = $1 ORDER BY recorded_at", package_id)


# The packages a review queue lists: running ones (a paused package's review is shown, and can end it).
REVIEWABLE_STATUSES = frozenset({"started", "paused"})  # a running package: the only ones with a review due
REVIEWABLE = f"status IN ({', '.join(repr(s) for s in sorted(REVIEWABLE_STATUSES))}) AND review_due_on IS NOT NULL"


async def review_queue(
    conn: Connection | asyncpg.Pool, *, due_by: dt.date, zone: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """Running packages whose review is due on or before ``due_by`` (a UK date), most overdue first;
    and how many there are in all."""
    where = f"{REVIEWABLE} AND review_due_on <= $1 AND ($2::text IS NULL OR zone = $2)"
    rows = await conn.fetch(
        f"""SELECT package_id, status, zone, band, urgency, hours_per_week, provider_id, started_on, review_due_on,
                   requested_by,
                   (SELECT max(reviewed_on) FROM package_reviews r
                     WHERE r.package_id = p.package_id) AS last_reviewed_on
              FROM packages p WHERE {where} ORDER BY review_due_on, package_id LIMIT $3 OFFSET $4""",
        due_by,
        zone,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM packages WHERE {where}", due_by, zone)
    return rows, int(total or 0)


# ---- funding (decision 0089) ------------------------------------------------------------------------


async def insert_funding(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    periods: list[dict],
    top_up_paid_by: str | None,
    reason_text: str | None,
    recorded_by: str,
    at: dt.datetime,
) -> int:
    """Record the package's funding as its next revision (replacing the last); returns the revision."""
    revision = await fetch_one(
        conn,
        "UPDATE packages SET funding_revision = funding_revision + 1 WHERE package_id = $1 RETURNING funding_revision",
        package_id,
    )
    await conn.execute(
        """INSERT INTO package_funding (package_id, revision, periods, top_up_paid_by, reason_text, recorded_by,
                                        recorded_at)
           VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)""",
        package_id,
        revision["funding_revision"],
        json.dumps(periods),
        top_up_paid_by,
        reason_text,
        recorded_by,
        at,
    )
    return int(revision["funding_revision"])


async def funding_of(conn: Connection | asyncpg.Pool, package_id: uuid.UUID) -> asyncpg.Record | None:
    """The package's current funding record (its latest revision), or None when none was recorded."""
    return await conn.fetchrow(
        "SELECT * FROM package_funding WHERE package_id = $1 ORDER BY revision DESC LIMIT 1", package_id
    )


def periods_of(record: asyncpg.Record) -> list[Period]:
    """A stored funding record's periods (decision records 0089, 0121: ``calls`` since the latter)."""
    return [
        Period(
            dt.date.fromisoformat(p["effective_from"]),
            p["funder"],
            tuple((s["funder"], Decimal(s["percent"])) for s in p["shares"]),
            tuple((int(c["call"]), c["funder"]) for c in p.get("calls") or ()),
        )
        for p in json.loads(record["periods"])
    ]


# ---- hospital discharge (decision 0097) --------------------------------------------------------------

# A discharge whose fallback may still fall due: the package not placed yet (nor cancelled).
DISCHARGE_FALLBACKS = Timer(
    "status IN ('offered', 'unplaced', 'awaiting_approval')", "discharge_fallback_at", "discharge_fallback_at"
)


async def insert_discharge(
    conn: Connection,
    *,
    package_id: uuid.UUID,
    hospital: str,
    ward: str,
    pathway: int,
    medically_fit_on: dt.date,
    reablement_potential: bool,
    nhs_funded_weeks: int,
    fallback_due_at: dt.datetime,
) -> None:
    """The discharge's details, and the package's fallback deadline (one statement)."""
    await conn.execute(
        """WITH due AS (UPDATE packages SET discharge_fallback_at = $8 WHERE package_id = $1)
           INSERT INTO discharges (package_id, hospital, ward, pathway, medically_fit_on, reablement_potential,
                                   nhs_funded_weeks, fallback_due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        package_id,
        hospital,
        ward,
        pathway,
        medically_fit_on,
        reablement_potential,
        nhs_funded_weeks,
        fallback_due_at,
    )


async def discharge_of(conn: Connection | asyncpg.Pool, package_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM discharges WHERE package_id = $1", package_id)


async def in_house_committed(conn: Connection, today: dt.date) -> dict[str, Decimal]:
    """Carer hours a week each in-house service covers on ``today`` (a UK date): its referrals not yet
    released, or released from a later day. Locks those referrals' rows, so two discharges deciding at
    once cannot both take a service's last hours."""
    rows = await conn.fetch(
        """SELECT service, referred_hours FROM discharges
            WHERE service IS NOT NULL AND (released_on IS NULL OR released_on > $1) FOR UPDATE""",
        today,
    )
    committed: dict[str, Decimal] = {}
    for r in rows:
        committed[r["service"]] = committed.get(r["service"], Decimal(0)) + r["referred_hours"]
    return committed


async def refer_discharge(
    conn: Connection,
    package_id: uuid.UUID,
    *,
    service: str,
    step: str,
    referred_on: dt.date,
    hours: Decimal,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE discharges SET service = $2, step = $3, referred_on = $4, referred_hours = $5, referred_at = $6,
                  fallback_outcome = CASE WHEN $3 = 'fallback' THEN 'referred' ELSE fallback_outcome END
            WHERE package_id = $1""",
        package_id,
        service,
        step,
        referred_on,
        hours,
        at,
    )
    # Referred: the fallback is done with (reablement first covers the person as the fallback would).
    await conn.execute("UPDATE packages SET discharge_fallback_at = NULL WHERE package_id = $1", package_id)


async def settle_fallback(conn: Connection, package_id: uuid.UUID, outcome: str) -> None:
    """The fallback's deadline passed without a referral (``full``), or is no longer needed."""
    await conn.execute("UPDATE discharges SET fallback_outcome = $2 WHERE package_id = $1", package_id, outcome)
    await conn.execute("UPDATE packages SET discharge_fallback_at = NULL WHERE package_id = $1", package_id)


async def release_discharge(
    conn: Connection, package_id: uuid.UUID, *, released_on: dt.date, at: dt.datetime
) -> asyncpg.Record | None:
    """End the in-house service's cover from ``released_on``; returns the discharge if it held one.
    The fallback's deadline is cleared either way, in the same statement."""
    return await conn.fetchrow(
        """WITH cleared AS (UPDATE packages SET discharge_fallback_at = NULL WHERE package_id = $1)
           UPDATE discharges SET released_on = $2, released_at = $3
            WHERE package_id = $1 AND service IS NOT NULL AND released_at IS NULL RETURNING *""",
        package_id,
        released_on,
        at,
    )


async def move_discharge_release(
    conn: Connection, package_id: uuid.UUID, *, released_on: dt.date
) -> asyncpg.Record | None:
    """The in-house service's cover, already released, ends on ``released_on`` instead (the provider's
    care began on another day than the award's); returns the discharge when the date moved."""
    return await conn.fetchrow(
        """UPDATE discharges SET released_on = $2
            WHERE package_id = $1 AND service IS NOT NULL AND released_at IS NOT NULL
              AND released_on IS DISTINCT FROM $2 RETURNING *""",
        package_id,
        released_on,
    )


# ---- service agreements: the hand-off to finance (decision records 0109-0111) ----------------------

# A record in force: the latest version of its agreement (no record supersedes it).
IN_FORCE = "NOT EXISTS (SELECT 1 FROM service_agreements later WHERE later.supersedes = s.record_id)"


async def paid_for_care_on(conn: Connection, package_id: uuid.UUID, provider_id: str, day: dt.date) -> bool:
    """Whether an agreed service agreement in force pays ``provider_id`` for the package's care on
    ``day`` (a UK date): from its start to its end date, open-ended ones from their start."""
    return bool(
        await conn.fetchval(
            f"""SELECT true FROM service_agreements s
                 WHERE package_id = $1 AND provider_id = $2 AND status = 'agreed' AND {IN_FORCE}
                   AND start_date <= $3 AND (end_date IS NULL OR end_date >= $3) LIMIT 1""",
            package_id,
            provider_id,
            day,
        )
    )


async def insert_agreement(conn: Connection, record: ServiceAgreementRecorded) -> None:
    """Append a service agreement record (never updated: a correction is the next version). A second
    record superseding the same one fails on the UNIQUE constraint, so two writers cannot fork an
    agreement.

    The lines in force (migration 0025, decision 0131) change with it, in the same statement
    (decision 0145: one round trip, not three): the superseded record's go, the new record's come
    if it is agreed."""
    lines = (
        [
            (part_no, line_no, line.payer, line.pounds_per_week, part.effective_from, part.effective_to)
            for part_no, part in enumerate(record.funding)
            for line_no, line in enumerate(part.lines)
        ]
        if record.status is AgreementStatus.agreed
        else []
    )
    columns = [list(column) for column in zip(*lines, strict=True)] if lines else [[] for _ in range(6)]
    await conn.execute(
        """WITH recorded AS (
               INSERT INTO service_agreements (record_id, agreement_id, version, supersedes, reason, status,
                                               package_id, provider_id, zone, band, hourly_rate, band_rate,
                                               hours_per_week, weekly_cost, start_date, end_date, funding,
                                               funding_revision, cost_centre, rate_card, event_id, recorded_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18,
                       $19, $20, $21, $22)
               RETURNING record_id, package_id, provider_id, start_date, end_date),
           superseded AS (DELETE FROM agreement_lines_in_force WHERE record_id = $4)
           INSERT INTO agreement_lines_in_force (record_id, part_no, line_no, package_id, provider_id, payer,
                                                 pounds_per_week, start_date, end_date, effective_from, effective_to)
           SELECT r.record_id, l.part_no, l.line_no, r.package_id, r.provider_id, l.payer, l.pounds_per_week,
                  r.start_date, r.end_date, l.effective_from, l.effective_to
             FROM recorded r,
                  unnest($23::int[], $24::int[], $25::text[], $26::numeric[], $27::date[], $28::date[])
                    AS l(part_no, line_no, payer, pounds_per_week, effective_from, effective_to)""",
        record.record_id,
        record.agreement_id,
        record.version,
        record.supersedes,
        record.reason.value,
        record.status.value,
        record.package_id,
        record.provider_id,
        record.zone,
        record.band.value,
        record.hourly_rate,
        record.band_rate,
        record.hours_per_week,
        record.weekly_cost,
        record.start_date,
        record.end_date,
        json.dumps([f.model_dump(mode="json") for f in record.funding]),
        record.funding_revision,
        record.cost_centre,
        record.rate_card,
        record.event_id,
        record.recorded_at,
        *columns,
    )


async def agreements_in_force(conn: Connection, package_id: uuid.UUID) -> list[asyncpg.Record]:
    """The package's agreements as they stand: each one's latest version, oldest agreement first."""
    return list(
        await conn.fetch(
            f"SELECT * FROM service_agreements s WHERE package_id = $1 AND {IN_FORCE} ORDER BY start_date, recorded_at",
            package_id,
        )
    )


def terms_of(row: asyncpg.Record) -> AgreementTerms:
    """A stored record's terms (the pure form the rules in :mod:`domain` work on)."""
    funding = tuple(
        FundingPart(
            dt.date.fromisoformat(p["effective_from"]),
            dt.date.fromisoformat(p["effective_to"]) if p["effective_to"] else None,
            p["funder"],
            tuple(
                PayerLine(
                    line["payer"],
                    line["basis"],
                    None if line["percent"] is None else Decimal(line["percent"]),
                    Decimal(line["pounds_per_week"]),
                    tuple(line.get("calls") or ()),
                )
                for line in p["lines"]
            ),
        )
        for p in json.loads(row["funding"])
    )
    return AgreementTerms(
        provider_id=row["provider_id"],
        zone=row["zone"],
        band=row["band"],
        hourly_rate=row["hourly_rate"],
        band_rate=row["band_rate"],
        hours_per_week=row["hours_per_week"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        status=row["status"],
        cost_centre=row["cost_centre"],
        rate_card=row["rate_card"],
        funding_revision=row["funding_revision"],
        funding=funding,
    )


async def agreement_records(
    conn: Connection | asyncpg.Pool,
    *,
    recorded_from: dt.datetime | None = None,
    recorded_before: dt.datetime | None = None,
    provider_id: str | None = None,
    package_id: uuid.UUID | None = None,
    in_force_only: bool = False,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[asyncpg.Record]:
    """Service agreement records in the order they were written (``newest_first``: the reverse),
    with the provider's name: those written from ``recorded_from`` until before ``recorded_before``
    (UTC instants), of one provider or package; ``in_force_only``, the latest version of each
    agreement only."""
    order = "DESC" if newest_first else "ASC"
    return list(
        await conn.fetch(
            f"""SELECT s.*, p.profile->>'name' AS provider_name FROM service_agreements s
                  LEFT JOIN provider_view p ON p.provider_id = s.provider_id
                 WHERE ($1::timestamptz IS NULL OR s.recorded_at >= $1)
                   AND ($2::timestamptz IS NULL OR s.recorded_at < $2)
                   AND ($3::text IS NULL OR s.provider_id = $3)
                   AND ($4::uuid IS NULL OR s.package_id = $4)
                   AND (NOT $5 OR {IN_FORCE})
                 ORDER BY s.recorded_at {order}, s.agreement_id {order}, s.version {order}
                 LIMIT $6 OFFSET $7""",
            recorded_from,
            recorded_before,
            provider_id,
            package_id,
            in_force_only,
            limit,
            offset,
        )
    )


async def weekly_pound_days(conn: Connection | asyncpg.Pool, monday: dt.date) -> list[asyncpg.Record]:
    """The week from ``monday``'s commitment before its division by 7, by provider and payer:
    ``{provider_id, provider_name, payer, pound_days}`` - for each agreement in force and agreed,
    each funding part's lines, pounds per week x the days of the week the part covers (the rule of
    domain.weekly_commitment, summed here in one statement: the report covers every running
    package, tens of thousands of agreements after a few years). Read from the lines in force
    (``agreement_lines_in_force``, kept by :func:`insert_agreement`; decision 0131), not derived
    from every record on each view."""
    return list(
        await conn.fetch(
            """SELECT sums.provider_id, p.profile->>'name' AS provider_name, sums.payer, sums.pound_days FROM (
                SELECT l.provider_id, l.payer, sum(l.pounds_per_week * d.days) AS pound_days
                  FROM agreement_lines_in_force l
                 CROSS JOIN LATERAL (SELECT least(coalesce(l.effective_to, $2), $2)
                                          - greatest(l.effective_from, $1) + 1 AS days) AS d
                 WHERE l.start_date <= $2 AND (l.end_date IS NULL OR l.end_date >= $1) AND d.days > 0
                 GROUP BY l.provider_id, l.payer) AS sums
                  LEFT JOIN provider_view p ON p.provider_id = sums.provider_id
                 ORDER BY sums.provider_id COLLATE "C", sums.payer COLLATE "C"
            """,
            monday,
            monday + dt.timedelta(days=6),
        )
    )
