"""The framework's rules for placing a package: pure Python, no I/O.

Who may be offered a package (eligibility, with a reason for every exclusion), which tiers
are offered in which order (the zone's allocation policy), when an offer round can close
early, and which bid wins (quality rating, then price, then earliest start, then earliest
answer, then fewer awards in the zone over the last 12 weeks, then a draw seeded by the package
id and round; only bids at or under the band rate are acceptable without an approved exception).
The ranking rules: docs/guide/award-ranking.md and decision record 0042.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from schemas.events import PackageSpec, ProviderProfile, VisitPattern
from schemas.vocabulary import CareNeed, Tier, UnplacedReason, Urgency
from services.runtime import quality
from services.runtime.clock import UK

PRIME_SUPPLEMENTARY = "prime-supplementary"
OPEN_FRAMEWORK = "open-framework"

# ---- quality rating ----------------------------------------------------------------------
# Derived from the provider quality and risk register by one function (services/runtime/quality.py,
# docs/guide/award-ranking.md): the CQC rating, the council's local risk rating and the hand-back
# record, weighted by the reference data's quality weights.
CQC_POINTS = quality.CQC_POINTS
RISK_POINTS = quality.RISK_POINTS
HAND_BACK_PENALTY = quality.HAND_BACK_PENALTY
QualityWeights = quality.QualityWeights


def quality_inputs(
    provider: ProviderProfile,
    inspected_on: dt.date | None = None,
    reviewed_on: dt.date | None = None,
    *,
    as_of: dt.date | None = None,
) -> quality.QualityInputs:
    """The score's inputs as the brokerage knows them: the profile's rating, risk and dated hand-backs
    (ProviderUpdated) and the register's dates (ProviderQualityRecorded), when known. With ``as_of``
    (the offer's UK date) the hand-backs are those of the profile's dated record in the 12 months to
    that day (decision 0119: one older has aged out, though no profile was written since); without
    it, or for a profile without dates, the profile's count as written."""
    if as_of is None:
        return quality.QualityInputs(
            cqc_rating=provider.cqc_rating,
            local_risk=provider.local_risk,
            hand_backs_12m=provider.hand_backs_12m,
            cqc_inspected_on=inspected_on,
            local_risk_reviewed_on=reviewed_on,
        )
    return quality.inputs_as_of(
        cqc_rating=provider.cqc_rating,
        local_risk=provider.local_risk,
        as_of=as_of,
        hand_back_dates=provider.hand_back_dates,
        hand_backs_12m=provider.hand_backs_12m,
        cqc_inspected_on=inspected_on,
        local_risk_reviewed_on=reviewed_on,
    )


def quality_score(provider: ProviderProfile, weights: QualityWeights = QualityWeights()) -> Decimal:
    """The provider's quality score, 0-100 (services.runtime.quality.score)."""
    return quality.score(quality_inputs(provider), weights).score


# ---- eligibility ------------------------------------------------------------------------


def required_skills(package: PackageSpec) -> set[CareNeed]:
    return set(package.needs)


def exclusion_reasons(
    package: PackageSpec, provider: ProviderProfile, *, from_zones: frozenset[str] | None = None
) -> list[str]:
    """Why this provider may not be offered this package; empty when it is eligible.
    ``from_zones``: the escalation to neighbouring zones, where serving one of those will do."""
    reasons = standing_exclusions(package, provider, from_zones=from_zones)
    free = provider.weekly_capacity_hours - provider.committed_hours
    if free < package.hours_per_week:
        reasons.append(f"capacity {free} h/week free, package needs {package.hours_per_week}")
    return reasons


# The exclusion of a provider whose new offers the council paused: the same words whatever the reason,
# so the decision record (read by the brokerage team) does not tell a safeguarding enquiry apart.
OFFERS_PAUSED = "new offers paused by the council"


def standing_exclusions(
    package: PackageSpec, provider: ProviderProfile, *, from_zones: frozenset[str] | None = None
) -> list[str]:
    """The exclusions that do not depend on the provider's caseload (everything but capacity):
    the policy simulator screens each package's candidates once with these."""
    # Written for speed (the policy simulator screens millions of times a year): no sets built
    # unless something is missing.
    reasons = []
    if provider.status != "active":
        reasons.append(f"not active on the framework ({provider.status})")
    if provider.offers_paused:
        # Why stays with the safeguarding team (decision record 0107): the record says only this.
        reasons.append(OFFERS_PAUSED)
    if provider.cqc_rating == "inadequate":
        reasons.append("quality rated Inadequate")
    if from_zones is None:
        if package.zone not in provider.zones:
            reasons.append(f"does not serve zone {package.zone}")
    elif from_zones.isdisjoint(provider.zones):
        reasons.append(f"serves none of the zones next to {package.zone}")
    if package.band not in provider.bands:
        reasons.append(f"does not accept band {package.band}")
    skills = provider.skills
    for need in package.needs:
        if need not in skills:
            missing = sorted(required_skills(package) - set(skills))
            reasons.append("lacks skills: " + ", ".join(missing))
            break
    if package.visits.double_handed and not provider.double_handed:
        reasons.append("does not staff double-handed calls")
    return reasons


@dataclass(frozen=True)
class Screening:
    eligible: list[ProviderProfile]
    excluded: dict[str, list[str]]


def screen(
    package: PackageSpec, providers: Iterable[ProviderProfile], *, from_zones: frozenset[str] | None = None
) -> Screening:
    """Split the providers into eligible ones and excluded ones (with reasons). With
    ``from_zones``, screen the neighbouring zones' providers (those serving the package's own
    zone were the earlier tiers' business)."""
    eligible, excluded = [], {}
    zone = package.zone
    for provider in providers:
        # Providers outside the area being screened are not worth listing as exclusions.
        if from_zones is None:
            if zone not in provider.zones:
                continue
        elif zone in provider.zones or from_zones.isdisjoint(provider.zones):
            continue
        reasons = exclusion_reasons(package, provider, from_zones=from_zones)
        if reasons:
            excluded[provider.provider_id] = reasons
        else:
            eligible.append(provider)
    return Screening(eligible, excluded)


# ---- tiers ------------------------------------------------------------------------------


def tier_ladder(policy: str, *, zone_has_prime: bool) -> list[Tier]:
    """The tiers a package is offered to, in order, under the zone's allocation policy; the
    escalation to the neighbouring zones' providers comes last in either (002:132)."""
    if policy == OPEN_FRAMEWORK:
        return [Tier.open, Tier.adjacent]
    if policy == PRIME_SUPPLEMENTARY:
        return (
            [Tier.prime, Tier.supplementary, Tier.adjacent] if zone_has_prime else [Tier.supplementary, Tier.adjacent]
        )
    raise ValueError(f"unknown allocation policy {policy!r}")


def providers_for_tier(
    tier: Tier, eligible: Iterable[ProviderProfile], adjacent: Iterable[ProviderProfile] = ()
) -> list[ProviderProfile]:
    """Who a tier offers to: ``eligible`` are the zone's own eligible providers, ``adjacent``
    the eligible providers of the neighbouring zones."""
    if tier == Tier.adjacent:
        return list(adjacent)
    if tier == Tier.open:
        return list(eligible)
    return [p for p in eligible if p.tier == tier.value]


def next_offer(
    ladder: list[Tier],
    after: Tier | None,
    eligible: Sequence[ProviderProfile],
    adjacent: Sequence[ProviderProfile] = (),
) -> tuple[Tier, list[ProviderProfile]] | None:
    """The next tier on the ladder with anyone eligible in it, or None when the ladder is spent."""
    # Reference data may change while a package is on offer (a zone loses its Prime tier, say):
    # "after" then need not be on today's ladder, so go by the tiers' fixed order instead.
    order = [Tier.prime, Tier.supplementary, Tier.open, Tier.adjacent]
    later = [t for t in ladder if after is None or order.index(t) > order.index(after)]
    for tier in later:
        offered = providers_for_tier(tier, eligible, adjacent)
        if offered:
            return tier, offered
    return None


@dataclass(frozen=True)
class OfferPlan:
    """What to do next with a package: offer ``tier`` to ``offered``, or (tier None) the ladder is spent."""

    tier: Tier | None
    offered: list[ProviderProfile]
    screening: Screening  # the package's own zone
    nearby: Screening  # the neighbouring zones

    @property
    def excluded(self) -> dict[str, list[str]]:
        """The exclusions that go with the round (or, with the ladder spent, the zone's own)."""
        return self.nearby.excluded if self.tier == Tier.adjacent else self.screening.excluded

    @property
    def unplaced_reason(self) -> UnplacedReason:
        return (
            UnplacedReason.no_eligible_provider
            if not (self.screening.eligible or self.nearby.eligible)
            else UnplacedReason.no_acceptable_bid
        )


def plan_offer(
    package: PackageSpec,
    providers: Sequence[ProviderProfile],
    *,
    policy: str,
    zone_has_prime: bool,
    neighbours: frozenset[str],
    after: Tier | None,
    not_again: AbstractSet[str] = frozenset(),
) -> OfferPlan:
    """The next round for a package under its zone's policy: the brokerage's handlers and the policy
    simulator both call this. ``not_again``: providers not to offer it again (already offered this
    cycle, or one that handed it back)."""
    ladder = tier_ladder(policy, zone_has_prime=zone_has_prime)
    screening = screen(package, providers)
    nearby = screen(package, providers, from_zones=neighbours)
    fresh = [p for p in screening.eligible if p.provider_id not in not_again]
    fresh_nearby = [p for p in nearby.eligible if p.provider_id not in not_again]
    offer = next_offer(ladder, after, fresh, fresh_nearby)
    tier, offered = offer if offer else (None, [])
    return OfferPlan(tier, offered, screening, nearby)


def eligible_now(package: PackageSpec, providers: list[ProviderProfile], neighbours: frozenset[str]) -> set[str]:
    """Who may win at this moment (the zone's own eligible providers and the neighbours')."""
    return {p.provider_id for p in screen(package, providers).eligible} | {
        p.provider_id for p in screen(package, providers, from_zones=neighbours).eligible
    }


def offer_window(urgency: Urgency, windows: dict[Urgency, dt.timedelta]) -> dt.timedelta:
    return windows[urgency]


# ---- answers and the award ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    provider_id: str
    kind: Literal["bid", "decline"]
    answered_at: dt.datetime
    hourly_rate: Decimal | None = None
    earliest_start: dt.date | None = None
    reason: str | None = None
    offer_round: int = 0  # the round answered: part of the tie-breaking draw


# ---- the tie-break ------------------------------------------------------------------------
# Bids equal on quality, price, start and answer time (automatic adapters answer in the same
# instant) go first to the provider with fewer awards in the package's zone over the last 12
# weeks - spreading work, against the concentration the papers warn of (004:1033-1035) - and,
# equal on that too, to the lower of a draw: SHA-256 of "package id/round/provider id", which
# anyone can recompute from the record and no provider's name or id order can favour.
AWARD_SPREAD_WINDOW = dt.timedelta(weeks=12)
CRITERIA = (
    "quality rating",
    "price",
    "earliest start",
    "earliest answer",
    "fewer awards in the zone in the last 12 weeks",
    "draw",
)
TIE_BREAKS = frozenset(CRITERIA[4:])


def tie_draw(package_key: str, offer_round: int, provider_id: str) -> str:
    """A bid's draw (hex): uniform over providers, fixed by the package and round, reproducible."""
    return hashlib.sha256(f"{package_key}/{offer_round}/{provider_id}".encode()).hexdigest()


@dataclass(frozen=True)
class TieBreak:
    """What ranks bids equal on everything else. ``recent_awards``: each bidder's awards in the
    package's zone over :data:`AWARD_SPREAD_WINDOW` before the ranking (absent: none);
    ``package_key``: the package id, seeding the draw. ``legacy``: a round ranked before the
    tie-break existed, by provider id (only to explain old decisions as they were made)."""

    recent_awards: Mapping[str, int] = field(default_factory=dict)
    package_key: str = ""
    legacy: bool = False


@dataclass(frozen=True)
class Bid:
    """An answer that is a bid: its rate (pounds per hour) and earliest start are always known."""

    provider_id: str
    answered_at: dt.datetime
    hourly_rate: Decimal
    earliest_start: dt.date
    offer_round: int = 0  # the round answered: part of the tie-breaking draw

    @classmethod
    def of(cls, answer: Answer) -> Bid:
        """The bid an answer makes; ValueError for a decline or a bid missing its rate or start."""
        if answer.kind != "bid" or answer.hourly_rate is None or answer.earliest_start is None:
            raise ValueError(f"the answer of {answer.provider_id} is not a complete bid")
        return cls(
            answer.provider_id, answer.answered_at, answer.hourly_rate, answer.earliest_start, answer.offer_round
        )


@dataclass(frozen=True)
class RankedBid:
    answer: Bid
    quality: Decimal
    acceptable: bool
    rank: int = 0
    recent_awards: int = 0
    draw: str = ""

    @property
    def key(self) -> tuple[Decimal, Decimal, dt.date, dt.datetime, int, str]:
        """The bid's place in the ranking, criterion by criterion (:data:`CRITERIA`)."""
        a = self.answer
        return (-self.quality, a.hourly_rate, a.earliest_start, a.answered_at, self.recent_awards, self.draw)


def rank_bids(
    answers: Iterable[Answer], quality: dict[str, Decimal], band_rate: Decimal, tie_break: TieBreak
) -> list[RankedBid]:
    """The bids ranked: quality rating (higher first), then price (lower), then earliest start,
    then earliest answer, then fewer awards in the zone in the last 12 weeks, then the draw
    (lower first). ``acceptable``: at or under ``band_rate`` (pounds per hour)."""
    bids = []
    for answer in answers:
        if answer.kind != "bid":
            continue
        a = Bid.of(answer)
        pid = a.provider_id
        draw = pid if tie_break.legacy else tie_draw(tie_break.package_key, a.offer_round, pid)
        awards = 0 if tie_break.legacy else tie_break.recent_awards.get(pid, 0)
        bids.append(RankedBid(a, quality.get(pid, Decimal(0)), a.hourly_rate <= band_rate, 0, awards, draw))
    bids.sort(key=lambda b: b.key)
    return [dataclasses.replace(b, rank=i + 1) for i, b in enumerate(bids)]


def deciding_criterion(better: RankedBid, worse: RankedBid) -> str | None:
    """The first criterion on which ``better`` ranked above ``worse`` (None if they are equal)."""
    for name, mine, theirs in zip(CRITERIA, better.key, worse.key, strict=True):
        if mine != theirs:
            return name
    return None


def choose_winner(ranked: list[RankedBid], still_eligible: set[str]) -> RankedBid | None:
    """The first acceptable bid whose provider is still eligible at the moment of award."""
    for bid in ranked:
        if bid.acceptable and bid.answer.provider_id in still_eligible:
            return bid
    return None


def best_above_rate(ranked: list[RankedBid], still_eligible: set[str]) -> RankedBid | None:
    """The best-ranked bid above the band rate from a still-eligible provider: what a broker is
    asked to approve when no bid at the rate came in."""
    for bid in ranked:
        if not bid.acceptable and bid.answer.provider_id in still_eligible:
            return bid
    return None


def above_percent(band_rate: Decimal, hourly_rate: Decimal) -> Decimal:
    """How far ``hourly_rate`` is above ``band_rate`` (pounds per hour), per cent of the band rate,
    unrounded, as the scheme of delegation measures it."""
    return (hourly_rate - band_rate) / band_rate * 100 if band_rate else Decimal("Infinity")


@dataclass(frozen=True)
class ApproverLimit:
    """The limit an approver acts under: the highest of their roles in the scheme of delegation.
    ``role`` None: none of their roles is in the scheme (they may approve nothing above the rate);
    ``limit_percent`` None with a role: no limit."""

    role: str | None
    limit_percent: Decimal | None

    def covers(self, percent: Decimal) -> bool:
        return self.role is not None and (self.limit_percent is None or percent <= self.limit_percent)

    def words(self) -> str:
        if self.role is None:
            return "nothing above the band rate"
        return (
            "any amount above the band rate"
            if self.limit_percent is None
            else f"up to {self.limit_percent}% above the band rate"
        )


def approver_limit(roles: AbstractSet[str], limits_percent: Mapping[str, Decimal | None]) -> ApproverLimit:
    """The highest limit among ``roles`` in the scheme (deploy/reference/delegation.yaml); ties go to
    the role named first alphabetically, so the same roles always give the same answer."""
    best: ApproverLimit = ApproverLimit(None, None)
    for role in sorted(roles):
        if role not in limits_percent:
            continue
        limit = limits_percent[role]
        if limit is None:
            return ApproverLimit(role, None)
        if best.role is None or (best.limit_percent is not None and limit > best.limit_percent):
            best = ApproverLimit(role, limit)
    return best


def approval_refusal(
    *,
    approver: str,
    approver_roles: frozenset[str],
    requested_by: str,
    band_rate: Decimal,
    hourly_rate: Decimal,
    limits_percent: Mapping[str, Decimal | None],
) -> str | None:
    """Why ``approver`` may not approve paying ``hourly_rate`` (pounds per hour) against the band
    rate on their own, or None when they may. Source: the council's scheme of delegation
    (deploy/reference/delegation.yaml: limits in per cent above the band rate by role; the highest
    of the approver's roles counts) and the separation of duties - nobody approves their own request."""
    if approver == requested_by:
        return "nobody approves an above-rate exception on a package they requested themselves"
    above = above_percent(band_rate, hourly_rate)
    limit = approver_limit(approver_roles, limits_percent)
    if limit.covers(above):
        return None
    return (
        f"the bid is {above.quantize(Decimal('0.1'))}% above the band rate; the scheme of delegation lets "
        f"your role approve {limit.words()}"
    )


@dataclass(frozen=True)
class TwoApprovals:
    """When an above-rate exception takes two approvals (deploy/reference/delegation.yaml
    ``second_approver``, decision record 0123). ``first_below_limit``: an approver whose limit does
    not cover the bid may record the first approval, and the exception waits for a second approver
    whose limit covers it (off: refused, as under one signature). ``always_above_percent``: bids more
    than this far above the band rate take two approvals whoever approves (one of them within its
    limit); None: one approval within the limit is enough."""

    first_below_limit: bool = False
    always_above_percent: Decimal | None = None

    def approvals_needed(self, percent: Decimal) -> int:
        return 2 if self.always_above_percent is not None and percent > self.always_above_percent else 1


@dataclass(frozen=True)
class Approval:
    """One approval of an above-rate bid: who, under which role's limit, and whether it covers the bid."""

    approver: str
    role: str | None
    limit_percent: Decimal | None
    within_limit: bool


@dataclass(frozen=True)
class ApprovalStep:
    """What an approval does: ``final`` places the package; otherwise it is the first of two and the
    exception waits for ``awaiting`` ("approver_within_limit": someone whose limit covers the bid;
    "second_approver": anyone else in the scheme, the bid being within this approver's limit)."""

    approval: Approval
    final: bool
    awaiting: Literal["approver_within_limit", "second_approver"] | None = None


def approval_step(
    *,
    approver: str,
    approver_roles: AbstractSet[str],
    requested_by: str,
    band_rate: Decimal,
    hourly_rate: Decimal,
    limits_percent: Mapping[str, Decimal | None],
    two: TwoApprovals,
    earlier: Sequence[Approval] = (),
) -> ApprovalStep | Refusal:
    """An approval of paying ``hourly_rate`` (pounds per hour) against ``band_rate``, given the
    approvals already recorded for this same bid (``earlier``): the step it is, or why it is refused.

    Rules (the scheme of delegation, decision records 0052 and 0123): nobody approves their own
    request (403), nobody approves the same bid twice (409), a role not in the scheme approves
    nothing (403). The bid is approved once it has the approvals it needs (one, or two above
    ``two.always_above_percent``) from different people, at least one of them within their limit.
    An approval that does not complete it is recorded as the first of two when it is the first and
    either the bid needs two or ``two.first_below_limit`` allows a first approval below the limit;
    otherwise it is refused (403), recording nothing."""
    if approver == requested_by:
        return Refusal(
            403,
            "decision",
            "nobody approves an above-rate exception on a package they requested themselves",
            "not-delegated",
        )
    if any(a.approver == approver for a in earlier):
        return Refusal(
            409,
            "decision",
            "you have already approved this bid: a second approver must be someone else",
            "already-approved",
        )
    above = above_percent(band_rate, hourly_rate)
    limit = approver_limit(approver_roles, limits_percent)
    if limit.role is None:
        return Refusal(
            403, "decision", f"the scheme of delegation lets your role approve {limit.words()}", "not-delegated"
        )
    approval = Approval(approver, limit.role, limit.limit_percent, limit.covers(above))
    signed = [*earlier, approval]
    needed = two.approvals_needed(above)
    if len(signed) >= needed and any(a.within_limit for a in signed):
        return ApprovalStep(approval, final=True)
    if not earlier and (needed == 2 or two.first_below_limit):
        awaiting: Literal["approver_within_limit", "second_approver"] = (
            "second_approver" if approval.within_limit else "approver_within_limit"
        )
        return ApprovalStep(approval, final=False, awaiting=awaiting)
    percent = above.quantize(Decimal("0.1"))
    if earlier:
        why = (
            f"the bid is {percent}% above the band rate: the second approval must be within the approver's "
            f"limit, and your role may approve {limit.words()}"
        )
    else:
        why = f"the bid is {percent}% above the band rate; the scheme of delegation lets your role approve "
        why += limit.words()
    return Refusal(403, "decision", why, "not-delegated")


@dataclass
class RoundState:
    offered: list[str]
    answers: dict[str, Answer] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        return [p for p in self.offered if p not in self.answers]


def outcome_settled(state: RoundState, quality: dict[str, Decimal], band_rate: Decimal) -> bool:
    """True when waiting longer cannot change the award: the window may close early.

    Either everyone offered has answered, or an acceptable bid is in from a provider whose
    quality no pending provider can beat or equal (an equal one could still bid lower).
    """
    if not state.pending:
        return True
    ranked = rank_bids(state.answers.values(), quality, band_rate, TieBreak())  # only quality matters here
    best = next((b for b in ranked if b.acceptable), None)
    if best is None:
        return False
    return all(quality.get(p, Decimal(0)) < best.quality for p in state.pending)


# ---- a running package's later life: pauses and endings (decision record 0078) -----------------

# Which broker action, and which timer, may act on a package in which status. One table, read by the
# handlers: a paused package is in none of the rows that lead to an offer (re-offer, hand-back,
# re-brokering), so it is never offered while its provider keeps it.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    "cancel": frozenset({"requested", "offered", "placed", "unplaced", "awaiting_approval"}),
    "start": frozenset({"placed"}),
    "reoffer": frozenset({"unplaced"}),
    "hand_back": frozenset({"placed", "started"}),
    "rebroker": frozenset({"placed", "started"}),
    "pause": frozenset({"started"}),
    "resume": frozenset({"paused"}),
    "end": frozenset({"started", "paused"}),
    "change": frozenset({"started"}),
    # A review (decision 0088): of a running package; a change it decides needs a started one.
    "review": frozenset({"started", "paused"}),
}
# The actions after which the package is offered to providers again.
OFFERING_ACTIONS = frozenset({"reoffer", "hand_back", "rebroker"})


