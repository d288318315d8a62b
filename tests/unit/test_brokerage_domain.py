"""The framework's placement rules, with no I/O."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import PackageSpec, ProviderProfile, VisitPattern
from schemas.vocabulary import Tier
from services.brokerage import domain

TODAY = dt.date(2026, 11, 23)
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def package(**kw) -> PackageSpec:
    base = dict(
        zone="melton",
        band="rural",
        postcode_district="LE13",
        hours_per_week=Decimal("14"),
        visits=VisitPattern(calls_per_day=4, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="hospital_discharge",
        start_date=TODAY,
    )
    return PackageSpec(**(base | kw))


def provider(pid="p1", **kw) -> ProviderProfile:
    base = dict(
        provider_id=pid,
        name=pid,
        tier="prime",
        status="active",
        zones=["melton"],
        bands=["urban", "rural"],
        skills=["personal_care", "medication"],
        double_handed=True,
        cqc_rating="good",
        local_risk="low",
        hand_backs_12m=0,
        weekly_capacity_hours=Decimal(100),
        committed_hours=Decimal(0),
    )
    return ProviderProfile(**(base | kw))


class TestEligibility:
    def test_a_fitting_provider_is_eligible(self):
        assert domain.exclusion_reasons(package(), provider()) == []

    @pytest.mark.parametrize(
        "change, reason",
        [
            (dict(status="suspended"), "not active on the framework (suspended)"),
            (dict(cqc_rating="inadequate"), "quality rated Inadequate"),
            (dict(zones=["bottesford"]), "does not serve zone melton"),
            (dict(bands=["urban"]), "does not accept band rural"),
            (dict(committed_hours=Decimal(90)), "capacity 10 h/week free, package needs 14"),
        ],
    )
    def test_each_exclusion_has_its_reason(self, change, reason):
        assert reason in domain.exclusion_reasons(package(), provider(**change))

    def test_missing_skills_are_named(self):
        reasons = domain.exclusion_reasons(package(needs=["personal_care", "dementia", "end_of_life"]), provider())
        assert reasons == ["lacks skills: dementia, end_of_life"]

    def test_double_handed_calls_need_a_provider_that_staffs_them(self):
        two = package(
            visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=2), hours_per_week=Decimal(14)
        )
        assert domain.exclusion_reasons(two, provider(double_handed=False)) == ["does not staff double-handed calls"]
        assert domain.exclusion_reasons(two, provider(double_handed=True)) == []

    def test_screen_lists_exclusions_only_for_providers_in_the_zone(self):
        s = domain.screen(
            package(), [provider("pa"), provider("pb", bands=["urban"]), provider("pc", zones=["lutterworth"])]
        )
        assert [p.provider_id for p in s.eligible] == ["pa"]
        assert list(s.excluded) == ["pb"]


class TestQuality:
    def test_better_cqc_rating_scores_higher(self):
        assert domain.quality_score(provider(cqc_rating="outstanding")) > domain.quality_score(
            provider(cqc_rating="good")
        )

    def test_a_new_provider_without_a_cqc_rating_sits_between_good_and_requires_improvement(self):
        new = domain.quality_score(provider(cqc_rating="not_yet_rated"))
        assert (
            domain.quality_score(provider(cqc_rating="requires_improvement")) < new < domain.quality_score(provider())
        )

    def test_hand_backs_lower_the_score(self):
        assert domain.quality_score(provider(hand_backs_12m=3)) < domain.quality_score(provider())

    def test_weights_are_configurable(self):
        only_risk = domain.QualityWeights(cqc=Decimal(0), local_risk=Decimal(1), hand_backs=Decimal(0))
        assert domain.quality_score(provider(cqc_rating="requires_improvement"), only_risk) == Decimal("100.0")


class TestTiers:
    def test_prime_then_supplementary_then_the_neighbouring_zones(self):
        assert domain.tier_ladder("prime-supplementary", zone_has_prime=True) == [
            Tier.prime,
            Tier.supplementary,
            Tier.adjacent,
        ]

    def test_no_prime_tier_where_the_zone_has_none(self):
        assert domain.tier_ladder("prime-supplementary", zone_has_prime=False) == [Tier.supplementary, Tier.adjacent]

    def test_open_framework_offers_everyone_at_once_then_the_neighbouring_zones(self):
        assert domain.tier_ladder("open-framework", zone_has_prime=True) == [Tier.open, Tier.adjacent]

    def test_the_neighbouring_zones_providers_are_screened_for_the_escalation(self):
        pkg = package()  # melton
        near, own, far = provider("pn", zones=["bottesford"]), provider("po"), provider("pf", zones=["lutterworth"])
        full = provider("pq", zones=["bottesford"], committed_hours=Decimal(95))
        s = domain.screen(pkg, [near, own, far, full], from_zones=frozenset({"bottesford", "charnwood-north"}))
        assert [p.provider_id for p in s.eligible] == ["pn"]
        assert list(s.excluded) == ["pq"] and "capacity" in s.excluded["pq"][0]
        assert domain.next_offer(
            [Tier.prime, Tier.supplementary, Tier.adjacent], Tier.supplementary, [], s.eligible
        ) == (Tier.adjacent, [near])

    def test_unknown_policy_is_refused(self):
        with pytest.raises(ValueError):
            domain.tier_ladder("lottery", zone_has_prime=True)

    def test_next_offer_skips_a_tier_with_nobody_eligible(self):
        supp = provider("ps", tier="supplementary")
        assert domain.next_offer([Tier.prime, Tier.supplementary, Tier.adjacent], None, [supp]) == (
            Tier.supplementary,
            [supp],
        )
        assert domain.next_offer([Tier.prime, Tier.supplementary, Tier.adjacent], Tier.supplementary, [supp]) is None

    def test_next_offer_copes_with_a_ladder_changed_under_an_open_offer(self):
        # The zone lost its Prime tier while a package was on its prime round.
        supp = provider("ps", tier="supplementary")
        assert domain.next_offer([Tier.supplementary], Tier.prime, [supp]) == (Tier.supplementary, [supp])


NO_TIES = domain.TieBreak(package_key="pkg-1")  # no recent awards: the draw decides a full tie


def bid(pid, rate, minutes=0, start=TODAY):
    return domain.Answer(pid, "bid", T0 + dt.timedelta(minutes=minutes), Decimal(rate), start)


class TestAward:
    def test_quality_then_price_then_start_then_answer_time(self):
        quality = {"a": Decimal(80), "b": Decimal(90), "c": Decimal(90), "d": Decimal(90), "e": Decimal(90)}
        answers = [
            bid("a", "15"),
            bid("b", "19"),
            bid("c", "18", minutes=5),
            bid("d", "18", minutes=1, start=TODAY + dt.timedelta(days=1)),
            bid("e", "18", minutes=2),
        ]
        ranked = domain.rank_bids(answers, quality, Decimal("20"), NO_TIES)
        assert [r.answer.provider_id for r in ranked] == ["e", "c", "d", "b", "a"]

    def test_bid_above_the_band_rate_is_not_acceptable(self):
        ranked = domain.rank_bids(
            [bid("a", "23.00"), bid("b", "22.95")], {"a": Decimal(99), "b": Decimal(50)}, Decimal("22.95"), NO_TIES
        )
        winner = domain.choose_winner(ranked, {"a", "b"})
        assert winner is not None and winner.answer.provider_id == "b"

    def test_a_provider_no_longer_eligible_cannot_win(self):
        ranked = domain.rank_bids(
            [bid("a", "18"), bid("b", "18")], {"a": Decimal(99), "b": Decimal(50)}, Decimal("20"), NO_TIES
        )
        winner = domain.choose_winner(ranked, {"b"})
        assert winner is not None and winner.answer.provider_id == "b"

    def test_declines_never_win(self):
        decline = domain.Answer("a", "decline", T0, reason="capacity")
        assert domain.choose_winner(domain.rank_bids([decline], {}, Decimal(20), NO_TIES), {"a"}) is None


class TestEarlyClose:
    def test_closes_once_everyone_answered(self):
        state = domain.RoundState(
            ["a", "b"], {"a": bid("a", 18), "b": domain.Answer("b", "decline", T0, reason="price")}
        )
        assert domain.outcome_settled(state, {"a": Decimal(50), "b": Decimal(50)}, Decimal(20))

    def test_closes_when_no_pending_provider_could_beat_the_best_bid(self):
        state = domain.RoundState(["a", "b"], {"a": bid("a", 18)})
        assert domain.outcome_settled(state, {"a": Decimal(90), "b": Decimal(80)}, Decimal(20))

    def test_stays_open_while_an_equal_or_better_provider_may_still_bid(self):
        state = domain.RoundState(["a", "b"], {"a": bid("a", 18)})
        assert not domain.outcome_settled(state, {"a": Decimal(80), "b": Decimal(80)}, Decimal(20))

    def test_an_unacceptable_bid_does_not_close_the_round(self):
        state = domain.RoundState(["a", "b"], {"a": bid("a", 25)})
        assert not domain.outcome_settled(state, {"a": Decimal(90), "b": Decimal(10)}, Decimal(20))


answers_strategy = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3", "p4", "p5"]),
        st.booleans(),
        st.decimals(min_value=15, max_value=30, places=2),
        st.integers(0, 600),
        st.integers(0, 5),
    ),
    max_size=12,
    unique_by=lambda t: t[0],
)


@settings(max_examples=300, deadline=None)
@given(
    answers=answers_strategy,
    qualities=st.lists(st.integers(0, 100), min_size=5, max_size=5),
    eligible=st.sets(st.sampled_from(["p1", "p2", "p3", "p4", "p5"])),
)
def test_property_winner_is_eligible_acceptable_and_ranked_first(answers, qualities, eligible):
    quality = {f"p{i + 1}": Decimal(q) for i, q in enumerate(qualities)}
    band_rate = Decimal("22.95")
    built = [
        domain.Answer(pid, "bid", T0 + dt.timedelta(seconds=s), rate, TODAY + dt.timedelta(days=d))
        if is_bid
        else domain.Answer(pid, "decline", T0 + dt.timedelta(seconds=s), reason="other")
        for pid, is_bid, rate, s, d in answers
    ]
    winner = domain.choose_winner(domain.rank_bids(built, quality, band_rate, NO_TIES), eligible)
    bids = [domain.Bid.of(a) for a in built if a.kind == "bid"]
    candidates = [b for b in bids if b.hourly_rate <= band_rate and b.provider_id in eligible]
    if not candidates:
        assert winner is None
        return
    assert winner is not None
    assert winner.answer.provider_id in eligible and winner.answer.hourly_rate <= band_rate
    best = min(
        candidates,
        key=lambda a: (
            -quality[a.provider_id],
            a.hourly_rate,
            a.earliest_start,
            a.answered_at,
            domain.tie_draw(NO_TIES.package_key, a.offer_round, a.provider_id),
        ),
    )
    assert winner.answer == best


@settings(max_examples=300, deadline=None)
@given(
    answers=answers_strategy.filter(bool),
    qualities=st.lists(st.sampled_from([40, 60, 80]), min_size=5, max_size=5),
    order=st.randoms(use_true_random=False),
)  # few quality levels: ties, where an early close could go wrong
def test_property_closing_a_round_early_never_changes_who_wins(answers, qualities, order):
    """Whatever order the answers arrive in, the round closes early only when the winner is the
    one it would have been had the window run its full length."""
    quality = {f"p{i + 1}": Decimal(q) for i, q in enumerate(qualities)}
    band_rate = Decimal("22.95")
    arrivals = list(answers)
    order.shuffle(arrivals)
    built = [
        domain.Answer(pid, "bid", T0 + dt.timedelta(seconds=i), rate, TODAY + dt.timedelta(days=d))
        if is_bid
        else domain.Answer(pid, "decline", T0 + dt.timedelta(seconds=i), reason="other")
        for i, (pid, is_bid, rate, _, d) in enumerate(arrivals)
    ]
    offered = [pid for pid, *_ in answers] + order.sample(["q1", "q2"], k=order.randint(0, 2))  # some never answer
    quality |= {"q1": Decimal(order.randint(0, 100)), "q2": Decimal(order.randint(0, 100))}
    everyone = set(offered)
    full_length = domain.choose_winner(domain.rank_bids(built, quality, band_rate, NO_TIES), everyone)
    state = domain.RoundState(offered)
    for answer in built:
        state.answers[answer.provider_id] = answer
        if domain.outcome_settled(state, quality, band_rate):
            early = domain.choose_winner(
                domain.rank_bids(state.answers.values(), quality, band_rate, NO_TIES), everyone
            )
            assert (early and early.answer) == (full_length and full_length.answer)
            break


class TestOfferPlan:
    """plan_offer: the next round as the brokerage's handlers and the policy simulator both compute it."""

    market = (
        provider("prime-a"),
        provider("supp-b", tier="supplementary"),
        provider("supp-c", tier="supplementary"),
        provider("full-d", committed_hours=Decimal(95)),
        provider("near-e", zones=["bottesford"]),
    )

    def plan(self, policy, *, after=None, not_again=frozenset(), zone_has_prime=True):
        return domain.plan_offer(
            package(),
            self.market,
            policy=policy,
            zone_has_prime=zone_has_prime,
            neighbours=frozenset({"bottesford"}),
            after=after,
            not_again=set(not_again),
        )

    def test_open_framework_offers_every_eligible_provider_at_once(self):
        plan = self.plan(domain.OPEN_FRAMEWORK)
        assert plan.tier == Tier.open
        assert {p.provider_id for p in plan.offered} == {"prime-a", "supp-b", "supp-c"}
        assert "full-d" in plan.excluded  # no capacity: excluded, with its reason

    def test_prime_supplementary_offers_primes_first_then_supplementaries_then_neighbours(self):
        assert [p.provider_id for p in self.plan(domain.PRIME_SUPPLEMENTARY).offered] == ["prime-a"]
        second = self.plan(domain.PRIME_SUPPLEMENTARY, after=Tier.prime, not_again={"prime-a"})
        assert (second.tier, {p.provider_id for p in second.offered}) == (Tier.supplementary, {"supp-b", "supp-c"})
        third = self.plan(
            domain.PRIME_SUPPLEMENTARY, after=Tier.supplementary, not_again={"prime-a", "supp-b", "supp-c"}
        )
        assert (third.tier, [p.provider_id for p in third.offered]) == (Tier.adjacent, ["near-e"])
        spent = self.plan(domain.PRIME_SUPPLEMENTARY, after=Tier.adjacent)
        assert spent.tier is None and spent.unplaced_reason == "no_acceptable_bid"

    def test_a_zone_without_primes_starts_with_supplementaries(self):
        plan = self.plan(domain.PRIME_SUPPLEMENTARY, zone_has_prime=False)
        assert plan.tier == Tier.supplementary

    def test_standing_exclusions_leave_out_capacity_only(self):
        full = provider(committed_hours=Decimal(100))
        assert domain.standing_exclusions(package(), full) == []
        assert domain.exclusion_reasons(package(), full) == ["capacity 0 h/week free, package needs 14"]


