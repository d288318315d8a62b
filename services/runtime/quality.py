"""The quality score used to rank bids, derived from the provider quality and risk register. No I/O.

One function, :func:`score`, for every user: the brokerage scores each provider it offers a
package to (and keeps the inputs and points with the round: the decision record), the providers
service shows the score on its register, the policy simulator ranks with it. The weights and points
are documented in docs/guide/award-ranking.md and decision records 0019 and 0103.

The score is a composite 0-100 (one decimal place):

- **CQC rating** (weight 0.6 by default): Outstanding 100, Good 75, Requires improvement 35,
  Inadequate 0 (and an Inadequate provider is not offered work at all), **not yet rated 50**: a
  provider new to the market is neither rewarded nor shut out (the framework stays open, 004:1082).
  A provider whose rating CQC has *withdrawn or suspended* is entered as not yet rated by its
  reviewer (the register's policy, docs/guide/quality-register.md).
- **Local risk rating** (weight 0.3): the council's own RAG, reviewed weekly by the contracts and
  quality team: green (low) 100, amber (medium) 60, red (high) 20.
- **Hand-back record** (weight 0.1): 100, less 20 for each hand-back in the last 12 months (not
  below 0). "In the last 12 months" is evaluated **as of the offer's UK date** from the register's
  dated hand-back record (decision 0119): a hand-back dated ``d`` counts when
  ``as_of - 365 days < d <= as_of`` (:func:`in_last_12_months`), so one dated 364 days before the
  offer counts and one dated 365 or more days before it has aged out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

CqcRating = Literal["outstanding", "good", "requires_improvement", "inadequate", "not_yet_rated"]
LocalRisk = Literal["low", "medium", "high"]

CQC_POINTS: dict[str, int] = {
    "outstanding": 100,
    "good": 75,
    "requires_improvement": 35,
    "not_yet_rated": 50,
    "inadequate": 0,
}
RISK_POINTS: dict[str, int] = {"low": 100, "medium": 60, "high": 20}
HAND_BACK_PENALTY = 20  # points off the hand-back component per hand-back in 12 months

WINDOW_DAYS = 365  # "the last 12 months": the 365 days up to and including the day in question


def in_last_12_months(on: dt.date, as_of: dt.date) -> bool:
    """Whether something dated ``on`` (a UK date) is in the 12 months to ``as_of`` (a UK date):
    after the day 365 days before ``as_of``, and not after ``as_of`` itself."""
    return as_of - dt.timedelta(days=WINDOW_DAYS) < on <= as_of


def counted_as_of(dates: Iterable[dt.date], as_of: dt.date) -> tuple[dt.date, ...]:
    """The dates of ``dates`` in the 12 months to ``as_of``, oldest first (:func:`in_last_12_months`)."""
    return tuple(sorted(d for d in dates if in_last_12_months(d, as_of)))


CQC_WORDS = {
    "outstanding": "Outstanding",
    "good": "Good",
    "requires_improvement": "Requires improvement",
    "inadequate": "Inadequate",
    "not_yet_rated": "Not yet rated",
}
RISK_WORDS = {"low": "green (low)", "medium": "amber (medium)", "high": "red (high)"}


@dataclass(frozen=True)
class QualityWeights:
    """How much each component counts (fractions summing to 1; reference data: framework.yaml)."""

    cqc: Decimal = Decimal("0.6")
    local_risk: Decimal = Decimal("0.3")
    hand_backs: Decimal = Decimal("0.1")


@dataclass(frozen=True)
class QualityInputs:
    """What the register says of a provider at one moment: the score's inputs."""

    cqc_rating: str
    local_risk: str
    hand_backs_12m: int
    cqc_inspected_on: dt.date | None = None  # the CQC's publication date of the rating, when known
    local_risk_reviewed_on: dt.date | None = None
    # The day the 12 months run to (the offer's UK date) and the hand-backs counted in them, when the
    # count came from the dated record (decision 0119); None when only a count was known.
    hand_backs_as_of: dt.date | None = None
    hand_back_dates: tuple[dt.date, ...] | None = None


