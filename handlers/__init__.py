"""aiogram routers, one module per feature. ``routers()`` gives them in dispatch order, for private
chats only."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.enums import ChatType


def routers() -> list[Router]:
    """Fresh routers (a second Dispatcher in the same process gets its own)."""
    from handlers import (
        checkins,
        common,
        console,
        discussions,
        errors,
        fallback,
        notices,
        policies,
        polls,
        privacy,
        staff,
        tags,
        verification,
    )

    # The bot talks to people one to one. In a group every answer (a console sign-in link, a resident's
    # card, a staff list) would be read by all its members: messages and buttons of other chats are
    # left unhandled, whoever sends them.
    private = Router(name="private_chats")
    private.message.filter(F.chat.type == ChatType.PRIVATE)
    private.callback_query.filter(F.message.chat.type == ChatType.PRIVATE)
    # checkins before verification: it claims /start fam_<code> (family invites), verification the rest.
    private.include_routers(errors.router(), checkins.router(), verification.router(), common.router(),
                            privacy.router(), staff.router(), tags.router(), notices.router(), policies.router(),
                            polls.router(), discussions.router(), console.router(), fallback.router())
    return [private]
