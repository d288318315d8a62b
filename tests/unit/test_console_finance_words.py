"""The finance page says an import file's refusal in the form's words (found by a new user)."""

from services.console.api.finance import _in_words


def test_a_date_that_is_not_one_asks_for_a_real_date_as_the_form_shows_it():
    said = "Input should be a valid date or datetime, day value is outside expected range"
    assert _in_words(said) == "Enter a real date, as YYYY-MM-DD"


def test_the_apis_field_names_become_the_forms():
    assert (
        _in_words("2026-11-01 is before recorded_from 2026-12-04") == "2026-11-01 is before the first date 2026-12-04"
    )
