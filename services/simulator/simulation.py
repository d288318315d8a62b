"""The policy simulator: a year of synthetic county demand replayed through the brokerage's own
allocation rules under a simulated clock. Pure: no I/O, no wall clock, no database.

What is the brokerage's code and what is modelled here:

- **The brokerage's rules, called as they are** (``services/brokerage/domain.py``): which tier
  is offered to whom (:func:`~services.brokerage.domain.plan_offer`: the zone's policy,
  eligibility with capacity, not the same provider twice in a cycle, never one that handed the
  package back), the quality rating, early close (``outcome_settled``), ranking and the award
  (``rank_bids``, ``choose_winner``, eligibility checked again at the award), above-rate
  exceptions (``best_above_rate``), the unplaced queue re-offered on a schedule, hand-backs
  reopening a package without that provider and counting against its rating.
- **The providers' automatic adapters, called as they are** (``services/providers/domain.py``:
  ``automatic_answer`` declines for zone, band, skills, call times, package size, capacity).
- **Modelled** (the parameters below, all settable from the command line): when packages
  arrive, how long care lasts, how long providers take to answer (some never do), declines on
  top of the adapters' rules that grow with rurality (travel, rounds that do not fit), the
  price each provider will work for per band, hand-backs, brokers' decisions on exceptions, and
  the existing caseload that ends over the year and frees hours.

A discrete-event loop on a heap: events are (time in hours, sequence, kind, data); the sequence
breaks ties so the order - and so every result - depends only on the seeds. Shortcuts that
change no outcome keep a year under a minute (rounds of foreseen declines settled at once, plans
reused while what decides them is the same); ``Simulation(..., shortcuts=False)`` replays
without them, and the tests check both give the same result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
import random
import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from schemas.events import PackageSpec, ProviderProfile
from schemas.vocabulary import Band, DeclineReason, Tier, Urgency
from services.brokerage import domain
from services.operations.kpis import percentile, shares_and_hhi
from services.providers.domain import AutomaticRules, Bid, Decline, automatic_answer, standing_decline
from services.runtime import clock
from services.runtime.reference import Framework, PolicyEntry, RateCard
from services.simulator.calibration import Calibration
from services.simulator.synthetic import package_request

START_DAY = dt.date(2021, 4, 1)  # the 2020-21 rate card is in force
# The simulated clock starts at midnight UK time; its days are UK days (23 or 25 hours long on the
# clock changes), as the brokerage's business dates are (services/runtime/clock.py).
START = clock.uk_day_start(START_DAY)


def day_hours(day: int, start_day: dt.date = START_DAY) -> float:
    """Hours from the start of UK day ``start_day`` (default 1 April 2021) to the start of UK day
    ``day`` after it."""
    start = clock.uk_day_start(start_day)
    return (clock.uk_day_start(start_day + dt.timedelta(days=day)) - start).total_seconds() / 3600


FRAMEWORK_POLICY = "framework"  # each zone's policy as framework.yaml configures it

# ---- parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemandParams:
    """The county's demand. Defaults: ~10,000 packages a year (domain.md: 150-200 hospital
    discharges a week, most going home with support; home care starts up in summer, 004:1011)."""

    seed: int = 2021
    days: int = 365
    discharges_per_week: float = 160.0
    step_down_per_week: float = 12.0
    community_per_week: float = 20.0
    summer_surge: float = 0.35  # extra demand at the mid-July peak, as a share of the year's average
    mean_care_weeks: float = 10.0  # how long a package lasts (exponential); also the existing caseload's
    hand_back_share: float = 0.05  # share of placements a provider hands back before the care ends
    notice_days: int = 14  # notice a provider gives when it hands a package back


@dataclass(frozen=True)
class MarketParams:
    """The providers: the synthetic market of ``homecare reference generate-market`` (same seed,
    same market as deploy/reference/providers.yaml) and how they behave."""

    seed: int = 2021
    capacity_scale: float = 2.5  # the seed market is ~11,000 h/week; the county's ~2,000 people need ~28,000
    decline_urban: float = 0.10  # declines beyond the adapters' rules (travel, rounds that do not fit)...
    decline_fringe: float = 0.18
    decline_rural: float = 0.32
    decline_isolated: float = 0.48  # ...growing with rurality
    prime_pickiness: float = 1.25  # Primes decline rural/isolated work this much more often (cherry-picking)
    # Behaviour that responds to the policy (decision 0086); 0 for each: providers answer alike
    # under every policy, as before.
    prime_obligation: float = 0.5  # share of its own declines a Prime does not make on its zone's Prime round
    cherry_picking: float = 0.5  # chance of declining rural/isolated work while urban/fringe work is on offer to it
    cherry_window_hours: float = (
        168.0  # "on offer": urban/fringe work offered to it this long ago or less (a rota week)
    )
    density_effect: float = 1.0  # declines in a zone fall by this times the provider's share of hours placed there
    no_answer: float = 0.08  # share of offers never answered (the window closes on them)
    mean_answer_minutes: float = 45.0  # how long a provider takes to answer (exponential)
    price_floor_low: float = 0.90  # each provider's lowest acceptable rate per band, as a share of the
    price_floor_high: float = 1.15  # 2020-21 band rate, drawn uniformly from [low, high]; over 10% above: declines
    exception_approval: float = 0.6  # share of above-rate exceptions a broker approves
    exception_decision_hours: float = 8.0


@dataclass(frozen=True)
class Policy:
    """One way of running the framework: the allocation policy and its configurable parts."""

    name: str
    allocation: str = FRAMEWORK_POLICY  # prime-supplementary, open-framework, or framework (per zone)
    windows_hours: dict[Urgency, float] = field(
        default_factory=lambda: {
            Urgency.hospital_discharge: 2.0,
            Urgency.reablement_step_down: 4.0,
            Urgency.community: 24.0,
        }
    )
    quality_weights: domain.QualityWeights = field(default_factory=domain.QualityWeights)
    rates: dict[Band, Decimal] | None = None  # a new rate card; None: the framework's
    reoffer_hours: float = 6.0


# ---- the demand and the market ------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    package_id: int
    at: float  # hours since the simulation's start
    spec: PackageSpec
    care_weeks: float
    hand_back_after: float | None  # hours into the care, or None


ZONE_WEIGHT = {"large": 3.0, "medium": 1.6, "small_town": 0.8, "small_rural": 0.7, "rural_free": 0.7}
DAY_SHAPE = [0.2] * 8 + [1.6] * 10 + [0.4] * 6  # requests come in office hours mostly


def _seasonal(day: int, surge: float) -> float:
    """1 + a bump peaking mid-July (day 105 from 1 April)."""
    return 1 + surge * math.exp(-0.5 * ((day - 105) / 30) ** 2)


def generate_demand(framework: Framework, params: DemandParams) -> list[Demand]:
    """Poisson arrivals per urgency per day, with the summer surge; scaled so the year's
    average weekly counts are the parameters. Same seed, same demand."""
    rng = random.Random(params.seed)
    zones = sorted(framework.zones)
    weights = [ZONE_WEIGHT[framework.zones[z].size] for z in zones]
    norm = sum(_seasonal(d, params.summer_surge) for d in range(params.days)) / params.days
    per_week = {
        Urgency.hospital_discharge: params.discharges_per_week,
        Urgency.reablement_step_down: params.step_down_per_week,
        Urgency.community: params.community_per_week,
    }
    hours_of_day = list(range(24))
    demand: list[Demand] = []
    for day in range(params.days):
        factor = _seasonal(day, params.summer_surge) / norm
        for urgency, weekly in per_week.items():
            for _ in range(_poisson(rng, weekly / 7 * factor)):
                at = day_hours(day) + rng.choices(hours_of_day, DAY_SHAPE)[0] + rng.random()
                zone = rng.choices(zones, weights)[0]
                body = package_request(rng, framework, zone)
                when = START + dt.timedelta(hours=at)
                start = clock.uk_date(when) + dt.timedelta(
                    days=rng.choice([0, 1, 1, 2])
                    if urgency == Urgency.hospital_discharge
                    else rng.choice([1, 2, 7, 14])
                )
                spec = PackageSpec(
                    zone=zone,
                    band=body["band"],
                    postcode_district=body["postcode_district"],
                    hours_per_week=Decimal(body["hours_per_week"]),
                    visits=body["visits"],
                    needs=body["needs"],
                    urgency=urgency,
                    start_date=start,
                    funding=body["funding"],
                )
                care_weeks = rng.expovariate(1 / params.mean_care_weeks)
                hand_back = rng.random() * care_weeks * 168 if rng.random() < params.hand_back_share else None
                demand.append(Demand(0, at, spec, care_weeks, hand_back))
    demand.sort(key=lambda d: d.at)
    return [dataclasses.replace(d, package_id=i) for i, d in enumerate(demand)]


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the tens a day here."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Market:
    profiles: dict[str, ProviderProfile]
    rules: dict[str, AutomaticRules]
    price_floor: dict[str, dict[Band, Decimal]]
    baseline: dict[str, Decimal]  # hours committed to the caseload that predates the simulation


def build_market(framework: Framework, seed_providers: list[dict], params: MarketParams) -> Market:
    rng = random.Random(params.seed)
    scale = Decimal(str(params.capacity_scale))
    base_rates = framework.rate_card_on(START_DAY).rates
    profiles, rules, floors, baseline = {}, {}, {}, {}
    for entry in seed_providers:
        data = {k: v for k, v in entry.items() if k != "adapter"}
        data["weekly_capacity_hours"] = (Decimal(data["weekly_capacity_hours"]) * scale).quantize(Decimal(1))
        data["committed_hours"] = (Decimal(data["committed_hours"]) * scale).quantize(Decimal(1))
        profile = ProviderProfile.model_validate(data)
        pid = profile.provider_id
        profiles[pid] = profile
        rules[pid] = AutomaticRules.model_validate(entry.get("adapter") or {})
        floors[pid] = {
            b: (r * Decimal(str(rng.uniform(params.price_floor_low, params.price_floor_high)))).quantize(
                Decimal("0.01")
            )
            for b, r in base_rates.items()
        }
        baseline[pid] = profile.committed_hours
    return Market(profiles, rules, floors, baseline)


def policy_framework(framework: Framework, policy: Policy, start_day: dt.date = START_DAY) -> Framework:
    """The framework as this policy runs it from ``start_day``: one allocation policy everywhere
    (or the configured one per zone), and the policy's rate card if it has one (the card in force
    on ``start_day`` with the policy's rates over it)."""
    policies = framework.policies
    if policy.allocation != FRAMEWORK_POLICY:
        domain.tier_ladder(policy.allocation, zone_has_prime=True)  # an unknown policy fails here, at once
        policies = (PolicyEntry(min(START_DAY, start_day), policy.allocation, {}),)
    cards = framework.rate_cards
    if policy.rates:
        current = framework.rate_card_on(start_day).rates
        cards = (RateCard(f"{policy.name}-card", min(START_DAY, start_day), current | policy.rates),)
    return dataclasses.replace(framework, policies=policies, rate_cards=cards)


