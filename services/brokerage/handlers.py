"""What the brokerage does, one function per command or event; each runs in one unit of work.

- :func:`request_package`  a broker's request (HTTP) -> PackageRequested + the first OfferMade
- :func:`record_answer`    BidSubmitted / OfferDeclined -> maybe close the round early
  (:func:`record_answers`: a batch of them, to the same end in fewer round trips)
- :func:`close_due_window`  the window timer -> close a round whose window has run out
- :func:`close_round`      award (PackagePlaced), or offer the next tier, or PackageUnplaced
- :func:`update_provider`  ProviderUpdated -> the brokerage's view of the registry; a provider
  suspended or gone marks its packages, which :func:`rebroker_due` re-brokers most urgent first
- :func:`cancel`, :func:`record_start`, :func:`reoffer`  broker actions (HTTP), and the
  unplaced queue's schedule (:func:`reoffer_due`)
- :func:`pause`, :func:`resume`, :func:`end_package`  a running package's pauses and endings (HTTP),
  and the hold timer (:func:`end_due_holds`): decision record 0078
- :func:`request_change` (HTTP) -> ChangeOffered to the provider holding the package;
  :func:`record_change_answer` ChangeAnswered -> PackageChanged, or ChangeDeclined and re-brokering;
  :func:`close_due_change_window` the change window timer: decision record 0082
- :func:`record_review` (HTTP) -> PackageReviewed, and the change (ChangeOffered) or the ending
  (PackageEnded) it decided: decision record 0088
- :func:`record_funding` (HTTP) -> FundingRecorded: who pays, in dated periods: decision record 0089
- a request with a ``discharge`` (HTTP) -> DischargeRequested, and reablement first (DischargeReferred)
  or the market; the fallback timer (:func:`discharge_fallback_due`) -> DischargeReferred to a service
  of last resort, or DischargeFallbackUnavailable; the placement or a cancellation ->
  DischargeReferralReleased: decision record 0097
- each placement, start, change, pause and resume (when the hold is unpaid), ending, cancellation,
  hand-back, re-brokering and funding record -> ServiceAgreementRecorded on its own topic, the hand-off
  to finance; corrections are new versions that supersede: decision records 0109-0111
- :func:`decide_exception` (HTTP) an above-rate bid approved (ExceptionDecided, PackagePlaced), approved
  first by someone below its limit or where two approvals are needed (ExceptionFirstApproved), or
  refused (ExceptionDecided, PackageUnplaced): decision records 0052 and 0123
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import asyncpg

from schemas.events import (
    AgreementFunding,
    BidRank,
    BidSubmitted,
    CallFunding,
    ChangeAnswered,
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    DischargeReferred,
    DischargeRequested,
    ExceptionDecided,
    ExceptionFirstApproved,
    ExceptionRequested,
    FundingPeriod,
    FundingRecorded,
    FundingShare,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageChanged,
    PackageEnded,
    PackageHandedBack,
    PackageHandedOver,
    PackagePaused,
    PackagePlaced,
    PackageReopened,
    PackageRequested,
    PackageResumed,
    PackageReviewed,
    PackageSpec,
    PackageStarted,
    PackageUnplaced,
    PayerLine,
    ProviderQualityRecorded,
    ProviderUpdated,
    ServiceAgreementRecorded,
    TopUp,
    VisitPattern,
)
from schemas.vocabulary import (
    AgreementReason,
    AgreementStatus,
    Band,
    CancelReason,
    CareNeed,
    ChangeOutcome,
    ChangeReason,
    ChangeWithdrawnBecause,
    DeclineReason,
    EndReason,
    ExceptionDecisionReason,
    Funder,
    HandBackReason,
    InHouseService,
    PauseReason,
    Payer,
    ReferralStep,
    ReopenReason,
    ReviewOutcome,
    TechnologyEnabledCare,
    Tier,
    TopUpPayer,
    UnplacedReason,
    Urgency,
)
from services.brokerage import domain
from services.brokerage import repository as repo
from services.runtime import clock
from services.runtime import quality as quality_rules
from services.runtime.consumer import Rejected
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork
from services.runtime.reference import (
    DischargeReference,
    FinanceCodes,
    Framework,
    SchemeOfDelegation,
    load_delegation,
    load_discharge,
    load_finance,
    load_framework,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class BrokerageRules:
    """The configurable parts of the framework's rules. The reference data (zones, rate cards,
    policies, quality weights) is read afresh for each decision, so an edited file applies to the
    next package without a restart."""

    windows: dict[Urgency, dt.timedelta]
    reoffer_interval: dt.timedelta = dt.timedelta(hours=6)
    # Pauses and endings (decision 0078): the provider's hold on a paused package, whether the
    # council pays for it, and how far from today their dates may be.
    pause_hold: dt.timedelta = dt.timedelta(days=14)
    pause_hold_paid: bool = True
    date_limits: domain.DateLimits = field(default_factory=domain.DateLimits)
    # Changes to a running package (decision 0082): how long its provider has to answer one.
    change_window: dt.timedelta = dt.timedelta(hours=48)
    # Reviews (decision 0088): when they fall due.
    reviews: domain.ReviewSchedule = field(default_factory=domain.ReviewSchedule)
    # Hospital discharge (decision 0097): its dates' limits and the fallback's deadline; the hospitals
    # and the in-house services (deploy/reference/discharge.yaml), read afresh for each decision.
    discharge: domain.DischargeRules = field(default_factory=domain.DischargeRules)
    discharge_reference: Callable[[], DischargeReference] = load_discharge
    reference: Callable[[], Framework] = load_framework
    delegation: Callable[[], SchemeOfDelegation] = load_delegation
    # The finance system's codes (decision 0109): cost centres and the service type.
    finance: Callable[[], FinanceCodes] = load_finance
    # A sandbox deployment (decision 0116): test packages are offered to the provider that asked alone.
    sandbox: bool = False

    @property
    def framework(self) -> Framework:
        return self.reference()

    @property
    def quality_weights(self) -> domain.QualityWeights:
        return _weights(self.framework)


def _weights(framework: Framework) -> domain.QualityWeights:
    return domain.QualityWeights(**framework.quality_weights)


class ActionRefused(Exception):
    """A broker action not allowed in the package's current state (HTTP 409)."""


class Refused(ActionRefused):
    """An action refused by a rule of :mod:`domain`: its HTTP status (409 the package's state, 422
    a date) and the request field at fault."""

    def __init__(self, refusal: domain.Refusal, *, step: str | None = None) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.step = step  # a part of a larger action refusing (a review's "change" or "end"), if any


def now() -> dt.datetime:
    """The platform's clock (UTC; settable in tests): services.runtime.clock."""
    return clock.now()


class Requested(NamedTuple):
    package_id: uuid.UUID
    status: str  # where the request left the package: offered, unplaced or awaiting_approval


@dataclass(frozen=True)
class DischargeInput:
    """What the Discharge Hub says of a discharge (decision record 0097): codes from
    deploy/reference/discharge.yaml, the pathway (1-3; 0 is refused), the medically-fit UK date,
    whether it saw reablement potential, and the weeks the NHS pays from the start (then the council)."""

    hospital: str
    ward: str
    pathway: int
    medically_fit_on: dt.date
    reablement_potential: bool = False
    nhs_funded_weeks: int = 4


async def request_package(
    uow: UnitOfWork,
    rules: BrokerageRules,
    *,
    spec: PackageSpec,
    person: dict,
    requested_by: str,
    package_id: uuid.UUID | None = None,
    discharge: DischargeInput | None = None,
    sandbox_for: str | None = None,
) -> Requested:
    """Store the request and offer it to the first tier. A retried request (Idempotency-Key) is
    the API's to recognise, around this command (services/runtime/idempotency.py).

    ``discharge`` (a hospital discharge; decision record 0097): recorded and announced
    (DischargeRequested); with reablement potential on pathway 1 the person goes to the in-house
    reablement service first if it has the hours (DischargeReferred), the package still offered to
    the market for the care after; the NHS discharge funding is recorded (FundingRecorded: the NHS
    for ``nhs_funded_weeks`` from the start, then the council); the fallback's deadline is set.
    ``sandbox_for`` (a sandbox's test package, decision 0116): the one provider it is ever offered to.

    Raises :class:`Refused` (422 naming ``discharge.*`` or ``start_date``) with nothing written."""
    package_id = package_id or uuid.uuid4()
    at = now()
    framework = rules.framework
    # Effective dates are UK dates: at 00:30 BST on 1 April the April card is in force.
    today = clock.uk_date(at)
    if discharge is not None:
        refusal = _discharge_refusal(rules, spec, discharge, today)
        if refusal is not None:
            raise Refused(refusal)
    card = framework.rate_card_on(today)
    policy = framework.policy_on(spec.zone, today)
    package = await repo.insert_package(
        uow.conn,
        package_id=package_id,
        spec=spec,
        requested_by=requested_by,
        policy=policy,
        rate_card=card.version,
        band_rate=card.rates[spec.band],
        requested_at=at,
        person=person,
        sandbox_for=sandbox_for,
    )
    requested = PackageRequested(correlation_id=package_id, package_id=package_id, package=spec, requested_at=at)
    repo.add_timeline(
        uow, package_id, "requested", at, requested_by=requested_by, policy=policy, rate_card=card.version
    )
    await uow.emit(requested)
    if discharge is not None:
        await _record_discharge(uow, rules, package, spec, discharge, at, causation=requested.event_id)
    status = await _offer_next_tier(uow, rules, package, after=None, causation=requested.event_id)
    return Requested(package_id, status)


def _answerable(package: asyncpg.Record | None, event: BidSubmitted | OfferDeclined) -> tuple[list[str], bool]:
    """(who the answer's round was offered to, whether the answer is late) for a package row from
    :func:`repo.lock_package_for_answer`. Raises Rejected for an answer to no such round, or from a
    provider the round was not offered to."""
    if package is None or package["round_offered"] is None:
        raise Rejected(f"answer for unknown package/round {event.package_id}/{event.offer_round}")
    offered: list[str] = package["round_offered"]
    if event.provider_id not in offered:
        # Only those offered a round may answer it: anything else is a faulty or forged adapter.
        raise Rejected(
            f"{event.provider_id} answered round {event.offer_round} of {event.package_id} without being offered it"
        )
    # An answer after its round closed is kept (it is part of the record) but changes nothing.
    late = package["status"] != "offered" or package["current_round"] != event.offer_round
    return offered, late


async def record_answers(
    uow: UnitOfWork, rules: BrokerageRules, events: Sequence[BidSubmitted | OfferDeclined]
) -> None:
    """Providers' answers in the order they came, to the same end as :func:`record_answer` for each
    in turn, in fewer round trips: the answers' packages are locked and their rounds' answers read
    in two statements for the batch, and the answers recorded together - before closing a round
    that one of them settles (whatever the close reads is then in the table), and at the end (a
    later call in the same transaction reads them back). An answer to a package whose round was
    closed earlier in the batch goes :func:`record_answer`'s way: the package has changed since
    it was read.

    Raises Rejected as :func:`record_answer` does (the consumer then applies the batch's events
    one at a time, and dead-letters that one). Why: two round trips an answer were a fifth of the
    brokerage's statements in the benchmark's burst (decision 0143)."""
    if len(events) == 1:
        await record_answer(uow, rules, events[0])
        return
    rounds = [(e.package_id, e.offer_round) for e in events]
    locked = await repo.lock_packages_for_answers(uow.conn, rounds)
    answers = await repo.answers_of_rounds(uow.conn, rounds)
    names = repo.ANSWER_ROWS.names
    unwritten: list[tuple[Any, ...]] = []
    changed: set[uuid.UUID] = set()
    for event in events:
        if event.package_id in changed:
            await repo.ANSWER_ROWS.execute(uow.conn, unwritten)
            unwritten = []
            await record_answer(uow, rules, event)
            continue
        package = locked.get((event.package_id, event.offer_round))
        offered, late = _answerable(package, event)
        assert package is not None  # _answerable rejects an answer with no package
        round_answers = answers.setdefault((event.package_id, event.offer_round), {})
        if event.provider_id in round_answers:
            continue  # answered before (a redelivery)
        row = _answer_row(event, late)
        unwritten.append(row)
        round_answers[event.provider_id] = dict(zip(names, row, strict=True))
        if late:
            continue
        answered = repo.state_of(offered, package["round_quality"], list(round_answers.values()))
        if domain.outcome_settled(*answered, package["band_rate"]):
            # The answers so far are written with the round's close, in its statement.
            await close_round(
                uow,
                rules,
                package,
                why="outcome settled",
                causation=event.event_id,
                answered=answered,
                answers=unwritten,
            )
            unwritten = []
            changed.add(event.package_id)
    # Written now, not with the unit of work's rows at its end: a later call in this transaction
    # (the batch's next run of answers, after another event) reads the answers back.
    await repo.ANSWER_ROWS.execute(uow.conn, unwritten)


