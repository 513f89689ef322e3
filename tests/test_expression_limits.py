"""Number literals in expressions are bounded: too large a number is an expression error at its
position, never a driver's OverflowError (SQLite's 64-bit INTEGER, PostgreSQL's 32-bit integer)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from services.expressions import MAX_NUMBER, ExpressionError, compile_sql, evaluate, parse
from services.i18n import use_locale
from services.models import Resident

TODAY = date(2026, 11, 28)
HUGE = "1" + "0" * 40


@pytest.mark.parametrize("text, position", [
    (f"monthly_income > {HUGE}.5", 18),
    (f"monthly_income > {MAX_NUMBER + 1}", 18),
    (f"monthly_income > {MAX_NUMBER}.5", 18),
    (f"age >= 80 and monthly_income in (100, {HUGE})", 39),
    (f"between(age, -{HUGE}, 5)", 15),
    (f"年龄 < {HUGE}", 6),
])
def test_a_number_too_large_is_an_error_at_its_position(text, position):
    with use_locale("en"), pytest.raises(ExpressionError) as err:
        parse(text)
    assert err.value.position == position and "too large" in str(err.value)
    assert len(str(err.value)) < 120  # the number is not repeated in full


def test_too_many_decimal_places_is_an_error():
    with use_locale("en"), pytest.raises(ExpressionError) as err:
        parse("monthly_income > 1500.0000001")
    assert err.value.position == 18 and "decimal places" in str(err.value)


@pytest.mark.parametrize("text", [f"monthly_income > {MAX_NUMBER}", f"monthly_income < {MAX_NUMBER - 1}.5",
                                  f"age < {MAX_NUMBER}", f"disability_level != -{MAX_NUMBER}",
                                  f"household_size in (1, {MAX_NUMBER})"])
async def test_the_largest_numbers_run_on_the_database(session, text):
    count = await session.scalar(select(func.count()).select_from(Resident).where(compile_sql(text, today=TODAY)))
    assert count == 0
    assert evaluate(text, {"monthly_income": 1200, "birth_date": date(1940, 1, 1), "disability_level": 1,
                           "household_size": 2}, today=TODAY) is not None
