"""Numbers people type and read: whole numbers typed into a form, a query string, a command line
or a header (:func:`whole_number`), and carer hours shown to them (:func:`hours_text`).

One rule for every such place (decision 0154): a whole number is written in the digits 0-9
alone, at most 18 of them, with spaces around it allowed. ``str.isdigit()`` - what the console,
the CLI and two readers of headers had checked before ``int()`` - is also true of superscripts
and of other scripts' digits: ``int("²")`` raises ValueError (a 500 where a 422 was due) and
``int("١٢")`` reads 12 from something nobody types on a UK form. Python also refuses ``int()`` of
more than 4,300 digits, which ``isdigit()`` lets through.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_DIGITS = 18  # beyond any count, page or size this platform takes; int() of it never raises


def whole_number(text: object) -> int | None:
    """``text`` as an int when it is a whole number written in 0-9 alone ("12", " 7 ", "007"),
    else None: empty, a sign, a decimal point, another script's digits, more than
    :data:`MAX_DIGITS` digits. Callers say what the number had to be (a 422 naming the field, a
    form's message) or fall back to a default."""
    digits = str(text).strip()
    if 0 < len(digits) <= MAX_DIGITS and digits.isascii() and digits.isdecimal():
        return int(digits)
    return None


def parse_whole(text: object) -> int:
    """:func:`whole_number`, for callers that refuse what is not one: ValueError saying what a
    whole number is (a query parameter's 422, a cursor's)."""
    number = whole_number(text)
    if number is None:
        raise ValueError("must be a whole number written in the digits 0-9, like 10")
    return number


def hours_text(value: object) -> str:
    """Carer hours a week as people read them, the same wherever they are shown (a message, a
    page): 7 and 7.00 -> "7", 10.50 -> "10.5", 7.25 -> "7.25". A request keeps the hours as
    written ("7.00"), so each place showed them as that request had. Not a number: as it is."""
    try:
        hours = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not hours.is_finite():
        return str(value)
    return f"{hours.normalize():f}" if hours == hours.to_integral() else f"{hours:f}".rstrip("0")
