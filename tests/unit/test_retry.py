"""The one retry rule every outgoing delivery uses (offer webhooks, notifications)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.retry import retry_delay


def test_retry_delays_double_with_jitter_between_half_and_all():
    assert retry_delay(1, initial=2, maximum=600, jitter=0) == 1
    assert retry_delay(1, initial=2, maximum=600, jitter=0.999) == pytest.approx(2, abs=0.01)
    assert retry_delay(4, initial=2, maximum=600, jitter=0) == 8


@given(attempts=st.integers(1, 60), jitter=st.floats(0, 1))
def test_retry_delays_grow_and_stay_capped(attempts, jitter):
    delay = retry_delay(attempts, initial=1.0, maximum=300.0, jitter=jitter)
    assert 0.5 <= delay <= 300.0
    assert retry_delay(attempts + 1, initial=1.0, maximum=300.0, jitter=1.0) >= retry_delay(
        attempts, initial=1.0, maximum=300.0, jitter=1.0
    )