# ---- the simulation -------------------------------------------------------------------------

ARRIVE, ANSWER, WINDOW, DECIDE, REOFFER, HAND_BACK, END, DAY = range(8)
WAITING = ("offered", "unplaced", "awaiting_approval")


# A provider's answer to an offer: (kind, pounds per hour, earliest start, decline reason).
ProviderAnswer = tuple[Literal["bid", "decline"], Decimal | None, dt.date | None, str | None]


@dataclass
class Placement:
    """Who gives a package's care, at what rate (pounds per hour), and since when its spend was last
    counted (simulated hours)."""

    provider: str
    rate: Decimal
    accrued_until: float


@dataclass
class Case:
    """One package as the brokerage sees it."""

    demand: Demand
    spec: PackageSpec
    policy: str
    band_rate: Decimal
    neighbours: frozenset[str]
    status: str = "requested"
    cycle: int = 0
    round: int = 0
    tier: Tier | None = None
    round_open: bool = False
    state: domain.RoundState = field(default_factory=lambda: domain.RoundState(offered=[]))  # the current round
    quality: dict[str, Decimal] = field(default_factory=dict)
    offered_this_cycle: set[str] = field(default_factory=set)
    excluded: set[str] = field(default_factory=set)  # providers that handed it back
    cycle_bids: list[domain.Answer] = field(default_factory=list)
    cycle_quality: dict[str, Decimal] = field(default_factory=dict)
    holds: dict[str, Decimal] = field(default_factory=dict)
    placement: Placement | None = None  # while placed
    waiting_since: float = 0.0
    care_left: float = 0.0  # hours of care still to give
    placement_started: float = 0.0
    placements: int = 0
    first_wait: float | None = None
    hand_backs: int = 0
    above_rate: bool = False
    candidates: list[str] | None = None
    plans: dict[tuple, tuple[Tier | None, list[str]]] = field(default_factory=dict)  # see Simulation._plan
    standing_declines: dict[str, Decline | None] = field(default_factory=dict)  # see Simulation._foreseen


