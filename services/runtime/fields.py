"""Request field types every API shares, for the kinds of input each service would otherwise check
on its own (decision 0129).

- :data:`Distinct`: a list that is a set (zones, bands, skills, care needs, call slots, channels):
  a repeated member is refused with a 422 naming the field, never stored twice nor silently
  dropped, so what a caller sent is what is kept. Its JSON Schema says ``uniqueItems: true``.
- :data:`Day` and :data:`Moment` (from schemas/fields.py, which the adapter contract uses too): a
  date, and a date and time, inside the platform's calendar - ``0001-01-01`` or ``9999-12-31`` is a
  422 naming the field. Their JSON Schema says ``formatMinimum`` and ``formatMaximum``.
- :data:`DIGITS_0_TO_9`: a decimal (hours, per cents) sent as text is written in 0-9 with at most a
  sign and a point - other scripts' digits, underscores and exponents are a 422 naming the field
  (decision 0154); ``schemas.events.Money`` checks the same. Put it *after* the field's
  constraints, ``Annotated[Decimal, Field(ge=0, le=100), DIGITS_0_TO_9]``: before them, pydantic
  publishes the constraints as non-standard JSON Schema keys.

- :data:`DisplayName`: a name or label shown to other people (a provider's, a staff user's, a
  recipient's, the person's; a credential's label, a concern's adult at risk) with nothing that
  hides or reorders text (controls, format characters such as zero-width spaces and bidirectional
  overrides, line separators, fillers that show nothing) and something that shows: a 422 naming
  the field (decision 0155).

Text fields, numbers and lists are also bounded in every request model (``max_length``, ``le``,
``max_length`` of a list): a test walks the published OpenAPI documents and fails on any request
field without its bound (tests/unit/test_request_bounds.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field

from schemas.fields import DIGITS_0_TO_9, Day, Moment

__all__ = ["DIGITS_0_TO_9", "Day", "DisplayName", "Distinct", "Moment", "no_repeats"]

T = TypeVar("T", bound=Hashable)


def no_repeats(values: list[T]) -> list[T]:
    """``values`` unchanged; ValueError naming the first member given twice (and where)."""
    seen: set[T] = set()
    for i, value in enumerate(values):
        if value in seen:
            shown = getattr(value, "value", value)
            raise ValueError(f"{shown!r} is given twice (again at position {i}): give each once")
        seen.add(value)
    return values


# Unicode categories that never show as themselves: controls (tabs, newlines), format characters
# (zero-width spaces and joiners, bidirectional overrides and isolates), line and paragraph
# separators, surrogates, private use and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Letters and marks that show nothing (Unicode's default-ignorable fillers, the blank Braille cell).
_BLANKS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0})


def visible_name(text: str) -> str:
    """A name or label shown to other people (a provider's, a staff user's, a recipient's, the
    person's): no character that hides or reorders text - controls, format characters (zero-width
    spaces and joiners, the bidirectional overrides and isolates of the "Trojan Source" trick),
    line separators, fillers that show nothing - and, unless empty, at least one letter, digit,
    punctuation or symbol. ValueError naming the problem (a 422 naming the field; decision 0155)."""
    hidden = sorted(
        {f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in _HIDDEN_CATEGORIES or ord(c) in _BLANKS}
    )
    if hidden:
        raise ValueError(f"contains characters that do not show or reorder the text ({', '.join(hidden[:5])})")
    if text and not any(unicodedata.category(c)[0] in "LNPS" for c in text):
        raise ValueError("has no character that shows")
    return text


# A name shown to others: ``name: DisplayName = Field(min_length=1, max_length=200)``.
DisplayName = Annotated[str, AfterValidator(visible_name)]

# A list whose members are a set: ``zones: Distinct[str] = Field(min_length=1, max_length=20)``.
Distinct = Annotated[list[T], AfterValidator(no_repeats), Field(json_schema_extra={"uniqueItems": True})]