@dataclass(frozen=True)
class DateLimits:
    """How far from today (the UK date) a pause's, resume's or ending's date may be (settings
    ``ending_backdate_limit_days``, ``ending_ahead_limit_days``)."""

    backdate_days: int = 28
    ahead_days: int = 90


@dataclass(frozen=True)
class Refusal:
    """Why an action on a running package is refused: HTTP ``status`` (409 the package's state,
    422 a date), the request ``field`` at fault, the words, and for a 422 the problem ``code``
    (services/runtime/problems.py TYPES) a program - the console - tells refusals apart by."""

    status: int
    field: str
    message: str
    code: str | None = None


def _status_refusal(action: str, status: str) -> Refusal | None:
    if status in ALLOWED_FROM[action]:
        return None
    if action == "end" and status == "placed":
        return Refusal(409, "status", "the package is placed but care has not started: cancel it instead")
    allowed = " or ".join(sorted(ALLOWED_FROM[action]))
    return Refusal(409, "status", f"the package is {status}; only a {allowed} package can be {_PAST[action]}")


_PAST = {"end": "ended", "pause": "paused", "resume": "resumed", "change": "changed"}


def _date_refusal(field: str, day: dt.date, today: dt.date, limits: DateLimits, *, future: bool) -> Refusal | None:
    if day < today - dt.timedelta(days=limits.backdate_days):
        return Refusal(
            422, field, f"{day} is more than {limits.backdate_days} days ago (dates are UK dates)", "date-too-far-back"
        )
    if not future and day > today:
        return Refusal(422, field, f"{day} is in the future (dates are UK dates)", "date-in-future")
    if day > today + dt.timedelta(days=limits.ahead_days):
        return Refusal(
            422, field, f"{day} is more than {limits.ahead_days} days ahead (dates are UK dates)", "date-too-far-ahead"
        )
    return None