PENCE = Decimal("0.01")  # money is kept to the penny (numeric(8,2) columns; events' Money)


def _answer_row(event: BidSubmitted | OfferDeclined, late: bool) -> tuple[Any, ...]:
    """The answer's row in :data:`repo.ANSWER_ROWS`' columns; a decline's words stay with the
    providers service: only its code comes here."""
    if isinstance(event, BidSubmitted):
        # As the column keeps it (numeric(8,2)), so that the award reads what one at a time would.
        rate = event.hourly_rate.quantize(PENCE)
        kind, start, reason = "bid", event.earliest_start, None
    else:
        kind, rate, start, reason = "decline", None, None, event.reason.value
    answer = (event.package_id, event.offer_round, event.provider_id, kind, rate, start, reason, None)
    return (*answer, event.adapter, event.answered_at, event.event_id, late)


async def record_answer(uow: UnitOfWork, rules: BrokerageRules, event: BidSubmitted | OfferDeclined) -> None:
    """A provider's answer (a bid or a decline) to a round of offers: recorded (late if its round
    has closed, ignored if the provider answered that round before) and, when it settles the
    round's outcome, the round closed and the package placed or offered on. Raises Rejected for an
    answer to no such round or from a provider not offered it."""
    package = await repo.lock_package_for_answer(uow.conn, event.package_id, event.offer_round)
    offered, late = _answerable(package, event)
    assert package is not None  # _answerable rejects an answer with no package
    answers = await repo.insert_answer(uow.conn, _answer_row(event, late))
    if answers is None or late:  # answered before (a redelivery), or too late to count
        return
    answered = repo.state_of(offered, package["round_quality"], answers)
    if domain.outcome_settled(*answered, package["band_rate"]):
        await close_round(uow, rules, package, why="outcome settled", causation=event.event_id, answered=answered)


