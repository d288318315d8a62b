"""The one clock of the platform, and UK time for business dates and for people.

Rules (docs/guide/time-and-identifiers.md, decision 0040):

- **Timestamps** are instants, stored and sent on Kafka in UTC (``timestamptz``, ISO 8601 with
  an offset). :func:`now` is the only way services read the time, so a test can set it.
- **Business dates** - rate-card and policy effective dates, start dates, notice dates, "today"
  in an earliest-start check, KPI days and weeks - are calendar dates in **Europe/London**:
  contracts and people mean the UK day. :func:`uk_today` / :func:`uk_date` give the UK date of
  an instant; 00:30 BST on 1 April 2027 is 1 April (the UTC date would still be 31 March).
- **Times shown to people** (console pages, notifications, explanations, CLI output) are UK
  local time with the zone's abbreviation: :func:`format_uk` ("01 Apr 2027 00:30 BST",
  "31 Oct 2027 01:30 GMT"), so an hour repeated at the autumn change is never ambiguous.

Dates in SQL: PostgreSQL's ``current_date`` and ``now()::date`` follow the session's TimeZone,
so the code passes the UK date from Python (or writes ``(now() AT TIME ZONE 'Europe/London')::date``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

from schemas import calendar

UK = ZoneInfo("Europe/London")

Source = Callable[[], dt.datetime]


def system_now() -> dt.datetime:
    """The machine's clock, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


_source: Source = system_now


def now() -> dt.datetime:
    """The current instant, aware, in UTC. Every service reads the time through this."""
    return _source().astimezone(dt.UTC)


def uk_date(at: dt.datetime) -> dt.date:
    """The Europe/London calendar date of an instant. ``at`` must be timezone-aware (a naive
    datetime is refused: its meaning would depend on the machine's local zone).

    Raises ValueError for a naive datetime."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a naive datetime has no date in the UK: {at!r}")
    return at.astimezone(UK).date()


def uk_today(at: dt.datetime | None = None) -> dt.date:
    """Today in the UK: the Europe/London date of ``at`` (default: :func:`now`)."""
    return uk_date(at if at is not None else now())


def to_uk(at: dt.datetime) -> dt.datetime:
    """An instant in UK local time (GMT in winter, BST in summer). Raises ValueError if naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a naive datetime cannot be shown in UK time: {at!r}")
    return at.astimezone(UK)


def parse_instant(value: str | dt.datetime) -> dt.datetime:
    """An ISO 8601 timestamp (as the APIs return them) as an aware datetime. A string without an
    offset is taken as UTC, the platform's storage zone."""
    at = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def format_uk(at: dt.datetime | str | None, fmt: str = "%d %b %Y %H:%M %Z", *, missing: str = "-") -> str:
    """An instant for people: UK local time with GMT/BST, e.g. "01 Apr 2027 00:30 BST".
    Accepts a datetime or an ISO string (without an offset: UTC); ``missing`` for None or ""."""
    if at is None or at == "":
        return missing
    return to_uk(parse_instant(at)).strftime(fmt)


def uk_day_start(day: dt.date) -> dt.datetime:
    """The instant (UTC) a UK calendar day begins: midnight Europe/London. Days are 23 or 25
    hours long on the clock changes, so never compute day bounds as ``day * 24h`` in UTC."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=UK).astimezone(dt.UTC)


def uk_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a UK calendar day as UTC instants."""
    return uk_day_start(day), uk_day_start(day + dt.timedelta(days=1))


def uk_week_of(day: dt.date) -> dt.date:
    """The Monday of the (UK, ISO) week a UK date falls in: the key of weekly KPIs."""
    return day - dt.timedelta(days=day.weekday())


# The days a date typed into the platform may be (schemas/calendar.py, where the request field
# types that hold every API to them are).
EARLIEST_DAY = calendar.EARLIEST_DAY
LATEST_DAY = calendar.LATEST_DAY
check_within_the_calendar = calendar.check_within_the_calendar


def parse_uk_bound(value: str) -> dt.datetime:
    """A period bound typed by a person: a date ("2027-03-28") is the start of that UK day; a time
    without an offset ("2027-03-28T09:00") is UK local time; one with an offset is taken as given.
    Returns an aware UTC datetime. Raises ValueError for anything else, or a day outside
    :data:`EARLIEST_DAY` - :data:`LATEST_DAY`."""
    text = value.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        check_within_the_calendar(day)
        return uk_day_start(day)
    at = dt.datetime.fromisoformat(text)
    check_within_the_calendar(at.date())
    if at.tzinfo is None:
        at = at.replace(tzinfo=UK)
    return at.astimezone(dt.UTC)


class FixedClock:
    """A controllable clock for tests: stands still at ``at`` until moved."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a test clock needs an aware datetime")
        self.at = at.astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> dt.datetime:
        self.at += dt.timedelta(**delta)
        return self.at

    def set(self, at: dt.datetime) -> None:
        self.at = at.astimezone(dt.UTC)


@contextmanager
def frozen(at: dt.datetime) -> Iterator[FixedClock]:
    """Run the block with the platform's clock at ``at`` (tests only); yields the clock to move it."""
    global _source
    previous, fixed = _source, FixedClock(at)
    _source = fixed
    try:
        yield fixed
    finally:
        _source = previous
