"""Exported CSV cells never start a formula in a spreadsheet (services/runtime/spreadsheets.py)."""

import pytest

from services.brokerage.api import _csv
from services.reporting.api import _cell
from services.runtime.spreadsheets import safe_cell


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"])
def test_text_that_would_be_a_formula_is_made_text(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-12.50", "+3", "19.95", "Bluebell Home Care", "", 7, None])
def test_numbers_and_plain_text_are_left_alone(value):
    assert safe_cell(value) == value


def test_both_exports_use_it():
    assert b"'=HYPERLINK(1)" in _csv([{"SupplierName": "=HYPERLINK(1)", "Amount": "-5.00"}], ["SupplierName", "Amount"])
    assert b",-5.00" in _csv([{"SupplierName": "x", "Amount": "-5.00"}], ["SupplierName", "Amount"])
    assert _cell("@evil") == "'@evil"