async def close_due_window(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """Close one round whose window has run out (the window timer calls this in a loop, one
    transaction per package, so one package that cannot be closed holds up no other)."""
    package = await repo.take_due(uow.conn, repo.WINDOWS, now())
    if package is None:
        return None
    await close_round(uow, rules, package, why="window closed", causation=None)
    return package["package_id"]


async def close_round(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    *,
    why: str,
    causation: uuid.UUID | None,
    answered: tuple[domain.RoundState, dict[str, Decimal]] | None = None,
    answers: Sequence[tuple[Any, ...]] = (),
) -> None:
    """``answered``: the round's state, when the caller has just read it in this transaction;
    ``answers``: answer rows (``repo.ANSWER_ROWS``) counted in that state and not yet written,
    written in the close's first statement (the award's, or the round's outcome) - nothing before
    it reads the answers table (decision 0145)."""
    assert answered is not None or not answers, "unwritten answers come with the state they were counted in"
    package_id = package["package_id"]
    offer_round = package["current_round"]
    state, quality = answered or await repo.round_state(uow.conn, package_id, offer_round)
    spec = repo.spec_of(package)
    bidders = sorted(a.provider_id for a in state.answers.values() if a.kind == "bid")
    tie_break, recorded, eligible = await _bidders_now(uow, rules, package_id, spec, bidders)
    ranked = domain.rank_bids(state.answers.values(), quality, package["band_rate"], tie_break)
    winner = domain.choose_winner(ranked, eligible)
    if winner is not None:
        await _place(
            uow,
            rules,
            package,
            spec,
            winner,
            offer_round=offer_round,
            tier=Tier(package["current_tier"]),
            why=why,
            causation=causation,
            ranked=ranked,
            closing=(offer_round, f"placed with {winner.answer.provider_id}", recorded),
            answers=answers,
        )
        return
    outcome = "no acceptable bid" if ranked else "no bid"
    await repo.close_round(
        uow.conn, package_id, offer_round, outcome, tie_break=recorded if ranked else None, answers=answers
    )
    repo.add_timeline(uow, package_id, "round closed", now(), offer_round=offer_round, outcome=outcome, why=why)
    await _offer_next_tier(uow, rules, package, after=Tier(package["current_tier"]), causation=causation)


async def _bidders_now(
    uow: UnitOfWork, rules: BrokerageRules, package_id: uuid.UUID, spec: PackageSpec, bidders: list[str]
) -> tuple[domain.TieBreak, dict, set[str]]:
    """What the award needs to know of the bidders at this moment, read in one statement.

    Returns what breaks ties between them (their awards in the package's zone over the last 12
    weeks, and the draw seeded by the package id), its record for the round, and which of them may
    win now: eligibility is checked again at the award, so a provider suspended, or whose capacity
    went, since the offer cannot win (its zone's or a neighbour's). Only the bidders are read: no
    one else can win."""
    since = now() - domain.AWARD_SPREAD_WINDOW
    current, counts = await repo.bidders_now(uow.conn, spec.zone, bidders, since) if bidders else ([], {})
    recorded = {"recent_awards": {p: counts.get(p, 0) for p in bidders}, "since": since.isoformat()}
    eligible = domain.eligible_now(spec, current, _neighbours(rules.framework, spec))
    return domain.TieBreak(counts, str(package_id)), recorded, eligible


def _neighbours(framework: Framework, spec: PackageSpec) -> frozenset[str]:
    zone = framework.zones.get(spec.zone)
    return frozenset(zone.adjacent) if zone else frozenset()


async def _unplace(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    spec: PackageSpec,
    reason: UnplacedReason,
    *,
    causation: uuid.UUID | None,
    **detail: object,
) -> None:
    """Onto the unplaced queue (the waiting list), to be re-offered on its schedule."""
    package_id, at = package["package_id"], now()
    await repo.mark_unplaced(uow.conn, package_id, unplaced_at=at, next_reoffer_at=at + rules.reoffer_interval)
    repo.add_timeline(uow, package_id, "unplaced", at, reason=reason.value, **detail)
    await uow.emit(
        PackageUnplaced(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            zone=spec.zone,
            band=spec.band,
            urgency=spec.urgency,
            hours_per_week=spec.hours_per_week,
            reason=reason,
            requested_by=package["requested_by"],
            unplaced_at=at,
        )
    )


async def _place(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    spec: PackageSpec,
    winner: domain.RankedBid,
    *,
    offer_round: int,
    tier: Tier,
    why: str,
    causation: uuid.UUID | None,
    ranked: list[domain.RankedBid],
    closing: tuple[int, str, dict | None] | None = None,
    answers: Sequence[tuple[Any, ...]] = (),
) -> None:
    """``ranked``: the ranking that decided the award; each bidder's rank goes on PackagePlaced (no
    prices), so that the providers service can tell a losing bidder its rank. ``closing``: the
    round the award closes (offer round, outcome, tie-break record), closed in the award's
    statement with its unwritten ``answers``; None when it was closed before (an approved
    above-rate exception)."""
    package_id = package["package_id"]
    at = now()
    # The losers are those offered in this cycle: after a hand-back or a re-brokering, the earlier
    # cycles' providers (the one that gave the package back among them) were told their outcome then.
    placed = await repo.mark_placed(
        uow.conn,
        package_id,
        provider_id=winner.answer.provider_id,
        hourly_rate=winner.answer.hourly_rate,
        placed_at=at,
        zone=spec.zone,
        cycle=package["cycle"],
        closing=closing,
        answers=answers,
    )
    start_date = max(spec.start_date, winner.answer.earliest_start)
    repo.add_timeline(
        uow,
        package_id,
        "placed",
        at,
        provider_id=winner.answer.provider_id,
        rank=winner.rank,
        why=why,
        hourly_rate=str(winner.answer.hourly_rate),
        start_date=start_date.isoformat(),
    )
    if package["carried_on_by"] is not None:
        # Re-brokered after a declined change (decision 0082): the provider that carried on stops
        # when the new one starts; told first, so its placement ends before the new one is recorded.
        repo.add_timeline(
            uow,
            package_id,
            "handed over",
            at,
            from_provider_id=package["carried_on_by"],
            to_provider_id=winner.answer.provider_id,
            handed_over_on=start_date.isoformat(),
        )
        await _end_agreements(
            uow,
            package,
            package["carried_on_by"],
            start_date - dt.timedelta(days=1),
            reason=AgreementReason.handed_over,
        )
        await uow.emit(
            PackageHandedOver(
                correlation_id=package_id,
                causation_id=causation,
                package_id=package_id,
                from_provider_id=package["carried_on_by"],
                to_provider_id=winner.answer.provider_id,
                previous_hours_per_week=package["carried_hours"],
                hours_per_week=spec.hours_per_week,
                handed_over_on=start_date,
                requested_by=package["requested_by"],
                handed_over_at=at,
            )
        )
    await uow.emit(
        PackagePlaced(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            provider_id=winner.answer.provider_id,
            offer_round=offer_round,
            tier=tier,
            hourly_rate=winner.answer.hourly_rate,
            hours_per_week=spec.hours_per_week,
            start_date=start_date,
            zone=spec.zone,
            band=spec.band,
            urgency=spec.urgency,
            rate_card=package["rate_card"],
            requested_by=package["requested_by"],
            losing_provider_ids=sorted(p for p in placed.offered if p != winner.answer.provider_id),
            bid_ranks=[BidRank(provider_id=b.answer.provider_id, rank=b.rank) for b in ranked],
            placed_at=at,
        )
    )
    if spec.urgency is Urgency.hospital_discharge:
        # A discharge covered by an in-house service: it hands over on the provider's start (0097).
        await _release_discharge(
            uow, package, released_on=start_date, provider_id=winner.answer.provider_id, causation=causation
        )
    await _open_agreement(
        uow,
        rules,
        package,
        provider_id=winner.answer.provider_id,
        hourly_rate=winner.answer.hourly_rate,
        hours_per_week=spec.hours_per_week,
        start_date=start_date,
        reason=AgreementReason.placed,
        funding=placed.funding,
    )
    if placed.funding is not None:
        # Who pays was told to the provider holding the package when it was recorded: the new
        # one is told now, the record unchanged (decision 0161; found by an attack).
        await uow.emit(
            FundingRecorded(
                correlation_id=package_id,
                causation_id=causation,
                package_id=package_id,
                revision=placed.funding["revision"],
                periods=[FundingPeriod.model_validate(p) for p in json.loads(placed.funding["periods"])],
                top_up=TopUp(paid_by=placed.funding["top_up_paid_by"]) if placed.funding["top_up_paid_by"] else None,
                provider_id=winner.answer.provider_id,
                for_new_provider=True,
                recorded_by=placed.funding["recorded_by"],
                requested_by=package["requested_by"],
                recorded_at=placed.funding["recorded_at"],
            )
        )


async def _offer_next_tier(
    uow: UnitOfWork, rules: BrokerageRules, package: asyncpg.Record, *, after: Tier | None, causation: uuid.UUID | None
) -> str:
    """Offer the package to the next tier with anyone to offer it to; returns its status after."""
    package_id = package["package_id"]
    spec = repo.spec_of(package)
    framework = rules.framework  # one reading of the reference data for the whole decision
    neighbours = _neighbours(framework, spec)
    providers, dates = await repo.providers_serving(uow.conn, spec.zone, *neighbours)
    if rules.sandbox:
        # A sandbox's test package goes to the provider that asked for it, and to no one else (0116).
        only = await repo.sandbox_provider(uow.conn, package_id)
        if only is not None:
            providers = [p for p in providers if p.provider_id == only]
    # Providers already offered this package in an earlier round of this cycle are not offered it
    # again (a first round - `after` None - starts a cycle: there is none).
    earlier = set() if after is None else set(await repo.everyone_offered(uow.conn, package_id, cycle=package["cycle"]))
    # Not again this cycle; and never the provider that handed the package back.
    earlier |= set(package["excluded_providers"])
    plan = domain.plan_offer(
        spec,
        providers,
        policy=package["policy"],
        zone_has_prime=spec.zone not in framework.no_prime_zones,
        neighbours=neighbours,
        after=after,
        not_again=earlier,
    )
    at = now()
    if plan.tier is None:
        if after is not None and await _request_exception(uow, rules, package, spec, causation):
            return "awaiting_approval"
        await _unplace(uow, rules, package, spec, plan.unplaced_reason, causation=causation, excluded=plan.excluded)
        return "unplaced"
    tier, offered = plan.tier, plan.offered
    offer_round = package["current_round"] + 1
    closes = at + rules.windows[spec.urgency]
    weights = _weights(framework)  # every provider of the round scored alike
    ids = [p.provider_id for p in offered]
    # The score from the register's inputs as they stand now (the dates read with the providers),
    # kept with the round (decision 0103); the hand-backs in the 12 months to the offer's UK date
    # (decision 0119).
    today = clock.uk_date(at)
    scored = {
        p.provider_id: quality_rules.score(
            domain.quality_inputs(p, *dates.get(p.provider_id, (None, None)), as_of=today), weights
        )
        for p in offered
    }
    quality = {pid: s.score for pid, s in scored.items()}
    excluded = plan.excluded
    await repo.open_round(
        uow.conn,
        package_id=package_id,
        offer_round=offer_round,
        tier=tier.value,
        provider_ids=ids,
        excluded=excluded,
        quality=quality,
        opened_at=at,
        window_closes_at=closes,
        cycle=package["cycle"],
        quality_inputs={pid: s.as_record() for pid, s in scored.items()},
    )
    repo.add_timeline(
        uow,
        package_id,
        "offered",
        at,
        offer_round=offer_round,
        tier=tier.value,
        providers=ids,
        window_closes_at=closes.isoformat(),
    )
    await uow.emit(
        OfferMade(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            offer_round=offer_round,
            tier=tier,
            provider_ids=ids,
            package=spec,
            band_rate=package["band_rate"],
            window_closes_at=closes,
        )
    )
    return "offered"


async def record_provider_quality(uow: UnitOfWork, event: ProviderQualityRecorded) -> None:
    """The register's dates the profile does not carry (the CQC rating's publication date, the local
    risk's review date), for the score's inputs in the decision record."""
    register = event.quality_register
    await repo.record_quality(
        uow.conn,
        event.provider_id,
        inspected_on=register.cqc_inspected_on,
        reviewed_on=register.local_risk_reviewed_on,
        at=event.recorded_at,
    )


async def update_provider(uow: UnitOfWork, event: ProviderUpdated) -> None:
    """Keep the registry view current; a provider suspended or gone from the framework has its
    active packages marked for re-brokering (the timers take them, most urgent first), and one
    reinstated meanwhile has the marks of those not yet taken removed."""
    profile = event.profile
    applied, was = await repo.upsert_provider(uow.conn, profile, event.revision)
    if not applied:
        return
    if profile.status == "active":
        if was in (None, "active"):
            return  # most updates: an active provider's hours changed
        # Reinstated before the timers took its packages: they stay with it.
        kept = await repo.unmark_for_rebrokering(uow.conn, profile.provider_id)
        if kept:
            log.warning(
                "provider active again: its packages are no longer re-brokered",
                provider_id=profile.provider_id,
                packages=kept,
            )
        return
    reason = ReopenReason.provider_left if profile.status == "left" else ReopenReason.provider_suspended
    marked = await repo.mark_for_rebrokering(uow.conn, profile.provider_id, reason=reason, at=now())
    if marked:
        log.warning(
            "provider no longer active: its packages will be re-brokered",
            provider_id=profile.provider_id,
            status=profile.status,
            packages=marked,
        )


async def rebroker_due(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """Take the most urgent package whose provider was suspended or left, and broker it again:
    from the top of the ladder, with priority and continuity, care to start as soon as possible."""
    package = await repo.take_due(uow.conn, repo.REBROKERING, now())
    if package is None:
        return None
    at = now()
    today = clock.uk_date(at)
    # Care running: needed from today, whatever start the request first asked for (found by an
    # attack: a package started before its requested start was re-brokered to start on that date,
    # nobody visiting in between), or from the day a resume recorded ahead restarts the visits (the
    # person in hospital until then: found by a second attack). Not yet started: from its planned
    # start, or today if that has gone.
    if package["started_on"] is not None:
        restart = max(package["visits_restart_on"] or today, today)
    else:
        restart = max(package["start_date"], today)
    await _rebroker(uow, rules, package, at, restart=restart)
    return package["package_id"]


def _rebroker_reason(package: asyncpg.Record) -> ReopenReason:
    """Why a package marked for re-brokering was marked (its provider suspended, or gone)."""
    # Marks written before reasons were codes read "provider suspended" / "provider left".
    marked = package["rebroker_reason"] or ""
    return ReopenReason.provider_left if marked.endswith("left") else ReopenReason.provider_suspended


async def _rebroker(
    uow: UnitOfWork, rules: BrokerageRules, package: asyncpg.Record, at: dt.datetime, *, restart: dt.date
) -> None:
    """Take a package from the provider that was suspended or left and offer it from the top of the
    ladder (priority, continuity), the care to start on ``restart`` (a UK date); the provider is paid
    to its eve. Everyone is told by PackageReopened."""
    package_id = package["package_id"]
    provider_id = package["provider_id"]
    reason = _rebroker_reason(package)
    await _withdraw_change(uow, package, at, because=ChangeWithdrawnBecause.rebrokered)
    repo.add_timeline(uow, package_id, "re-brokered", at, provider_id=provider_id, reason=reason.value)
    await uow.emit(
        PackageReopened(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=provider_id,
            reason=reason,
            hours_per_week=package["hours_per_week"],
            requested_by=package["requested_by"],
            reopened_at=at,
        )
    )
    # The provider is paid until the day before the package's new start (none of it, if care never began).
    await _end_agreements(uow, package, provider_id, restart - dt.timedelta(days=1), reason=AgreementReason.rebrokered)
    package = await repo.reopen(uow.conn, package_id, start_date=restart)
    await _offer_next_tier(uow, rules, package, after=None, causation=None)


# ---- broker actions and the unplaced queue ------------------------------------------------


async def cancel(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    *,
    reason: CancelReason,
    cancelled_by: str,
    reason_text: str | None = None,
) -> None:
    """Cancel before care starts; a provider it was placed with gets its hours back, and one still
    visiting meanwhile (carrying on after a declined change, or working a hand-back's notice) stops,
    paid to today. ``reason`` goes on PackageCancelled; ``reason_text`` (the broker's words) stays in
    the brokerage's tables.

    Raises ActionRefused (HTTP 409) for a package cancelled or started, LookupError for none."""
    package = await _locked(uow, package_id)
    if package["status"] not in domain.ALLOWED_FROM["cancel"]:
        raise ActionRefused(
            f"package {package_id} is {package['status']}; only a package not yet started can be cancelled"
        )
    at = now()
    if package["status"] == "offered":
        await repo.close_round(uow.conn, package_id, package["current_round"], "cancelled")
    await repo.mark_cancelled(uow.conn, package_id, reason=reason, reason_text=reason_text, at=at)
    today = clock.uk_date(at)
    told: str | None = None  # the provider told to stop (PackageCancelled.provider_id)
    if package["status"] == "placed":
        await _cancel_agreements(uow, package, package["provider_id"])
        told = package["provider_id"]
    elif package["carried_on_by"] is not None:
        # The provider carrying on after a declined change (decision 0082) is paid to the day it is told.
        await _end_agreements(uow, package, package["carried_on_by"], today, reason=AgreementReason.cancelled)
        told = package["carried_on_by"]
    # A provider still working a hand-back's notice (decisions 0158, 0159) stops too, paid to today:
    # the person died, or the care is no longer needed, while the package was being brokered again.
    visiting = {r["provider_id"] for r in await _running_agreements(uow, package_id, None, after=today)}
    in_notice: list[str] = []  # working a notice beside the provider told first (found by an attack)
    for provider_id in sorted(visiting):
        await _end_agreements(uow, package, provider_id, today, reason=AgreementReason.cancelled)
        if told is None:
            told = provider_id
        elif provider_id != told:
            in_notice.append(provider_id)
    repo.add_timeline(
        uow, package_id, "cancelled", at, reason=reason.value, reason_text=reason_text, cancelled_by=cancelled_by
    )
    await uow.emit(
        PackageCancelled(
            correlation_id=package_id,
            package_id=package_id,
            reason=reason,
            cancelled_by=cancelled_by,
            requested_by=package["requested_by"],
            # Placed: its provider; re-brokered after a declined change: the provider carrying on
            # (decision 0082); handed back: the provider working its notice - each must not send
            # carers any more, and its hours are released.
            provider_id=told,
            notice_provider_ids=in_notice,
            hours_per_week=package["carried_hours"] or package["hours_per_week"],
            cancelled_at=at,
        )
    )
    if package["urgency"] == Urgency.hospital_discharge:
        await _release_discharge(uow, package, released_on=clock.uk_date(at), provider_id=None, causation=None)


async def record_start(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    *,
    started_on: dt.date,
    recorded_by: str,
    reviews: domain.ReviewSchedule | None = None,
    date_limits: domain.DateLimits | None = None,
) -> None:
    """Care started on ``started_on`` (a UK date); its first review falls due ``reviews.first_after_days``
    later (decision 0088; a new provider's start after a hand-back or a declined change starts the
    count again). Raises ActionRefused (HTTP 409) unless the package is placed; :class:`Refused`
    (422 ``started_on``) for a date in the future or further back than ``date_limits`` allow
    (:func:`domain.start_refusal`)."""
    package = await _locked(uow, package_id)
    if package["status"] not in domain.ALLOWED_FROM["start"]:
        raise ActionRefused(f"package {package_id} is {package['status']}; only a placed package can start")
    at = now()
    requested_on = clock.uk_date(package["requested_at"])
    # Whoever held the package before this provider (a hand-back, a declined change) is paid to its
    # last day: this one's care starts after it, never on the same days.
    previous_last_day = max(
        (
            row["end_date"]
            for row in await repo.agreements_in_force(uow.conn, package_id)
            if row["status"] == "agreed" and row["provider_id"] != package["provider_id"] and row["end_date"]
        ),
        default=None,
    )
    refusal = domain.start_refusal(
        started_on, clock.uk_date(at), date_limits or domain.DateLimits(), requested_on, previous_last_day
    )
    if refusal is not None:
        raise Refused(refusal)
    review_due = domain.first_review_due(started_on, reviews or domain.ReviewSchedule())
    await repo.mark_started(uow.conn, package_id, started_on=started_on, review_due_on=review_due)
    # Payable from the day care began: a start on another day than agreed corrects the agreement.
    await _correct_agreements(
        uow,
        package,
        package["provider_id"],
        AgreementReason.started,
        lambda terms: dataclasses.replace(terms, start_date=started_on),
    )
    repo.add_timeline(
        uow,
        package_id,
        "started",
        at,
        started_on=started_on.isoformat(),
        recorded_by=recorded_by,
        review_due_on=review_due.isoformat(),
    )
    await uow.emit(
        PackageStarted(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=package["provider_id"],
            started_on=started_on,
            recorded_by=recorded_by,
            requested_by=package["requested_by"],
            recorded_at=at,
        )
    )
    # Care that began on another day than the award's moves what was dated from the award's day
    # (found by an attack): who pays from the first day of care, and - for the first provider of a
    # discharge - the day the in-house service hands over.
    await _fund_from_the_start(uow, package_id, started_on, recorded_by)
    if package["urgency"] == Urgency.hospital_discharge and previous_last_day is None:
        moved = await repo.move_discharge_release(uow.conn, package_id, released_on=started_on)
        if moved is not None:
            await _announce_release(
                uow,
                package,
                moved,
                released_on=started_on,
                provider_id=package["provider_id"],
                causation=None,
                moved=True,
            )


async def _fund_from_the_start(uow: UnitOfWork, package_id: uuid.UUID, started_on: dt.date, recorded_by: str) -> None:
    """When care began before the funding record's first period, a new revision whose first period
    runs from ``started_on``, the rest unchanged: no day of care without a funder (the rule
    :func:`domain.funding_refusal` holds every record to), as the service agreement already moved."""
    funding = await repo.funding_of(uow.conn, package_id)
    if funding is None:
        return
    periods = repo.periods_of(funding)
    if not periods or periods[0].effective_from <= started_on:
        return
    periods[0] = dataclasses.replace(periods[0], effective_from=started_on)
    await record_funding(
        uow,
        package_id,
        periods=[
            FundingPeriodInput(
                p.effective_from,
                Funder(p.funder),
                shares=[(Funder(f), pct) for f, pct in p.shares],
                calls=[(c, Funder(f)) for c, f in p.calls],
            )
            for p in periods
        ],
        top_up=TopUpPayer(funding["top_up_paid_by"]) if funding["top_up_paid_by"] else None,
        recorded_by=recorded_by,
        reason_text="the first period moved to the day care started",
    )


async def reoffer(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    requested_by: str,
    package: asyncpg.Record | None = None,
) -> None:
    """Offer an unplaced package again, tiers from the top, to everyone now eligible."""
    package = package or await _locked(uow, package_id)
    if package["status"] not in domain.ALLOWED_FROM["reoffer"]:
        raise ActionRefused(f"package {package_id} is {package['status']}; only an unplaced package can be re-offered")
    package = await repo.start_cycle(uow.conn, package_id)
    repo.add_timeline(uow, package_id, "re-offered", now(), cycle=package["cycle"], requested_by=requested_by)
    await _offer_next_tier(uow, rules, package, after=None, causation=None)


async def hand_back(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    notice_ends_on: dt.date,
    reason: HandBackReason,
    recorded_by: str,
    reason_text: str | None = None,
) -> None:
    """The provider gives the package back with notice: reopened at once, with priority and a
    continuity flag, to start when the notice ends, and never offered to that provider again.
    ``reason`` goes on PackageHandedBack; ``reason_text`` stays in the package's timeline.

    Raises ActionRefused (HTTP 409) unless the package is placed or started; :class:`Refused` (422
    ``notice_ends_on``) for a notice ending outside ``rules.date_limits`` (:func:`domain.hand_back_refusal`)."""
    package = await _locked(uow, package_id)
    if package["status"] not in domain.ALLOWED_FROM["hand_back"]:
        raise ActionRefused(
            f"package {package_id} is {package['status']}; only a placed or started package can be handed back"
        )
    at = now()
    refusal = domain.hand_back_refusal(
        notice_ends_on,
        clock.uk_date(at),
        rules.date_limits,
        package["started_on"],
        requested_on=clock.uk_date(package["requested_at"]),
    )
    if refusal is not None:
        raise Refused(refusal)
    provider_id = package["provider_id"]
    await _withdraw_change(uow, package, at, because=ChangeWithdrawnBecause.handed_back)
    repo.add_timeline(
        uow,
        package_id,
        "handed back",
        at,
        provider_id=provider_id,
        reason=reason.value,
        reason_text=reason_text,
        notice_ends_on=notice_ends_on.isoformat(),
        recorded_by=recorded_by,
    )
    await uow.emit(
        PackageHandedBack(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=provider_id,
            notice_ends_on=notice_ends_on,
            reason=reason,
            hours_per_week=package["hours_per_week"],
            recorded_by=recorded_by,
            requested_by=package["requested_by"],
            recorded_at=at,
        )
    )
    # ``notice_ends_on`` is the leaving provider's last day of care, paid to it; the next provider
    # starts the day after (not on it: both had been told to visit that day, one unpaid for it), or
    # today when the notice has already ended - and never before the package's own start: a package
    # handed back before it started (its provider's notice running out before its first day) is
    # needed from that day, when the provider before it stops (found by an attack: a second
    # hand-back restarted it while the first provider was still paid to work its notice).
    restart = max(notice_ends_on + dt.timedelta(days=1), clock.uk_date(at), package["start_date"])
    await _end_agreements(uow, package, provider_id, notice_ends_on, reason=AgreementReason.handed_back)
    package = await repo.reopen(uow.conn, package_id, start_date=restart, exclude=provider_id)
    await _offer_next_tier(uow, rules, package, after=None, causation=None)


async def reoffer_due(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """The unplaced queue's schedule: re-offer one package whose time has come (one per transaction)."""
    package = await repo.take_due(uow.conn, repo.REOFFERS, now())
    if package is None:
        return None
    await reoffer(uow, rules, package["package_id"], requested_by="schedule", package=package)
    return package["package_id"]


# ---- pauses and endings (decision record 0078) ---------------------------------------------------


async def pause(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    reason: PauseReason,
    paused_on: dt.date,
    paused_by: str,
) -> None:
    """Pause a started package from ``paused_on`` (a UK date: the first day without visits), e.g. a
    hospital admission. The provider keeps the package and its committed hours for
    ``rules.pause_hold`` from now (paid or not: ``rules.pause_hold_paid``); with no resume by then
    the hold timer ends it (:func:`end_due_holds`). While paused the package is not offered, handed
    back, started or cancelled.

    Raises :class:`Refused` (409 not started; 422 ``paused_on`` before the start, in the future or
    too long ago), LookupError for no package."""
    package = await _locked(uow, package_id)
    at = now()
    refusal = domain.pause_refusal(
        package["status"], package["started_on"], paused_on, clock.uk_date(at), rules.date_limits
    )
    if refusal is not None:
        raise Refused(refusal)
    expires = domain.hold_expires_at(at, rules.pause_hold)
    await _withdraw_change(uow, package, at, because=ChangeWithdrawnBecause.paused)
    await repo.mark_paused(uow.conn, package_id, paused_on=paused_on, reason=reason.value, hold_expires_at=expires)
    if not rules.pause_hold_paid:
        # An unpaid hold (decision 0110): nothing is payable from the first day without visits.
        await _end_agreements(
            uow, package, package["provider_id"], paused_on - dt.timedelta(days=1), reason=AgreementReason.paused
        )
    repo.add_timeline(
        uow,
        package_id,
        "paused",
        at,
        reason=reason.value,
        paused_on=paused_on.isoformat(),
        hold_expires_at=expires.isoformat(),
        paid_during_hold=rules.pause_hold_paid,
        paused_by=paused_by,
    )
    await uow.emit(
        PackagePaused(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=package["provider_id"],
            reason=reason,
            paused_on=paused_on,
            hold_expires_at=expires,
            paid_during_hold=rules.pause_hold_paid,
            hours_per_week=package["hours_per_week"],
            paused_by=paused_by,
            requested_by=package["requested_by"],
            paused_at=at,
        )
    )


async def resume(
    uow: UnitOfWork, rules: BrokerageRules, package_id: uuid.UUID, *, resumed_on: dt.date, resumed_by: str
) -> None:
    """The person is home: visits restart on ``resumed_on`` (a UK date) with the same provider; the
    hold timer is cleared. Raises :class:`Refused` (409 not paused, or its hold has run out; 422
    ``resumed_on`` before the pause or beyond the limits), LookupError for no package."""
    package = await _locked(uow, package_id)
    at = now()
    refusal = domain.resume_refusal(
        package["status"],
        package["paused_on"],
        resumed_on,
        clock.uk_date(at),
        rules.date_limits,
        hold_expires_at=package["hold_expires_at"],
        at=at,
    )
    if refusal is not None:
        raise Refused(refusal)
    # Its provider was suspended or left while the person was in hospital (marked, decision 0078):
    # the package is brokered again now, and the provider is told that alone, not first that visits
    # restart (found by an attack: it was told "resumed", then at once "re-brokered").
    reopened = _rebroker_reason(package) if package["rebroker_due_at"] is not None else None
    await repo.mark_resumed(uow.conn, package_id, resumed_on)
    if reopened is None and not await _running_agreements(uow, package_id, package["provider_id"], after=resumed_on):
        # After an unpaid hold (decision 0110): payable again from the day visits restart.
        await _open_agreement(
            uow,
            rules,
            package,
            provider_id=package["provider_id"],
            hourly_rate=package["hourly_rate"],
            hours_per_week=package["hours_per_week"],
            start_date=resumed_on,
            reason=AgreementReason.resumed,
            funding=await repo.funding_of(uow.conn, package_id),
        )
    repo.add_timeline(
        uow,
        package_id,
        "resumed",
        at,
        paused_on=package["paused_on"].isoformat(),
        resumed_on=resumed_on.isoformat(),
        resumed_by=resumed_by,
    )
    await uow.emit(
        PackageResumed(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=package["provider_id"],
            paused_on=package["paused_on"],
            resumed_on=resumed_on,
            hours_per_week=package["hours_per_week"],
            resumed_by=resumed_by,
            requested_by=package["requested_by"],
            resumed_at=at,
            reopened_because=reopened,
        )
    )
    if reopened is not None:
        # Care is needed from the day the person is home (a resume recorded late: from today).
        await _rebroker(uow, rules, package, at, restart=max(resumed_on, clock.uk_date(at)))


async def end_package(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    reason: EndReason,
    effective_date: dt.date,
    ended_by: str,
    reason_text: str | None = None,
    package: asyncpg.Record | None = None,
) -> None:
    """End a running (started or paused) package for good: ``effective_date`` (a UK date) is the
    first day without care, when the provider's hours are released (by the providers service, on
    that date). ``reason`` goes on PackageEnded; ``reason_text`` stays in the brokerage.

    Raises :class:`Refused`: 409 (``status``) for a package not running - a placed one not yet
    started is cancelled instead; 422 (``effective_date``) before care started, or beyond the limits
    either side of today. LookupError for no package."""
    package = package or await _locked(uow, package_id)
    at = now()
    refusal = domain.ending_refusal(
        package["status"], package["started_on"], effective_date, clock.uk_date(at), rules.date_limits
    )
    if refusal is not None:
        raise Refused(refusal)
    await _withdraw_change(uow, package, at, because=ChangeWithdrawnBecause.ended)
    await repo.mark_ended(
        uow.conn, package_id, ended_on=effective_date, reason=reason.value, reason_text=reason_text, at=at
    )
    # ``effective_date`` is the first day without care: payable to the day before.
    await _end_agreements(
        uow, package, package["provider_id"], effective_date - dt.timedelta(days=1), reason=AgreementReason.ended
    )
    repo.add_timeline(
        uow,
        package_id,
        "ended",
        at,
        reason=reason.value,
        reason_text=reason_text,
        effective_date=effective_date.isoformat(),
        ended_by=ended_by,
    )
    await uow.emit(
        PackageEnded(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=package["provider_id"],
            reason=reason,
            effective_date=effective_date,
            hours_per_week=package["hours_per_week"],
            ended_by=ended_by,
            requested_by=package["requested_by"],
            was_paused=package["status"] == "paused",
            ended_at=at,
        )
    )


async def end_due_holds(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """The hold timer: end one paused package whose provider's hold ran out with no resume
    (``hospital_stay_exceeded_hold``, effective the UK day the hold ran out). Taken with SKIP LOCKED
    and ended in the same transaction, so across instances it fires once."""
    package = await repo.take_due(uow.conn, repo.HOLDS, now())
    if package is None:
        return None
    # A timer late by more than the backdating limit (the service was down) ends it as far back as allowed.
    oldest = clock.uk_date(now()) - dt.timedelta(days=rules.date_limits.backdate_days)
    expired = max(clock.uk_date(package["hold_expires_at"]), oldest)
    await end_package(
        uow,
        rules,
        package["package_id"],
        reason=EndReason.hospital_stay_exceeded_hold,
        effective_date=max(expired, package["started_on"] or expired),
        ended_by="schedule",
        package=package,
    )
    return package["package_id"]


# ---- changes to a running package (decision record 0082) -----------------------------------------


async def request_change(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    hours_per_week: Decimal,
    visits: VisitPattern,
    needs: list[CareNeed] | None,
    reason: ChangeReason,
    effective_date: dt.date,
    discussed_with_person: bool | None,
    changed_by: str,
    reason_text: str | None = None,
    change_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Ask the provider holding a started package to take it on changed: ``hours_per_week`` (carer
    hours per week, matching ``visits``), ``needs`` (unset: as they are), from ``effective_date`` (a UK
    date). Recorded with who (``changed_by``, the verified token's user), when and why (``reason``;
    ``reason_text`` stays in the brokerage); a reduction needs ``discussed_with_person``. Emits
    ChangeOffered: the provider answers within ``rules.change_window``. Returns the change id.

    Raises :class:`Refused` (409 ``status`` not started, 409 ``change`` one already pending; 422
    ``hours_per_week``, ``visits``, ``discussed_with_person``, ``effective_date``: see
    :func:`domain.change_refusal`), LookupError for no package."""
    package = await _locked(uow, package_id)
    at = now()
    previous = repo.spec_of(package)
    changed = previous.model_copy(
        update={
            "hours_per_week": hours_per_week,
            "visits": visits,
            "needs": sorted(set(needs)) if needs is not None else previous.needs,
        }
    )
    refusal = domain.change_refusal(
        status=package["status"],
        change_pending=package["pending_change_id"] is not None,
        started_on=package["started_on"],
        previous=previous,
        changed=changed,
        discussed_with_person=discussed_with_person,
        effective_date=effective_date,
        today=clock.uk_date(at),
        limits=rules.date_limits,
    )
    if refusal is None and visits.calls_per_day < previous.visits.calls_per_day:
        # A call that the funding names cannot disappear under it (decision record 0121).
        record = await repo.funding_of(uow.conn, package_id)
        if record is not None:
            refusal = domain.calls_left_unfunded(repo.periods_of(record), visits.calls_per_day)
    if refusal is not None:
        raise Refused(refusal)
    # A new provider taking the changed package on would start on the effective date.
    changed = changed.model_copy(update={"start_date": effective_date})
    change_id = change_id or uuid.uuid4()
    closes = at + rules.change_window
    discussed = bool(discussed_with_person)
    await repo.insert_change(
        uow.conn,
        change_id=change_id,
        package_id=package_id,
        provider_id=package["provider_id"],
        previous=previous,
        changed=changed,
        reason=reason.value,
        reason_text=reason_text,
        discussed_with_person=discussed,
        effective_date=effective_date,
        changed_by=changed_by,
        at=at,
        window_closes_at=closes,
    )
    repo.add_timeline(
        uow,
        package_id,
        "change offered",
        at,
        change_id=str(change_id),
        provider_id=package["provider_id"],
        reason=reason.value,
        reason_text=reason_text,
        previous_hours_per_week=str(previous.hours_per_week),
        hours_per_week=str(changed.hours_per_week),
        visits=changed.visits.model_dump(),
        needs=[n.value for n in changed.needs],
        effective_date=effective_date.isoformat(),
        discussed_with_person=discussed,
        window_closes_at=closes.isoformat(),
        changed_by=changed_by,
    )
    await uow.emit(
        ChangeOffered(
            correlation_id=package_id,
            package_id=package_id,
            change_id=change_id,
            provider_id=package["provider_id"],
            package=changed,
            previous_hours_per_week=previous.hours_per_week,
            reason=reason,
            effective_date=effective_date,
            window_closes_at=closes,
            requested_by=package["requested_by"],
        )
    )
    return change_id


async def record_change_answer(uow: UnitOfWork, rules: BrokerageRules, event: ChangeAnswered) -> None:
    """The provider's answer to an offered change. Accepted: the package is the changed one from the
    effective date (PackageChanged; the providers service moves its committed hours). Declined: the
    package is re-brokered with the new pattern (ChangeDeclined). An answer to a change no longer
    pending (answered, timed out, withdrawn by a pause or an ending) is kept in the log only; one
    from a provider the change was not offered to is rejected (a dead letter)."""
    package = await _locked(uow, event.package_id)
    change = await repo.pending_change(uow.conn, event.change_id)
    if change is None or change["package_id"] != event.package_id:
        raise Rejected(f"answer to unknown change {event.change_id} of package {event.package_id}")
    if change["provider_id"] != event.provider_id:
        raise Rejected(f"{event.provider_id} answered change {event.change_id} without being offered it")
    if change["status"] != "pending" or package["pending_change_id"] != event.change_id:
        log.info("answer to a change no longer pending ignored", change_id=str(event.change_id))
        return
    if event.accepted:
        await _accept_change(uow, package, change, causation=event.event_id)
    else:
        await _decline_change(
            uow, rules, package, change, ChangeOutcome.declined, reason=event.reason, causation=event.event_id
        )


async def close_due_change_window(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """The change window timer: a change its provider left unanswered is treated as declined (once
    across instances: taken with SKIP LOCKED, settled in the same transaction)."""
    package = await repo.take_due(uow.conn, repo.CHANGE_WINDOWS, now())
    if package is None:
        return None
    change = await repo.pending_change(uow.conn, package["pending_change_id"])
    if change is None or change["status"] != "pending":  # cannot happen: the pointer is cleared with it
        await repo.settle_change(uow.conn, package["pending_change_id"], status="withdrawn", at=now())
        return package["package_id"]
    await _decline_change(uow, rules, package, change, ChangeOutcome.window_closed, reason=None, causation=None)
    return package["package_id"]


async def _accept_change(
    uow: UnitOfWork, package: asyncpg.Record, change: asyncpg.Record, *, causation: uuid.UUID
) -> None:
    at = now()
    package_id = package["package_id"]
    changed = PackageSpec.model_validate_json(change["spec"])
    # The package keeps its own start date; the change's date is the effective date.
    changed = changed.model_copy(update={"start_date": repo.spec_of(package).start_date})
    await repo.settle_change(uow.conn, change["change_id"], status="accepted", at=at)
    await repo.apply_change(uow.conn, package_id, changed)
    await _change_agreements(uow, package, change["provider_id"], changed.hours_per_week, change["effective_date"])
    repo.add_timeline(
        uow,
        package_id,
        "changed",
        at,
        change_id=str(change["change_id"]),
        provider_id=change["provider_id"],
        previous_hours_per_week=str(change["previous_hours"]),
        hours_per_week=str(changed.hours_per_week),
        effective_date=change["effective_date"].isoformat(),
    )
    await uow.emit(
        PackageChanged(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            change_id=change["change_id"],
            provider_id=change["provider_id"],
            package=changed,
            previous_hours_per_week=change["previous_hours"],
            hours_per_week=changed.hours_per_week,
            reason=ChangeReason(change["reason"]),
            effective_date=change["effective_date"],
            discussed_with_person=change["discussed_with_person"],
            changed_by=change["changed_by"],
            requested_by=package["requested_by"],
            changed_at=at,
        )
    )


async def _decline_change(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    change: asyncpg.Record,
    outcome: ChangeOutcome,
    *,
    reason: DeclineReason | None,
    causation: uuid.UUID | None,
) -> None:
    """Re-broker the package with the changed pattern, continuity flagged, never to the provider that
    declined; that provider carries on at the old hours until a new placement replaces its own."""
    at = now()
    package_id = package["package_id"]
    changed = PackageSpec.model_validate_json(change["spec"])
    changed = changed.model_copy(update={"start_date": max(changed.start_date, clock.uk_date(at))})
    await repo.settle_change(
        uow.conn, change["change_id"], status=outcome.value, at=at, decline_reason=reason.value if reason else None
    )
    repo.add_timeline(
        uow,
        package_id,
        "change declined",
        at,
        change_id=str(change["change_id"]),
        provider_id=change["provider_id"],
        outcome=outcome.value,
        decline_reason=reason.value if reason else None,
        carries_on_hours_per_week=str(change["previous_hours"]),
    )
    await uow.emit(
        ChangeDeclined(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            change_id=change["change_id"],
            provider_id=change["provider_id"],
            outcome=outcome,
            decline_reason=reason,
            previous_hours_per_week=change["previous_hours"],
            hours_per_week=changed.hours_per_week,
            reason=ChangeReason(change["reason"]),
            requested_by=package["requested_by"],
            declined_at=at,
        )
    )
    if package["status"] not in domain.ALLOWED_FROM["change"]:
        return  # cannot happen while pending (a pause or an ending withdraws it); nothing to re-broker
    package = await repo.reopen_for_change(
        uow.conn, package_id, changed, carried_on_by=change["provider_id"], carried_hours=change["previous_hours"]
    )
    await _offer_next_tier(uow, rules, package, after=None, causation=causation)


async def _withdraw_change(
    uow: UnitOfWork, package: asyncpg.Record, at: dt.datetime, *, because: ChangeWithdrawnBecause
) -> None:
    """A pause, an ending, a hand-back or a re-brokering withdraws a change still awaiting its
    provider's answer, and tells the provider (ChangeWithdrawn): found by an attack, a withdrawn
    change had stayed open on the provider's portal, and "accepting" it was taken."""
    if package["pending_change_id"] is None:
        return
    change = await repo.settle_change(uow.conn, package["pending_change_id"], status="withdrawn", at=at)
    if change is None:
        return
    repo.add_timeline(
        uow, package["package_id"], "change withdrawn", at, change_id=str(change["change_id"]), why=because.value
    )
    await uow.emit(
        ChangeWithdrawn(
            correlation_id=package["package_id"],
            package_id=package["package_id"],
            change_id=change["change_id"],
            provider_id=change["provider_id"],
            because=because,
            hours_per_week=change["hours_per_week"],
            previous_hours_per_week=change["previous_hours"],
            requested_by=package["requested_by"],
            withdrawn_at=at,
        )
    )


async def _locked(uow: UnitOfWork, package_id: uuid.UUID) -> asyncpg.Record:
    package = await repo.lock_package(uow.conn, package_id)
    if package is None:
        raise LookupError(f"no package {package_id}")
    return package


# ---- reviews (decision record 0088) --------------------------------------------------------------


@dataclass(frozen=True)
class ReviewChange:
    """The change a review decided (hours, visit pattern, needs, from ``effective_date``): made through
    :func:`request_change` with the reason ``review_outcome``."""

    hours_per_week: Decimal
    visits: VisitPattern
    effective_date: dt.date
    needs: list[CareNeed] | None = None
    discussed_with_person: bool | None = None


@dataclass(frozen=True)
class ReviewEnding:
    """The ending a review decided: made through :func:`end_package`."""

    reason: EndReason
    effective_date: dt.date


async def record_review(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    outcome: ReviewOutcome,
    reviewed_on: dt.date,
    reviewed_by: str,
    change: ReviewChange | None = None,
    ending: ReviewEnding | None = None,
    technology: list[TechnologyEnabledCare] | None = None,
    notes: str | None = None,
) -> uuid.UUID:
    """Record a running package's review held on ``reviewed_on`` (a UK date) by ``reviewed_by`` (the
    verified token's user): PackageReviewed, and for ``changed`` or ``technology_enabled_care`` the
    change offered to the provider (:func:`request_change`, reason ``review_outcome``; equipment must
    mean fewer hours), for ``ended`` the ending (:func:`end_package`). The next review falls due
    ``rules.reviews.interval_months`` after ``reviewed_on`` (none once ended). ``notes`` (the
    reviewer's words) stay in the brokerage. All in one transaction: a change or an ending refused
    leaves nothing written. Returns the review id.

    Raises :class:`Refused`: 409 ``status`` for a package not started or paused (a change needs a
    started one), 409 ``change`` while another change is pending; 422 ``reviewed_on``, ``change``,
    ``end``, ``technology``, ``change.hours_per_week`` (:func:`domain.review_refusal`) and the change's
    and ending's own fields. LookupError for no package."""
    package = await _locked(uow, package_id)
    at = now()
    technology = sorted(set(technology or []))
    refusal = domain.review_refusal(
        status=package["status"],
        outcome=outcome.value,
        started_on=package["started_on"],
        reviewed_on=reviewed_on,
        today=clock.uk_date(at),
        limits=rules.date_limits,
        has_change=change is not None,
        has_ending=ending is not None,
        technology=[t.value for t in technology],
        previous_hours=package["hours_per_week"],
        changed_hours=change.hours_per_week if change is not None else None,
        change_pending=package["pending_change_id"] is not None,
    )
    if refusal is not None:
        raise Refused(refusal)
    review_id = uuid.uuid4()
    change_id = uuid.uuid4() if change is not None else None
    next_due = None if outcome is ReviewOutcome.ended else domain.next_review_due(reviewed_on, rules.reviews)
    # The review comes first on the package's stream; what it decided follows in the same transaction.
    await uow.emit(
        PackageReviewed(
            correlation_id=package_id,
            package_id=package_id,
            review_id=review_id,
            provider_id=package["provider_id"],
            outcome=outcome,
            due_on=package["review_due_on"],
            reviewed_on=reviewed_on,
            change_id=change_id,
            technology=technology,
            next_review_due_on=next_due,
            hours_per_week=package["hours_per_week"],
            reviewed_by=reviewed_by,
            requested_by=package["requested_by"],
            reviewed_at=at,
            paused=package["status"] == "paused",
        ),
    )
    step: str | None = None
    try:
        if change is not None:
            step = "change"
            await request_change(
                uow,
                rules,
                package_id,
                hours_per_week=change.hours_per_week,
                visits=change.visits,
                needs=change.needs,
                reason=ChangeReason.review_outcome,
                effective_date=change.effective_date,
                discussed_with_person=change.discussed_with_person,
                changed_by=reviewed_by,
                change_id=change_id,
            )
        if ending is not None:
            step = "end"
            await end_package(
                uow, rules, package_id, reason=ending.reason, effective_date=ending.effective_date, ended_by=reviewed_by
            )
    except Refused as exc:
        raise Refused(exc.refusal, step=step) from None
    await repo.insert_review(
        uow.conn,
        review_id=review_id,
        package_id=package_id,
        provider_id=package["provider_id"],
        outcome=outcome.value,
        due_on=package["review_due_on"],
        reviewed_on=reviewed_on,
        technology=[t.value for t in technology],
        change_id=change_id,
        next_review_due_on=next_due,
        notes=notes,
        reviewed_by=reviewed_by,
        at=at,
    )
    repo.add_timeline(
        uow,
        package_id,
        "reviewed",
        at,
        review_id=str(review_id),
        outcome=outcome.value,
        due_on=package["review_due_on"].isoformat() if package["review_due_on"] else None,
        reviewed_on=reviewed_on.isoformat(),
        technology=[t.value for t in technology],
        change_id=str(change_id) if change_id else None,
        next_review_due_on=next_due.isoformat() if next_due else None,
        reviewed_by=reviewed_by,
    )
    return review_id


# ---- funding (decision record 0089) --------------------------------------------------------------


@dataclass(frozen=True)
class FundingPeriodInput:
    """A funding period as asked for: from ``effective_from`` (a UK date), ``funder``, and for a joint
    period the ``shares`` (funder, per cent); a single funder's period may leave them out (100%)."""

    effective_from: dt.date
    funder: Funder
    shares: list[tuple[Funder, Decimal]] | None = None
    calls: list[tuple[int, Funder]] = dataclasses.field(default_factory=list)

    def period(self) -> domain.Period:
        shares = self.shares if self.shares is not None else [(self.funder, Decimal(100))]
        return domain.Period(
            self.effective_from,
            self.funder.value,
            tuple((f.value, p) for f, p in shares),
            tuple((c, f.value) for c, f in self.calls),
        )


# Funding is recorded for any package not finished (cancelled, or ended with its last day gone).
FUNDING_CLOSED = frozenset({"cancelled"})


async def record_funding(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    *,
    periods: list[FundingPeriodInput],
    top_up: TopUpPayer | None,
    recorded_by: str,
    reason_text: str | None = None,
    date_limits: domain.DateLimits | None = None,
) -> int:
    """Record who pays for a package (the whole record, replacing the last): ``periods`` in date order,
    each from its ``effective_from`` (a UK date) until the next, and the payer of a ``top_up`` when the
    person chose a provider above the band rate (else an above-rate exception is the council's).
    Emits FundingRecorded (the provider holding the package invoices each funder its share). Returns
    the revision.

    Raises :class:`Refused`: 409 ``status`` for a cancelled or ended package; 422 naming
    ``periods.i.shares`` (the shares not adding up to 100%, a joint period without a split, ...) or
    ``periods.i.effective_from`` (dates not rising, the first after care begins or more than
    ``date_limits.backdate_days`` before):
    :func:`domain.funding_refusal`. LookupError for no package."""
    package = await _locked(uow, package_id)
    at = now()
    status = package["status"]
    if status in FUNDING_CLOSED or (status == "ended" and package["ended_on"] <= clock.uk_date(at)):
        raise Refused(domain.Refusal(409, "status", f"the package is {status}: its funding can no longer change"))
    spec = repo.spec_of(package)
    first_day = package["started_on"] or spec.start_date
    # Named calls must be calls of the visit pattern - of a change awaiting its answer too (decision 0121).
    calls_per_day = spec.visits.calls_per_day
    if package["pending_change_id"] is not None:
        pending = await repo.pending_change(uow.conn, package["pending_change_id"])
        if pending is not None:
            calls_per_day = min(calls_per_day, PackageSpec.model_validate_json(pending["spec"]).visits.calls_per_day)
    wanted = [p.period() for p in periods]
    refusal = domain.funding_refusal(
        wanted,
        first_day=first_day,
        calls_per_day=calls_per_day,
        backdate_days=(date_limits or domain.DateLimits()).backdate_days,
    )
    if refusal is not None:
        raise Refused(refusal)
    contract = [
        FundingPeriod(
            effective_from=p.effective_from,
            funder=Funder(p.funder),
            shares=[FundingShare(funder=Funder(f), percent=pct) for f, pct in p.shares],
            calls=[CallFunding(call=c, funder=Funder(f)) for c, f in p.calls],
        )
        for p in wanted
    ]
    revision = await repo.insert_funding(
        uow.conn,
        package_id=package_id,
        periods=[p.model_dump(mode="json") for p in contract],
        top_up_paid_by=top_up.value if top_up else None,
        reason_text=reason_text,
        recorded_by=recorded_by,
        at=at,
    )
    holder = package["provider_id"] if status in ("placed", "started", "paused", "ended") else package["carried_on_by"]
    # Every agreement's split follows the new record, ended ones too (a correction, decision 0111);
    # the providers still paid under one (working a notice, carrying on) are told as the holder is.
    # One read of the agreements for both (a discharge records its funding with the request).
    in_force = await repo.agreements_in_force(uow.conn, package_id)
    others = {r["provider_id"] for r in _running(in_force, None, after=clock.uk_date(at) - dt.timedelta(days=1))}
    await _correct_agreements(
        uow, package, None, AgreementReason.funding_changed, lambda terms: terms, open_only=False, in_force=in_force
    )
    repo.add_timeline(
        uow,
        package_id,
        "funding recorded",
        at,
        revision=revision,
        periods=[p.model_dump(mode="json") for p in contract],
        top_up_paid_by=top_up.value if top_up else None,
        reason_text=reason_text,
        recorded_by=recorded_by,
    )
    await uow.emit(
        FundingRecorded(
            correlation_id=package_id,
            package_id=package_id,
            revision=revision,
            periods=contract,
            top_up=TopUp(paid_by=top_up) if top_up else None,
            provider_id=holder,
            other_provider_ids=sorted(others - {holder}),
            recorded_by=recorded_by,
            requested_by=package["requested_by"],
            recorded_at=at,
        )
    )
    return revision


# ---- above-rate exceptions -------------------------------------------------------------------


async def _request_exception(
    uow: UnitOfWork, rules: BrokerageRules, package: asyncpg.Record, spec: PackageSpec, causation: uuid.UUID | None
) -> bool:
    """The ladder is spent with only bids above the band rate: ask a broker. False if there are none."""
    best, _ = await _best_above_rate(uow, rules, package, spec)
    if best is None:
        return False
    package_id, at = package["package_id"], now()
    await repo.open_exception(
        uow.conn,
        package_id,
        provider_id=best.answer.provider_id,
        hourly_rate=best.answer.hourly_rate,
        band_rate=package["band_rate"],
        at=at,
    )
    repo.add_timeline(
        uow,
        package_id,
        "exception requested",
        at,
        provider_id=best.answer.provider_id,
        hourly_rate=str(best.answer.hourly_rate),
        band_rate=str(package["band_rate"]),
    )
    await uow.emit(
        ExceptionRequested(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            provider_id=best.answer.provider_id,
            hourly_rate=best.answer.hourly_rate,
            band_rate=package["band_rate"],
            zone=spec.zone,
            band=spec.band,
            urgency=spec.urgency,
            requested_by=package["requested_by"],
            requested_at=at,
        )
    )
    return True


async def _best_above_rate(
    uow: UnitOfWork, rules: BrokerageRules, package: asyncpg.Record, spec: PackageSpec
) -> tuple[domain.RankedBid | None, list[domain.RankedBid]]:
    """The best-ranked bid above the rate from a still-eligible provider (None if none), and the
    ranking it was chosen from."""
    answers, quality = await repo.cycle_bids(uow.conn, package["package_id"], package["cycle"])
    bidders = sorted({a.provider_id for a in answers})
    tie_break, _, eligible = await _bidders_now(uow, rules, package["package_id"], spec, bidders)
    ranked = domain.rank_bids(answers, quality, package["band_rate"], tie_break)
    return domain.best_above_rate(ranked, eligible), ranked


class NotDelegated(Exception):
    """The approver's role may not approve this much above the band rate, or they requested the
    package themselves (HTTP 403). The scheme of delegation: deploy/reference/delegation.yaml."""


class AlreadyApproved(ActionRefused):
    """The approver has already approved this bid: the second approval is someone else's (HTTP 409)."""


def _two_approvals(rules: BrokerageRules) -> domain.TwoApprovals:
    scheme = rules.delegation()
    return domain.TwoApprovals(scheme.first_approval_below_limit, scheme.two_approvals_above_percent)


async def decide_exception(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package_id: uuid.UUID,
    *,
    approve: bool,
    decided_by: str,
    reason: ExceptionDecisionReason,
    reason_text: str | None = None,
    approver_roles: frozenset[str] = frozenset(),
) -> None:
    """A broker approves paying above the band rate (the best-ranked such bid wins) or refuses it.
    ``reason`` goes on the events; ``reason_text`` stays in the brokerage's tables.

    An approval follows the scheme of delegation (deploy/reference/delegation.yaml, decision records
    0052 and 0123; the rule: :func:`domain.approval_step`): within the approver's limit (the highest
    of their roles' limits, per cent above the band rate) it places the package; below it, where the
    scheme allows a second approver, it is recorded as the first of two (ExceptionFirstApproved, a
    timeline entry) and the package keeps waiting for an approver whose limit covers the bid; the
    scheme may also ask two approvals of every bid beyond a percentage. Nobody approves a package they
    requested (:class:`NotDelegated`, HTTP 403, as for a limit too low with no first approval allowed)
    and nobody approves the same bid twice (:class:`AlreadyApproved`, HTTP 409); a refused approval
    records nothing. Refusing is anyone's in the team, before or after a first approval. Raises
    ActionRefused (HTTP 409) when no exception awaits a decision."""
    package = await _locked(uow, package_id)
    if package["status"] != "awaiting_approval":
        raise ActionRefused(f"package {package_id} is {package['status']}; there is no exception awaiting a decision")
    spec = repo.spec_of(package)
    best, ranked = await _best_above_rate(uow, rules, package, spec) if approve else (None, [])
    at = now()
    if best is not None:
        opened = await repo.exception_awaiting(uow.conn, package_id)
        bid_rate = best.answer.hourly_rate
        earlier = [
            domain.Approval(r["approver"], r["approver_role"], r["limit_percent"], r["within_limit"])
            for r in (await repo.exception_approvals(uow.conn, opened["id"]) if opened else [])
            # A first approval counts for the bid it approved only (the best bid can change meanwhile).
            if r["provider_id"] == best.answer.provider_id and r["hourly_rate"] == bid_rate
        ]
        step = domain.approval_step(
            approver=decided_by,
            approver_roles=approver_roles,
            requested_by=package["requested_by"],
            band_rate=package["band_rate"],
            hourly_rate=bid_rate,
            limits_percent=rules.delegation().limits_percent,
            two=_two_approvals(rules),
            earlier=earlier,
        )
        if isinstance(step, domain.Refusal):
            if step.status == 409:
                raise AlreadyApproved(step.message)
            raise NotDelegated(step.message)
        if opened is not None:
            await repo.record_approval(
                uow.conn,
                exception_id=opened["id"],
                package_id=package_id,
                approval=step.approval,
                provider_id=best.answer.provider_id,
                hourly_rate=bid_rate,
                step="final" if step.final else "first",
                reason=reason.value,
                reason_text=reason_text,
                at=at,
            )
        if not step.final:
            a = step.approval
            repo.add_timeline(
                uow,
                package_id,
                "exception first approval",
                at,
                approved_by=decided_by,
                approver_role=a.role,
                limit_percent=None if a.limit_percent is None else str(a.limit_percent),
                within_limit=a.within_limit,
                awaiting=step.awaiting,
                provider_id=best.answer.provider_id,
                hourly_rate=str(bid_rate),
                reason=reason.value,
                reason_text=reason_text,
            )
            await uow.emit(
                ExceptionFirstApproved(
                    correlation_id=package_id,
                    package_id=package_id,
                    provider_id=best.answer.provider_id,
                    hourly_rate=bid_rate,
                    band_rate=package["band_rate"],
                    approved_by=decided_by,
                    approver_role=str(a.role),
                    approver_limit_percent=a.limit_percent,
                    within_limit=a.within_limit,
                    awaiting=step.awaiting or "approver_within_limit",
                    reason=reason,
                    requested_by=package["requested_by"],
                    approved_at=at,
                )
            )
            return
    decision = "approved" if approve else "rejected"
    asked = await repo.decide_exception(
        uow.conn, package_id, decision=decision, decided_by=decided_by, reason=reason, reason_text=reason_text, at=at
    )
    repo.add_timeline(
        uow,
        package_id,
        f"exception {decision}",
        at,
        decided_by=decided_by,
        reason=reason.value,
        reason_text=reason_text,
    )
    await uow.emit(
        ExceptionDecided(
            correlation_id=package_id,
            package_id=package_id,
            decision=decision,
            decided_by=decided_by,
            reason=reason,
            provider_id=asked["provider_id"] if asked else None,
            hourly_rate=asked["hourly_rate"] if asked else None,
            requested_by=package["requested_by"],
            decided_at=at,
        )
    )
    if best is not None:
        offer_round, tier = await repo.round_of_answer(uow.conn, package_id, best.answer.provider_id, package["cycle"])
        await _place(
            uow,
            rules,
            package,
            spec,
            best,
            offer_round=offer_round,
            tier=Tier(tier),
            why=f"above-rate exception approved by {decided_by}",
            causation=None,
            ranked=ranked,
        )
        return
    why = UnplacedReason.exception_rejected if not approve else UnplacedReason.no_eligible_bidder_above_rate
    await _unplace(uow, rules, package, spec, why, causation=None)


# ---- hospital discharge (decision record 0097) ------------------------------------------------------


def _discharge_refusal(
    rules: BrokerageRules, spec: PackageSpec, discharge: DischargeInput, today: dt.date
) -> domain.Refusal | None:
    """A discharge request's faults, the first one: the urgency, the codes against the reference list,
    then the rules of :func:`domain.discharge_refusal`."""
    if spec.urgency is not Urgency.hospital_discharge:
        return domain.Refusal(422, "urgency", "a package with a discharge has the urgency hospital_discharge")
    reference = rules.discharge_reference()
    route = reference.pathways.get(discharge.pathway)
    hospitals = reference.hospitals
    hospital = hospitals.get(discharge.hospital)
    if hospital is None:
        return domain.Refusal(
            422,
            "discharge.hospital",
            f"unknown hospital code {discharge.hospital!r}; known: {', '.join(sorted(hospitals))}",
        )
    if discharge.ward not in hospital.wards:
        return domain.Refusal(
            422,
            "discharge.ward",
            f"ward {discharge.ward!r} is not a ward of {hospital.code}; its wards: {', '.join(hospital.wards)}",
        )
    return domain.discharge_refusal(
        pathway=discharge.pathway,
        medically_fit_on=discharge.medically_fit_on,
        start_date=spec.start_date,
        today=today,
        rules=rules.discharge,
        pathway_route=None if route is None else (route.means, route.route),
    )


async def _record_discharge(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    spec: PackageSpec,
    discharge: DischargeInput,
    at: dt.datetime,
    *,
    causation: uuid.UUID,
) -> None:
    package_id, requested_by = package["package_id"], package["requested_by"]
    due = domain.fallback_due_at(
        discharge.medically_fit_on, at, rules.discharge, rules.windows[Urgency.hospital_discharge]
    )
    await repo.insert_discharge(
        uow.conn,
        package_id=package_id,
        hospital=discharge.hospital,
        ward=discharge.ward,
        pathway=discharge.pathway,
        medically_fit_on=discharge.medically_fit_on,
        reablement_potential=discharge.reablement_potential,
        nhs_funded_weeks=discharge.nhs_funded_weeks,
        fallback_due_at=due,
    )
    repo.add_timeline(
        uow,
        package_id,
        "discharge requested",
        at,
        hospital=discharge.hospital,
        ward=discharge.ward,
        pathway=discharge.pathway,
        medically_fit_on=discharge.medically_fit_on.isoformat(),
        reablement_potential=discharge.reablement_potential,
        fallback_due_at=due.isoformat(),
    )
    await uow.emit(
        DischargeRequested(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            hospital=discharge.hospital,
            ward=discharge.ward,
            pathway=discharge.pathway,
            medically_fit_on=discharge.medically_fit_on,
            reablement_potential=discharge.reablement_potential,
            nhs_funded_weeks=discharge.nhs_funded_weeks,
            zone=spec.zone,
            hours_per_week=spec.hours_per_week,
            fallback_due_at=due,
            requested_by=requested_by,
            requested_at=at,
        )
    )
    if discharge.nhs_funded_weeks:
        # "The NHS pays the first weeks after discharge, then the council": one funding record (0089).
        council_from = spec.start_date + dt.timedelta(weeks=discharge.nhs_funded_weeks)
        await record_funding(
            uow,
            package_id,
            periods=[
                FundingPeriodInput(spec.start_date, Funder.nhs_discharge),
                FundingPeriodInput(council_from, Funder.council),
            ],
            top_up=None,
            recorded_by=requested_by,
        )
    if domain.reablement_first(discharge.pathway, discharge.reablement_potential):
        today = clock.uk_date(at)
        loads = await _service_loads(uow, rules, today)
        reablement = [x for x in loads if x.service == InHouseService.reablement]
        if domain.choose_service(reablement, spec.hours_per_week, reablement_potential=True):
            await _refer(
                uow, package, spec, discharge.medically_fit_on, InHouseService.reablement, ReferralStep.reablement_first
            )
        else:
            repo.add_timeline(
                uow, package_id, "reablement full", at, hours_per_week=str(spec.hours_per_week), to="market"
            )


async def _service_loads(uow: UnitOfWork, rules: BrokerageRules, today: dt.date) -> list[domain.ServiceLoad]:
    committed = await repo.in_house_committed(uow.conn, today)
    return [
        domain.ServiceLoad(s.service, s.hours_per_week, committed.get(s.service, Decimal(0)))
        for s in rules.discharge_reference().in_house
    ]


async def _refer(
    uow: UnitOfWork,
    package: asyncpg.Record,
    spec: PackageSpec,
    medically_fit_on: dt.date,
    service: InHouseService,
    step: ReferralStep,
) -> None:
    """The in-house ``service`` covers the care from today (never before the medically-fit day) until a
    provider's care starts; the package stays on the market."""
    package_id, at = package["package_id"], now()
    referred_on = domain.referral_day(clock.uk_date(at), medically_fit_on)
    days = domain.days_after_medically_fit(referred_on, medically_fit_on)
    await repo.refer_discharge(
        uow.conn,
        package_id,
        service=service.value,
        step=step.value,
        referred_on=referred_on,
        hours=spec.hours_per_week,
        at=at,
    )
    repo.add_timeline(
        uow,
        package_id,
        "discharge referred",
        at,
        service=service.value,
        step=step.value,
        referred_on=referred_on.isoformat(),
        days_after_medically_fit=days,
    )
    await uow.emit(
        DischargeReferred(
            correlation_id=package_id,
            package_id=package_id,
            service=service,
            step=step,
            referred_on=referred_on,
            medically_fit_on=medically_fit_on,
            days_after_medically_fit=days,
            hours_per_week=spec.hours_per_week,
            requested_by=package["requested_by"],
            referred_at=at,
        )
    )


async def discharge_fallback_due(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """The fallback timer: a discharge not placed by its deadline goes to the first in-house service
    with the carer hours (DischargeReferred, a recorded step of the ladder), or, all full, is reported
    (DischargeFallbackUnavailable) and stays on the market. Taken with SKIP LOCKED and settled in the
    same transaction, so across instances it fires once."""
    package = await repo.take_due(uow.conn, repo.DISCHARGE_FALLBACKS, now())
    if package is None:
        return None
    package_id, at = package["package_id"], now()
    discharge = await repo.discharge_of(uow.conn, package_id)
    if discharge is None or discharge["service"] is not None:  # referred already: nothing to fall back to
        await repo.settle_fallback(uow.conn, package_id, "not_needed")
        return package_id
    spec = repo.spec_of(package)
    loads = await _service_loads(uow, rules, clock.uk_date(at))
    potential = discharge["reablement_potential"]
    chosen = domain.choose_service(loads, spec.hours_per_week, reablement_potential=potential)
    if chosen is not None:
        await _refer(uow, package, spec, discharge["medically_fit_on"], InHouseService(chosen), ReferralStep.fallback)
        return package_id
    full = [InHouseService(s) for s in domain.fallback_candidates(loads, reablement_potential=potential)]
    await repo.settle_fallback(uow.conn, package_id, "full")
    repo.add_timeline(uow, package_id, "discharge fallback full", at, services_full=[s.value for s in full])
    if full:
        await uow.emit(
            DischargeFallbackUnavailable(
                correlation_id=package_id,
                package_id=package_id,
                services_full=full,
                medically_fit_on=discharge["medically_fit_on"],
                hours_per_week=spec.hours_per_week,
                requested_by=package["requested_by"],
                recorded_at=at,
            )
        )
    return package_id


async def _release_discharge(
    uow: UnitOfWork,
    package: asyncpg.Record,
    *,
    released_on: dt.date,
    provider_id: str | None,
    causation: uuid.UUID | None,
) -> None:
    """The in-house service covering a discharge stops from ``released_on`` (a provider starts, or the
    package was cancelled); nothing when none covers it. The fallback's deadline is cleared either way."""
    held = await repo.release_discharge(uow.conn, package["package_id"], released_on=released_on, at=now())
    if held is not None:
        await _announce_release(
            uow, package, held, released_on=released_on, provider_id=provider_id, causation=causation
        )


async def _announce_release(
    uow: UnitOfWork,
    package: asyncpg.Record,
    held: asyncpg.Record,
    *,
    released_on: dt.date,
    provider_id: str | None,
    causation: uuid.UUID | None,
    moved: bool = False,
) -> None:
    """The timeline's entry and ``DischargeReferralReleased`` for the in-house service of ``held`` (the
    discharge's row) stopping from ``released_on``; ``moved``: a release already announced, now on the
    day the provider's care began instead (decision 0097; the in-house team is told the new day)."""
    package_id, at = package["package_id"], now()
    repo.add_timeline(
        uow,
        package_id,
        "discharge referral released",
        at,
        service=held["service"],
        released_on=released_on.isoformat(),
        provider_id=provider_id,
        **({"moved_to_the_start": True} if moved else {}),
    )
    await uow.emit(
        DischargeReferralReleased(
            correlation_id=package_id,
            causation_id=causation,
            package_id=package_id,
            service=InHouseService(held["service"]),
            released_on=released_on,
            provider_id=provider_id,
            hours_per_week=held["referred_hours"],
            requested_by=package["requested_by"],
            released_at=at,
        )
    )


# ---- service agreements: the hand-off to finance (decision records 0109-0111) -------------------


def _funding_basis(
    package: asyncpg.Record, record: asyncpg.Record | None
) -> tuple[list[domain.Period], str | None, int]:
    """Who pays for the package now: its funding ``record``'s periods, top-up payer and revision
    (decision 0089); without one, the request's coarse funding from the package's start, revision 0."""
    if record is None:
        spec = repo.spec_of(package)
        funder = domain.REQUEST_FUNDERS[spec.funding.value]
        return [domain.Period(dt.date.min, funder, ((funder, Decimal(100)),))], None, 0
    return repo.periods_of(record), record["top_up_paid_by"], int(record["revision"])


def _funded(
    package: asyncpg.Record, terms: domain.AgreementTerms, record: asyncpg.Record | None
) -> domain.AgreementTerms:
    """``terms`` with its funding worked out afresh for its dates, hours and rate, from the package's
    funding ``record`` (:func:`repo.funding_of`)."""
    periods, top_up, revision = _funding_basis(package, record)
    funding = domain.agreement_funding(
        start_date=terms.start_date,
        end_date=terms.end_date,
        periods=periods,
        hours_per_week=terms.hours_per_week,
        hourly_rate=terms.hourly_rate,
        band_rate=terms.band_rate,
        top_up_paid_by=top_up,
        calls_per_day=repo.spec_of(package).visits.calls_per_day,
    )
    return dataclasses.replace(terms, funding=funding, funding_revision=revision)


async def _with_funding(
    uow: UnitOfWork, package: asyncpg.Record, terms: domain.AgreementTerms
) -> domain.AgreementTerms:
    """:func:`_funded`, with the package's funding record read now."""
    return _funded(package, terms, await repo.funding_of(uow.conn, package["package_id"]))


async def _write_agreement(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    terms: domain.AgreementTerms,
    *,
    reason: AgreementReason,
    previous: asyncpg.Record | None = None,
) -> None:
    """Append a record (version 1 of a new agreement, or the next version of ``previous``'s) and its
    ServiceAgreementRecorded event: both commit with the package's change (the outbox)."""
    at = now()
    record = ServiceAgreementRecorded(
        correlation_id=package_id,
        record_id=uuid.uuid4(),
        agreement_id=previous["agreement_id"] if previous is not None else uuid.uuid4(),
        version=previous["version"] + 1 if previous is not None else 1,
        supersedes=previous["record_id"] if previous is not None else None,
        reason=reason,
        status=AgreementStatus(terms.status),
        package_id=package_id,
        provider_id=terms.provider_id,
        zone=terms.zone,
        band=Band(terms.band),
        hourly_rate=terms.hourly_rate,
        band_rate=terms.band_rate,
        hours_per_week=terms.hours_per_week,
        weekly_cost=terms.weekly_cost,
        start_date=terms.start_date,
        end_date=terms.end_date,
        funding=[
            AgreementFunding(
                effective_from=part.effective_from,
                effective_to=part.effective_to,
                funder=Funder(part.funder),
                lines=[
                    PayerLine(
                        payer=Payer(line.payer),
                        basis=line.basis,
                        percent=line.percent,
                        calls=list(line.calls),
                        pounds_per_week=line.pounds_per_week,
                    )
                    for line in part.lines
                ],
            )
            for part in terms.funding
        ],
        funding_revision=terms.funding_revision,
        cost_centre=terms.cost_centre,
        rate_card=terms.rate_card,
        recorded_at=at,
    )
    await repo.insert_agreement(uow.conn, record)
    await uow.emit(record)


async def _open_agreement(
    uow: UnitOfWork,
    rules: BrokerageRules,
    package: asyncpg.Record,
    *,
    provider_id: str,
    hourly_rate: Decimal,
    hours_per_week: Decimal,
    start_date: dt.date,
    reason: AgreementReason,
    funding: asyncpg.Record | None,
) -> None:
    """A new agreement with ``provider_id`` from ``start_date`` until further notice; ``funding``:
    the package's funding record as it stands in this transaction (:func:`repo.funding_of`)."""
    spec = repo.spec_of(package)
    terms = domain.AgreementTerms(
        provider_id=provider_id,
        zone=spec.zone,
        band=spec.band.value,
        # Two decimals throughout, as stored: a record read back compares equal to the one written.
        hourly_rate=hourly_rate.quantize(domain.PENNY),
        band_rate=package["band_rate"].quantize(domain.PENNY),
        hours_per_week=hours_per_week.quantize(domain.PENNY),
        start_date=start_date,
        end_date=None,
        status="agreed",
        cost_centre=rules.finance().cost_centre(spec.zone),
        rate_card=package["rate_card"],
        funding_revision=0,
        funding=(),
    )
    await _write_agreement(uow, package["package_id"], _funded(package, terms, funding), reason=reason)


async def _running_agreements(
    uow: UnitOfWork, package_id: uuid.UUID, provider_id: str | None, *, after: dt.date | None = None
) -> list[asyncpg.Record]:
    """The package's agreed records in force with ``provider_id`` (any provider: None) that run past
    ``after`` (open-ended ones always; None: only the open-ended ones)."""
    return _running(await repo.agreements_in_force(uow.conn, package_id), provider_id, after=after)


def _running(
    in_force: Sequence[asyncpg.Record], provider_id: str | None, *, after: dt.date | None = None
) -> list[asyncpg.Record]:
    """Of the records in force, :func:`_running_agreements`' choice."""
    return [
        row
        for row in in_force
        if row["status"] == "agreed"
        and (provider_id is None or row["provider_id"] == provider_id)
        and (row["end_date"] is None or (after is not None and row["end_date"] > after))
    ]


async def _end_agreements(
    uow: UnitOfWork, package: asyncpg.Record, provider_id: str | None, last_day: dt.date, *, reason: AgreementReason
) -> None:
    """``provider_id``'s agreements for the package end after ``last_day`` (a UK date, the last day
    payable): a new version of each that runs past it (one ending before it began: cancelled)."""
    for row in await _running_agreements(uow, package["package_id"], provider_id, after=last_day):
        ended = await _with_funding(uow, package, domain.ending_terms(repo.terms_of(row), last_day))
        await _write_agreement(uow, package["package_id"], ended, reason=reason, previous=row)


async def _cancel_agreements(uow: UnitOfWork, package: asyncpg.Record, provider_id: str) -> None:
    """Cancelled before care started: each of the provider's open agreements is cancelled (a new version)."""
    for row in await _running_agreements(uow, package["package_id"], provider_id):
        cancelled = dataclasses.replace(repo.terms_of(row), status="cancelled")
        await _write_agreement(uow, package["package_id"], cancelled, reason=AgreementReason.cancelled, previous=row)


async def _correct_agreements(
    uow: UnitOfWork,
    package: asyncpg.Record,
    provider_id: str | None,
    reason: AgreementReason,
    correct: Callable[[domain.AgreementTerms], domain.AgreementTerms],
    *,
    open_only: bool = True,
    in_force: Sequence[asyncpg.Record] | None = None,
) -> None:
    """A new version of each agreement in force (open-ended ones only, or every agreed one) whose terms
    ``correct`` changes - funding worked out afresh; one that comes out the same gets no record.
    ``in_force``: the package's records in force, when the caller has read them already."""
    if in_force is None:
        in_force = await repo.agreements_in_force(uow.conn, package["package_id"])
    for row in in_force:
        if row["status"] != "agreed" or (provider_id is not None and row["provider_id"] != provider_id):
            continue
        if open_only and row["end_date"] is not None:
            continue
        current = repo.terms_of(row)
        proposed = await _with_funding(uow, package, correct(current))
        if domain.differs(current, proposed):
            await _write_agreement(uow, package["package_id"], proposed, reason=reason, previous=row)


async def _change_agreements(
    uow: UnitOfWork, package: asyncpg.Record, provider_id: str, hours_per_week: Decimal, effective_date: dt.date
) -> None:
    """An accepted change of hours from ``effective_date`` (a UK date): each open agreement ends the day
    before and a new one at the same rate starts on it; one not yet begun by then is corrected instead."""
    for row in await _running_agreements(uow, package["package_id"], provider_id):
        current = repo.terms_of(row)
        if effective_date <= current.start_date:
            changed = dataclasses.replace(current, hours_per_week=hours_per_week.quantize(domain.PENNY))
            corrected = await _with_funding(uow, package, changed)
            if domain.differs(current, corrected):
                await _write_agreement(
                    uow, package["package_id"], corrected, reason=AgreementReason.changed, previous=row
                )
            continue
        ended = await _with_funding(uow, package, domain.ending_terms(current, effective_date - dt.timedelta(days=1)))
        await _write_agreement(uow, package["package_id"], ended, reason=AgreementReason.changed, previous=row)
        follows = dataclasses.replace(
            current, hours_per_week=hours_per_week.quantize(domain.PENNY), start_date=effective_date, end_date=None
        )
        await _write_agreement(
            uow, package["package_id"], await _with_funding(uow, package, follows), reason=AgreementReason.changed
        )
