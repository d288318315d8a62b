"""Field types of the platform's contracts: the days a date typed into it may be
(:mod:`schemas.calendar`), for every request model - the services' APIs and the adapter contract.

``0001-01-01`` or ``9999-12-31`` is a 422 naming the field. The JSON Schema of :data:`Day` and
:data:`Moment` says ``formatMinimum`` and ``formatMaximum``; a test fails on a date input of any
published API without them (tests/unit/test_request_bounds.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field

from schemas.calendar import EARLIEST_DAY, LATEST_DAY, check_within_the_calendar


def _day(day: dt.date) -> dt.date:
    check_within_the_calendar(day)
    return day


def _moment(at: dt.datetime) -> dt.datetime:
    check_within_the_calendar(at.date())
    return at


# A date typed into the platform: ``start_date: Day``, ``on: Day | None = None``.
Day = Annotated[
    dt.date,
    AfterValidator(_day),
    Field(json_schema_extra={"formatMinimum": str(EARLIEST_DAY), "formatMaximum": str(LATEST_DAY)}),
]
# A date and time typed into the platform: ``since: Moment | None = None``.
Moment = Annotated[
    dt.datetime,
    AfterValidator(_moment),
    Field(json_schema_extra={"formatMinimum": f"{EARLIEST_DAY}T00:00:00Z", "formatMaximum": f"{LATEST_DAY}T23:59:59Z"}),
]
