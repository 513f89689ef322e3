"""checkin_roles answers in one statement what my_plan and helped_committees answer (SQLite and PostgreSQL):
whether an account is an enrolled elder and whether it answers the check-in for an elder; the actor's row
read at the start of an update (touch_actor) answers the same."""

from __future__ import annotations

from datetime import date

from services import checkins as cs
from services.accounts import TelegramUser, touch_actor
from services.models import AnswerMode, CheckinPlan
from tests.conftest import NOW
from tests.helpers import make_account, make_world


def plan(resident, **fields) -> CheckinPlan:
    return CheckinPlan(resident_id=resident.id, committee_id=resident.committee_id, starts_on=date(2026, 1, 1),
                       created_at=NOW, updated_at=NOW, **fields)


async def test_roles_are_what_my_plan_and_helped_committees_say(session):
    world = await make_world(session)
    wang, li, zhao = (world.residents[k] for k in ("wang", "li", "zhao"))
    elder = await make_account(session, 8001, wang)  # enrolled, answers herself
    paused_out = await make_account(session, 8002, li)  # her plan is no longer active
    helper = await make_account(session, 8003)  # answers for zhao (proxy)
    nobody = await make_account(session, 8004)
    session.add_all([plan(wang), plan(li, active=False),
                     plan(zhao, mode=AnswerMode.proxy, helper_account_id=helper.id)])
    await session.flush()
    for account, expected in ((elder, (True, False)), (paused_out, (False, False)), (helper, (False, True)),
                              (nobody, (False, False))):
        roles = await cs.checkin_roles(session, account)
        assert (roles.elder, roles.helper) == expected, account.telegram_id
        assert roles.elder == (await cs.my_plan(session, account) is not None)
        assert roles.helper == bool(await cs.helped_committees(session, account.id))
        actor = await touch_actor(session, TelegramUser(account.telegram_id, "A"), NOW, default_locale="en")
        assert actor.checkin == roles, account.telegram_id
    assert await cs.checkin_roles(session, None) == cs.CheckinRoles(False, False)


async def test_a_helper_of_an_elder_who_answers_herself_is_no_helper(session):
    world = await make_world(session)
    helper = await make_account(session, 8101)
    session.add(plan(world.residents["wang"], mode=AnswerMode.self, helper_account_id=helper.id))
    await session.flush()
    assert (await cs.checkin_roles(session, helper)).helper is False
    actor = await touch_actor(session, TelegramUser(helper.telegram_id, "A"), NOW, default_locale="en")
    assert actor.checkin == cs.CheckinRoles(False, False)
    assert not await cs.helped_committees(session, helper.id)
