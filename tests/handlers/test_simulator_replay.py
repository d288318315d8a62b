"""``homecare simulate --replay``: a short history recorded into the reporting projection (the
reporting service in-process on the in-memory broker, a real PostgreSQL), read back and replayed
under two policies; and the command's answers to a period it cannot replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from schemas.events import BidSubmitted, OfferDeclined, OfferMade, PackageRequested
from services.bench.history import history
from services.cli.main import app
from services.reporting.app import build
from services.runtime.reference import load_framework
from services.simulator import simulation as sim
from services.simulator.recorded import read_history, replay_of
from tests.handlers.test_reporting_handlers import project

# A period of its own: the handler tests share one projection.
START = dt.datetime(2023, 1, 9, 8, 0, tzinfo=dt.UTC)
PACKAGES = 60  # one every 3 hours: 7.5 days
FROM, TO = "2023-01-09", "2023-01-16"  # UK dates, TO included


@pytest.fixture
async def recorded(in_memory):
    """The reporting service with a recorded history: (service, the history's events)."""
    service, broker = await in_memory(build, "reporting")
    # A seed of its own: history() derives package ids from it, and the handler tests share one projection.
    events = history(START, packages=PACKAGES, seed=2023)
    await project(broker, events)
    return service, events


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch):
    monkeypatch.setattr("services.runtime.logging.configure", lambda *args, **kwargs: None)


async def test_the_recorded_history_is_read_calibrated_and_replayed(recorded):
    service, events = recorded
    start, end = START - dt.timedelta(hours=1), START + dt.timedelta(days=8)
    async with service.pool.acquire() as conn:
        past = await read_history(conn, start, end)
    requests = [e for e in events if isinstance(e, PackageRequested)]
    assert [p.package_id for p in past.packages] == [e.package_id for e in requests]  # in their order
    # Every offered provider of every round, with its answer or none.
    offered = sum(len(e.provider_ids) for e in events if isinstance(e, OfferMade))
    bids = sum(isinstance(e, BidSubmitted) for e in events)
    declines = sum(isinstance(e, OfferDeclined) for e in events)
    kinds = [a.kind for a in past.answers]
    assert len(kinds) == offered and kinds.count("bid") == bids and kinds.count("decline") == declines
    assert kinds.count("none") == offered - bids - declines

    replay, skipped = replay_of(past, load_framework(), sim.DemandParams(days=past.days))
    assert skipped == 0 and len(replay.demand) == PACKAGES
    assert replay.start_day == dt.date(2023, 1, 9)
    # The providers of the record (bench history: six, first four zones, urban to rural).
    assert sorted(replay.market.profiles) == [f"rep-{c}-care" for c in "abcdef"]
    assert {p.tier for p in replay.market.profiles.values()} == {"prime", "supplementary"}
    # Calibrated: each provider's decline rate is its recorded one, shrunk towards its band's.
    for pid in replay.market.profiles:
        mine = [a for a in past.answers if a.provider_id == pid and a.kind != "none"]
        declined = sum(a.kind == "decline" for a in mine) / len(mine)
        counted = replay.calibration.counts[(mine[0].band, mine[0].prime_round, pid)]
        assert counted[1] == sum(a.band == mine[0].band and a.prime_round == mine[0].prime_round for a in mine)
        assert 0 <= declined <= 1

    result = sim.simulate(
        load_framework(),
        [],
        [sim.Policy("ps", "prime-supplementary"), sim.Policy("open", "open-framework")],
        demand=sim.DemandParams(days=past.days),
        replay=replay,
    )
    assert result["start"] == "2023-01-09"
    for run in result["policies"].values():
        assert run["packages"]["requested"] == PACKAGES
        assert sum(run["packages"]["by_status_at_end"].values()) == PACKAGES
        assert sum(u["placed"] for u in run["time_to_place"].values()) > PACKAGES / 2
        # Only the recorded providers place anything, in the recorded zones.
        placed = {p for zone in run["concentration"].values() for p in zone["shares_percent"]}
        assert placed <= set(replay.market.profiles)
    assert "open" in result["policies"]["open"]["rounds_by_zone_and_tier"][past.packages[0].zone]
    assert "prime" in result["policies"]["ps"]["rounds_by_zone_and_tier"][past.packages[0].zone]


async def test_the_command_replays_a_period_and_says_when_there_is_nothing(
    recorded, handlers_database, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", handlers_database)  # the reporting role's connection to it
    out = tmp_path / "out"
    base = ["simulate", "--jobs", "1", "--no-charts", "--out", str(out)]
    # In a thread: the command runs its own event loop, as it does from a shell.
    run = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--replay", f"{FROM}..{TO}", "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads((out / "result.json").read_text())
    assert result["replay"]["requests"] == PACKAGES and result["replay"]["replayed"] == PACKAGES
    assert result["replay"]["recorded"]["requested"] == PACKAGES
    assert list(result["policies"]) == ["prime-supplementary", "open-framework"]
    assert result["replay"]["calibration"]["answers"] > 0
    assert "the council's own history" in (out / "summary.md").read_text()
    run = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--replay", f"{FROM}..{TO}"])
    assert run.exit_code == 0 and f"replay of {PACKAGES} package requests" in run.output
    assert "as recorded:" in run.output and "open-framework" in run.output

    run = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--replay", "2019-03-01..2019-03-31"])
    assert run.exit_code == 0 and "no package requests recorded" in run.output


@pytest.mark.parametrize(
    ("period", "named"),
    [("last-year", "'last-year'"), ("2023-01-09..", "'2023-01-09..'"), ("2023-02-30..2023-03-01", "2023-02-30")],
)
def test_a_period_it_cannot_read_is_refused_naming_it(period, named, tmp_path):
    run = CliRunner().invoke(app, ["simulate", "--replay", period, "--out", str(tmp_path)])
    assert run.exit_code == 2
    assert named in run.output and "--replay" in run.output


def test_an_unknown_policy_or_parameter_to_vary_is_refused_naming_it(tmp_path):
    run = CliRunner().invoke(app, ["simulate", "--replay", "7d", "--policies", "monopoly", "--out", str(tmp_path)])
    assert run.exit_code == 2 and "monopoly" in run.output
    run = CliRunner().invoke(app, ["simulate", "--days", "2", "--sensitivity", "greed=0,1", "--out", str(tmp_path)])
    assert run.exit_code == 2 and "greed" in run.output
    variant = "{name: x, based_on: monopoly}"
    run = CliRunner().invoke(app, ["simulate", "--replay", "7d", "--variant", variant, "--out", str(tmp_path)])
    assert run.exit_code == 2 and "monopoly" in run.output
