"""Why a package went where it did: the decision record and plain-language explanations for
the broker, the person and their family, and a losing bidder. Pure: built from the record.

The record is what the brokerage stored as it went (offer rounds with who was offered, who
was excluded and why, the quality scores used; every answer; the policy, rate card and band
rate in force), so the explanation is of the decision as it was made, not as today's rules
would make it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from asyncpg import Record

from schemas.vocabulary import reason_words
from services.brokerage import domain
from services.runtime import clock
from services.runtime import quality as quality_rules

TIER_WORDS = {
    "prime": "the zone's Prime providers",
    "supplementary": "the zone's Supplementary providers",
    "open": "every eligible provider in the zone (open framework)",
    "adjacent": "eligible providers of the neighbouring zones (escalation)",
}


# A row as the repository reads it, or the same as a mapping (the tests build them).
Row = Record | Mapping[str, Any]

RULE = (
    "acceptable bids (at or under the band rate) ranked by quality rating, then price, then earliest start, "
    "then earliest answer, then fewer awards in the zone in the last 12 weeks, then a draw seeded by the "
    "package and round; the first whose provider is still eligible wins"
)
TIE_BREAK_RULE = (
    "bids equal on quality rating, price, start and answer time: fewer awards in the package's zone in the 12 "
    "weeks before the ranking first, then the lower draw (SHA-256 of package id/round/provider id, in hex)"
)


def _tie_break_of(offer_round: Row) -> dict[str, Any] | None:
    value = offer_round.get("tie_break") if hasattr(offer_round, "get") else None
    return json.loads(value) if isinstance(value, str) else value


def _decided(offer_round: Row, ranking: list[domain.RankedBid], package: Row) -> dict[str, Any] | None:
    """Which criterion made the winner of this round win over the next acceptable bid, when the
    round was won: {"criterion", "winner", "runner_up"} (None if no award or no rival)."""
    winner_id = (offer_round["outcome"] or "").removeprefix("placed with ")
    if not (offer_round["outcome"] or "").startswith("placed with "):
        return None
    acceptable = [b for b in ranking if b.acceptable]
    mine = next((i for i, b in enumerate(acceptable) if b.answer.provider_id == winner_id), None)
    if mine is None or mine + 1 >= len(acceptable):
        return None
    winner, runner_up = acceptable[mine], acceptable[mine + 1]
    return {
        "criterion": domain.deciding_criterion(winner, runner_up),
        "winner": winner_id,
        "runner_up": runner_up.answer.provider_id,
        "winner_recent_awards": winner.recent_awards,
        "runner_up_recent_awards": runner_up.recent_awards,
    }


def _money(value: Decimal | str) -> str:
    return f"£{Decimal(value):.2f}"


def decision_record(
    package: Row,
    rounds: Sequence[Row],
    answers: Sequence[Row],
    names: dict[str, str],
    exceptions: Sequence[Row] = (),
    approvals: Sequence[Row] = (),
) -> dict[str, Any]:
    """The structured record: rounds with offers, exclusions, answers and the ranking; each
    above-rate exception with its approvals (``approvals``: rows of exception_approvals, decision
    record 0123: who, when, under which role's limit, whether it covered the bid)."""
    record_rounds = []
    for r in rounds:
        quality = {k: Decimal(v) for k, v in json.loads(r["quality"]).items()}
        # The score's inputs at the time of the offer (decision 0103); none for rounds opened before.
        inputs = json.loads(r["quality_inputs"]) if r.get("quality_inputs") else {}
        mine = [a for a in answers if a["offer_round"] == r["offer_round"]]
        on_time = [
            domain.Answer(
                a["provider_id"],
                a["kind"],
                a["answered_at"],
                a["hourly_rate"],
                a["earliest_start"],
                a["reason"],
                offer_round=r["offer_round"],
            )
            for a in mine
            if not a["late"]
        ]
        stored = _tie_break_of(r)
        tie_break = (
            domain.TieBreak(legacy=True)
            if stored is None and r["closed_at"] is not None
            else domain.TieBreak((stored or {}).get("recent_awards", {}), str(package["package_id"]))
        )
        ranking = domain.rank_bids(on_time, quality, package["band_rate"], tie_break)
        record_rounds.append(
            {
                "offer_round": r["offer_round"],
                "tier": r["tier"],
                "opened_at": r["opened_at"],
                "window_closes_at": r["window_closes_at"],
                "closed_at": r["closed_at"],
                "outcome": r["outcome"],
                "offered": [
                    {
                        "provider_id": p,
                        "name": names.get(p, p),
                        "quality": str(quality.get(p, "")),
                        "quality_inputs": inputs.get(p),
                        "quality_explained": quality_rules.explain(inputs[p]) if p in inputs else None,
                    }
                    for p in r["provider_ids"]
                ],
                "excluded": json.loads(r["excluded"]),
                "answers": [
                    {
                        "provider_id": a["provider_id"],
                        "kind": a["kind"],
                        "hourly_rate": _str(a["hourly_rate"]),
                        "earliest_start": a["earliest_start"],
                        "reason": a["reason"],
                        "reason_text": a["reason_text"],
                        "answered_at": a["answered_at"],
                        "late": a["late"],
                        "adapter": a["adapter"],
                    }
                    for a in mine
                ],
                "ranking": [
                    {
                        "rank": b.rank,
                        "provider_id": b.answer.provider_id,
                        "quality": str(b.quality),
                        "hourly_rate": str(b.answer.hourly_rate),
                        "earliest_start": b.answer.earliest_start,
                        "answered_at": b.answer.answered_at,
                        "acceptable": b.acceptable,
                        "recent_awards_in_zone": None if tie_break.legacy else b.recent_awards,
                        "draw": None if tie_break.legacy else b.draw,
                    }
                    for b in ranking
                ],
                "tie_break": {
                    "rule": "provider id order (before the tie-break rule)" if tie_break.legacy else TIE_BREAK_RULE,
                    "awards_counted_since": (stored or {}).get("since"),
                    "decided_award": _decided(r, ranking, package),
                },
            }
        )
    return {
        "package_id": str(package["package_id"]),
        "status": package["status"],
        "policy": package["policy"],
        "rate_card": package["rate_card"],
        "band": package["band"],
        "band_rate": str(package["band_rate"]),
        "rule": RULE,
        "winner": package["provider_id"],
        "hourly_rate": _str(package["hourly_rate"]),
        "rounds": record_rounds,
        "exceptions": [
            {
                "provider_id": e["provider_id"],
                "hourly_rate": str(e["hourly_rate"]),
                "band_rate": str(e["band_rate"]),
                "requested_at": e["requested_at"],
                "decision": e["decision"],
                "decided_by": e["decided_by"],
                "decided_at": e["decided_at"],
                "reason": e["reason"],
                "reason_text": e["reason_text"],
                "approvals": [
                    {
                        "approver": a["approver"],
                        "approver_role": a["approver_role"],
                        "limit_percent": _str(a["limit_percent"]),
                        "within_limit": a["within_limit"],
                        "provider_id": a["provider_id"],
                        "hourly_rate": str(a["hourly_rate"]),
                        "step": a["step"],
                        "reason": a["reason"],
                        "reason_text": a["reason_text"],
                        "approved_at": a["approved_at"],
                    }
                    for a in approvals
                    if a["exception_id"] == e.get("id")
                ],
            }
            for e in exceptions
        ],
    }


def for_broker(record: dict[str, Any], names: dict[str, str]) -> str:
    lines = [
        f"Requested under the {record['policy']} policy, judged against rate card {record['rate_card']} "
        f"({record['band']} band rate {_money(record['band_rate'])}/h)."
    ]
    for r in record["rounds"]:
        offered = ", ".join(o["name"] for o in r["offered"])
        lines.append(
            f"Round {r['offer_round']}: offered to {TIER_WORDS[r['tier']]} - {offered} - "
            f"with a window to {_when(r['window_closes_at'])}."
        )
        for a in r["answers"]:
            who = names.get(a["provider_id"], a["provider_id"])
            # A round closes as soon as no answer still to come could change its award (decision
            # 0010's early close), so a late answer may have been made before ``closed_at``: it
            # reached the brokerage after (a new user read "after the round had closed" as wrong).
            late = (
                " (it reached the brokerage after the round had closed, so it was not considered)" if a["late"] else ""
            )
            if a["kind"] == "bid":
                lines.append(f"  {who} bid {_money(a['hourly_rate'])}/h, able to start {a['earliest_start']}{late}.")
            else:
                lines.append(
                    f"  {who} declined: {a['reason']}{' - ' + a['reason_text'] if a['reason_text'] else ''}{late}."
                )
        silent = [o["name"] for o in r["offered"] if o["provider_id"] not in {a["provider_id"] for a in r["answers"]}]
        if silent:
            lines.append(f"  No answer from {', '.join(silent)}.")
        for pid, reasons in r["excluded"].items():
            lines.append(f"  Not offered to {names.get(pid, pid)}: {'; '.join(reasons)}.")
        above = [b for b in r["ranking"] if not b["acceptable"]]
        for b in above:
            lines.append(
                f"  {names.get(b['provider_id'], b['provider_id'])}'s bid was above the band rate, "
                "so it could not be accepted without an approved exception."
            )
        offered_by_id = {o["provider_id"]: o for o in r["offered"]}
        for b in r["ranking"]:
            explained = (offered_by_id.get(b["provider_id"]) or {}).get("quality_explained")
            if explained:
                lines.append(
                    f"  {names.get(b['provider_id'], b['provider_id'])}'s quality rating {b['quality']} "
                    f"(rank {b['rank']}): " + "; ".join(explained) + "."
                )
        decided = (r.get("tie_break") or {}).get("decided_award")
        if decided and decided["criterion"] == domain.CRITERIA[0]:
            by_id = {b["provider_id"]: b for b in r["ranking"]}
            who, rival = (names.get(decided[k], decided[k]) for k in ("winner", "runner_up"))
            lines.append(
                f"  {who} ranked above {rival} on quality rating "
                f"({by_id[decided['winner']]['quality']} against {by_id[decided['runner_up']]['quality']})."
            )
        if decided and decided["criterion"] in domain.TIE_BREAKS:
            who, rival = (names.get(decided[k], decided[k]) for k in ("winner", "runner_up"))
            tied = f"  {who} and {rival} tied on quality rating, price, start date and answer time; "
            if decided["criterion"] == domain.CRITERIA[4]:
                lines.append(
                    tied + f"{who} had fewer awards in this zone in the last 12 weeks "
                    f"({decided['winner_recent_awards']} against {decided['runner_up_recent_awards']})."
                )
            else:
                lines.append(
                    tied + f"both had {decided['winner_recent_awards']} awards in this zone in the last 12 weeks, "
                    "so a draw seeded by the package and round decided (recorded, and reproducible)."
                )
        lines.append(f"  Outcome: {r['outcome'] or 'still open'}.")
    for e in record.get("exceptions", []):
        who = names.get(e["provider_id"], e["provider_id"])
        asked = f"Only bids above the band rate came in; paying {who} {_money(e['hourly_rate'])}/h needed approval"
        firsts = [a for a in e.get("approvals", []) if a["step"] == "first"]
        for a in firsts:
            role = a["approver_role"].replace("_", " ")
            lines.append(
                f"First approval of {_money(a['hourly_rate'])}/h by {a['approver']} ({role}) "
                f"on {_when(a['approved_at'])} - {reason_words(a['reason'])}."
            )
        if e["decision"] is None:
            lines.append(asked + (": awaiting a second approval." if firsts else ": awaiting a broker's decision."))
        else:
            why = reason_words(e["reason"]) + (f" ({e['reason_text']})" if e.get("reason_text") else "")
            lines.append(f"{asked}: {e['decision']} by {e['decided_by']} on {_when(e['decided_at'])} - {why}.")
    if record["status"] in ("placed", "started"):
        winner = names.get(record["winner"], record["winner"])
        lines.append(f"Placed with {winner} at {_money(record['hourly_rate'])}/h: " + record["rule"] + ".")
    elif record["status"] == "unplaced":
        lines.append("No provider could be found on any tier: the package is on the unplaced list.")
    return "\n".join(lines)


def for_family(record: dict[str, Any], names: dict[str, str], start_date: str | None) -> str:
    if record["status"] == "cancelled":
        return "The care arrangement has been cancelled. If this is not what you expected, contact the brokerage team."
    if record["status"] not in ("placed", "started"):
        return (
            "We are still looking for a home care provider. We offered the care to the providers who work in "
            "your area and will keep trying; your broker will tell you as soon as someone is found."
        )
    winner = names.get(record["winner"], record["winner"])
    return (
        f"{winner} will provide your care, starting on {start_date}. We offered your care to the home care "
        "providers who work in your area and can meet your needs, and chose the one with the best quality "
        "rating among those who could take it at the council's rate. If you have a concern, contact the brokerage team."
    )


def for_losing_bidder(record: dict[str, Any], provider_id: str) -> str | None:
    """What a provider that bid and did not win is told: its own rank, never the winner's price.
    About its latest bid (a re-offered package may have had several rounds)."""
    if provider_id == record["winner"]:
        return None
    for r in reversed(record["rounds"]):
        for b in r["ranking"]:
            if b["provider_id"] != provider_id:
                continue
            if not b["acceptable"]:
                why = "your bid was above the band rate"
            elif record["status"] in ("placed", "started") and (r["outcome"] or "").startswith("placed"):
                why = (
                    "a bid ranked higher on quality rating, price, start date or answer time - or, equal on all "
                    "four, from a provider with fewer awards in the zone in the last 12 weeks or by a recorded "
                    "draw - was accepted"
                )
            elif record["status"] == "cancelled":
                why = "the package was cancelled"
            else:
                why = "the round closed without an award to you"
            return (
                f"Package {record['package_id']} was not awarded to you: {why}. Your bid ranked "
                f"{b['rank']} of {len(r['ranking'])} in round {r['offer_round']}."
            )
    return None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _when(value: object) -> str:
    """A timestamp for people: UK local time with GMT/BST (stored in UTC)."""
    return clock.format_uk(value) if isinstance(value, dt.datetime) else str(value)
