"""The bot's commands, in one place: /help, the menu and the command lists Telegram shows read this.

Each command has an audience: everyone, verified residents, elders enrolled in daily check-ins,
helpers who answer the check-in for elders, or staff. Telegram's command list (the "/" menu) is
published per chat for the roles the person has, whenever those become known (verification, staff
enrolment, a staff decision, /start, /lang, becoming a helper).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat
from aiohttp import ClientError
from sqlalchemy.ext.asyncio import AsyncSession

from services import checkins as cs
from services.accounts import account_locale, resolve_actor
from services.i18n import N_, _, use_locale
from services.models import Account
from services.scope import Actor

log = logging.getLogger(__name__)

ALL, RESIDENT, ELDER, HELPER, STAFF = "all", "resident", "elder", "helper", "staff"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str  # an untranslated msgid; translate with _() where shown
    audience: str  # ALL, RESIDENT (verified), ELDER (enrolled in daily check-ins), HELPER, STAFF


COMMANDS: tuple[Command, ...] = (
    Command("start", N_("Start, or join your community"), ALL),
    Command("menu", N_("Main menu"), ALL),
    Command("help", N_("What I can do"), ALL),
    Command("lang", N_("Switch language (中文 / English)"), ALL),
    Command("mydata", N_("See what is held about you"), ALL),
    Command("forget", N_("Delete your personal data"), ALL),
    Command("checkin", N_("Daily check-in: change time, pause, resume"), ELDER),
    Command("family", N_("Emergency contacts for your daily check-in"), ELDER),
    Command("helping", N_("Elders you answer the check-in for: today's list, hand over"), HELPER),
    Command("pending", N_("Verification requests waiting for review"), STAFF),
    Command("invite", N_("Issue household invite codes"), STAFF),
    Command("whois", N_("Look up a resident by name or room"), STAFF),
    Command("export", N_("Download your committee's registry (XLSX)"), STAFF),
    Command("checkins", N_("Today's check-in board"), STAFF),
    Command("alerts", N_("Open check-in alerts"), STAFF),
    Command("checkin_enrol", N_("Enrol a resident or segment in daily check-ins"), STAFF),
    Command("checkin_stop", N_("Stop daily check-ins for a resident"), STAFF),
    Command("checkin_family", N_("Family invite link for an enrolled resident"), STAFF),
    Command("checkin_helper", N_("Who answers the daily check-in for an elder (a helper)"), STAFF),
    Command("checkin_handover", N_("Hand a helper's elders over for a while"), STAFF),
    Command("checkins_week", N_("Weekly check-in report (chart + XLSX)"), STAFF),
    Command("duty", N_("Go on or off duty for check-in alerts"), STAFF),
    Command("tags", N_("The tag dictionary"), STAFF),
    Command("tag", N_("Tag a resident: /tag 3-2-201 volunteer"), STAFF),
    Command("untag", N_("Remove a tag from a resident"), STAFF),
    Command("segment", N_("Count residents matching an expression"), STAFF),
    Command("segment_save", N_("Save a segment: /segment_save name = expression"), STAFF),
    Command("segments", N_("Saved segments with live counts"), STAFF),
    Command("notice", N_("Write a notice to residents"), STAFF),
    Command("notices", N_("Recent notices"), STAFF),
    Command("notice_report", N_("Delivery report of a notice"), STAFF),
    Command("notice_cancel", N_("Cancel a scheduled notice"), STAFF),
    Command("cancel", N_("Stop what you are doing"), ALL),
    Command("benefits", N_("Programmes you may qualify for"), ALL),
    Command("policy_match", N_("Who qualifies for a policy; notify them"), STAFF),
    Command("policy_enrol", N_("Record that a resident is enrolled in a policy"), STAFF),
    Command("policy_decline", N_("Record that a resident declined a policy"), STAFF),
    Command("policy_report", N_("Policy take-up report (message + XLSX)"), STAFF),
    Command("polls", N_("Open polls you can vote in"), ALL),
    Command("poll_new", N_("Make a poll (guided, with a preview)"), STAFF),
    Command("poll_results", N_("Count of a poll: /poll_results ID"), STAFF),
    Command("poll_close", N_("Close a poll now: /poll_close ID"), STAFF),
    Command("topics", N_("Neighbourhood discussions"), ALL),
    Command("topic_new", N_("Propose or open a discussion topic"), ALL),
    Command("topics_review", N_("Topics and comments waiting for review"), STAFF),
    Command("topic_lock", N_("Lock a topic: /topic_lock ID [reason]"), STAFF),
    Command("topic_unlock", N_("Reopen a locked topic: /topic_unlock ID"), STAFF),
    Command("comment_hide", N_("Hide a comment: /comment_hide ID REASON"), STAFF),
    Command("comment_restore", N_("Show a hidden comment: /comment_restore ID REASON"), STAFF),
    Command("mute", N_("Mute a comment's author: /mute ID 24h [reason]"), STAFF),
    Command("unmute", N_("Lift a mute: /unmute COMMENT_ID"), STAFF),
    Command("topics_direct", N_("Residents publish topics directly: on / off"), STAFF),
    Command("console", N_("Sign in to the staff web console"), STAFF),
)


def audiences(actor: Actor | None, *, elder: bool = False, helper: bool = False) -> frozenset[str]:
    """The audiences a person belongs to (``elder``: their resident is enrolled in check-ins;
    ``helper``: they answer the check-in for an elder)."""
    out = {ALL}
    if actor is not None and actor.is_verified:
        out.add(RESIDENT)
        if elder:
            out.add(ELDER)
    if helper:
        out.add(HELPER)
    if actor is not None and actor.is_staff:
        out.add(STAFF)
    return frozenset(out)


async def audiences_of(session: AsyncSession, actor: Actor, *, as_read: bool = False) -> frozenset[str]:
    """:func:`audiences`, looking up whether the actor's resident is enrolled in daily check-ins and
    whether they are an elder's helper (their own; a substitute works from the lists they are sent).
    ``as_read``: the roles read with the actor at the start of the update will do (a handler that has
    changed no plan), when there are some."""
    roles = actor.checkin if as_read and actor.checkin is not None else await cs.checkin_roles(session, actor.account)
    return audiences(actor, elder=actor.is_verified and roles.elder, helper=roles.helper)


def commands_for(roles: frozenset[str] | Actor | None) -> list[Command]:
    """The commands of these audiences (or of this actor, without the elder lookup), in display order."""
    if not isinstance(roles, frozenset):
        roles = audiences(roles)
    return [c for c in COMMANDS if c.audience in roles]


def bot_commands(roles: frozenset[str], locale: str) -> list[BotCommand]:
    """Telegram's command list for these audiences, in ``locale``."""
    with use_locale(locale):
        return [BotCommand(command=c.name, description=_(c.description)) for c in commands_for(roles)]


async def publish_commands(bot: Bot, chat_id: int, roles: frozenset[str], locale: str) -> bool:
    """Set the command list Telegram shows in this private chat (for any language: the person's own).

    A refusal (network, rate limit) is logged and ignored: the next /start publishes it again.
    """
    try:
        await bot.set_my_commands(bot_commands(roles, locale), scope=BotCommandScopeChat(chat_id=chat_id))
    except (TelegramAPIError, ClientError, TimeoutError) as exc:
        log.warning("could not publish the command list of a chat (%s)", type(exc).__name__)
        return False
    return True


async def publish_for_actor(bot: Bot, session: AsyncSession, actor: Actor) -> bool:
    """Publish the acting person's command list for the roles they have now."""
    if actor.account is None:
        return False
    return await publish_commands(bot, actor.account.chat_id, await audiences_of(session, actor), actor.locale)


async def publish_for_account(bot: Bot, session: AsyncSession, account: Account, *, default_locale: str) -> bool:
    """Publish another person's command list (e.g. after a staff decision about them)."""
    other = await resolve_actor(session, account, language_code=account.language_code,
                                default_locale=default_locale)
    return await publish_commands(bot, account.chat_id, await audiences_of(session, other),
                                  account_locale(account, default_locale))