def start_refusal(
    started_on: dt.date,
    today: dt.date,
    limits: DateLimits,
    requested_on: dt.date | None = None,
    previous_last_day: dt.date | None = None,
) -> Refusal | None:
    """Whether care may be recorded as started on ``started_on`` (a UK date): not before the
    package was requested (``requested_on``, a UK date; care may begin before the placement is
    recorded, never before anyone asked for it), not on or before ``previous_last_day`` - the last
    day paid to a provider that held the package before this one (after a hand-back or a declined
    change) - not in the future, nor further back than ``limits.backdate_days``. The start dates the
    service agreement and the first review: a start in 1901 had made an agreement payable from
    1901; one a month before the request, payable for weeks before the package existed; one before
    the outgoing provider's last day, two providers payable for the same days (found by an attack)."""
    if requested_on is not None and started_on < requested_on:
        return Refusal(
            422,
            "started_on",
            f"{started_on} is before the package was requested on {requested_on}",
            "date-before-request",
        )
    if previous_last_day is not None and started_on <= previous_last_day:
        return Refusal(
            422,
            "started_on",
            f"{started_on} is not after {previous_last_day}, the last day of care paid to the provider before",
            "date-before-handover",
        )
    return _date_refusal("started_on", started_on, today, limits, future=False)


