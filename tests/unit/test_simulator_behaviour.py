"""Provider behaviour in the simulator: calibrated from recorded answers (``--replay``) and
responsive to the policy (decision 0086) - checked for the rules, never for speed."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from decimal import Decimal

import pytest

from schemas.vocabulary import Band, Tier
from services.providers.domain import Bid, automatic_answer
from services.runtime import clock
from services.runtime.reference import load_framework, load_provider_seed
from services.simulator import simulation as sim
from services.simulator.calibration import Calibration, RecordedAnswer, calibrate
from services.simulator.recorded import visit_pattern

# ---- calibration --------------------------------------------------------------------------------


def answers(
    provider: str, n: int, declines: int, *, band="urban", zone="melton", urgency="community", tier="supplementary"
) -> list[RecordedAnswer]:
    return [
        RecordedAnswer(provider, band, zone, urgency, tier, "decline" if i < declines else "bid", "geography", 30.0)
        for i in range(n)
    ]


def test_decline_rates_are_the_recorded_ones_where_there_are_many_answers():
    rows = answers("a", 200, 160) + answers("b", 200, 20)
    cal = calibrate(rows)
    assert cal.decline_rate("a", "urban", "melton", "community", obligated=False) == pytest.approx(0.8, abs=0.02)
    assert cal.decline_rate("b", "urban", "melton", "community", obligated=False) == pytest.approx(0.1, abs=0.02)


def test_rates_differ_by_band_zone_and_urgency_as_recorded():
    rows = (
        answers("a", 100, 90, band="rural")
        + answers("a", 100, 10, band="urban")
        + answers("a", 100, 70, zone="hinckley")
        + answers("a", 100, 50, urgency="hospital_discharge")
    )
    cal = calibrate(rows)
    rural = cal.decline_rate("a", "rural", "melton", "community", obligated=False)
    urban = cal.decline_rate("a", "urban", "melton", "community", obligated=False)
    assert rural > 0.85 and urban < 0.15
    assert cal.decline_rate("a", "urban", "hinckley", "community", obligated=False) == pytest.approx(0.7, abs=0.04)
    assert cal.decline_rate("a", "urban", "melton", "hospital_discharge", obligated=False) == pytest.approx(
        0.5, abs=0.04
    )


def test_a_thin_cell_is_pulled_towards_its_parent_and_an_empty_one_is_its_parent():
    rows = answers("many", 400, 80) + answers("thin", 2, 2)  # band: 82 declines of 402
    cal = calibrate(rows)
    band = cal.decline_rate("nobody", "urban", "melton", "community", obligated=False)
    assert band == pytest.approx(82 / 402, abs=0.01)  # a provider never recorded answers as its band did
    thin = cal.decline_rate("thin", "urban", "melton", "community", obligated=False)
    assert band < thin < 1.0  # two declines out of two: more reluctant than the band, not certain
    assert thin < 0.6


def test_a_primes_answers_on_its_zones_prime_round_are_kept_apart():
    rows = answers("prime", 100, 10, tier="prime") + answers("prime", 100, 60, tier="open") + answers("s", 100, 60)
    cal = calibrate(rows)
    assert cal.decline_rate("prime", "urban", "melton", "community", obligated=True) == pytest.approx(0.1, abs=0.02)
    assert cal.decline_rate("prime", "urban", "melton", "community", obligated=False) == pytest.approx(0.6, abs=0.02)


def test_unanswered_offers_answer_times_and_reasons_come_from_the_record():
    rows = answers("a", 10, 10) + [RecordedAnswer("a", "urban", "melton", "community", "open", "none")] * 10
    rows += [RecordedAnswer("b", "urban", "melton", "community", "open", "decline", "price", 90.0)] * 10
    cal = calibrate(rows)
    assert cal.no_answer_rate("a") > 0.4 and cal.no_answer_rate("b") < cal.no_answer_rate("a")
    assert cal.mean_answer_minutes == pytest.approx(60.0)
    rng = random.Random(1)
    drawn = Counter(cal.decline_reason("urban", rng).value for _ in range(400))
    assert set(drawn) == {"geography", "price"} and 150 < drawn["price"] < 250


def test_a_replayed_visit_pattern_gives_the_recorded_hours():
    for hours in ("7", "10.5", "14", "21", "28", "3.5"):
        visits = visit_pattern(Decimal(hours))
        assert abs(visits.care_hours_per_week - Decimal(hours)) <= Decimal("1.2"), hours
        assert visits.minutes_per_call <= 60 and visits.carers_per_call == 1


# ---- the responsive market ------------------------------------------------------------------


def simulation(policy: str, market: sim.MarketParams, *, calibration: Calibration | None = None) -> sim.Simulation:
    framework = load_framework()
    demand = sim.DemandParams(days=14)
    return sim.Simulation(
        framework,
        sim.generate_demand(framework, demand),
        sim.build_market(framework, load_provider_seed(), market),
        sim.Policy(policy, policy),
        market,
        demand,
        calibration=calibration,
    )


def case_for(s: sim.Simulation, band: Band, tier: Tier) -> tuple[sim.Case, str]:
    """A package of ``band`` offered on a ``tier`` round to a Prime of its zone whose adapter would bid."""
    rate = s.framework.rate_card_on(sim.START_DAY).rates[band]
    for d in s.demand:
        spec = d.spec.model_copy(update={"band": band})
        for pid, profile in s.market.profiles.items():
            if profile.tier != "prime" or spec.zone not in profile.zones or s.market.price_floor[pid][band] > rate:
                continue
            case = sim.Case(d, spec, "p", rate, frozenset(s.framework.zones[spec.zone].adjacent))
            answer = automatic_answer(
                profile, s.market.rules[pid], spec, case.band_rate, Decimal(0), clock.uk_date(s.clock())
            )
            if isinstance(answer, Bid):
                case.tier = tier
                return case, pid
    raise AssertionError("no Prime of the market would bid")


def decline_share(s: sim.Simulation, case: sim.Case, pid: str, draws: int = 2000) -> float:
    declined = 0
    for _ in range(draws):
        declined += s.provider_answer(case, pid)[0] == "decline"
        s.held.clear()
        case.holds.clear()
    return declined / draws


def test_primes_accept_what_their_zone_obligation_asks_on_the_prime_round():
    free = dataclasses.replace(sim.MarketParams(), prime_obligation=0.0, cherry_picking=0.0, density_effect=0.0)
    bound = dataclasses.replace(free, prime_obligation=1.0)
    loose = simulation("prime-supplementary", free)
    case, pid = case_for(loose, Band.rural, Tier.prime)
    assert decline_share(loose, case, pid) > 0.25  # rural, Primes pickier: 0.32 * 1.25
    tight = simulation("prime-supplementary", bound)
    assert decline_share(tight, case, pid) == 0.0
    case.tier = Tier.open  # the same Prime asked on an open round has no obligation to answer
    assert decline_share(tight, case, pid) > 0.25
    assert tight.responsive["prime_round_bids"] == 2000


def test_rural_work_is_declined_while_urban_work_is_on_offer():
    market = dataclasses.replace(sim.MarketParams(), cherry_picking=0.6, density_effect=0.0)
    s = simulation("open-framework", market)
    rural, pid = case_for(s, Band.rural, Tier.open)
    urban = dataclasses.replace(rural, spec=rural.spec.model_copy(update={"band": Band.urban}))
    quiet = decline_share(s, rural, pid)
    s.tempted_at[pid] = s.now  # urban work was offered to it just now
    tempted = decline_share(s, rural, pid)
    assert tempted > quiet + 0.3  # 0.4 -> 0.4 + 0.6 * 0.6
    assert s.responsive["cherry_picked_declines"] > 500
    assert decline_share(s, urban, pid) < 0.2  # urban work itself is not declined for it


def test_density_in_a_zone_lowers_a_providers_declines_there():
    market = dataclasses.replace(sim.MarketParams(), cherry_picking=0.0, density_effect=1.0)
    s = simulation("open-framework", market)
    case, pid = case_for(s, Band.rural, Tier.open)
    alone = decline_share(s, case, pid)
    s.placed_hours[case.spec.zone][pid] = 75.0
    s.zone_hours[case.spec.zone] = 100.0
    assert decline_share(s, case, pid) == pytest.approx(alone * 0.25, abs=0.04)


def test_under_an_open_framework_rural_declines_exceed_urban_when_providers_cherry_pick():
    """A replay in which every provider was recorded declining a fifth of its offers in every band
    (no price trouble, room to spare): without cherry-picking, the open framework's rural and urban
    first offers are declined about as often; with it, rural ones clearly more often."""
    recorded = calibrate(answers("x", 100, 20))

    def first_offer_declines(cherry: float) -> dict[str, float]:
        market = dataclasses.replace(
            sim.MarketParams(), cherry_picking=cherry, density_effect=0.0, capacity_scale=6.0, price_floor_high=1.0
        )
        result = simulation("open-framework", market, calibration=recorded).run().result()
        return {b: result["decline_mix_first_offer"][b]["decline_rate"] for b in ("urban", "rural")}

    calm, picky = first_offer_declines(0.0), first_offer_declines(0.8)
    assert abs(calm["rural"] - calm["urban"]) < 0.06
    assert picky["rural"] > picky["urban"] + 0.08
    assert picky["rural"] > calm["rural"] + 0.08


def test_a_sensitivity_run_repeats_every_policy_at_every_value():
    policies = [sim.Policy("ps", "prime-supplementary"), sim.Policy("open", "open-framework")]
    runs = sim.runs_of(policies, sim.MarketParams(), ("cherry_picking", [0.0, 1.0]))
    assert [r.name for r in runs] == [
        "ps cherry_picking=0",
        "open cherry_picking=0",
        "ps cherry_picking=1",
        "open cherry_picking=1",
    ]
    assert [r.market.cherry_picking for r in runs] == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="nonsense"):
        sim.runs_of(policies, sim.MarketParams(), ("nonsense", [1.0]))
    result = sim.simulate(
        load_framework(),
        load_provider_seed(),
        policies,
        demand=sim.DemandParams(days=4),
        sensitivity=("cherry_picking", [0.0, 1.0]),
    )
    assert list(result["policies"]) == [r.name for r in runs]
    assert result["policies"]["open cherry_picking=1"]["market_changes"] == {"cherry_picking": 1.0}
    picked = {n: r["responsive"]["cherry_picked_declines"] for n, r in result["policies"].items()}
    assert picked["open cherry_picking=0"] == picked["ps cherry_picking=0"] == 0
    assert picked["open cherry_picking=1"] > 0


def test_bids_are_drawn_from_the_providers_recorded_bids():
    at_rate = [RecordedAnswer("a", "rural", "melton", "community", "open", "bid", rate_ratio=1.0)] * 8
    above = [RecordedAnswer("a", "rural", "melton", "community", "open", "bid", rate_ratio=1.065)] * 2
    cal = calibrate(at_rate + above)
    rng = random.Random(3)
    drawn = Counter(cal.bid_ratio("a", "rural", rng) for _ in range(1000))
    assert set(drawn) == {1.0, 1.065} and 700 < drawn[1.0] < 900  # mostly at the rate, as recorded
    assert cal.bid_ratio("nobody", "rural", rng) in (1.0, 1.065)  # the band's bids
    assert cal.bid_ratio("a", "urban", rng) == 1.0  # nothing recorded: at the rate
