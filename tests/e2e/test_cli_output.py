"""The ``homecare`` reports that read the running system (demo, kpis, lag, dead-letters, provider
credentials), run as processes with stdout to a pipe at 80 columns and in a narrow terminal: every
line fits, every value of the command's ``--json`` is there whole. Against the real Kafka,
PostgreSQL and the three services."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
from aiokafka import AIOKafkaProducer

from services.bench.driver import place_batch
from services.cli import demo
from services.runtime import clock, topics
from services.runtime.kafka import kafka_security
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch
from tests.cli_checks import assert_fits, assert_shows, homecare_piped
from tests.support import staff

WIDTHS = (80, 40)  # a terminal of the usual width (and a pipe's default), and a narrow one
PACKAGES, SEED = 8, 5


def services_env(stack) -> dict[str, str]:
    return {
        "BROKERAGE_URL": stack.url("brokerage"),
        "PROVIDERS_URL": stack.url("providers"),
        "NOTIFICATIONS_URL": stack.url("notifications"),
    }


CLOCK = {"as_of", "longest_wait_s", "oldest_unprocessed_age_s"}  # figures that move with the clock alone


def settled(data: object) -> object:
    """``data`` without the figures that change with the clock, to tell whether the system moved."""
    if isinstance(data, dict):
        return {k: settled(v) for k, v in data.items() if k not in CLOCK}
    if isinstance(data, list):
        return [settled(v) for v in data]
    return data


async def stable(*args: str) -> tuple[object, dict[int, str]]:
    """The command's JSON and its text at each width, taken while nothing changed in between (the
    system may still be settling: a second JSON read must equal the first, clock aside)."""
    for _ in range(10):
        before = json.loads(homecare_piped(*args, "--json", columns=80))
        texts = {room: homecare_piped(*args, columns=room) for room in WIDTHS}
        if settled(json.loads(homecare_piped(*args, "--json", columns=80))) == settled(before):
            return before, texts
        await asyncio.sleep(1)
    raise AssertionError(f"homecare {' '.join(args)} did not settle")


async def test_the_demo_reads_whole_in_a_pipe_and_its_json_has_the_same_values(stack):
    args = ("demo", "--packages", str(PACKAGES), "--seed", str(SEED))
    report = json.loads(homecare_piped(*args, "--json", columns=80, env=services_env(stack), timeout=240))
    assert report["all_zones"]["requested"] == PACKAGES
    assert sum(z["requested"] for z in report["zones"]) == PACKAGES
    for room in WIDTHS:  # the rendering of this very report...
        text = demo.render(report, room)
        assert_fits(text, room)
        for line in [*report["zones"], report["all_zones"]]:
            for key, value in line.items():
                assert_shows(text, "-" if value is None else f"{value:.2f}" if key.endswith("place") else value)
        for d in report["notifications"]:
            assert_shows(text, f"{d['channel']} {d['status']}: {d['count']}")
    # ...and the command itself in a pipe: the same seed asks for the same packages in each zone.
    for room in WIDTHS:
        text = homecare_piped(*args, columns=room, env=services_env(stack), timeout=240)
        assert_fits(text, room)
        assert_shows(text, f"{PACKAGES} packages requested")
        for line in report["zones"]:
            assert_shows(text, f"{line['zone']} {line['requested']}")


async def test_kpis_read_whole_in_a_pipe_and_the_json_has_the_same_values(stack):
    await place_some(stack)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    k, texts = await stable("kpis", "--since", "2020-01-01T00:00:00+00:00", "--until", until)
    assert isinstance(k, dict) and k["packages"]["requested"] >= PACKAGES
    for room, text in texts.items():
        assert_fits(text, room)
        p = k["packages"]
        for key in ("requested", "placed", "unplaced", "cancelled", "handed_back", "awaiting_approval"):
            assert_shows(text, f"{p[key]} {key.replace('_', ' ')}")
        for urgency, row in k["time_to_place"]["by_urgency"].items():
            assert_shows(text, f"{urgency.replace('_', ' ')} {row['count']}")
        for row in k["unplaced_queue"]:
            assert_shows(text, f"{row['zone']} {row['band']} {row['packages']} {row['hours']}")
        assert k["concentration_by_zone"]
        for zone, row in k["concentration_by_zone"].items():
            provider, share = next(iter(row["shares_percent"].items()))
            assert_shows(text, f"{zone} {row['hhi']} {provider} {share}%")
        for band, reasons in k["declines_by_band"].items():
            assert_shows(text, band)
            for count in reasons.values():
                assert_shows(text, count)
        for band, spend in k["weekly_spend_by_band"].items():
            assert_shows(text, f"{band} £{spend}")
        assert_shows(text, f"above-rate exceptions: {k['above_rate_exceptions']['count']}")
        for zone in k["zones_with_fewer_than_two_willing_providers"]["zones"]:
            assert_shows(text, zone)


async def test_lag_reads_whole_in_a_pipe_and_the_json_has_the_same_values(stack):
    rows, texts = await stable("lag")
    assert isinstance(rows, list) and {r["group"] for r in rows} == {
        topics.group(s) for s in ("brokerage", "providers", "notifications", "reporting")
    }
    for room, text in texts.items():
        assert_fits(text, room)
        for r in rows:
            who = "NO ACTIVE MEMBER" if r["members"] == 0 else f"{r['members']} member(s)"
            assert_shows(text, f"group {r['group']} ({who}) reading {r['topic']}")
            assert_shows(text, f"{r['partition']} {r['committed']} {r['end']} {r['lag']}")  # the age moves on


async def test_dead_letters_read_whole_in_a_pipe_and_the_json_has_the_same_values(stack, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.resolve("providers.answers"), b'{"event_type": "BidSubmitted"}', key=b"output-test"
        )
    finally:
        await producer.stop()
    for _ in range(60):
        listed = [
            json.loads(line) for line in homecare_piped("dead-letters", "list", "--json", columns=80).splitlines()
        ]
        if any(d["key"] == "output-test" for d in listed):
            break
        await asyncio.sleep(1)
    else:
        raise AssertionError("the dead letter was not listed")
    for room in WIDTHS:
        text = homecare_piped("dead-letters", "list", columns=room)
        assert_fits(text, room)
        for d in listed:
            for key in ("id", "consumer", "origin", "reason", "attempts", "error"):
                assert_shows(text, d[key])
            assert_shows(text, clock.format_uk(d["failed_at"]))  # for people: UK local time


async def test_provider_credentials_read_whole_in_a_pipe_and_the_json_has_the_same_values(stack):
    async with httpx.AsyncClient(auth=staff("demo-admin")) as client:
        provider_id = (await client.get(f"{stack.url('providers')}/providers")).json()[0]["provider_id"]
    env = {"HOMECARE_CLI_USER": "demo-admin"}
    url = ("--url", stack.url("providers"))
    homecare_piped(
        "providers",
        "credentials",
        "issue",
        provider_id,
        "--label",
        "rota system at the office",
        *url,
        columns=80,
        env=env,
    )
    listed = json.loads(
        homecare_piped("providers", "credentials", "list", provider_id, *url, "--json", columns=80, env=env)
    )
    assert any(c["label"] == "rota system at the office" for c in listed)
    for room in WIDTHS:
        text = homecare_piped("providers", "credentials", "list", provider_id, *url, columns=room, env=env)
        assert_fits(text, room)
        for c in listed:
            for value in (c["credential_id"], c["label"] or "-", clock.format_uk(c["created_at"])):
                assert_shows(text, value)
            assert_shows(text, clock.format_uk(c["revoked_at"] or c["last_used_at"], missing="never"))


async def place_some(stack) -> None:
    await place_batch(stack.url("brokerage"), batch(load_framework(), PACKAGES, seed=SEED + 1), timeout=180)
