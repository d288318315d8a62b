"""The platform's calendar: the days a date typed into it may be (schemas/fields.py holds every
request model to them: the services' APIs and the adapter contract).

A period's arithmetic (a week before, a day after) stays inside what Python's dates hold, so
``0001-01-01`` or ``9999-12-31`` is a 422 naming the field at the edge - never stored (a funding
period from year 1) nor an overflow's 500 in a rule. The business limits (an ending at most 28
days back, a medically-fit date at most 14 days ahead) are the domain's.
No pydantic here: the command line's clock reads these at start-up, before any of its commands'
machinery is loaded.
"""

from __future__ import annotations

import datetime as dt

EARLIEST_DAY = dt.date(1900, 1, 1)
LATEST_DAY = dt.date(2999, 12, 31)


def check_within_the_calendar(day: dt.date) -> None:
    """Raise ValueError for a day outside :data:`EARLIEST_DAY` - :data:`LATEST_DAY`."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"{day} is outside {EARLIEST_DAY} to {LATEST_DAY}")
