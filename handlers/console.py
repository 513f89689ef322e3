"""/console: a staff member's one-time sign-in link to the web console, and the Mini App menu button."""

from __future__ import annotations

import logging
from datetime import datetime

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import LinkPreviewOptions, MenuButtonWebApp, Message, WebAppInfo
from aiohttp import ClientError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.staff import StaffOnly
from notifications.render import join, t
from services import console_auth
from services.console_auth import ConsoleConfig
from services.i18n import _, use_locale
from services.scope import Actor

log = logging.getLogger(__name__)


def router() -> Router:
    r = Router(name="console")
    r.message.register(console_link, Command("console"), StaffOnly())
    return r


async def console_link(message: Message, actor: Actor, session: AsyncSession, now: datetime,
                       console_config: ConsoleConfig) -> None:
    link = await console_auth.issue_link(session, actor, now=now, cfg=console_config)
    # The link must work the moment it is read: commit before it leaves.
    await session.commit()
    minutes = int(console_config.link_ttl.total_seconds() // 60)
    lines = [t("Your sign-in link to the staff console. It works once, for {minutes} minutes; do not forward it.\n"
               "{url}", minutes=minutes, url=link.url)]
    if console_config.mini_app and message.bot is not None \
            and await set_menu_button(message.bot, message.chat.id, console_config, actor.locale):
        lines.append(t("Inside Telegram, the menu button of this chat opens the console too."))
    # A direct reply, never the outbox (whose rows keep their payload for a while), and no link
    # preview: Telegram would fetch the page (the token itself rides in the fragment, never sent).
    await message.answer(join(lines, "\n\n"), link_preview_options=LinkPreviewOptions(is_disabled=True))


async def set_menu_button(bot: Bot, chat_id: int, cfg: ConsoleConfig, locale: str) -> bool:
    """Make this chat's menu button open the console as a Mini App; a refusal is logged and ignored."""
    with use_locale(locale):
        button = MenuButtonWebApp(text=_("Console"), web_app=WebAppInfo(url=cfg.url(console_auth.MINI_APP_PATH)))
    try:
        await bot.set_chat_menu_button(chat_id=chat_id, menu_button=button)
    except (TelegramAPIError, ClientError, TimeoutError) as exc:
        log.warning("could not set the console menu button of a chat (%s)", type(exc).__name__)
        return False
    return True
