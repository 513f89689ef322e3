"""The expression editor's live count: the same count as a saved segment, scoped to the staff member,
or the mistake with its column while the expression is still being typed."""

from __future__ import annotations

import pytest

from services.i18n import use_locale
from services.segments import count_segment, live_count
from tests.helpers import TODAY, make_world


@pytest.fixture(autouse=True)
def english():
    with use_locale("en"):
        yield


async def test_a_valid_expression_is_counted_in_the_actors_scope_only(session):
    world = await make_world(session)
    # Two DXYC residents are 80 or more on TODAY (钱八十 only tomorrow); FLSQ's one never counts for DXYC.
    live = await live_count(session, world.dxyc_staff, "age >= 80", TODAY)
    assert live.ok and live.count == await count_segment(session, world.dxyc_staff, "age >= 80", TODAY) == 2
    assert (await live_count(session, world.flsq_staff, "age >= 80", TODAY)).count == 1
    assert (await live_count(session, world.street_staff, "年龄 >= 80", TODAY)).count == 3  # DXYC and RJXC
    assert live.position is None and live.unknown_tags == ()


async def test_a_mistake_comes_back_with_its_column_and_reason_not_as_an_exception(session):
    world = await make_world(session)
    live = await live_count(session, world.dxyc_staff, "age >= ", TODAY)
    assert not live.ok and live.count is None and live.position == 8
    assert live.error == "unexpected end of expression"
    typo = await live_count(session, world.dxyc_staff, "living_alone == true and agee > 3", TODAY)
    assert typo.position == 26 and "did you mean \"age\"" in (typo.error or "")
    assert (await live_count(session, world.dxyc_staff, "", TODAY)).position == 1
    too_long = await live_count(session, world.dxyc_staff, "age > 1 or " * 200, TODAY)
    assert too_long.count is None and too_long.position is not None


async def test_tags_that_do_not_exist_are_named_while_the_count_is_still_given(session):
    world = await make_world(session)
    live = await live_count(session, world.dxyc_staff, 'has_tag("aged_80") or has_tag("no_such_tag")', TODAY)
    assert live.ok and live.count == 0  # rule tags are not computed in this world yet
    assert live.unknown_tags == ("no_such_tag",)
