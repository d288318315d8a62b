"""Who is told what when a package is placed. No I/O.

For now the channel is ``log``: the confirmation is stored and written to the service log.
Email, GOV.UK Notify and webhook channels come with recipient preferences.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import PackagePlaced


@dataclass(frozen=True)
class Confirmation:
    recipient_kind: str
    recipient_id: str
    channel: str
    subject: str
    body: str


def placement_confirmations(event: PackagePlaced) -> list[Confirmation]:
    start = event.start_date.isoformat()
    return [
        Confirmation(
            "provider", event.provider_id, "log",
            f"Package awarded: {event.zone}, {event.hours_per_week} h/week",
            f"You have been awarded package {event.package_id} in {event.zone} ({event.band} band) at "
            f"£{event.hourly_rate}/h for {event.hours_per_week} hours a week, starting {start}. "
            f"Fetch the person's details from the brokerage provider API.",
        ),
        Confirmation(
            "broker", event.requested_by, "log",
            f"Package placed with {event.provider_id}",
            f"Package {event.package_id} has been placed with {event.provider_id} from {start} "
            f"(offer round {event.offer_round}, {event.tier} tier, rate card {event.rate_card}).",
        ),
    ]