def hand_back_refusal(
    notice_ends_on: dt.date,
    today: dt.date,
    limits: DateLimits,
    started_on: dt.date | None = None,
    requested_on: dt.date | None = None,
) -> Refusal | None:
    """Whether a hand-back's notice may end on ``notice_ends_on`` (a UK date, the leaving provider's
    last day of care): not before care started (``started_on``; a notice ending before it had
    cancelled the agreement of the care given), nor, for a package not started, before it was
    requested (``requested_on``: the family had been told carers would keep coming until a day
    before anyone asked for care), within the actions' limits either side of ``today`` - the
    leaving provider is paid to it and the next one starts the day after (a notice to 2035 had kept
    two providers' agreements payable for eight years)."""
    if started_on is not None and notice_ends_on < started_on:
        return Refusal(
            422, "notice_ends_on", f"{notice_ends_on} is before the care started on {started_on}", "date-before-start"
        )
    if requested_on is not None and notice_ends_on < requested_on:
        return Refusal(
            422,
            "notice_ends_on",
            f"{notice_ends_on} is before the package was requested on {requested_on}",
            "date-before-request",
        )
    return _date_refusal("notice_ends_on", notice_ends_on, today, limits, future=True)


def ending_refusal(
    status: str, started_on: dt.date | None, effective_date: dt.date, today: dt.date, limits: DateLimits
) -> Refusal | None:
    """Whether a package may end on ``effective_date`` (the first day without care): only a running
    one (started or paused; a placed one not started is cancelled instead), never before care
    started, within the limits either side of today. None when it may."""
    refusal = _status_refusal("end", status)
    if refusal is None and started_on is not None and effective_date < started_on:
        refusal = Refusal(
            422, "effective_date", f"{effective_date} is before the care started on {started_on}", "date-before-start"
        )
    return refusal or _date_refusal("effective_date", effective_date, today, limits, future=True)


def pause_refusal(
    status: str, started_on: dt.date | None, paused_on: dt.date, today: dt.date, limits: DateLimits
) -> Refusal | None:
    """Whether a started package may be paused from ``paused_on`` (the first day without visits):
    not before care started, not in the future (it is recorded when it happens), not too long ago."""
    refusal = _status_refusal("pause", status)
    if refusal is None and started_on is not None and paused_on < started_on:
        refusal = Refusal(
            422, "paused_on", f"{paused_on} is before the care started on {started_on}", "date-before-start"
        )
    return refusal or _date_refusal("paused_on", paused_on, today, limits, future=False)


def resume_refusal(
    status: str,
    paused_on: dt.date | None,
    resumed_on: dt.date,
    today: dt.date,
    limits: DateLimits,
    *,
    hold_expires_at: dt.datetime | None = None,
    at: dt.datetime | None = None,
) -> Refusal | None:
    """Whether a paused package may resume on ``resumed_on`` (the first day of visits again): not
    before the pause began, within the limits either side of today (a discharge may be planned),
    and not once the provider's hold has run out at ``at`` (409 ``hold-expired``: the package ends,
    whether or not the hold timer has recorded it yet - found by an attack)."""
    refusal = _status_refusal("resume", status)
    if refusal is None and hold_expires_at is not None and at is not None and at >= hold_expires_at:
        refusal = Refusal(
            409,
            "status",
            f"the provider's hold ran out at {hold_expires_at.astimezone(UK):%d %b %Y %H:%M %Z}: the package "
            "ends; request a new package for the person",
            "hold-expired",
        )
    if refusal is None and paused_on is not None and resumed_on < paused_on:
        refusal = Refusal(
            422, "resumed_on", f"{resumed_on} is before the pause began on {paused_on}", "date-before-pause"
        )
    return refusal or _date_refusal("resumed_on", resumed_on, today, limits, future=True)


def hold_expires_at(paused_at: dt.datetime, hold: dt.timedelta) -> dt.datetime:
    """When the provider's hold on a paused package runs out: the hold counts from when the pause is
    recorded, the moment the provider is told (a pause recorded late does not shorten it)."""
    return paused_at + hold


# ---- changes to a running package (decision record 0082) ------------------------------------------

# How far the commissioned hours may be from the visit pattern's carer hours: a mismatch is almost
# always a typing mistake on the form, so it is refused rather than guessed (the package request's rule).
HOURS_TOLERANCE = Decimal("0.1")
HOURS_TOLERANCE_FLOOR = Decimal("0.5")


def hours_mismatch(hours_per_week: Decimal, visits: VisitPattern) -> str | None:
    """Why ``hours_per_week`` (carer hours per week) does not match the visit pattern (calls x minutes
    x carers x days), or None when it does - within 10% or half an hour, whichever is more."""
    expected = visits.care_hours_per_week
    if abs(hours_per_week - expected) <= max(HOURS_TOLERANCE_FLOOR, expected * HOURS_TOLERANCE):
        return None
    return (
        f"hours_per_week {hours_per_week} does not match the visit pattern ({visits.calls_per_day} calls x "
        f"{visits.minutes_per_call} min x {visits.carers_per_call} carer(s) x {visits.days_per_week} days = "
        f"{expected} h)"
    )


def is_reduction(previous: PackageSpec, changed: PackageSpec) -> bool:
    """Fewer commissioned hours than before: the papers ask for a rationale discussed with the person
    or their family for a reduction (domain.md, "package changes")."""
    return changed.hours_per_week < previous.hours_per_week


def change_refusal(
    *,
    status: str,
    change_pending: bool,
    started_on: dt.date | None,
    previous: PackageSpec,
    changed: PackageSpec,
    discussed_with_person: bool | None,
    effective_date: dt.date,
    today: dt.date,
    limits: DateLimits,
) -> Refusal | None:
    """Whether a running package may change to ``changed`` from ``effective_date`` (a UK date, the first
    day of the new pattern). 409 (``status``) unless it is started, 409 (``change``) while another
    change awaits its provider's answer; 422 for hours not matching the visit pattern
    (``hours_per_week``), a change that changes nothing (``visits``), a reduction not discussed with
    the person or family (``discussed_with_person``), a date before care started or beyond the limits
    (``effective_date``). None when it may."""
    refusal = _status_refusal("change", status)
    if refusal is not None:
        return refusal
    if change_pending:
        return Refusal(409, "change", "a change to this package is already awaiting its provider's answer")
    mismatch = hours_mismatch(changed.hours_per_week, changed.visits)
    if mismatch is not None:
        return Refusal(422, "hours_per_week", mismatch, "hours-mismatch")
    if changed == previous:
        return Refusal(
            422, "visits", "the change leaves the hours, visit pattern and needs as they are", "change-changes-nothing"
        )
    if is_reduction(previous, changed) and not discussed_with_person:
        return Refusal(
            422,
            "discussed_with_person",
            f"a reduction ({previous.hours_per_week} to {changed.hours_per_week} h/week) must be discussed with "
            "the person or their family first",
            "reduction-not-discussed",
        )
    if started_on is not None and effective_date < started_on:
        return Refusal(
            422, "effective_date", f"{effective_date} is before the care started on {started_on}", "date-before-start"
        )
    return _date_refusal("effective_date", effective_date, today, limits, future=True)