class Simulation:
    def __init__(
        self,
        framework: Framework,
        demand: list[Demand],
        market: Market,
        policy: Policy,
        market_params: MarketParams,
        demand_params: DemandParams,
        *,
        shortcuts: bool = True,
        start_day: dt.date = START_DAY,
        calibration: Calibration | None = None,
    ) -> None:
        self.start_day, self.start = start_day, clock.uk_day_start(start_day)
        # The providers' answers: without a calibration, the adapters' rules and the modelled
        # declines (MarketParams); with one (a replay), the recorded decline rates.
        self.calibration = calibration
        self.framework = policy_framework(framework, policy, start_day)
        self.policy = policy
        self.demand = demand
        self.market = dataclasses.replace(market, profiles=dict(market.profiles), baseline=dict(market.baseline))
        self.mp = market_params
        self.dp = demand_params
        self.rng = random.Random(market_params.seed * 7919 + 1)
        self.windows = policy.windows_hours
        self.decline_p = {
            Band.urban: market_params.decline_urban,
            Band.fringe: market_params.decline_fringe,
            Band.rural: market_params.decline_rural,
            Band.isolated: market_params.decline_isolated,
        }
        self.held: dict[str, Decimal] = defaultdict(Decimal)
        # Awards per zone, oldest first, and their counts per provider: the ranking's tie-break.
        self.awards: dict[str, deque[tuple[float, str]]] = defaultdict(deque)
        self.award_counts: dict[str, Counter] = defaultdict(Counter)
        self.heap: list = []
        # Each provider's free hours as the brokerage's eligibility rules count them (capacity less
        # committed hours), kept with the profile: _plan's key.
        self.free = {pid: p.weekly_capacity_hours - p.committed_hours for pid, p in self.market.profiles.items()}
        # Each provider's quality rating, scored again when its hand-back record changes (the only
        # part of it that changes in a run).
        self.quality = {pid: domain.quality_score(p, policy.quality_weights) for pid, p in self.market.profiles.items()}
        self.seq = 0
        self.now = 0.0
        self.cases: dict[int, Case] = {}
        self.open_cases: list[Case] = []  # the cases whose care has not ended (the daily snapshot's)
        self.horizon = day_hours(demand_params.days, start_day)
        # Behaviour that responds to the policy (decision 0086): when each provider was last offered
        # urban/fringe work it could take, and the hours placed per zone (each provider's share of
        # them is its density there).
        self.tempted_at: dict[str, float] = {}
        self.zone_hours: dict[str, float] = defaultdict(float)
        self.responsive: Counter[str] = Counter()  # cherry_picked declines, bids on obligation
        # The replay's shortcuts (foreseen declines, reused plans, candidates screened once); without
        # them every answer is an event and every round calls plan_offer with every provider near the
        # zone - the same results, much more slowly.
        self.shortcuts = shortcuts
        self.foreseen_rounds = self.reused_plans = 0  # how often they were taken (tests)
        # Who can be near a zone: its own providers and its neighbours' (what repo.providers_serving reads).
        self.nearby: dict[str, list[str]] = {}
        for zone in self.framework.zones.values():
            area = {zone.id, *zone.adjacent}
            self.nearby[zone.id] = sorted(p for p, prof in self.market.profiles.items() if area & set(prof.zones))
        # Measures.
        self.events = 0
        self.rounds = 0
        self.offers: Counter[str] = Counter()  # by band
        self.first_offers: Counter[str] = Counter()  # by band, a package's first offer cycle only
        self.first_declines: dict[str, Counter[str]] = defaultdict(Counter)
        self.declines: dict[str, Counter[str]] = defaultdict(Counter)  # band -> reason -> count
        self.declines_by_tier: dict[str, Counter[str]] = defaultdict(Counter)  # provider tier -> band -> count
        self.no_answers = 0
        self.waits: dict[str, list[float]] = defaultdict(list)  # urgency -> hours from request to first placement
        self.replacement_waits: list[float] = []  # hours from a hand-back to the next placement
        self.hand_backs = 0
        self.exceptions: Counter[str] = Counter()  # requested / approved / rejected
        self.unplacings = 0
        self.spend: dict[str, Decimal] = defaultdict(Decimal)  # band -> pounds over the simulated period
        # zone -> provider -> carer hours per week placed
        self.placed_hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        # The same for placements in the period's last quarter: concentration as volumes have built.
        self.late_hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        # Hours from request to first placement by band (cherry-picking shows in the far bands).
        self.waits_by_band: dict[str, list[float]] = defaultdict(list)
        self.placements_by_tier: Counter[str] = Counter()
        self.rounds_by_zone: dict[str, Counter[str]] = defaultdict(Counter)  # zone -> tier -> rounds opened
        self.daily: list[dict] = []

    # -- the loop --

    def schedule(self, at: float, kind: int, *data: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, data))

    def run(self) -> Simulation:
        for d in self.demand:
            self.schedule(d.at, ARRIVE, d)
        for day in range(self.dp.days + 1):
            self.schedule(day_hours(day, self.start_day), DAY, day)
        handlers: dict[int, Callable[..., None]] = {
            ARRIVE: self.arrive,
            ANSWER: self.answer,
            WINDOW: self.window,
            DECIDE: self.decide,
            REOFFER: self.reoffer,
            HAND_BACK: self.hand_back,
            END: self.end_care,
            DAY: self.day,
        }
        while self.heap:
            at, _, kind, data = heapq.heappop(self.heap)
            if at > self.horizon:
                break
            self.now = at
            self.events += 1
            handlers[kind](*data)
        for case in self.cases.values():  # spend of care still running at the end of the period
            if case.status == "placed" and case.placement is not None:
                self._accrue(case, case.placement, self.horizon)
        return self

    def clock(self) -> dt.datetime:
        return self.start + dt.timedelta(hours=self.now)

    def _candidates(self, case: Case) -> list[str]:
        """The providers near the package's zone that nothing but capacity could exclude. Only
        capacity changes during a run, so screening these gives the same eligible providers as
        screening everyone near the zone (what the brokerage reads), at a fraction of the cost."""
        if case.candidates is None:
            case.candidates = [
                p
                for p in self.nearby[case.spec.zone]
                if not domain.standing_exclusions(case.spec, self.market.profiles[p])
                or not domain.standing_exclusions(case.spec, self.market.profiles[p], from_zones=case.neighbours)
            ]
        return case.candidates

    def _still_eligible(self, case: Case, bidders: Iterable[str]) -> set[str]:
        """Who of the bidders may win now (the award only ever looks at bidders)."""
        profiles = [self.market.profiles[provider_id] for provider_id in bidders]
        return domain.eligible_now(case.spec, profiles, case.neighbours)

    def _set_committed(self, provider_id: str, delta: Decimal) -> None:
        profile = self.market.profiles[provider_id]
        profile = self.market.profiles[provider_id] = profile.model_copy(
            update={"committed_hours": max(Decimal(0), profile.committed_hours + delta)}
        )
        self.free[provider_id] = profile.weekly_capacity_hours - profile.committed_hours

    # -- the brokerage's side: the same steps as services/brokerage/handlers.py --

    def arrive(self, d: Demand) -> None:
        day = clock.uk_date(self.clock())
        card = self.framework.rate_card_on(day)
        zone = self.framework.zones[d.spec.zone]
        case = Case(
            d,
            d.spec,
            self.framework.policy_on(d.spec.zone, day),
            card.rates[d.spec.band],
            frozenset(zone.adjacent),
            waiting_since=self.now,
            care_left=d.care_weeks * 168,
        )
        self.cases[d.package_id] = case
        self.open_cases.append(case)
        self.offer_next_tier(case, after=None)

    def _plan(self, case: Case, after: Tier | None) -> tuple[Tier | None, list[str]]:
        """``domain.plan_offer`` for the package: the tier to offer and to whom (None: the ladder is
        spent). An unplaced package is re-offered every few hours for as long as it waits, mostly to
        the same market: each plan is kept and reused while what decides it is the same - the tier it
        follows, and which candidates may be offered it now (the free hours for it, not offered it
        this cycle, never handed it back). Everything else plan_offer reads is fixed for the run:
        the candidates' standing, tiers and zones, the package's zone, band, needs and policy."""
        candidates = self._candidates(case)
        hours, free, offered, excluded = case.spec.hours_per_week, self.free, case.offered_this_cycle, case.excluded
        key = (after, tuple([p for p in candidates if free[p] >= hours and p not in offered and p not in excluded]))
        plan = case.plans.get(key) if self.shortcuts else None
        if plan is not None:
            self.reused_plans += 1
        else:
            not_again = offered | excluded
            if len(case.plans) > 256:  # a bound on memory: the market has moved on from most of these
                case.plans.clear()
            profiles = self.market.profiles
            everyone = candidates if self.shortcuts else self.nearby[case.spec.zone]  # as the brokerage reads them
            offer = domain.plan_offer(
                case.spec,
                [profiles[p] for p in everyone],
                policy=case.policy,
                zone_has_prime=case.spec.zone not in self.framework.no_prime_zones,
                neighbours=case.neighbours,
                after=after,
                not_again=not_again,
            )
            plan = case.plans[key] = (offer.tier, [p.provider_id for p in offer.offered])
        return plan

    def offer_next_tier(self, case: Case, *, after: Tier | None) -> None:
        tier, ids = self._plan(case, after)
        if tier is None:
            if after is not None and self.request_exception(case):
                return
            self.unplace(case)
            return
        case.status, case.tier, case.round, case.round_open = "offered", tier, case.round + 1, True
        case.state = domain.RoundState(offered=ids)
        case.quality = {pid: self.quality[pid] for pid in ids}
        case.cycle_quality |= case.quality
        case.offered_this_cycle |= set(ids)
        self.rounds += 1
        self.rounds_by_zone[case.spec.zone][tier.value] += 1
        self.offers[case.spec.band] += len(ids)
        if case.cycle == 0:
            self.first_offers[case.spec.band] += len(ids)
        self._attract(case, ids)
        closes = self.now + self.windows[case.spec.urgency]
        answers = []  # (provider, when it answers); the draws in the same order either way
        calibrated = self.calibration
        minutes = calibrated.mean_answer_minutes if calibrated else self.mp.mean_answer_minutes
        for pid in ids:
            if self.rng.random() < (calibrated.no_answer_rate(pid) if calibrated else self.mp.no_answer):
                self.no_answers += 1
                continue
            answers.append((pid, self.now + self.rng.expovariate(60 / minutes)))
        declines = self._foreseen(case, ids) if self.shortcuts else None
        if declines is None:
            self.schedule(closes, WINDOW, case, case.round)  # first: it comes before an answer at the same time
            for pid, at in answers:
                self.schedule(at, ANSWER, case, case.round, pid)
        else:
            self._foreseen_round(case, closes, answers, declines, everyone_answers=len(answers) == len(ids))

    def _foreseen(self, case: Case, ids: list[str]) -> list[Decline] | None:
        """Each offered provider's answer when all of them are declines known in advance: what the
        adapter's rules decline whatever the caseload (``standing_decline``: zone, band, skills,
        call times, package size). Those never depend on the clock or the market, and the
        provider's side draws nothing at random for a decline. Most of the year's rounds are
        these: the waiting list's large packages re-offered every few hours to providers whose
        adapters turn them down. None when any answer could be a bid (or a capacity decline), and
        always in a calibrated replay (no adapters' rules: every answer is drawn)."""
        if self.calibration is not None:
            return None
        known = case.standing_declines
        declines = []
        for pid in ids:
            if pid not in known:
                known[pid] = standing_decline(
                    self.market.profiles[pid], self.market.rules[pid], case.spec, neighbouring=case.neighbours
                )
            decline = known[pid]
            if decline is None:
                return None
            declines.append(decline)
        return declines

    def _foreseen_round(
        self,
        case: Case,
        closes: float,
        answers: list[tuple[str, float]],
        declines: list[Decline],
        *,
        everyone_answers: bool,
    ) -> None:
        """A round of foreseen declines, settled at once with the outcome its answer events would
        have had: the declines that arrive while it is open (before the window closes and within the
        period) are counted, and it closes when the last of them is in (``outcome_settled``: nobody
        pending) or else at the window - through the same close_round. Late answers change nothing
        in the replay either, nor does the window of a round already closed. ``events`` still counts
        the answer and window events the loop would have taken."""
        self.foreseen_rounds += 1
        profiles = self.market.profiles
        reasons = dict(zip(case.state.offered, declines, strict=True))
        last = max((at for _, at in answers), default=closes)
        settles_early = everyone_answers and last < closes
        for pid, at in answers:
            if at <= self.horizon:
                self.events += 1
                if at < closes:
                    self._decline(case, profiles[pid], reasons[pid].reason)
        if settles_early:
            # This event stands in for the last answer's (same time, same place among the events),
            # and the window's, which would find the round closed, is left out.
            self.schedule(last, WINDOW, case, case.round)
            self.events += (closes <= self.horizon) - (last <= self.horizon)
        else:
            self.schedule(closes, WINDOW, case, case.round)

    def answer(self, case: Case, offer_round: int, provider_id: str) -> None:
        if not case.round_open or case.round != offer_round:
            return  # late: part of the record, changes nothing
        kind, rate, start, reason = self.provider_answer(case, provider_id)
        answer = domain.Answer(
            provider_id,
            kind,
            self.clock(),
            hourly_rate=rate,
            earliest_start=start,
            reason=reason,
            offer_round=case.round,
        )
        case.state.answers[provider_id] = answer
        if kind == "bid":
            case.cycle_bids.append(answer)
        if domain.outcome_settled(case.state, case.quality, case.band_rate):
            self.close_round(case)

    def window(self, case: Case, offer_round: int) -> None:
        if case.round_open and case.round == offer_round:
            self.close_round(case)

    def _standing(self, case: Case, provider_id: str) -> Decline | None:
        known = case.standing_declines
        if provider_id not in known:
            known[provider_id] = standing_decline(
                self.market.profiles[provider_id],
                self.market.rules[provider_id],
                case.spec,
                neighbouring=case.neighbours,
            )
        return known[provider_id]

    def _attract(self, case: Case, ids: list[str]) -> None:
        """An urban or fringe package offered to providers able to take it (no standing decline
        of their adapters) tells them such work is coming their way: for ``cherry_window_hours``
        they may turn rural and isolated work down to keep room for it (``cherry_picking``). Only
        what the providers could take counts, so a round of foreseen declines tempts nobody, with
        or without the shortcuts."""
        if self.mp.cherry_picking <= 0 or case.spec.band not in (Band.urban, Band.fringe):
            return
        for pid in ids:
            if self.calibration is not None or self._standing(case, pid) is None:
                self.tempted_at[pid] = self.now

    def close_round(self, case: Case) -> None:
        case.round_open = False
        ranked = domain.rank_bids(case.state.answers.values(), case.quality, case.band_rate, self._tie_break(case))
        bidders = [b.answer.provider_id for b in ranked]
        still = self._still_eligible(case, bidders) if ranked else set()  # no bids: no winner
        winner = domain.choose_winner(ranked, still)
        if winner is not None:
            self.place(case, winner.answer)
            return
        self.offer_next_tier(case, after=case.tier)

    def request_exception(self, case: Case) -> bool:
        if not case.cycle_bids:
            return False  # no bid in this cycle, none above the rate
        ranked = domain.rank_bids(case.cycle_bids, case.cycle_quality, case.band_rate, self._tie_break(case))
        still = self._still_eligible(case, [b.provider_id for b in case.cycle_bids])
        if domain.best_above_rate(ranked, still) is None:
            return False
        case.status = "awaiting_approval"
        self.exceptions["requested"] += 1
        self.schedule(self.now + self.mp.exception_decision_hours, DECIDE, case)
        return True

    def decide(self, case: Case) -> None:
        if case.status != "awaiting_approval":
            return
        best = None
        if self.rng.random() < self.mp.exception_approval:
            ranked = domain.rank_bids(case.cycle_bids, case.cycle_quality, case.band_rate, self._tie_break(case))
            still = self._still_eligible(case, [b.provider_id for b in case.cycle_bids])
            best = domain.best_above_rate(ranked, still)
        if best is None:
            self.exceptions["rejected"] += 1
            self.unplace(case)
            return
        self.exceptions["approved"] += 1
        case.above_rate = True
        self.place(case, best.answer)

    def unplace(self, case: Case) -> None:
        self._release_holds(case)
        case.status = "unplaced"
        self.unplacings += 1
        self.schedule(self.now + self.policy.reoffer_hours, REOFFER, case, case.cycle)

    def reoffer(self, case: Case, cycle: int) -> None:
        if case.status != "unplaced" or case.cycle != cycle:
            return
        self._new_cycle(case)
        self.offer_next_tier(case, after=None)

    def _new_cycle(self, case: Case) -> None:
        case.cycle += 1
        case.tier = None
        case.offered_this_cycle = set()
        case.cycle_bids, case.cycle_quality = [], {}

    def _tie_break(self, case: Case) -> domain.TieBreak:
        """The brokerage's tie-break now: each provider's awards in the package's zone over the last
        12 weeks (awards older than that dropped as the clock passes them), and the draw seeded by
        the package (as repo.bidders_now and handlers._bidders_now give the brokerage)."""
        zone = case.spec.zone
        recent, counts = self.awards[zone], self.award_counts[zone]
        horizon = self.now - domain.AWARD_SPREAD_WINDOW.total_seconds() / 3600
        while recent and recent[0][0] < horizon:
            counts[recent.popleft()[1]] -= 1
        return domain.TieBreak(counts, str(case.demand.package_id))

    def place(self, case: Case, bid: domain.Bid) -> None:
        pid = bid.provider_id
        self.awards[case.spec.zone].append((self.now, pid))
        self.award_counts[case.spec.zone][pid] += 1
        self._release_holds(case)
        self._set_committed(pid, case.spec.hours_per_week)
        case.status, case.placement = "placed", Placement(pid, bid.hourly_rate, self.now)
        wait = self.now - case.waiting_since
        if case.first_wait is None:
            case.first_wait = wait
            self.waits[case.spec.urgency].append(wait)
            self.waits_by_band[case.spec.band].append(wait)
        else:
            self.replacement_waits.append(wait)
        self.placed_hours[case.spec.zone][pid] += float(case.spec.hours_per_week)
        self.zone_hours[case.spec.zone] += float(case.spec.hours_per_week)
        if self.now >= 0.75 * self.horizon:
            self.late_hours[case.spec.zone][pid] += float(case.spec.hours_per_week)
        self.placements_by_tier[case.tier.value if case.tier else "exception"] += 1
        case.placements += 1
        case.placement_started = self.now
        self.schedule(self.now + case.care_left, END, case, case.placements)
        after = case.demand.hand_back_after
        if after is not None and case.placements == 1 and after < case.care_left:
            self.schedule(self.now + max(after, 24.0), HAND_BACK, case, case.placements)

    def hand_back(self, case: Case, placement: int) -> None:
        if case.status != "placed" or case.placements != placement or case.placement is None:
            return
        provider_id = case.placement.provider
        self._accrue(case, case.placement, self.now)
        case.care_left -= self.now - case.placement_started
        self._set_committed(provider_id, -case.spec.hours_per_week)
        profile = self.market.profiles[provider_id]
        profile = self.market.profiles[provider_id] = profile.model_copy(
            update={"hand_backs_12m": profile.hand_backs_12m + 1}
        )
        self.quality[provider_id] = domain.quality_score(profile, self.policy.quality_weights)
        self.hand_backs += 1
        case.hand_backs += 1
        case.excluded.add(provider_id)
        case.placement = None
        start = max(case.spec.start_date, clock.uk_date(self.clock() + dt.timedelta(days=self.dp.notice_days)))
        case.spec = case.spec.model_copy(update={"start_date": start})
        case.standing_declines.clear()  # only the start date changed; cheap to be sure
        case.waiting_since = self.now
        self._new_cycle(case)
        self.offer_next_tier(case, after=None)

    def end_care(self, case: Case, placement: int) -> None:
        if case.status == "placed" and case.placements == placement and case.placement is not None:
            self._accrue(case, case.placement, self.now)
            self._set_committed(case.placement.provider, -case.spec.hours_per_week)
            case.status = "ended"

    def _accrue(self, case: Case, placement: Placement, until: float) -> None:
        weeks = Decimal(str(round((until - placement.accrued_until) / 168, 4)))
        self.spend[case.spec.band] += placement.rate * case.spec.hours_per_week * weeks
        placement.accrued_until = until

    def _release_holds(self, case: Case) -> None:
        for pid, hours in case.holds.items():
            self.held[pid] -= hours
        case.holds.clear()

    # -- the providers' side: the adapters' rules, then the modelled behaviour --

    def provider_answer(self, case: Case, provider_id: str) -> ProviderAnswer:
        profile, rules = self.market.profiles[provider_id], self.market.rules[provider_id]
        spec = case.spec
        far = spec.band in (Band.rural, Band.isolated)
        # A Prime asked on its own zone's Prime round answers to its zone obligation (only Primes
        # of the zone are offered that round: plan_offer).
        obligated = case.tier == Tier.prime and profile.tier == "prime"
        if self.calibration is not None:
            free = profile.weekly_capacity_hours - profile.committed_hours - self.held[provider_id]
            if free < spec.hours_per_week:
                return self._decline(case, profile, DeclineReason.capacity)
            # The recorded rate, Primes' on Prime rounds apart: the obligation is in the record.
            p = self.calibration.decline_rate(provider_id, spec.band, spec.zone, spec.urgency, obligated=obligated)
            offered, start = case.band_rate, spec.start_date
        else:
            result = automatic_answer(
                profile,
                rules,
                spec,
                case.band_rate,
                self.held[provider_id],
                clock.uk_date(self.clock()),
                neighbouring=case.neighbours,
            )
            if not isinstance(result, Bid):
                return self._decline(case, profile, result.reason)
            p = self.decline_p[spec.band]
            if profile.tier == "prime" and far:
                p *= self.mp.prime_pickiness
            if obligated:
                p *= 1 - self.mp.prime_obligation
            offered, start = result.hourly_rate, result.earliest_start
        p, unswayed = self._swayed(case, provider_id, p, obligated=obligated, far=far)
        draw = self.rng.random()
        if draw < p:
            if draw >= unswayed:
                self.responsive["cherry_picked_declines"] += 1
            if self.calibration is not None:
                reason = self.calibration.decline_reason(spec.band, self.rng)
            else:
                reason = self.rng.choices(
                    [DeclineReason.geography, DeclineReason.call_times, DeclineReason.other],
                    [5, 3, 2] if far else [1, 5, 3],
                )[0]
            return self._decline(case, profile, reason)
        if obligated:
            self.responsive["prime_round_bids"] += 1
        if self.calibration is not None:  # a bid as recorded: the same share of the band rate
            ratio = Decimal(str(self.calibration.bid_ratio(provider_id, spec.band, self.rng)))
            rate = (case.band_rate * ratio).quantize(Decimal("0.01"))
        else:
            rate = max(offered, self.market.price_floor[provider_id][spec.band])
        if rate > case.band_rate * Decimal("1.10"):
            return self._decline(case, profile, DeclineReason.price)  # too far apart to bother bidding
        self.held[provider_id] += spec.hours_per_week
        case.holds[provider_id] = case.holds.get(provider_id, Decimal(0)) + spec.hours_per_week
        return "bid", rate, start, None

    def _swayed(self, case: Case, provider_id: str, p: float, *, obligated: bool, far: bool) -> tuple[float, float]:
        """The chance of a decline once the market's responsive behaviour is applied to ``p``, and
        the chance before cherry-picking (a decline drawn between the two is counted as picked):

        - density (``density_effect``): the more of a zone's placed hours a provider holds, the
          denser its rounds there and the less it declines (``p * (1 - effect * share)``) - the
          volumes on which an open framework's Primes "emerge" (004:1029-1030);
        - cherry-picking (``cherry_picking``): a rural or isolated package declined with this extra
          chance while urban or fringe work is on offer to the same provider (offered it within
          ``cherry_window_hours``) - the "more attractive care packages taken first" (004:1034);
          held back on a Prime round by the obligation (times ``1 - prime_obligation``)."""
        zone = case.spec.zone
        if self.mp.density_effect and self.zone_hours[zone]:
            share = self.placed_hours[zone].get(provider_id, 0.0) / self.zone_hours[zone]
            p *= max(0.0, 1 - self.mp.density_effect * share)
        unswayed = p = min(1.0, p)
        tempted = self.tempted_at.get(provider_id)
        if (
            far
            and self.mp.cherry_picking > 0
            and tempted is not None
            and self.now - tempted <= self.mp.cherry_window_hours
        ):
            pull = self.mp.cherry_picking * ((1 - self.mp.prime_obligation) if obligated else 1.0)
            p += (1 - p) * pull
        return p, unswayed

    def _decline(self, case: Case, profile: ProviderProfile, reason: DeclineReason) -> ProviderAnswer:
        self.declines[case.spec.band][reason.value] += 1
        if case.cycle == 0:
            self.first_declines[case.spec.band][reason.value] += 1
        self.declines_by_tier[profile.tier][case.spec.band] += 1
        return "decline", None, None, reason.value

    # -- the daily tick: the existing caseload ends, and a snapshot of who is waiting --

    def day(self, day: int) -> None:
        leaving = Decimal(str(1 - math.exp(-1 / (7 * self.dp.mean_care_weeks))))
        for pid, hours in self.market.baseline.items():
            release = (hours * leaving).quantize(Decimal("0.01"))
            self.market.baseline[pid] = hours - release
            self._set_committed(pid, -release)
        self.open_cases = [c for c in self.open_cases if c.status != "ended"]  # ended for good
        waiting = [c for c in self.open_cases if c.status in WAITING]
        in_care = [c for c in self.open_cases if c.status == "placed"]
        self.daily.append(
            {
                "day": day,
                "waiting_packages": len(waiting),
                "waiting_hours": round(float(sum(c.spec.hours_per_week for c in waiting)), 1),
                "unplaced_packages": sum(c.status == "unplaced" for c in waiting),
                "in_care_packages": len(in_care),
                "free_hours": round(
                    float(sum(p.weekly_capacity_hours - p.committed_hours for p in self.market.profiles.values())), 1
                ),
            }
        )

    # -- the result --

    def result(self) -> dict:
        statuses = Counter(c.status for c in self.cases.values())
        waits = {}
        for urgency in Urgency:
            values = self.waits.get(urgency, [])
            total = sum(c.spec.urgency == urgency for c in self.cases.values())
            waits[urgency.value] = {
                "requested": total,
                "placed": len(values),
                "median_hours": _round(statistics.median(values)) if values else None,
                "p90_hours": _round(percentile(values, 90)),
            }
        concentration = {}
        for zone in sorted(self.framework.zones):
            shares, hhi = shares_and_hhi(self.placed_hours.get(zone, {}))
            _, late = shares_and_hhi(self.late_hours.get(zone, {}))
            concentration[zone] = {"hhi": hhi, "shares_percent": shares, "hhi_last_quarter": late}

        def mix(offers: Counter, declines: dict[str, Counter]) -> dict:
            out = {}
            for band in Band:
                reasons = declines.get(band, Counter())
                total = sum(reasons.values())
                out[band.value] = {
                    "offers": offers[band],
                    "declines": total,
                    "decline_rate": round(total / offers[band], 3) if offers[band] else None,
                    "by_reason": dict(sorted(reasons.items())),
                }
            return out

        return {
            "policy": dataclasses.asdict(self.policy)
            | {
                "quality_weights": {k: str(v) for k, v in dataclasses.asdict(self.policy.quality_weights).items()},
                "rates": {str(k): str(v) for k, v in (self.policy.rates or {}).items()} or None,
                "windows_hours": {str(k): v for k, v in self.policy.windows_hours.items()},
            },
            "packages": {
                "requested": len(self.cases),
                "by_status_at_end": dict(sorted(statuses.items())),
                "never_placed": sum(c.first_wait is None for c in self.cases.values()),
            },
            "time_to_place": waits,
            "time_to_place_by_band": {
                b.value: {
                    "requested": sum(c.spec.band == b for c in self.cases.values()),
                    "placed": len(self.waits_by_band.get(b, [])),
                    "median_hours": _round(statistics.median(self.waits_by_band[b]))
                    if self.waits_by_band.get(b)
                    else None,
                    "p90_hours": _round(percentile(self.waits_by_band.get(b, []), 90)),
                }
                for b in Band
            },
            "replacement_after_hand_back_hours": {
                "count": len(self.replacement_waits),
                "median": _round(statistics.median(self.replacement_waits)) if self.replacement_waits else None,
            },
            "waiting_over_time": self.daily,
            "hand_backs": self.hand_backs,
            "exceptions": dict(self.exceptions),
            "unplacings": self.unplacings,
            "rounds": self.rounds,
            "offers_unanswered": self.no_answers,
            "placements_by_tier": dict(sorted(self.placements_by_tier.items())),
            "rounds_by_zone_and_tier": {z: dict(sorted(c.items())) for z, c in sorted(self.rounds_by_zone.items())},
            "spend_by_band": {b.value: round(float(self.spend.get(b, Decimal(0))), 2) for b in Band},
            "spend_total": round(float(sum(self.spend.values())), 2),
            "concentration": concentration,
            "decline_mix": mix(self.offers, self.declines),  # every offer, re-offers of the waiting list included
            "decline_mix_first_offer": mix(self.first_offers, self.first_declines),  # each package's first cycle
            "responsive": {k: self.responsive[k] for k in ("cherry_picked_declines", "prime_round_bids")},
            "declines_by_provider_tier": {
                t: {str(b): n for b, n in sorted(c.items())} for t, c in sorted(self.declines_by_tier.items())
            },
            "events": self.events,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(frozen=True)
class Replay:
    """Recorded demand and the market it met (``homecare simulate --replay``,
    :mod:`services.simulator.recorded`): replayed from UK day ``start_day`` instead of a
    synthetic year, the providers answering as ``calibration`` says they did."""

    start_day: dt.date
    demand: list[Demand]
    market: Market
    calibration: Calibration


@dataclass(frozen=True)
class Run:
    """One column of the comparison: a policy under one set of market parameters."""

    name: str
    policy: Policy
    market: MarketParams
    changes: dict[str, float] = field(default_factory=dict)  # the market parameters a sensitivity run set


def run_policy(
    framework: Framework,
    seed_providers: list[dict],
    run: Run,
    demand: DemandParams,
    replay: Replay | None = None,
) -> dict:
    import time

    started = time.process_time()
    if replay is None:
        requests = generate_demand(framework, demand)
        built = build_market(framework, seed_providers, run.market)
        simulation = Simulation(framework, requests, built, run.policy, run.market, demand)
    else:
        simulation = Simulation(
            framework,
            replay.demand,
            replay.market,
            run.policy,
            run.market,
            demand,
            start_day=replay.start_day,
            calibration=replay.calibration,
        )
    result = simulation.run().result() | {"market_changes": run.changes}
    # CPU time, not wall time: on a shared machine the wall clock says more about the neighbours.
    return result | {"cpu_seconds": round(time.process_time() - started, 1)}


def runs_of(
    policies: list[Policy], market: MarketParams, sensitivity: tuple[str, list[float]] | None = None
) -> list[Run]:
    """The comparison's columns: each policy, or with ``sensitivity`` (a market parameter and its
    values) each policy at each value, named ``<policy> <parameter>=<value>``. ValueError for a
    parameter MarketParams does not have or policy names that are not unique."""
    if len({p.name for p in policies}) != len(policies):
        raise ValueError("policy names must be unique")
    if sensitivity is None:
        return [Run(p.name, p, market) for p in policies]
    key, values = sensitivity
    if key not in {f.name for f in dataclasses.fields(MarketParams)} or key == "seed":  # seed: market_seed
        raise ValueError(f"unknown market parameter {key!r} to vary (see --list-params)")
    return [
        Run(f"{p.name} {key}={v:g}", p, dataclasses.replace(market, **{key: v}), {key: v})  # type: ignore[arg-type]
        for v in values
        for p in policies
    ]


def simulate(
    framework: Framework,
    seed_providers: list[dict],
    policies: list[Policy],
    *,
    demand: DemandParams = DemandParams(),
    market: MarketParams = MarketParams(),
    jobs: int = 1,
    sensitivity: tuple[str, list[float]] | None = None,
    replay: Replay | None = None,
) -> dict:
    """Every policy against the same demand and the same market (both rebuilt from their seeds in
    each worker, or the recorded ones of ``replay``); with ``sensitivity`` (a market parameter and
    its values) every policy at every value. Returns the JSON-able result, a run per column under
    ``policies``. ``jobs`` > 1 replays the runs in parallel processes."""
    runs = runs_of(policies, market, sensitivity)
    args = [(framework, seed_providers, r, demand, replay) for r in runs]
    if jobs > 1 and len(runs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(runs))) as pool:
            results = list(pool.map(run_policy, *zip(*args, strict=True)))
    else:
        results = [run_policy(*a) for a in args]
    built = replay.market if replay else build_market(framework, seed_providers, market)
    return {
        "demand": dataclasses.asdict(demand),
        "market": dataclasses.asdict(market)
        | {
            "providers": len(built.profiles),
            "weekly_capacity_hours": float(sum(p.weekly_capacity_hours for p in built.profiles.values())),
        },
        "sensitivity": {"parameter": sensitivity[0], "values": sensitivity[1]} if sensitivity else None,
        "start": (replay.start_day if replay else START_DAY).isoformat(),
        "policies": {r.name: result for r, result in zip(runs, results, strict=True)},
    }