# ---- eligibility, checked against the rules stated plainly ---------------------------------
# standing_exclusions/screen are written for speed (the policy simulator screens millions of times a
# year); this is what they must keep saying, rule by rule, in the rules' order.

ZONES = ["melton", "bottesford", "charnwood-north", "lutterworth"]
NEEDS = ["personal_care", "medication", "dementia", "end_of_life"]


def plain_exclusions(pkg: PackageSpec, prov: ProviderProfile, from_zones: frozenset[str] | None) -> list[str]:
    reasons = []
    if prov.status != "active":
        reasons.append(f"not active on the framework ({prov.status})")
    if prov.cqc_rating == "inadequate":
        reasons.append("quality rated Inadequate")
    if from_zones is None and pkg.zone not in prov.zones:
        reasons.append(f"does not serve zone {pkg.zone}")
    if from_zones is not None and not set(prov.zones) & from_zones:
        reasons.append(f"serves none of the zones next to {pkg.zone}")
    if pkg.band not in prov.bands:
        reasons.append(f"does not accept band {pkg.band}")
    missing = sorted(set(pkg.needs) - set(prov.skills))
    if missing:
        reasons.append("lacks skills: " + ", ".join(missing))
    if pkg.visits.carers_per_call > 1 and not prov.double_handed:
        reasons.append("does not staff double-handed calls")
    free = prov.weekly_capacity_hours - prov.committed_hours
    if free < pkg.hours_per_week:
        reasons.append(f"capacity {free} h/week free, package needs {pkg.hours_per_week}")
    return reasons