# ---- reviews (decision record 0088) ---------------------------------------------------------------


@dataclass(frozen=True)
class ReviewSchedule:
    """When reviews fall due (settings ``review_first_after_days``, ``review_interval_months``,
    ``review_due_soon_days``): the first a number of days after care started (six weeks by default,
    domain.md "reviews"), then every ``interval_months`` calendar months after each review (yearly)."""

    first_after_days: int = 42
    interval_months: int = 12
    due_soon_days: int = 14


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus calendar ``months``; the 29th-31st of a month without that day fall on its last day
    (a review held on 29 February 2028 is next due on 28 February 2029)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def first_review_due(started_on: dt.date, schedule: ReviewSchedule) -> dt.date:
    """The first review's due date (a UK date): ``schedule.first_after_days`` after care started."""
    return started_on + dt.timedelta(days=schedule.first_after_days)


def next_review_due(reviewed_on: dt.date, schedule: ReviewSchedule) -> dt.date:
    """The next review's due date after one held on ``reviewed_on``: ``interval_months`` later (yearly)."""
    return add_months(reviewed_on, schedule.interval_months)


ReviewState = Literal["overdue", "due", "upcoming"]


def review_state(due_on: dt.date, today: dt.date, schedule: ReviewSchedule) -> ReviewState:
    """Where a review stands on ``today`` (the UK date): overdue after its due date, due from
    ``due_soon_days`` before it (the queue's working window), upcoming before that."""
    if due_on < today:
        return "overdue"
    if due_on <= today + dt.timedelta(days=schedule.due_soon_days):
        return "due"
    return "upcoming"


REVIEW_OUTCOMES_WITH_CHANGE = frozenset({"changed", "technology_enabled_care"})


def review_refusal(
    *,
    status: str,
    outcome: str,
    started_on: dt.date | None,
    reviewed_on: dt.date,
    today: dt.date,
    limits: DateLimits,
    has_change: bool,
    has_ending: bool,
    technology: Sequence[str],
    previous_hours: Decimal | None = None,
    changed_hours: Decimal | None = None,
    change_pending: bool = False,
) -> Refusal | None:
    """Whether a review's outcome may be recorded: only for a running package (started or paused; 409
    ``status``), with no change awaiting the provider's answer unless the review ends the package
    (which withdraws it; 409 ``change``: a review that found "no change" was told to the provider
    and the family while an increase was in flight, found by an attack), held on a UK date not before
    care started, not in the future, not too long ago (422
    ``reviewed_on``); with the details its outcome needs and no others (422 naming ``change``,
    ``end`` or ``technology``): a change for ``changed`` and ``technology_enabled_care``, an ending for
    ``ended``, equipment for ``technology_enabled_care`` and then fewer hours (it takes the place of
    visits; 422 ``change.hours_per_week``). The change and the ending are then judged by their own
    rules (:func:`change_refusal`, :func:`ending_refusal`). None when it may."""
    if status not in ALLOWED_FROM["review"]:
        allowed = " or ".join(sorted(ALLOWED_FROM["review"]))
        return Refusal(409, "status", f"the package is {status}; only a {allowed} package can be reviewed")
    if change_pending and outcome != "ended":
        return Refusal(
            409,
            "change",
            "a change awaits the provider's answer: record the review once it is answered or withdrawn",
        )
    if started_on is not None and reviewed_on < started_on:
        return Refusal(
            422, "reviewed_on", f"{reviewed_on} is before the care started on {started_on}", "date-before-start"
        )
    refusal = _date_refusal("reviewed_on", reviewed_on, today, limits, future=False)
    if refusal is not None:
        return refusal
    wants_change = outcome in REVIEW_OUTCOMES_WITH_CHANGE
    if wants_change and not has_change:
        return Refusal(422, "change", f"a review with the outcome {outcome} needs the change: hours and visits")
    if not wants_change and has_change:
        return Refusal(422, "change", f"a review with the outcome {outcome} changes nothing: leave the change out")
    if outcome == "ended" and not has_ending:
        return Refusal(422, "end", "a review that ends the package needs the ending: a reason and an effective date")
    if outcome != "ended" and has_ending:
        return Refusal(422, "end", f"a review with the outcome {outcome} ends nothing: leave the ending out")
    if outcome == "technology_enabled_care":
        if not technology:
            return Refusal(422, "technology", "name the equipment that takes the place of some visits")
        if previous_hours is not None and changed_hours is not None and changed_hours >= previous_hours:
            return Refusal(
                422,
                "change.hours_per_week",
                f"technology-enabled care takes the place of some visits: {changed_hours} h/week is not fewer "
                f"than {previous_hours}",
            )
    elif technology:
        return Refusal(422, "technology", "equipment is recorded only with the outcome technology_enabled_care")
    return None


# ---- funding (decision record 0089) ---------------------------------------------------------------

PENNY = Decimal("0.01")


@dataclass(frozen=True)
class Period:
    """Who pays from ``effective_from`` (a UK date) until the next period: each funder's per cent,
    and (decision record 0121) ``calls``: (call, funder) pairs - a daily call of the visit pattern
    (1 = the first of the day, in time order) paid whole by a funder of its own, say the NHS paying
    the morning medication call; the ``shares`` then split the rest of the week."""

    effective_from: dt.date
    funder: str
    shares: tuple[tuple[str, Decimal], ...]
    calls: tuple[tuple[int, str], ...] = ()


def calls_refusal(period: Period, where: str, calls_per_day: int | None) -> Refusal | None:
    """A period's named calls (decision record 0121): each a call of the visit pattern (1 to
    ``calls_per_day``; None: not checked), named once, paid by one funder (never ``joint``) other
    than the period's own single funder, and at least one call left for the period's shares. A 422
    naming ``periods[i].calls[j].call`` or ``.funder``, or ``periods[i].calls``."""
    seen: set[int] = set()
    for j, (call, funder) in enumerate(period.calls):
        at = f"{where}.calls.{j}"
        if call < 1 or (calls_per_day is not None and call > calls_per_day):
            pattern = "" if calls_per_day is None else f": the visit pattern has {calls_per_day} call(s) a day"
            return Refusal(422, f"{at}.call", f"there is no call {call}{pattern}")
        if call in seen:
            return Refusal(422, f"{at}.call", f"call {call} is named twice")
        seen.add(call)
        if funder == "joint":
            return Refusal(422, f"{at}.funder", "a call is paid by one funder, never joint")
        if funder == period.funder:
            return Refusal(422, f"{at}.funder", f"{funder} pays the period already: name only another funder's calls")
    if calls_per_day is not None and period.calls and len(seen) >= calls_per_day:
        return Refusal(
            422,
            f"{where}.calls",
            f"every one of the {calls_per_day} call(s) a day is named: leave at least one to the period's funder",
        )
    return None


