"""The weekly commitment read from the lines in force (decision record 0131) gives exactly the pennies of
the straightforward derivation, with a real PostgreSQL: varied agreements written through the
brokerage's own append (repository.insert_agreement) - corrections that supersede, endings and
cancellations, funding split into dated parts and between payers, agreements and parts starting and
ending mid-week - then, for each week around them, the report (repository.weekly_pound_days) against
the rule (domain.weekly_commitment over every record no other supersedes) and against the statement
the report ran before (every record's funding unnested, "in force" derived on each view)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import uuid
from decimal import Decimal
from pathlib import Path

from schemas.events import AgreementFunding, PayerLine, ServiceAgreementRecorded
from schemas.vocabulary import AgreementReason, AgreementStatus, Band, Funder, Payer
from services.brokerage import domain
from services.brokerage import repository as repo
from services.runtime import clock
from tests.handlers.market import request

MIGRATION = Path(__file__).parents[2] / "services/brokerage/migrations/0025_agreement_lines_in_force.sql"

# The report's statement before decision 0131, kept here as the reference it must equal.
DERIVED = f"""SELECT * FROM (
    SELECT s.provider_id, min(p.profile->>'name') AS provider_name, line->>'payer' AS payer,
           sum((line->>'pounds_per_week')::numeric * d.days) AS pound_days
      FROM service_agreements s
      LEFT JOIN provider_view p ON p.provider_id = s.provider_id
     CROSS JOIN LATERAL jsonb_array_elements(s.funding) AS part
     CROSS JOIN LATERAL (SELECT least(coalesce((part->>'effective_to')::date, $2), $2)
                              - greatest((part->>'effective_from')::date, $1) + 1 AS days) AS d
     CROSS JOIN LATERAL jsonb_array_elements(part->'lines') AS line
     WHERE s.status = 'agreed' AND s.start_date <= $2 AND (s.end_date IS NULL OR s.end_date >= $1)
       AND d.days > 0 AND {repo.IN_FORCE}
     GROUP BY s.provider_id, line->>'payer') AS sums
     ORDER BY provider_id COLLATE "C", payer COLLATE "C\""""

PENNY = Decimal("0.01")


def split(total: Decimal, parts: int, rnd: random.Random) -> list[Decimal]:
    """``total`` pounds in ``parts`` amounts of whole pennies adding up to it exactly."""
    pennies = int(total * 100)
    cuts = sorted(rnd.randint(0, pennies) for _ in range(parts - 1))
    bounds = [0, *cuts, pennies]
    return [Decimal(b - a) / 100 for a, b in itertools.pairwise(bounds)]


def funding(start: dt.date, end: dt.date | None, weekly_cost: Decimal, rnd: random.Random) -> list[AgreementFunding]:
    """One to three dated parts covering ``start``..``end`` (cut on any weekday), each split between
    one to three payers."""
    last = end or start + dt.timedelta(days=rnd.randint(3, 40))
    cuts = sorted(
        {start + dt.timedelta(days=rnd.randint(1, max(1, (last - start).days))) for _ in range(rnd.randint(0, 2))}
    )
    cuts = [c for c in cuts if start < c <= last]
    begins = [start, *cuts]
    parts = []
    for i, begin in enumerate(begins):
        ends = begins[i + 1] - dt.timedelta(days=1) if i + 1 < len(begins) else end
        payers = rnd.sample(list(Payer), rnd.randint(1, 3))
        parts.append(
            AgreementFunding(
                effective_from=begin,
                effective_to=ends,
                funder=rnd.choice([Funder.council, Funder.joint, Funder.nhs_discharge]),
                lines=[
                    PayerLine(payer=payer, basis="share", pounds_per_week=amount)
                    for payer, amount in zip(payers, split(weekly_cost, len(payers), rnd), strict=True)
                ],
            )
        )
    return parts


def record(
    package_id: uuid.UUID,
    provider_id: str,
    start: dt.date,
    end: dt.date | None,
    rnd: random.Random,
    *,
    previous: ServiceAgreementRecorded | None = None,
    status: AgreementStatus = AgreementStatus.agreed,
    reason: AgreementReason = AgreementReason.placed,
) -> ServiceAgreementRecorded:
    hours = Decimal(rnd.choice(["3.50", "7.00", "10.50", "14.00", "21.25"]))
    rate = Decimal(rnd.choice(["19.99", "21.37", "23.03", "25.50"]))
    weekly_cost = (hours * rate).quantize(PENNY)
    return ServiceAgreementRecorded(
        correlation_id=package_id,
        record_id=uuid.uuid4(),
        agreement_id=previous.agreement_id if previous else uuid.uuid4(),
        version=previous.version + 1 if previous else 1,
        supersedes=previous.record_id if previous else None,
        reason=reason,
        status=status,
        package_id=package_id,
        provider_id=provider_id,
        zone="bottesford",
        band=Band.urban,
        hourly_rate=rate,
        band_rate=Decimal("21.00"),
        hours_per_week=hours,
        weekly_cost=weekly_cost,
        start_date=start,
        end_date=end,
        funding=funding(start, end, weekly_cost, rnd),
        funding_revision=0,
        cost_centre="ASC-HC-MEL",
        rate_card="2026-27",
        recorded_at=clock.now(),
    )


