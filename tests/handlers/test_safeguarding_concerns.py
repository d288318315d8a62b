"""Safeguarding concerns in the providers service on a real PostgreSQL (decision records 0106-0108): two
concerns pausing the same provider, the pause lifting only with the last outcome; each change of the
pause announced once on ProviderUpdated, without why; the decisions append-only; the outbox free of
the concerns' words."""

import json
import uuid

import asyncpg
import pytest

from services.providers import domain, handlers
from services.providers.app import build
from services.runtime.outbox import unit_of_work

WORDS = f"The carer shouted at him during the bed call ({uuid.uuid4().hex[:8]})"


async def raised(service, provider_id: str) -> uuid.UUID:
    async with unit_of_work(service.pool) as uow:
        concern = await handlers.raise_concern(
            uow,
            package_id=None,
            provider_id=provider_id,
            category=domain.ConcernCategory.psychological,
            details=WORDS,
            adult_at_risk="Albert Example",
            immediate_risk=False,
            raised_by="broker.amy",
            raised_by_kind="staff",
            raised_by_role="broker",
        )
    return concern["concern_id"]


async def announced(service, provider_id: str) -> list[bool]:
    rows = await service.pool.fetch(
        "SELECT payload FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1 ORDER BY seq", provider_id
    )
    return [json.loads(row["payload"])["profile"].get("offers_paused", False) for row in rows]


async def test_a_provider_stays_paused_until_the_last_pausing_concerns_outcome(in_memory):
    service, _ = await in_memory(build, "providers")
    provider_id = await service.pool.fetchval(
        "SELECT provider_id FROM providers WHERE profile->>'status' = 'active' ORDER BY provider_id LIMIT 1"
    )
    start = len(await announced(service, provider_id))
    first, second = await raised(service, provider_id), await raised(service, provider_id)
    for concern_id, reason in ((first, "immediate_risk"), (second, "organisational_enquiry")):
        async with unit_of_work(service.pool) as uow:
            await handlers.pause_offers(
                uow, concern_id, reason=domain.OfferPauseReason(reason), decided_by="safeguarding.sam"
            )
    assert (await announced(service, provider_id))[start:] == [True], "paused once: the second pause changes nothing"

    async with unit_of_work(service.pool) as uow:
        one = await handlers.record_concern_outcome(
            uow, first, outcome=domain.ConcernOutcome.threshold_not_met, decided_by="safeguarding.sam"
        )
    assert one["offers_paused"] is True
    assert (await announced(service, provider_id))[start:] == [True], "the other enquiry still holds the pause"
    with pytest.raises(handlers.Refused, match="closed"):
        async with unit_of_work(service.pool) as uow:
            await handlers.record_concern_outcome(
                uow, first, outcome=domain.ConcernOutcome.risk_removed, decided_by="safeguarding.sam"
            )

    async with unit_of_work(service.pool) as uow:
        last = await handlers.record_concern_outcome(
            uow, second, outcome=domain.ConcernOutcome.risk_reduced, decided_by="safeguarding.sam"
        )
    assert last["offers_paused"] is False
    assert (await announced(service, provider_id))[start:] == [True, False]
    assert (
        await service.pool.fetchval(
            "SELECT (profile->>'offers_paused')::boolean FROM providers WHERE provider_id = $1", provider_id
        )
        is False
    )

    decisions = await service.pool.fetch(
        "SELECT decision, code, decided_by FROM concern_decisions WHERE concern_id = $1 ORDER BY decision_id", second
    )
    assert [(d["decision"], d["code"], d["decided_by"]) for d in decisions] == [
        ("offers_paused", "organisational_enquiry", "safeguarding.sam"),
        ("outcome", "risk_reduced", "safeguarding.sam"),
        ("offers_resumed", "risk_reduced", "safeguarding.sam"),
    ]
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await service.pool.execute(
            "UPDATE concern_decisions SET decided_by = 'someone else' WHERE concern_id = $1", second
        )
    outbox = await service.pool.fetch("SELECT payload::text AS p FROM outbox")
    assert not [r for r in outbox if WORDS in r["p"] or "Albert" in r["p"] or str(second) in r["p"]]
