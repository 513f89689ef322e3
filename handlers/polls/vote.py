"""Residents: a ballot button records the unit's vote (checked in the service), /polls lists open polls."""

from __future__ import annotations

from datetime import datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from notifications.callbacks import PollViewCb, PollVoteCb
from notifications.limits import clip
from notifications.messages import polls as views
from notifications.render import render_template, t, to_reply_markup
from services import polls
from services.scope import Actor


def router() -> Router:
    r = Router(name="polls.vote")
    r.callback_query.register(cast, PollVoteCb.filter())
    r.callback_query.register(view, PollViewCb.filter())
    r.message.register(list_polls, Command("polls"))
    return r


async def cast(query: CallbackQuery, callback_data: PollVoteCb, actor: Actor, session: AsyncSession,
               now: datetime, poll_config: polls.PollConfig) -> None:
    try:
        result = await polls.vote(session, actor, callback_data.p, callback_data.o, on=callback_data.on, now=now,
                                  cfg=poll_config)
    except polls.PollError as err:
        await query.answer(views.refusal(err).striptags(), show_alert=True)
        return
    poll = result.poll
    chosen = ", ".join(poll.options[i] for i in result.choices) if poll else ""
    if not result.changed:
        await query.answer(t("Your vote stands: {choice}", choice=chosen).striptags() if chosen
                           else t("Nothing changed.").striptags())
        return
    if result.choices:
        await query.answer(t("Vote recorded: {choice}", choice=chosen).striptags())
    else:
        await query.answer(t("Your vote is withdrawn.").striptags())
    if poll is not None and query.message is not None and getattr(query.message, "reply_markup", None):
        buttons = views.ballot_buttons(poll.id, poll.options, result.choices, poll.multiple)
        await query.message.edit_reply_markup(reply_markup=to_reply_markup(buttons))


async def list_polls(message: Message, actor: Actor, session: AsyncSession, now: datetime,
                     poll_config: polls.PollConfig) -> None:
    if actor.is_staff:
        rows = await polls.committee_polls(session, actor)
        if rows:
            await message.answer(render_template("polls/staff_list.html", polls=[
                {"id": p.id, "status": polls.poll_phase(p, now), "question": clip(p.question, 80),
                 "closes": f"{poll_config.local(p.closes_at):%Y-%m-%d %H:%M}"} for p in rows]))
        else:
            await message.answer(t("No polls yet. /poll_new makes one."))
        if not actor.is_verified:
            return
    mine = await polls.my_open_polls(session, actor, now=now, cfg=poll_config)
    if not actor.is_verified:
        await message.answer(t("Polls are for verified residents. Send /start to verify."))
        return
    if not mine:
        await message.answer(t("There are no open polls for you right now."))
        return
    text = render_template("polls/list.html", polls=[
        {"id": m.poll.id, "question": clip(m.poll.question, 80), "voted": m.voted,
         "household": m.voted and m.poll.unit.value != "resident" and not m.by_me,
         "closes": f"{poll_config.local(m.poll.closes_at):%m-%d %H:%M}"} for m in mine])
    keyboard = inline([[(f"#{m.poll.id} {clip(m.poll.question, 30)}", PollViewCb(p=m.poll.id).pack())] for m in mine])
    await message.answer(text, reply_markup=keyboard)


async def view(query: CallbackQuery, callback_data: PollViewCb, actor: Actor, session: AsyncSession, now: datetime,
               poll_config: polls.PollConfig) -> None:
    if callback_data.a == "res":
        try:
            results = await polls.poll_results(session, actor, callback_data.p, now=now, cfg=poll_config)
        except polls.PollError as err:
            await query.answer(views.refusal(err).striptags(), show_alert=True)
            return
        await query.answer()
        if query.message:
            await query.message.answer(views.results_text(results))
        return
    mine = [m for m in await polls.my_open_polls(session, actor, now=now, cfg=poll_config)
            if m.poll.id == callback_data.p]
    if not mine:
        await query.answer(views.refusal(polls.PollError("no_poll")).striptags(), show_alert=True)
        return
    await query.answer()
    m = mine[0]
    card = polls.poll_card(m.poll, poll_config)
    rendered = views.card(card, choices=m.choices)
    if query.message:
        await query.message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))