def corrected(
    previous: ServiceAgreementRecorded, package_id: uuid.UUID, rnd: random.Random
) -> ServiceAgreementRecorded:
    """The next version of ``previous``: a start moved, an ending (mid-week, before or after its
    start: cancelled then), a new funding split, or the same dates again."""
    start, end = previous.start_date, previous.end_date
    choice = rnd.randrange(4)
    if choice == 0:
        start = start + dt.timedelta(days=rnd.randint(-6, 6))
        end = None if end is None else max(end, start)
        reason = AgreementReason.started
    elif choice == 1:
        last = start + dt.timedelta(days=rnd.randint(-3, 30))
        if last < start:
            return record(
                package_id,
                previous.provider_id,
                start,
                end,
                rnd,
                previous=previous,
                status=AgreementStatus.cancelled,
                reason=AgreementReason.cancelled,
            )
        end, reason = last, AgreementReason.ended
    else:
        reason = AgreementReason.funding_changed
    return record(package_id, previous.provider_id, start, end, rnd, previous=previous, reason=reason)


async def test_the_lines_in_force_give_the_pennies_of_the_derivation_over_varied_agreements(brokerage):
    service, _broker, rules, ids = brokerage
    rnd = random.Random(20261201)
    package_id = await request(service, rules)
    providers = [ids["prime_best"], ids["prime_good"], ids["supp"], f"gone-{uuid.uuid4().hex[:6]}"]
    this_week = clock.uk_week_of(clock.uk_today())
    written = 0
    for _ in range(80):
        start = this_week + dt.timedelta(days=rnd.randint(-35, 35))
        end = None if rnd.random() < 0.6 else start + dt.timedelta(days=rnd.randint(0, 40))
        latest = record(package_id, rnd.choice(providers), start, end, rnd)
        async with service.pool.acquire() as conn, conn.transaction():
            await repo.insert_agreement(conn, latest)
        written += 1
        for _ in range(rnd.choice([0, 0, 1, 2, 4])):
            latest = corrected(latest, package_id, rnd)
            async with service.pool.acquire() as conn, conn.transaction():
                await repo.insert_agreement(conn, latest)
            written += 1
    rows = await service.pool.fetch(f"SELECT * FROM service_agreements s WHERE {repo.IN_FORCE}")
    assert written > 150 and any(r["status"] == "cancelled" for r in rows), "a varied book"
    assert any(len(json.loads(r["funding"])) > 1 and r["version"] > 1 for r in rows), "split, then corrected"
    assert any(r["end_date"] is not None and r["end_date"].weekday() not in (0, 6) for r in rows), "mid-week"
    seen = 0
    for weeks in range(-7, 9):
        monday = this_week + dt.timedelta(weeks=weeks)
        rule = domain.weekly_commitment(
            ((r["provider_id"], str(r["agreement_id"]), repo.terms_of(r)) for r in rows), monday
        )
        report = await repo.weekly_pound_days(service.pool, monday)
        derived = await service.pool.fetch(DERIVED, monday, monday + dt.timedelta(days=6))
        assert [tuple(r) for r in report] == [tuple(r) for r in derived], monday
        assert {(r["provider_id"], r["payer"]): domain.commitment_pounds(r["pound_days"]) for r in report} == rule
        seen += len(report)
    assert seen > 50, "weeks with commitments to compare"


async def test_the_migration_fills_the_lines_in_force_from_the_records_already_written(brokerage):
    """Migration 0025's backfill, run again on the records of this database (in a transaction rolled
    back), gives the same rows insert_agreement kept as each record was appended."""
    service, _broker, rules, ids = brokerage
    rnd = random.Random(7)
    package_id = await request(service, rules)
    start = clock.uk_today()
    first = record(package_id, ids["prime_best"], start, None, rnd)
    second = corrected(first, package_id, rnd)
    other = record(package_id, ids["supp"], start, start + dt.timedelta(days=9), rnd)
    for r in (first, second, other):
        async with service.pool.acquire() as conn, conn.transaction():
            await repo.insert_agreement(conn, r)
    backfill = MIGRATION.read_text().split("INSERT INTO agreement_lines_in_force", 1)[1]
    query = "SELECT * FROM agreement_lines_in_force ORDER BY record_id, part_no, line_no"
    async with service.pool.acquire() as conn:
        kept = [tuple(r) for r in await conn.fetch(query)]
        assert {r[0] for r in kept} >= {second.record_id, other.record_id}
        assert first.record_id not in {r[0] for r in kept}, "a superseded record's lines go"
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("DELETE FROM agreement_lines_in_force")
            await conn.execute("INSERT INTO agreement_lines_in_force" + backfill)
            assert [tuple(r) for r in await conn.fetch(query)] == kept
        finally:
            await tx.rollback()
