"""Alert buttons (I'm on it, the three outcomes, history) and /alerts, for staff and family."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.checkins.common import refusal
from handlers.staff import StaffOnly
from notifications.callbacks import AlertCb
from notifications.limits import pages
from notifications.messages import checkins as views
from notifications.render import t, to_reply_markup
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.models import AlertOutcome, AlertStatus
from services.scope import Actor

OUTCOMES = {"safe": AlertOutcome.safe, "help": AlertOutcome.needed_help, "unr": AlertOutcome.not_reachable}


def router() -> Router:
    r = Router(name="checkins.alerts")
    r.callback_query.register(alert_pressed, AlertCb.filter(F.a.in_({"ack", "hist", *OUTCOMES})))
    r.message.register(show_alerts, Command("alerts"), StaffOnly())
    return r


async def alert_pressed(query: CallbackQuery, callback_data: AlertCb, actor: Actor, session: AsyncSession,
                        checkin_config: CheckinConfig, now: datetime) -> None:
    """Staff in reach or the elder's family act on an alert; the service re-checks who may."""
    message = query.message if isinstance(query.message, Message) else None
    try:
        if callback_data.a == "hist":
            steps = await cs.round_history(session, actor, callback_data.id, cfg=checkin_config)
        elif callback_data.a == "ack":
            alert = await cs.acknowledge(session, actor, callback_data.id, now=now)
        else:
            alert = await cs.resolve(session, actor, callback_data.id, OUTCOMES[callback_data.a], now=now,
                                     cfg=checkin_config)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    if callback_data.a == "hist":
        await query.answer()
        if message is not None:
            for page in pages(views.history_lines(steps)) or ["—"]:
                await message.answer(page)
        return
    card = (await cs.alert_card(session, checkin_config, alert)).data(family=not actor.is_staff)
    if alert.status == AlertStatus.acknowledged:
        await query.answer(str(t("Thank you. Please close the alert when you know more.")))
        if message is not None:
            await message.edit_text(views.alert_text(card) + "\n— " + t("You are on it."),
                                    reply_markup=to_reply_markup(views.alert_buttons(alert.id, acknowledged=True)))
        return
    done = t("Closed: {outcome}.", outcome=views.outcome_name(alert.outcome.value))
    await query.answer(views.outcome_answer(alert.outcome.value))
    if message is not None:
        await message.edit_text(views.alert_text(card) + "\n— " + done, reply_markup=None)


async def show_alerts(message: Message, actor: Actor, session: AsyncSession, checkin_config: CheckinConfig) -> None:
    cards = await cs.open_alerts(session, actor, cfg=checkin_config)
    if not cards:
        await message.answer(t("No open alerts in your area."))
        return
    for card in cards:
        rendered = views.alert_view(card.data())
        await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))