def inputs_as_of(
    *,
    cqc_rating: str,
    local_risk: str,
    as_of: dt.date,
    hand_back_dates: Iterable[dt.date] | None,
    hand_backs_12m: int = 0,
    cqc_inspected_on: dt.date | None = None,
    local_risk_reviewed_on: dt.date | None = None,
) -> QualityInputs:
    """The score's inputs on the UK day ``as_of``: the hand-backs are those of the dated record in the
    12 months to that day (:func:`counted_as_of`). ``hand_back_dates`` None (a profile written before
    the dated record travelled with it) falls back to the count ``hand_backs_12m`` as it was written."""
    counted = None if hand_back_dates is None else counted_as_of(hand_back_dates, as_of)
    return QualityInputs(
        cqc_rating=cqc_rating,
        local_risk=local_risk,
        hand_backs_12m=hand_backs_12m if counted is None else len(counted),
        cqc_inspected_on=cqc_inspected_on,
        local_risk_reviewed_on=local_risk_reviewed_on,
        hand_backs_as_of=None if counted is None else as_of,
        hand_back_dates=counted,
    )


@dataclass(frozen=True)
class QualityScore:
    """A provider's score (0-100, one decimal) with the points of each component (0-100 each) and
    the weights used: enough to recompute and explain it."""

    inputs: QualityInputs
    weights: QualityWeights
    cqc_points: int
    local_risk_points: int
    hand_back_points: int
    score: Decimal

    def as_record(self) -> dict[str, Any]:
        """The JSON kept in the decision record (offer_rounds.quality_inputs) for one provider."""
        i = self.inputs
        return {
            "score": str(self.score),
            "cqc_rating": i.cqc_rating,
            "cqc_inspected_on": i.cqc_inspected_on.isoformat() if i.cqc_inspected_on else None,
            "cqc_points": self.cqc_points,
            "local_risk": i.local_risk,
            "local_risk_reviewed_on": i.local_risk_reviewed_on.isoformat() if i.local_risk_reviewed_on else None,
            "local_risk_points": self.local_risk_points,
            "hand_backs_12m": i.hand_backs_12m,
            "hand_backs_as_of": i.hand_backs_as_of.isoformat() if i.hand_backs_as_of else None,
            "hand_back_dates": None if i.hand_back_dates is None else [d.isoformat() for d in i.hand_back_dates],
            "hand_back_points": self.hand_back_points,
            "weights": {
                "cqc": str(self.weights.cqc),
                "local_risk": str(self.weights.local_risk),
                "hand_backs": str(self.weights.hand_backs),
            },
        }


def score(inputs: QualityInputs, weights: QualityWeights = QualityWeights()) -> QualityScore:
    """The quality score of a provider from its register entry, by the weights (module docstring).
    Raises KeyError for a rating or risk outside the vocabulary (the contracts refuse those first)."""
    cqc = CQC_POINTS[inputs.cqc_rating]
    risk = RISK_POINTS[inputs.local_risk]
    hand_backs = max(0, 100 - HAND_BACK_PENALTY * inputs.hand_backs_12m)
    total = weights.cqc * cqc + weights.local_risk * risk + weights.hand_backs * hand_backs
    return QualityScore(inputs, weights, cqc, risk, hand_backs, total.quantize(Decimal("0.1")))


def explain(record: dict[str, Any]) -> list[str]:
    """The components of a recorded score in words, e.g. ``CQC rating Requires improvement
    (inspected 2026-10-03): 35 points x 0.6``: for the award explanation."""
    weights = record.get("weights") or {}
    inspected = record.get("cqc_inspected_on")
    when = f" (inspected {inspected})" if inspected else ""
    reviewed = record.get("local_risk_reviewed_on")
    risk_when = f" (reviewed {reviewed})" if reviewed else ""
    as_of, dates = record.get("hand_backs_as_of"), record.get("hand_back_dates")
    # Records kept before decision 0119 have no date: "in 12 months" as the count was written.
    window = f"in the 12 months to {as_of}" if as_of else "in 12 months"
    dated = f" ({', '.join(dates)})" if dates else ""
    return [
        f"CQC rating {CQC_WORDS.get(record['cqc_rating'], record['cqc_rating'])}{when}: "
        f"{record['cqc_points']} points x {weights.get('cqc', '?')}",
        f"local risk {RISK_WORDS.get(record['local_risk'], record['local_risk'])}{risk_when}: "
        f"{record['local_risk_points']} points x {weights.get('local_risk', '?')}",
        f"{record['hand_backs_12m']} hand-back(s) {window}{dated}: {record['hand_back_points']} points x "
        f"{weights.get('hand_backs', '?')}",
    ]
