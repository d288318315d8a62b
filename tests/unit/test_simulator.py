"""The policy simulator: small replays, checked for shape and invariants (never for speed)."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from schemas.vocabulary import Band
from services.cli.main import app
from services.runtime.reference import load_framework, load_provider_seed
from services.simulator import simulation as sim

DAYS = 14
DEMAND = sim.DemandParams(days=DAYS)
POLICIES = [sim.Policy("ps", "prime-supplementary"), sim.Policy("open", "open-framework")]


@pytest.fixture(scope="module")
def result():
    return sim.simulate(load_framework(), load_provider_seed(), POLICIES, demand=DEMAND)


def test_every_package_is_accounted_for(result):
    requested = len(sim.generate_demand(load_framework(), DEMAND))
    assert requested > 300
    for run in result["policies"].values():
        packages = run["packages"]
        assert packages["requested"] == requested
        assert sum(packages["by_status_at_end"].values()) == requested
        assert set(packages["by_status_at_end"]) <= {"offered", "unplaced", "awaiting_approval", "placed", "ended"}
        placed_once = sum(u["placed"] for u in run["time_to_place"].values())
        assert placed_once + packages["never_placed"] == requested
        assert sum(u["requested"] for u in run["time_to_place"].values()) == requested
        waiting = sum(n for s, n in packages["by_status_at_end"].items() if s in sim.WAITING)
        assert run["waiting_over_time"][-1]["waiting_packages"] == waiting
        assert (
            sum(run["placements_by_tier"].values()) == placed_once + run["replacement_after_hand_back_hours"]["count"]
        )


def test_the_same_seed_gives_identical_results(result):
    again = sim.simulate(load_framework(), load_provider_seed(), POLICIES, demand=DEMAND, jobs=2)

    def measures(r):  # all but the CPU time the replay took
        return json.dumps(
            {
                **r,
                "policies": {n: {k: v for k, v in p.items() if k != "cpu_seconds"} for n, p in r["policies"].items()},
            },
            sort_keys=True,
            default=str,
        )

    assert measures(again) == measures(result)
    assert all(p["cpu_seconds"] > 0 for p in result["policies"].values())


def test_another_seed_gives_other_demand():
    framework = load_framework()
    one = sim.generate_demand(framework, DEMAND)
    other = sim.generate_demand(framework, dataclasses.replace(DEMAND, seed=DEMAND.seed + 1))
    assert [d.spec for d in one] != [d.spec for d in other]


def test_the_policies_differ_where_the_rules_say(result):
    ps, open_ = (
        result["policies"]["ps"]["rounds_by_zone_and_tier"],
        result["policies"]["open"]["rounds_by_zone_and_tier"],
    )
    # Prime/Supplementary: Primes first (never an open round); Harborough rural has no Prime tier at all.
    assert all("open" not in tiers for tiers in ps.values())
    assert ps["coalville-ashby"]["prime"] > 0
    assert "prime" not in ps["harborough-rural"] and ps["harborough-rural"]["supplementary"] > 0
    # Open framework: everyone eligible at once, so no Prime or Supplementary rounds anywhere.
    assert all(set(tiers) <= {"open", "adjacent"} for tiers in open_.values())
    assert result["policies"]["ps"]["placements_by_tier"] != result["policies"]["open"]["placements_by_tier"]


def test_a_new_rate_card_changes_spend_and_price_answers():
    from decimal import Decimal

    uplift = sim.Policy(
        "uplift", "open-framework", rates={Band.rural: Decimal("30.00"), Band.isolated: Decimal("34.00")}
    )
    runs = sim.simulate(
        load_framework(), load_provider_seed(), [POLICIES[1], uplift], demand=dataclasses.replace(DEMAND, days=10)
    )["policies"]

    def price_trouble(run):  # declines for price, and bids above the rate that need a broker's approval
        declines = sum(run["decline_mix"][b]["by_reason"].get("price", 0) for b in ("rural", "isolated"))
        return declines + run["exceptions"].get("requested", 0)

    assert price_trouble(runs["uplift"]) < price_trouble(runs["open"])
    assert runs["uplift"]["spend_by_band"]["rural"] > runs["open"]["spend_by_band"]["rural"]


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch):
    """The command's callback points structlog at the runner's captured stdout, closed afterwards;
    later tests would log into it. Logging is not what these tests are about."""
    monkeypatch.setattr("services.runtime.logging.configure", lambda *args, **kwargs: None)


def test_the_command_writes_json_charts_and_a_summary(tmp_path):
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        "- {name: short-windows, based_on: prime-supplementary, windows_hours: {hospital_discharge: 1}}\n"
    )
    out = tmp_path / "out"
    run = CliRunner().invoke(
        app,
        [
            "simulate",
            "--days",
            "5",
            "--jobs",
            "1",
            "--out",
            str(out),
            "--variants",
            str(variants),
            "--demand",
            "summer_surge=0.5",
            "--market",
            "capacity_scale=2.0",
        ],
    )
    assert run.exit_code == 0, run.output
    result = json.loads((out / "result.json").read_text())
    assert list(result["policies"]) == ["prime-supplementary", "open-framework", "short-windows"]
    assert result["policies"]["short-windows"]["policy"]["windows_hours"]["hospital_discharge"] == 1.0
    assert result["demand"]["summer_surge"] == 0.5 and result["market"]["capacity_scale"] == 2.0
    for chart in (
        "time_to_place",
        "waiting_over_time",
        "hand_backs_and_exceptions",
        "spend_by_band",
        "concentration",
        "decline_mix",
    ):
        assert (out / f"{chart}.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "summary.md").read_text()
    assert "| measure | prime-supplementary | open-framework | short-windows |" in summary


def test_bad_parameters_are_refused(tmp_path):
    run = CliRunner().invoke(app, ["simulate", "--days", "2", "--demand", "nonsense=1", "--out", str(tmp_path)])
    assert run.exit_code != 0 and "nonsense" in run.output
    run = CliRunner().invoke(app, ["simulate", "--days", "2", "--policies", "monopoly", "--out", str(tmp_path)])
    assert run.exit_code != 0 and "monopoly" in run.output


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_the_replays_shortcuts_change_no_outcome(policy):
    """Foreseen declines settled at once and plans reused give exactly the replay without them
    (every answer an event, plan_offer on every provider near the zone every round). A tight,
    hand-back-prone market, so capacity moves, packages wait and providers are excluded; the period
    ends with rounds still open."""
    framework, seed = load_framework(), load_provider_seed()
    demand = dataclasses.replace(DEMAND, days=12, hand_back_share=0.4, notice_days=1, mean_care_weeks=1.0)
    market = sim.MarketParams(capacity_scale=1.2)

    def replay(shortcuts: bool) -> sim.Simulation:
        return sim.Simulation(
            framework,
            sim.generate_demand(framework, demand),
            sim.build_market(framework, seed, market),
            policy,
            market,
            demand,
            shortcuts=shortcuts,
        ).run()

    fast, slow = replay(True), replay(False)
    assert fast.foreseen_rounds > 100 and fast.reused_plans > 100  # the shortcuts were taken...
    assert slow.foreseen_rounds == slow.reused_plans == 0
    assert fast.result()["hand_backs"] > 10 and fast.result()["packages"]["by_status_at_end"].get("offered")
    assert json.dumps(fast.result(), sort_keys=True, default=str) == json.dumps(
        slow.result(), sort_keys=True, default=str
    )