providers_strategy = st.lists(
    st.builds(
        lambda i, status, cqc, zones, bands, skills, double, committed: provider(
            f"p{i}",
            status=status,
            cqc_rating=cqc,
            zones=zones,
            bands=bands,
            skills=skills,
            double_handed=double,
            committed_hours=Decimal(committed),
        ),
        st.integers(0, 99),
        st.sampled_from(["active", "suspended", "left"]),
        st.sampled_from(["good", "inadequate"]),
        st.lists(st.sampled_from(ZONES), min_size=1, max_size=3),
        st.lists(st.sampled_from(["urban", "rural"]), max_size=2),
        st.lists(st.sampled_from(NEEDS), max_size=4),
        st.booleans(),
        st.integers(0, 100),
    ),
    max_size=8,
    unique_by=lambda p: p.provider_id,
)


@settings(max_examples=300, deadline=None)
@given(
    providers=providers_strategy,
    zone=st.sampled_from(ZONES),
    band=st.sampled_from(["urban", "rural"]),
    needs=st.lists(st.sampled_from(NEEDS), min_size=1, max_size=4),
    carers=st.integers(1, 2),
    hours=st.integers(1, 30),
    neighbours=st.sets(st.sampled_from(ZONES), max_size=2),
)
def test_property_eligibility_is_the_rules_stated_plainly(providers, zone, band, needs, carers, hours, neighbours):
    pkg = package(
        zone=zone,
        band=band,
        needs=needs,
        hours_per_week=Decimal(hours),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=carers),
    )
    near = frozenset(neighbours - {zone})
    for from_zones in (None, near):
        for prov in providers:
            assert domain.exclusion_reasons(pkg, prov, from_zones=from_zones) == plain_exclusions(pkg, prov, from_zones)
        in_area = [
            p
            for p in providers
            if (zone in p.zones) == (from_zones is None) and (from_zones is None or set(p.zones) & from_zones)
        ]
        s = domain.screen(pkg, providers, from_zones=from_zones)
        assert [p.provider_id for p in s.eligible] == [
            p.provider_id for p in in_area if not plain_exclusions(pkg, p, from_zones)
        ]
        assert s.excluded == {
            p.provider_id: plain_exclusions(pkg, p, from_zones) for p in in_area if plain_exclusions(pkg, p, from_zones)
        }
