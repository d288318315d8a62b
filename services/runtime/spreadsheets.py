"""CSV cells that a spreadsheet opens as text, never as a formula (CSV injection, OWASP).

A council's finance or BI officer opens the exports in Excel. A cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is a formula there, and a provider's name is typed by
people ("=HYPERLINK(...)" was accepted as one). Such a cell gets a leading apostrophe, which
spreadsheets show as text; numbers (``-12.50``) are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$", re.ASCII)


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: text that would start a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value
