"""Provider behaviour calibrated from recorded answers (``homecare simulate --replay``): how often
each provider declined, by band, zone and urgency, how often it left an offer unanswered, how
long it took to answer and why it declined. Pure: the rows come from the reporting projection
(:mod:`services.simulator.recorded`), or from a test.

Decline rates are shrunk towards the coarser cell above them (empirical Bayes with a prior of
``prior`` answers): overall -> band -> band and whether the round was a Prime round -> provider
-> provider and zone -> provider, zone and urgency. A cell with many answers keeps its own rate;
a cell with a handful is pulled towards its parent; a cell with none is its parent (a cell
holding the same answers as its parent adds nothing, so thin evidence is not counted once per
level). A Prime's
answers on its zone's Prime round (its obligation, decision 0086) are kept apart from its other
answers: replayed under an open framework, a Prime with no unobliged record in a band answers as
the band's providers did without the obligation.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.vocabulary import DeclineReason

PRIOR_ANSWERS = 5.0  # the weight of a cell's parent, in answers (decision 0087)


@dataclass(frozen=True)
class RecordedAnswer:
    """One provider's part in one recorded offer round: ``kind`` is ``bid``, ``decline`` or
    ``none`` (offered, never answered); ``minutes`` from the offer to the answer (None: none).
    Zone, band and urgency are the package's."""

    provider_id: str
    band: str
    zone: str
    urgency: str
    tier: str  # the round's: prime, supplementary, open or adjacent
    kind: str
    reason: str | None = None
    minutes: float | None = None
    rate_ratio: float | None = None  # a bid's rate over the round's band rate

    @property
    def prime_round(self) -> bool:
        return self.tier == "prime"


@dataclass
class Calibration:
    """The recorded behaviour, as the simulation asks for it. Build it with :func:`calibrate`."""

    counts: dict[tuple, list[int]]  # cell key -> [declines, answers]
    unanswered: dict[str, list[int]]  # provider -> [offers never answered, offers]
    reasons: dict[str, Counter[str]]  # band -> decline reason -> count
    mean_answer_minutes: float
    prior: float = PRIOR_ANSWERS
    bid_ratios: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (provider, band) -> rate/band rate
    _rates: dict[tuple, float] = field(default_factory=dict, repr=False)

    def decline_rate(self, provider_id: str, band: str, zone: str, urgency: str, *, obligated: bool) -> float:
        """The chance (0-1) that ``provider_id`` declines an offer it answers, of a package in
        ``band``/``zone``/``urgency``, on a Prime round of its zone (``obligated``) or not."""
        key = (str(band), bool(obligated), provider_id, str(zone), str(urgency))
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = self._shrunk(key)
        return rate

    def _shrunk(self, key: tuple) -> float:
        rate = self._raw(())
        above = self.counts.get((), [0, 0])[1]
        for depth in range(1, len(key) + 1):
            declines, answers = self.counts.get(key[:depth], (0, 0))
            if answers == above:
                continue  # the same answers as the cell above: counted once, not once per level
            rate = (declines + self.prior * rate) / (answers + self.prior)
            above = answers
        return rate

    def _raw(self, key: tuple) -> float:
        declines, answers = self.counts.get(key, (0, 0))
        return declines / answers if answers else 0.5  # no answers recorded at all: a coin

    def no_answer_rate(self, provider_id: str) -> float:
        """The share (0-1) of its offers ``provider_id`` never answered (shrunk to everyone's)."""
        none, offers = self.unanswered.get(provider_id, (0, 0))
        everyone = [sum(v[0] for v in self.unanswered.values()), sum(v[1] for v in self.unanswered.values())]
        overall = everyone[0] / everyone[1] if everyone[1] else 0.0
        return (none + self.prior * overall) / (offers + self.prior)

    def decline_reason(self, band: str, rng: random.Random) -> DeclineReason:
        """A reason for a decline in ``band``, drawn from the recorded mix (the band's, else
        everyone's; ``other`` when nothing was recorded)."""
        mix = self.reasons.get(str(band)) or sum(self.reasons.values(), Counter())
        known = [(DeclineReason(r), n) for r, n in sorted(mix.items()) if r in DeclineReason._value2member_map_]
        if not known:
            return DeclineReason.other
        return rng.choices([r for r, _ in known], [n for _, n in known])[0]

    def bid_ratio(self, provider_id: str, band: str, rng: random.Random) -> float:
        """A bid's rate as a share of the band rate, drawn from ``provider_id``'s recorded bids in
        ``band`` (else the band's, else 1: at the rate)."""
        ratios = self.bid_ratios.get((provider_id, str(band))) or self.bid_ratios.get(("", str(band)))
        return rng.choice(ratios) if ratios else 1.0

    def summary(self) -> dict:
        """What the calibration holds, for result.json: answers and decline rates by band, the
        unanswered share, the answer time (minutes)."""
        by_band = {}
        for key, (declines, answers) in sorted(self.counts.items(), key=lambda kv: str(kv[0])):
            if len(key) == 1:
                by_band[key[0]] = {"answers": answers, "decline_rate": round(declines / answers, 3)}
        none = sum(v[0] for v in self.unanswered.values())
        offers = sum(v[1] for v in self.unanswered.values())
        return {
            "answers": self.counts.get((), [0, 0])[1],
            "providers": len(self.unanswered),
            "by_band": by_band,
            "unanswered_share": round(none / offers, 3) if offers else None,
            "mean_answer_minutes": round(self.mean_answer_minutes, 1),
            "prior_answers": self.prior,
        }


def calibrate(rows: Iterable[RecordedAnswer], *, prior: float = PRIOR_ANSWERS) -> Calibration:
    """The calibration from recorded offers and answers (every provider offered each round: a
    bid, a decline or nothing). Declines for capacity count like any other: the replay checks
    capacity first, and this rate is what is left of a provider's reluctance (decision 0087)."""
    counts: dict[tuple, list[int]] = {}
    unanswered: dict[str, list[int]] = {}
    reasons: dict[str, Counter[str]] = {}
    minutes: list[float] = []
    ratios: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        seen = unanswered.setdefault(row.provider_id, [0, 0])
        seen[1] += 1
        if row.kind == "none":
            seen[0] += 1
            continue
        if row.minutes is not None and row.minutes >= 0:
            minutes.append(row.minutes)
        declined = row.kind == "decline"
        key = (row.band, row.prime_round, row.provider_id, row.zone, row.urgency)
        for depth in range(len(key) + 1):
            cell = counts.setdefault(key[:depth], [0, 0])
            cell[0] += declined
            cell[1] += 1
        if declined:
            reasons.setdefault(row.band, Counter())[row.reason or "other"] += 1
        elif row.rate_ratio:
            ratios.setdefault((row.provider_id, row.band), []).append(round(row.rate_ratio, 4))
            ratios.setdefault(("", row.band), []).append(round(row.rate_ratio, 4))
    mean = max(1.0, sum(minutes) / len(minutes)) if minutes else 45.0  # at least a minute: a clock to draw from
    return Calibration(counts, unanswered, reasons, mean, prior, bid_ratios=ratios)