def funding_refusal(
    periods: Sequence[Period],
    *,
    first_day: dt.date | None,
    calls_per_day: int | None = None,
    backdate_days: int | None = None,
) -> Refusal | None:
    """Whether a package's funding record is whole: at least one period; dates rising; each period's
    shares adding up to exactly 100% (422 ``periods.i.shares`` naming the total); a joint period
    split between at least two different funders, a single funder's period 100% that funder's; any
    named calls calls of the visit pattern of ``calls_per_day`` calls a day (:func:`calls_refusal`);
    the first period starting on or before ``first_day`` (the package's first day of care), so no
    day of care has no funder, and no more than ``backdate_days`` before it (the actions' backdating
    limit, :class:`DateLimits`: a record from 1901 had put the package in 1901's finance figures)
    (422 ``periods.0.effective_from``). None when it is whole."""
    if not periods:
        return Refusal(422, "periods", "at least one funding period is needed")
    for i, period in enumerate(periods):
        where = f"periods.{i}"
        refusal = calls_refusal(period, where, calls_per_day)
        if refusal is not None:
            return refusal
        if i and period.effective_from <= periods[i - 1].effective_from:
            return Refusal(
                422,
                f"{where}.effective_from",
                f"{period.effective_from} is not after the previous period's {periods[i - 1].effective_from}",
            )
        funders = [f for f, _ in period.shares]
        total = sum((p for _, p in period.shares), Decimal(0))
        if any(p <= 0 for _, p in period.shares):
            return Refusal(422, f"{where}.shares", "every share is more than 0%")
        if total != 100:
            return Refusal(422, f"{where}.shares", f"the shares add up to {total.normalize():f}%, not 100%")
        if len(set(funders)) != len(funders):
            return Refusal(422, f"{where}.shares", "a funder appears twice in the split")
        if period.funder == "joint":
            if len(funders) < 2 or "joint" in funders:
                return Refusal(422, f"{where}.shares", "joint funding is split between two or more funders")
        elif funders != [period.funder]:
            return Refusal(
                422, f"{where}.shares", f"a period funded by {period.funder} alone has no split (or 100% its own)"
            )
    if first_day is not None and periods[0].effective_from > first_day:
        return Refusal(
            422,
            "periods.0.effective_from",
            f"{periods[0].effective_from} leaves the care from {first_day} without a funder",
        )
    if (
        first_day is not None
        and backdate_days is not None
        and periods[0].effective_from < first_day - dt.timedelta(days=backdate_days)
    ):
        return Refusal(
            422,
            "periods.0.effective_from",
            f"{periods[0].effective_from} is more than {backdate_days} days before care begins on {first_day}",
            "date-too-far-back",
        )
    return None


def period_on(periods: Sequence[Period], day: dt.date) -> Period | None:
    """The period in force on ``day`` (a UK date): the last one starting on or before it."""
    current = None
    for period in periods:
        if period.effective_from <= day:
            current = period
    return current


def split_pennies(amount: Decimal, weights: Sequence[Fraction]) -> list[Decimal]:
    """``amount`` (pounds) split by per-cent ``weights`` (adding up to 100, exact fractions) into
    pennies that add up to it exactly: each part rounded down to the penny, the pennies left over
    going to the largest remainders first (ties in the weights' order)."""
    pennies = int(amount.quantize(PENNY) / PENNY)
    exact = [pennies * w / 100 for w in weights]
    floors = [int(e) for e in exact]  # exact >= 0: int() rounds down
    left = pennies - sum(floors)
    for i in sorted(range(len(exact)), key=lambda i: -(exact[i] - floors[i]))[:left]:
        floors[i] += 1
    return [Decimal(f) * PENNY for f in floors]


