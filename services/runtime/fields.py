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

- :data:`DisplayName` (from schemas/fields.py, as the adapter contract uses them too): a name or
  label shown to other people (a provider's, a staff user's, a recipient's, the person's; a
  credential's label, a concern's adult at risk) with nothing that
  hides or reorders text (controls, format characters such as zero-width spaces and bidirectional
  overrides, line separators, fillers that show nothing) and something that shows: a 422 naming
  the field (decision 0155).
- :data:`FreeText`: words a person typed (an address, a note, a reason's words, a complaint's
  summary): the same refusals, line breaks and tabs allowed (decision 0156). A request's other
  text fields are codes and ids with a pattern or a vocabulary: a test sends a bidirectional
  override to every text field of every request body and expects a 422
  (tests/unit/test_request_types.py).

Text fields, numbers and lists are also bounded in every request model (``max_length``, ``le``,
``max_length`` of a list): a test walks the published OpenAPI documents and fails on any request
field without its bound (tests/unit/test_request_bounds.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field

from schemas.fields import DIGITS_0_TO_9, Day, DisplayName, FreeText, Moment, plain_text, visible_name
from services.runtime.numbers import parse_whole

__all__ = [
    "DIGITS_0_TO_9",
    "WEBHOOK_URL_PATTERN",
    "WHOLE_0_TO_9",
    "Day",
    "DisplayName",
    "Distinct",
    "FreeText",
    "Moment",
    "no_repeats",
    "plain_text",
    "visible_name",
]

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


def _whole_as_sent(value: object) -> object:
    """A whole number in a query string or a path, as :func:`services.runtime.numbers.parse_whole`
    reads it: pydantic's own reading of text also takes underscores ("1_0" was 10) and a sign."""
    return parse_whole(value) if isinstance(value, str) else value


# A query or path parameter's whole number: ``limit: Annotated[int, Query(ge=1), WHOLE_0_TO_9] = 50``
# (decision 0156). tests/unit/test_request_types.py fails on an int parameter of any route without it.
WHOLE_0_TO_9 = BeforeValidator(_whole_as_sent)

# A webhook's address as a request sends it: http(s), then printable ASCII alone (RFC 3986: a URI is
# ASCII; a host with another script's letters is sent in its xn-- form), no space, control or
# format character (decision 0156); the host part before any / ? #. Whether the address may be
# called is checked apart (services/runtime/outbound.py).
WEBHOOK_URL_PATTERN = r"^https?://[!$-.0->@-~]+([/?#][!-~]*)?$"

# A list whose members are a set: ``zones: Distinct[str] = Field(min_length=1, max_length=20)``.
Distinct = Annotated[list[T], AfterValidator(no_repeats), Field(json_schema_extra={"uniqueItems": True})]
