"""Policy matching in the bot: /benefits for everyone, /policy_match and outcomes for staff."""

from __future__ import annotations

from aiogram import Router

from handlers.policies import benefits, staff


def router() -> Router:
    r = Router(name="policies")
    r.include_routers(staff.router(), benefits.router())
    return r
