"""The framework's fixed vocabulary, shared by the contracts and the services.

Zones are *not* here: they are versioned reference data (deploy/reference/), re-drawn over
time without a code change. Bands, urgencies, needs and decline reasons are the words the
contracts themselves use, so they live with the contracts.
"""

from enum import StrEnum


class Band(StrEnum):
    """Pricing band of the place where the visits happen (not of the zone)."""

    urban = "urban"
    fringe = "fringe"
    rural = "rural"
    isolated = "isolated"


class Urgency(StrEnum):
    hospital_discharge = "hospital_discharge"
    reablement_step_down = "reablement_step_down"
    community = "community"


class CareNeed(StrEnum):
    personal_care = "personal_care"
    medication = "medication"
    dementia = "dementia"
    mobility = "mobility"
    nutrition = "nutrition"
    end_of_life = "end_of_life"
    mental_health = "mental_health"


class Funding(StrEnum):
    council = "council"
    nhs = "nhs"


class Tier(StrEnum):
    prime = "prime"
    supplementary = "supplementary"
    open = "open"
    adjacent = "adjacent"  # escalation: providers of the neighbouring zones


class DeclineReason(StrEnum):
    capacity = "capacity"
    geography = "geography"
    call_times = "call_times"
    skills = "skills"
    price = "price"
    other = "other"
