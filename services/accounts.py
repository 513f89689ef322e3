"""Accounts (Telegram users) and resolving who is acting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.i18n import LOCALES, normalize_locale
from services.models import Account, Resident
from services.scope import Actor, load_staff_grants


@dataclass(frozen=True, slots=True)
class TelegramUser:
    """The parts of a Telegram user the domain cares about (no aiogram types in services)."""

    id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


# "Last seen" is noted at most this often: writing it on every update would make every update a write.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


async def touch_account(session: AsyncSession, user: TelegramUser, now: datetime) -> Account:
    """Get or create the account of a Telegram user and refresh its names; idempotent. Writes only what
    changed (``last_seen_at`` when older than ``LAST_SEEN_RESOLUTION``): most updates leave the row alone."""
    account = await session.scalar(select(Account).where(Account.telegram_id == user.id))
    if account is None:
        account = Account(telegram_id=user.id, chat_id=user.id, created_at=now)
        session.add(account)
    account.first_name = user.first_name[:128]
    account.last_name = user.last_name[:128] if user.last_name else None
    account.username = user.username
    account.language_code = user.language_code
    if account.last_seen_at is None or now - account.last_seen_at >= LAST_SEEN_RESOLUTION:
        account.last_seen_at = now
    if account.unreachable_at is not None:
        account.unreachable_at = None  # they wrote to us, so they no longer block the bot
    await session.flush()
    return account


async def resolve_actor(
    session: AsyncSession, account: Account, *, language_code: str | None, default_locale: str
) -> Actor:
    """The account's resident link, staff grants and language, as one ``Actor``."""
    resident = None
    if account.resident_id is not None:
        resident = await session.get(Resident, account.resident_id)
    grants = await load_staff_grants(session, account.id)
    locale = account.locale or normalize_locale(language_code, default_locale)
    return Actor(account=account, resident=resident, staff=grants, locale=locale)


async def set_account_locale(session: AsyncSession, account: Account, locale: str) -> str:
    """Remember the account's language; unknown codes fall back to the default."""
    account.locale = locale if locale in LOCALES else normalize_locale(locale)
    await session.flush()
    return account.locale


def account_locale(account: Account, default_locale: str = "zh_Hans") -> str:
    """The language to write to this account in, outside of its own updates."""
    return account.locale or normalize_locale(account.language_code, default_locale)