def split_pounds(amount: Decimal, shares: Sequence[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """``amount`` (pounds) split by per-cent ``shares`` into pennies that add up to it exactly
    (:func:`split_pennies`)."""
    parts = split_pennies(amount, [Fraction(p) for _, p in shares])
    return {f: part for (f, _), part in zip(shares, parts, strict=True)}


@dataclass(frozen=True)
class FunderWeight:
    """One funder's part of a period's week (decision records 0089, 0121): ``basis`` ``share`` (its
    per cent of the part no named call takes) or ``calls`` (the named ``calls``, each a day's call
    paid whole); ``percent`` of the whole week's cost at the band rate, an exact fraction."""

    funder: str
    basis: Literal["share", "calls"]
    calls: tuple[int, ...]
    percent: Fraction


def funder_weights(period: Period, calls_per_day: int | None) -> tuple[FunderWeight, ...]:
    """How a period's week divides between its funders (decision record 0121): each named call is
    ``1 / calls_per_day`` of the week (the calls of a visit pattern are of equal length and carers),
    its funder's; the rest is split by the period's shares. The weights add up to exactly 100 per
    cent. Raises ValueError when calls are named and ``calls_per_day`` is unknown or too few."""
    if not period.calls:
        return tuple(FunderWeight(f, "share", (), Fraction(p)) for f, p in period.shares)
    if calls_per_day is None or len(period.calls) >= calls_per_day or max(c for c, _ in period.calls) > calls_per_day:
        raise ValueError(f"calls {period.calls} do not fit a pattern of {calls_per_day} call(s) a day")
    by_funder: dict[str, list[int]] = {}
    for call, funder in sorted(period.calls):
        by_funder.setdefault(funder, []).append(call)
    weights = [FunderWeight(f, "calls", tuple(c), Fraction(100 * len(c), calls_per_day)) for f, c in by_funder.items()]
    rest = Fraction(calls_per_day - len(period.calls), calls_per_day)
    weights += [FunderWeight(f, "share", (), Fraction(p) * rest) for f, p in period.shares]
    return tuple(weights)


@dataclass(frozen=True)
class WeeklyCost:
    """A week's cost of a package (pounds) and who pays what: ``by_funder`` the cost at the band rate
    split by the period's shares; ``above_band`` the part above the band rate, paid by ``above_band_paid_by``
    (a top-up's payer, or the council for an approved above-rate exception)."""

    total: Decimal
    by_funder: dict[str, Decimal]
    above_band: Decimal
    above_band_paid_by: str | None
    parts: tuple[tuple[FunderWeight, Decimal], ...] = ()


def weekly_cost(
    *,
    hours_per_week: Decimal,
    hourly_rate: Decimal,
    band_rate: Decimal,
    period: Period,
    top_up_paid_by: str | None,
    calls_per_day: int | None = None,
) -> WeeklyCost:
    """The weekly cost (hours x the awarded rate, pounds) split by funder. Up to the band rate the
    period's named calls go to their funders and the rest by its shares (:func:`funder_weights`,
    ``calls_per_day`` the visit pattern's), in pennies adding up exactly; above it, the top-up's payer
    when the person chose the provider with a top-up, else the council (an above-rate exception it
    approved). ``parts``: each weight with its pounds; ``by_funder`` the pounds summed by funder."""
    total = (hours_per_week * hourly_rate).quantize(PENNY)
    at_band = (hours_per_week * min(hourly_rate, band_rate)).quantize(PENNY)
    above = total - at_band
    payer = (top_up_paid_by or "council") if above > 0 else None
    weights = funder_weights(period, calls_per_day)
    pounds = split_pennies(at_band, [w.percent for w in weights])
    by_funder: dict[str, Decimal] = {}
    for weight, amount in zip(weights, pounds, strict=True):
        by_funder[weight.funder] = by_funder.get(weight.funder, Decimal(0)) + amount
    return WeeklyCost(total, by_funder, above, payer, tuple(zip(weights, pounds, strict=True)))


def calls_left_unfunded(periods: Sequence[Period], calls_per_day: int) -> Refusal | None:
    """A change to ``calls_per_day`` calls a day while a funding period names a call the new pattern
    would not have, or would leave no call to the period's funder (decision record 0121): refused
    until the funding is recorded again - a 422 naming ``visits.calls_per_day``. Every period
    counts, past ones too: the weekly cost of any day is worked out on the package's pattern. None
    when every named call still exists."""
    for i, period in enumerate(periods):
        if not period.calls:
            continue
        if calls_refusal(period, f"periods.{i}", calls_per_day) is not None:
            named = ", ".join(f"call {c} ({f})" for c, f in period.calls)
            return Refusal(
                422,
                "visits.calls_per_day",
                f"the funding from {period.effective_from} names {named}, which {calls_per_day} call(s) a day "
                "would not have: record the funding again first",
            )
    return None


# ---- hospital discharge (decision record 0097) -----------------------------------------------------
#
# The Discharge Hub handles 150-200 discharges a week; 65% of people leave on the day they become
# medically fit or the day after (000:63-68): the clock runs from the medically-fit date. Reablement
# comes before long-term care where the person has reablement potential (002:1767, 000:252-258), and
# when no provider is found in time the council's own Crisis Response (000:236-238) or reablement
# (000:240-244) covers the care: services of last resort, each with its own capacity.


@dataclass(frozen=True)
class DischargeRules:
    """How a discharge's dates are checked and when its fallback falls due (settings
    ``discharge_*``): the medically-fit date may be at most ``fit_ahead_days`` ahead (a planned
    discharge) and ``fit_backdate_days`` back; the fallback falls due ``fallback_after`` of UK clock
    time from the midnight starting the medically-fit day (36 hours: noon on day 1, leaving the afternoon to
    get the person home on the KPI's last day) - and never sooner than one offer window after the
    request."""

    fit_ahead_days: int = 14
    fit_backdate_days: int = 28
    fallback_after: dt.timedelta = dt.timedelta(hours=36)


# The one discharge pathway that is care at home (000:65-66: "home with support"): decision record 0120.
HOME_CARE_PATHWAY = 1


def discharge_refusal(
    *,
    pathway: int,
    medically_fit_on: dt.date,
    start_date: dt.date,
    today: dt.date,
    rules: DischargeRules,
    pathway_route: tuple[str, str] | None = None,
) -> Refusal | None:
    """Whether a discharge request is acceptable; a 422 naming its field when not. Only pathway 1
    ("home with support", 000:65-66) is care at home for this brokerage (decision record 0120):
    pathway 0 is home with no new support (nothing to broker), 2 a bedded rehabilitation setting and
    3 a care home - refused as not home care, the words naming ``pathway_route`` (what the pathway
    means, the route the Hub takes for it: deploy/reference/discharge.yaml). The medically-fit date
    is a UK date within the limits either side of ``today``; care cannot start before the person is
    medically fit."""
    if pathway != HOME_CARE_PATHWAY:
        means, route = pathway_route or (f"pathway {pathway}", "not brokered here")
        return Refusal(
            422,
            "discharge.pathway",
            f"pathway {pathway} is {means}, not care at home: {route}. Only pathway {HOME_CARE_PATHWAY} "
            "(home with support) is brokered as home care",
        )
    if medically_fit_on > today + dt.timedelta(days=rules.fit_ahead_days):
        return Refusal(
            422,
            "discharge.medically_fit_on",
            f"{medically_fit_on} is more than {rules.fit_ahead_days} days ahead (dates are UK dates)",
            "date-too-far-ahead",
        )
    if medically_fit_on < today - dt.timedelta(days=rules.fit_backdate_days):
        return Refusal(
            422,
            "discharge.medically_fit_on",
            f"{medically_fit_on} is more than {rules.fit_backdate_days} days ago (dates are UK dates)",
            "date-too-far-back",
        )
    if start_date < medically_fit_on:
        return Refusal(422, "start_date", f"{start_date} is before the person is medically fit on {medically_fit_on}")
    return None


def fallback_due_at(
    medically_fit_on: dt.date, requested_at: dt.datetime, rules: DischargeRules, window: dt.timedelta
) -> dt.datetime:
    """When a discharge still unplaced goes to the fallback: ``rules.fallback_after`` of UK clock time
    from the midnight that starts the medically-fit day (36 hours: noon UK time on day 1, on the days
    the clocks change too), but never before one offer ``window`` (the market's first chance) has run
    from the request."""
    wall = dt.datetime.combine(medically_fit_on, dt.time()) + rules.fallback_after
    return max(wall.replace(tzinfo=UK).astimezone(dt.UTC), requested_at + window)


def reablement_first(pathway: int, reablement_potential: bool) -> bool:
    """Reablement before long-term care: someone going home with support (pathway 1, 000:65-66) in
    whom the Hub saw reablement potential (002:1767: reablement was bypassed on discharge; 000:252-258)."""
    return pathway == 1 and reablement_potential


@dataclass(frozen=True)
class ServiceLoad:
    """An in-house service's capacity and what it covers now, in carer hours a week."""

    service: str
    capacity: Decimal
    committed: Decimal

    @property
    def free(self) -> Decimal:
        return max(self.capacity - self.committed, Decimal(0))


def choose_service(loads: Sequence[ServiceLoad], hours_per_week: Decimal, *, reablement_potential: bool) -> str | None:
    """The first in-house service (in the configured order) with the carer hours free for the
    package; reablement only for a person with reablement potential (000:241-243). None: all full."""
    for load in loads:
        if load.service == "reablement" and not reablement_potential:
            continue
        if load.free >= hours_per_week:
            return load.service
    return None


def fallback_candidates(loads: Sequence[ServiceLoad], *, reablement_potential: bool) -> list[str]:
    """The services the fallback looks at, in order (those reported full when none has room)."""
    return [x.service for x in loads if x.service != "reablement" or reablement_potential]


def referral_day(today: dt.date, medically_fit_on: dt.date) -> dt.date:
    """The day an in-house service's care begins: today, never before the person is medically fit."""
    return max(today, medically_fit_on)


def days_after_medically_fit(day: dt.date, medically_fit_on: dt.date) -> int:
    """Day 0 is the medically-fit day itself (000:66-68: "on the day or the day after")."""
    return max((day - medically_fit_on).days, 0)


# ---- service agreements: the hand-off to finance (decision records 0109, 0110) -------------------

# The above-band part's payer: a top-up's payer, else the council (an above-rate exception it approved).
TOP_UP_PAYERS = {"third_party": "third_party_top_up", "person": "person_top_up"}
# The request's coarse funding, when no funding record exists (decision 0089 keeps it on the spec).
REQUEST_FUNDERS = {"council": "council", "nhs": "nhs_discharge"}


@dataclass(frozen=True)
class PayerLine:
    """One payer's part of a week's cost (pounds): ``basis`` ``share`` (``percent`` of the cost at the
    band rate) or ``above_band`` (the part above the band rate)."""

    payer: str
    basis: Literal["share", "calls", "above_band"]
    percent: Decimal | None
    pounds_per_week: Decimal
    calls: tuple[int, ...] = ()


@dataclass(frozen=True)
class FundingPart:
    """Who pays from ``effective_from`` to ``effective_to`` (UK dates, inclusive; None: while the
    agreement lasts) under one agreement."""

    effective_from: dt.date
    effective_to: dt.date | None
    funder: str
    lines: tuple[PayerLine, ...]


@dataclass(frozen=True)
class AgreementTerms:
    """What a service agreement record says (decision record 0109): the council pays ``provider_id``
    ``hourly_rate`` pounds per hour for ``hours_per_week`` carer hours per week, from ``start_date`` to
    ``end_date`` (UK dates, inclusive; None: until further notice), split by ``funding``."""

    provider_id: str
    zone: str
    band: str
    hourly_rate: Decimal
    band_rate: Decimal
    hours_per_week: Decimal
    start_date: dt.date
    end_date: dt.date | None
    status: Literal["agreed", "cancelled"]
    cost_centre: str
    rate_card: str
    funding_revision: int
    funding: tuple[FundingPart, ...]

    @property
    def weekly_cost(self) -> Decimal:
        """Pounds per week: carer hours per week x pounds per hour, to the penny."""
        return (self.hours_per_week * self.hourly_rate).quantize(PENNY)


def payer_lines(
    *,
    hours_per_week: Decimal,
    hourly_rate: Decimal,
    band_rate: Decimal,
    period: Period,
    top_up_paid_by: str | None,
    calls_per_day: int | None = None,
) -> tuple[PayerLine, ...]:
    """A week's cost as payers' lines (decision 0089's :func:`weekly_cost`): each funder's named calls
    (basis ``calls``, decision 0121) and share of the cost at the band rate (pennies by largest
    remainder), then the part above the band rate to the top-up's payer or the council. The lines
    add up to the weekly cost exactly; their per cents (of the cost at the band rate, to two
    decimals, by largest remainder too) add up to exactly 100."""
    cost = weekly_cost(
        hours_per_week=hours_per_week,
        hourly_rate=hourly_rate,
        band_rate=band_rate,
        period=period,
        top_up_paid_by=top_up_paid_by,
        calls_per_day=calls_per_day,
    )
    percents = (
        split_pennies(Decimal(100), [w.percent for w, _ in cost.parts])
        if period.calls
        else [pct for _, pct in period.shares]  # as recorded
    )
    lines = [
        PayerLine(w.funder, w.basis, pct, amount, w.calls)
        for (w, amount), pct in zip(cost.parts, percents, strict=True)
    ]
    if cost.above_band > 0:
        payer = TOP_UP_PAYERS.get(top_up_paid_by or "", "council")
        lines.append(PayerLine(payer, "above_band", None, cost.above_band))
    return tuple(lines)


def agreement_funding(
    *,
    start_date: dt.date,
    end_date: dt.date | None,
    periods: Sequence[Period],
    hours_per_week: Decimal,
    hourly_rate: Decimal,
    band_rate: Decimal,
    top_up_paid_by: str | None,
    calls_per_day: int | None = None,
) -> tuple[FundingPart, ...]:
    """The funding record's ``periods`` (decision 0089) cut to an agreement's dates: one part per
    period that overlaps ``start_date``..``end_date``, each from the later of the two starts to the
    day before the next period (or the agreement's end). Days before the first period (a start
    brought forward after the funding was recorded) are the first period's. Raises ValueError for
    no periods."""
    if not periods:
        raise ValueError("an agreement needs at least one funding period")
    parts = []
    for i, period in enumerate(periods):
        begins = start_date if i == 0 else max(period.effective_from, start_date)
        following = periods[i + 1].effective_from - dt.timedelta(days=1) if i + 1 < len(periods) else None
        ends = min((d for d in (following, end_date) if d is not None), default=None)
        if ends is not None and ends < begins:
            continue
        lines = payer_lines(
            hours_per_week=hours_per_week,
            hourly_rate=hourly_rate,
            band_rate=band_rate,
            period=period,
            top_up_paid_by=top_up_paid_by,
            calls_per_day=calls_per_day,
        )
        parts.append(FundingPart(begins, ends, period.funder, lines))
    return tuple(parts)


def ending_terms(terms: AgreementTerms, last_day: dt.date) -> AgreementTerms:
    """The agreement ended after ``last_day`` (a UK date, the last day payable). Ending before it
    began means nothing was ever payable: the record is ``cancelled``, its dates kept."""
    if last_day < terms.start_date:
        return dataclasses.replace(terms, status="cancelled")
    return dataclasses.replace(terms, end_date=last_day)


def differs(current: AgreementTerms, proposed: AgreementTerms) -> bool:
    """Whether ``proposed`` says anything ``current`` does not: only then is a new version written
    (a correction supersedes; the same terms again are no record)."""
    return current != proposed


def overlap_days(start: dt.date, end: dt.date | None, week_start: dt.date) -> int:
    """Days of the week from Monday ``week_start`` (7 days) within ``start``..``end`` (inclusive)."""
    first = max(start, week_start)
    last = min(end or week_start + dt.timedelta(days=6), week_start + dt.timedelta(days=6))
    return max(0, (last - first).days + 1)


def weekly_commitment(
    agreements: Iterable[tuple[str, str, AgreementTerms]], week_start: dt.date
) -> dict[tuple[str, str], Decimal]:
    """The week's commitment from Monday ``week_start`` in pounds, by (provider, payer): each agreement
    in force (``status`` agreed; its latest version only - the caller's), each funding part's lines
    for the days of the week it covers (pounds per week x days / 7), summed, then rounded to the
    penny (half up). ``agreements``: (provider id, agreement id, terms). The sums are of pound-days
    (exact), divided by 7 once (:func:`commitment_pounds`): the brokerage's report sums them in
    SQL (repository.weekly_pound_days) and must give the same pennies."""
    sums: dict[tuple[str, str], Decimal] = {}
    for provider_id, _agreement_id, terms in agreements:
        if terms.status != "agreed":
            continue
        for part in terms.funding:
            days = overlap_days(part.effective_from, part.effective_to, week_start)
            if not days:
                continue
            for line in part.lines:
                key = (provider_id, line.payer)
                sums[key] = sums.get(key, Decimal(0)) + line.pounds_per_week * days
    return {k: commitment_pounds(v) for k, v in sorted(sums.items())}


def commitment_pounds(pound_days: Decimal) -> Decimal:
    """A week's commitment in pounds from its pound-days (pounds per week x days covered, summed):
    divided by the week's 7 days and rounded to the penny, half up."""
    return (pound_days / 7).quantize(PENNY, rounding="ROUND_HALF_UP")


def week_refusal(week: dt.date) -> Refusal | None:
    """The commitment report's week is named by its Monday (UK weeks run Monday to Sunday)."""
    if week.weekday() != 0:
        return Refusal(422, "week", f"{week} is a {week.strftime('%A')}; a week is named by its Monday")
    return None


EXPORT_SPAN_DAYS = 366


def export_refusal(recorded_from: dt.date, recorded_to: dt.date) -> Refusal | None:
    """An export covers the records written from ``recorded_from`` to ``recorded_to`` (UK dates,
    inclusive): in order, and at most :data:`EXPORT_SPAN_DAYS` days (a year and a day)."""
    if recorded_to < recorded_from:
        return Refusal(422, "recorded_to", f"{recorded_to} is before recorded_from {recorded_from}")
    if (recorded_to - recorded_from).days >= EXPORT_SPAN_DAYS:
        return Refusal(422, "recorded_to", f"an export covers at most {EXPORT_SPAN_DAYS} days")
    return None


# The finance system's import layout: one row per payer line of each record (docs/guide/finance.md has
# the data dictionary; tests read the columns from there). Dates dd/mm/yyyy (UK), pounds with 2 decimals.
EXPORT_COLUMNS = (
    "AgreementRef",
    "AgreementVersion",
    "RecordRef",
    "SupersedesRecordRef",
    "RecordReason",
    "AgreementStatus",
    "ClientRef",
    "SupplierRef",
    "SupplierName",
    "ServiceType",
    "CostCentre",
    "UnitType",
    "UnitCost",
    "UnitsPerWeek",
    "WeeklyCost",
    "AgreementStartDate",
    "AgreementEndDate",
    "FundingStartDate",
    "FundingEndDate",
    "Funder",
    "FundingBasis",
    "FundingPercent",
    "FundingCalls",
    "FundingWeeklyAmount",
    "RecordedAt",
)


def uk_date_text(day: dt.date | None) -> str:
    """dd/mm/yyyy, the date form UK finance imports take; empty for none."""
    return "" if day is None else day.strftime("%d/%m/%Y")


def export_rows(
    *,
    record_id: str,
    agreement_id: str,
    version: int,
    supersedes: str | None,
    reason: str,
    package_id: str,
    terms: AgreementTerms,
    supplier_name: str,
    service_type: str,
    recorded_at: str,
) -> list[dict[str, str]]:
    """A record as the import's rows (:data:`EXPORT_COLUMNS`): one per payer line of each funding part,
    so a finance system that takes one funder per line sees the split; the agreement's columns repeat
    on each. ``ClientRef`` is the package id: the finance team needs no person's details."""
    common = {
        "AgreementRef": agreement_id,
        "AgreementVersion": str(version),
        "RecordRef": record_id,
        "SupersedesRecordRef": supersedes or "",
        "RecordReason": reason,
        "AgreementStatus": terms.status,
        "ClientRef": package_id,
        "SupplierRef": terms.provider_id,
        "SupplierName": supplier_name,
        "ServiceType": service_type,
        "CostCentre": terms.cost_centre,
        "UnitType": "hour",
        "UnitCost": f"{terms.hourly_rate:.2f}",
        "UnitsPerWeek": f"{terms.hours_per_week:.2f}",
        "WeeklyCost": f"{terms.weekly_cost:.2f}",
        "AgreementStartDate": uk_date_text(terms.start_date),
        "AgreementEndDate": uk_date_text(terms.end_date),
        "RecordedAt": recorded_at,
    }
    rows = []
    for part in terms.funding:
        for line in part.lines:
            rows.append(
                common
                | {
                    "FundingStartDate": uk_date_text(part.effective_from),
                    "FundingEndDate": uk_date_text(part.effective_to),
                    "Funder": line.payer,
                    "FundingBasis": line.basis,
                    "FundingPercent": "" if line.percent is None else f"{line.percent:.2f}",
                    "FundingCalls": " ".join(str(c) for c in line.calls),
                    "FundingWeeklyAmount": f"{line.pounds_per_week:.2f}",
                }
            )
    if not rows:
        blank = dict.fromkeys(
            ("FundingStartDate", "FundingEndDate", "Funder", "FundingBasis", "FundingPercent", "FundingCalls"), ""
        )
        rows.append(common | blank | {"FundingWeeklyAmount": ""})
    return [{c: row[c] for c in EXPORT_COLUMNS} for row in rows]
