"""Synthetic package requests for the demo, the tests and the benchmark. Seeded, reproducible.

The mix follows the papers: hospital discharges are a large share (150-200 a week county-wide,
000:62-68), packages average 12-15 hours a week (002), some calls are double-handed. Personal
details are made up (NHS numbers carry a valid check digit but are drawn from the 999 range
that is never issued to patients).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from services.runtime import clock
from services.runtime.reference import Framework

FIRST = [
    "Ada",
    "Bernard",
    "Cynthia",
    "Dennis",
    "Edith",
    "Frank",
    "Gwen",
    "Harold",
    "Irene",
    "Jack",
    "Kathleen",
    "Leonard",
    "Margaret",
    "Norman",
    "Olive",
    "Percy",
    "Rita",
    "Stanley",
    "Thelma",
    "Walter",
]
LAST = [
    "Abbott",
    "Bailey",
    "Carter",
    "Dawson",
    "Ellis",
    "Fletcher",
    "Gibson",
    "Holmes",
    "Ingram",
    "Jarvis",
    "Kemp",
    "Lambert",
    "Marsh",
    "Newton",
    "Osborne",
    "Palmer",
    "Quinn",
    "Rowe",
    "Sutton",
    "Turner",
]
BAND_BY_SIZE = {
    "large": (["urban", "fringe", "rural"], [6, 3, 1]),
    "medium": (["urban", "fringe", "rural", "isolated"], [3, 4, 2, 1]),
    "small_town": (["fringe", "rural", "isolated"], [4, 4, 2]),
    "small_rural": (["rural", "isolated"], [6, 4]),
    "rural_free": (["rural", "isolated"], [5, 5]),
}
URGENCY = (["hospital_discharge", "reablement_step_down", "community"], [4, 2, 4])
# A discharge request carries the Discharge Hub's codes (decision records 0097, 0120): hospitals and
# wards of the shipped deploy/reference/discharge.yaml, taken in turn (no draw from the generator, so
# a seed gives the same packages as before the block existed).
HOSPITAL_WARDS = (("uhl-lri", "W17"), ("uhl-lgh", "W14"), ("uhl-glenfield", "W24"), ("lpt-loughborough", "SWITHLAND"))
NEEDS_EXTRA = ["medication", "dementia", "mobility", "nutrition", "end_of_life", "mental_health"]


def nhs_number(rng: random.Random) -> str:
    while True:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, [*digits, check]))


def package_request(
    rng: random.Random, framework: Framework, zone_id: str, *, index: int = 0, urgency: str | None = None
) -> dict:
    """A synthetic package request for ``zone_id`` (the body of ``POST /packages``), drawn from
    ``rng``; ``urgency`` chooses the urgency instead of the draw (the same draws are made, so a seed
    gives the same package otherwise), and a hospital discharge gets its discharge block."""
    zone = framework.zones[zone_id]
    bands, weights = BAND_BY_SIZE[zone.size]
    calls = rng.choice([1, 2, 2, 3, 3, 4, 4])
    minutes = rng.choice([15, 30, 30, 30, 45, 45, 60])
    carers = 2 if rng.random() < 0.12 else 1
    days = 7
    hours = (Decimal(calls * minutes * carers * days) / 60).quantize(Decimal("0.01"))
    needs = ["personal_care", *rng.sample(NEEDS_EXTRA, k=rng.choice([0, 1, 1, 2]))]
    district = rng.choice(zone.postcode_districts)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    body: dict[str, Any] = {
        "zone": zone_id,
        "band": rng.choices(bands, weights)[0],
        "postcode_district": district,
        "hours_per_week": str(hours),
        "visits": {
            "calls_per_day": calls,
            "minutes_per_call": minutes,
            "carers_per_call": carers,
            "days_per_week": days,
        },
        "needs": needs,
        "urgency": rng.choices(*URGENCY)[0],
        "start_date": (clock.uk_today() + dt.timedelta(days=rng.choice([0, 1, 1, 2, 7]))).isoformat(),
        "funding": "nhs" if rng.random() < 0.2 else "council",
        "person": {
            "full_name": f"{first} {last} {index:05d}",
            "address": (
                f"{rng.randint(1, 200)} {rng.choice(['Church', 'Mill', 'Station', 'Park'])} Lane, {zone.places[0]}"
            ),
            "postcode": (
                f"{district} "
                f"{rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
            ),
            "phone": f"07700 900{rng.randint(0, 999):03d}",  # Ofcom's range for drama: never a real line
            "email": f"{first.lower()}.{last.lower()}.{index}@example.org",
            "nhs_number": nhs_number(rng),
            "date_of_birth": dt.date(rng.randint(1930, 1960), rng.randint(1, 12), rng.randint(1, 28)).isoformat(),
            "care_notes": f"Lives alone; key safe code {rng.randint(1000, 9999)}.",
        },
    }
    if urgency is not None:
        body["urgency"] = urgency
    if body["urgency"] == "hospital_discharge":
        # Pathway 1 (home with support), medically fit today; no reablement referral and no NHS weeks,
        # so a load test's discharges cost the market what they did (the fallback still has a deadline).
        hospital, ward = HOSPITAL_WARDS[index % len(HOSPITAL_WARDS)]
        body["discharge"] = {
            "hospital": hospital,
            "ward": ward,
            "pathway": 1,
            "medically_fit_on": clock.uk_today().isoformat(),
            "reablement_potential": False,
            "nhs_funded_weeks": 0,
        }
    return body


def batch(framework: Framework, count: int, seed: int = 7) -> list[dict]:
    """``count`` requests spread across every zone (round-robin, so 14+ covers all 14)."""
    rng = random.Random(seed)
    zones = sorted(framework.zones)
    return [package_request(rng, framework, zones[i % len(zones)], index=i) for i in range(count)]
