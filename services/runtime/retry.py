"""How long to wait before trying a delivery again: one rule for every outgoing delivery (offer
webhooks, notifications by email, Notify or webhook)."""

from __future__ import annotations


def retry_delay(attempt: int, *, initial: float, maximum: float, jitter: float) -> float:
    """Capped exponential backoff with jitter, after ``attempt`` failed tries (``jitter`` in [0, 1],
    drawn by the caller, so the rule itself is testable): between half and all of
    ``initial * 2**(attempt-1)``, never above ``maximum``. The jitter spreads the retries of many
    deliveries to a receiver that was down, so its recovery is not a thundering herd."""
    base = min(maximum, initial * 2 ** max(0, attempt - 1))
    return base * (0.5 + 0.5 * jitter)
