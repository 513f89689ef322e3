"""A resident who blocks the bot, through the real dispatcher and the sandbox: Telegram's
``my_chat_member`` update marks the account unreachable at once (a notice's preview counts them among
those staff must phone, before any send fails); unblocking, or writing again, undoes it. The same
update delivered twice has the one effect."""

from __future__ import annotations

from sqlalchemy import select

from services import notices
from services.accounts import resolve_actor
from services.models import Account
from tests.harness import running_stack
from tests.helpers import account_of, dxyc_member


async def reachable(stack, staff) -> tuple[int, int]:
    async with stack.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == staff.id))
        actor = await resolve_actor(s, account, language_code="en", default_locale="en")
        return await notices.count_recipients(s, actor, notices.Audience("committee", None, None), stack.clock().date())


async def test_blocking_the_bot_is_noted_at_once_and_unblocking_undoes_it(tmp_path):
    async with running_stack(tmp_path) as stack:
        staff = await dxyc_member(stack, "staff", staff=True)
        wang, li = await dxyc_member(stack, "wang"), await dxyc_member(stack, "li")
        assert await reachable(stack, staff) == (2, 2)
        blocking = await li.block()
        await stack.settled()
        blocked_at = (await account_of(stack, li)).unreachable_at
        assert blocked_at is not None and (await account_of(stack, wang)).unreachable_at is None
        assert await reachable(stack, staff) == (2, 1)
        await stack.client.redeliver(blocking["update_id"])
        assert (await account_of(stack, li)).unreachable_at == blocked_at  # delivered again: no new effect
        await li.unblock()
        await stack.settled()
        assert (await account_of(stack, li)).unreachable_at is None
        assert await reachable(stack, staff) == (2, 2)
        assert await li.bot_messages() == []  # none of this is answered
