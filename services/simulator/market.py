"""A synthetic county market: the providers of the framework, generated from a seed.

Used to write ``deploy/reference/providers.yaml`` (``homecare reference generate-market``) and,
later, by the benchmark and the policy simulator. Same seed, same market.

Shape, from the council papers: at least two providers per zone (004:970), a Prime tier
except in Harborough rural, tens of providers across the county, supply thinner and pickier
the more rural the band (declines are the normal case, 002).
"""

from __future__ import annotations

import random

from schemas.vocabulary import Band, CareNeed
from services.runtime.reference import Framework

PROVIDERS_PER_ZONE = {
    "large": (3, 5),
    "medium": (2, 4),
    "small_town": (2, 3),
    "small_rural": (2, 3),
    "rural_free": (2, 3),
}
CQC = ["outstanding", "good", "good", "good", "requires_improvement", "not_yet_rated"]
NAMES = [
    "Bluebell",
    "Charnwood",
    "Soar Valley",
    "Fosse",
    "Riverside",
    "Beacon",
    "Wreake",
    "Sence",
    "Welland",
    "Oakwood",
    "Forest",
    "Heartland",
    "Swithland",
    "Bradgate",
    "Kingfisher",
    "Meadow",
    "Orchard",
    "Willow",
    "Hawthorn",
    "Ivy",
    "Juniper",
    "Larch",
    "Maple",
    "Poppy",
    "Rowan",
    "Sorrel",
    "Thistle",
    "Yew",
    "Ashby",
    "Burbage",
    "Cosby",
    "Dunton",
    "Enderby",
    "Foxton",
    "Glenfield",
    "Hallaton",
    "Ibstock",
    "Kibworth",
    "Leire",
    "Medbourne",
    "Nailstone",
    "Oaks",
    "Peckleton",
    "Queniborough",
    "Rearsby",
    "Sileby",
    "Thurnby",
    "Ullesthorpe",
]
OPTIONAL_SKILLS = [
    CareNeed.dementia,
    CareNeed.mobility,
    CareNeed.nutrition,
    CareNeed.end_of_life,
    CareNeed.mental_health,
]


def generate_market(framework: Framework, seed: int = 2021) -> list[dict]:
    rng = random.Random(seed)
    providers: list[dict] = []
    for zone in framework.zones.values():
        low, high = PROVIDERS_PER_ZONE[zone.size]
        count = rng.randint(low, high)
        has_prime = zone.id not in framework.no_prime_zones
        for i in range(count):
            tier = "prime" if has_prime and i < max(1, count // 3) else "supplementary"
            # Most providers also serve a neighbouring zone; a few serve two.
            extra = rng.sample(list(zone.adjacent), k=min(len(zone.adjacent), rng.choice([0, 1, 1, 2])))
            rural = zone.size in ("small_rural", "rural_free")
            bands = [Band.urban, Band.fringe, Band.rural] + ([Band.isolated] if rural or rng.random() < 0.6 else [])
            if tier == "supplementary" and not rural and rng.random() < 0.3:
                bands = [Band.urban, Band.fringe]  # town-only agencies: the cherry-picking pattern
            skills = [
                CareNeed.personal_care,
                CareNeed.medication,
                *sorted(rng.sample(OPTIONAL_SKILLS, k=rng.randint(1, len(OPTIONAL_SKILLS)))),
            ]
            capacity = rng.randrange(150, 601 if tier == "prime" else 301, 10)
            # Most of it is already committed to existing packages: the market is short of
            # supply (002; ~2.2M commissioned hours undelivered nationally in a quarter of 2022).
            committed = int(capacity * rng.uniform(0.82, 0.97))
            n = len(providers)
            name = NAMES[n % len(NAMES)] + (f" {n // len(NAMES) + 1}" if n >= len(NAMES) else "")
            providers.append(
                {
                    "provider_id": f"{name.lower().replace(' ', '-')}-care",
                    "name": f"{name} Home Care",
                    "tier": tier,
                    "status": "active",
                    "zones": [zone.id, *extra],
                    "bands": [str(b) for b in bands],
                    "skills": [str(s) for s in skills],
                    "double_handed": rng.random() < 0.75,
                    "cqc_rating": rng.choice(CQC),
                    "local_risk": rng.choice(["low", "low", "medium", "high"]),
                    "hand_backs_12m": rng.choice([0, 0, 0, 1, 2, 4]),
                    "weekly_capacity_hours": capacity,
                    "committed_hours": committed,
                    "adapter": {
                        "kind": "automatic",
                        "max_package_hours": rng.choice([20, 28, 35, 42]),
                        "max_calls_per_day": rng.choice([3, 4, 4, 4]),
                        # Percent above the band rate this provider asks, per band: a rural premium
                        # makes some bids above rate (an exception that needs approval).
                        "premium_percent": {"rural": rng.choice([0, 0, 0, 5]), "isolated": rng.choice([0, 0, 8])},
                        # Some take work just over their zones' edge when a neighbour's package is escalated.
                        "covers_adjacent_zones": rng.random() < 0.4,
                    },
                }
            )
    return providers
