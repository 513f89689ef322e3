"""Polls in the bot: ballots and /polls for residents, /poll_new (guided, with a preview),
/poll_results and /poll_close for staff."""

from __future__ import annotations

from aiogram import Router

from handlers.polls import staff, vote


def router() -> Router:
    r = Router(name="polls")
    r.include_routers(staff.router(), vote.router())
    return r
