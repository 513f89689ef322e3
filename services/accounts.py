"""Accounts (Telegram users) and resolving who is acting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.i18n import LOCALES, normalize_locale
from services.models import Account, CheckinPlan, Region, Resident, Staff
from services.models.checkins import HELPER_MODES
from services.scope import Actor, CheckinRoles, StaffGrant, load_staff_grants


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
    return await _touched(session, account, user, now)


async def _touched(session: AsyncSession, account: Account | None, user: TelegramUser, now: datetime) -> Account:
    """``account`` (a new one for ``user`` if None) with what Telegram says now; flushed only when that
    changed something (an unchanged account is not even marked dirty)."""
    if account is None:
        account = Account(telegram_id=user.id, chat_id=user.id, created_at=now)
        session.add(account)
    fresh: dict[str, object] = {
        "first_name": user.first_name[:128], "last_name": user.last_name[:128] if user.last_name else None,
        "username": user.username, "language_code": user.language_code}
    if account.last_seen_at is None or now - account.last_seen_at >= LAST_SEEN_RESOLUTION:
        fresh["last_seen_at"] = now
    if account.unreachable_at is not None:
        fresh["unreachable_at"] = None  # they wrote to us, so they no longer block the bot
    changed = account.id is None
    for name, value in fresh.items():
        if getattr(account, name) != value:
            setattr(account, name, value)
            changed = True
    if changed:
        await session.flush()
    return account


# The account of a Telegram user with its resident, its check-in roles (as checkin_roles answers them:
# /help, /menu and every menu button ask) and active staff grants: one row per grant (one row without a
# grant for a non-staff account), so a known user is resolved in one statement. Built once: constructing
# a select() costs about twice as much Python as executing one (bench updates, /help).
_ELDER = exists().where(CheckinPlan.resident_id == Account.resident_id, CheckinPlan.active.is_(True))
_HELPER = exists().where(CheckinPlan.helper_account_id == Account.id, CheckinPlan.active.is_(True),
                         CheckinPlan.mode.in_(HELPER_MODES))
ACTOR_ROWS = (select(Account, Resident, _ELDER, _HELPER,
                     Staff.id, Staff.role, Region.id, Region.path, Region.code, Region.name)
              .outerjoin(Resident, Resident.id == Account.resident_id)
              .outerjoin(Staff, and_(Staff.account_id == Account.id, Staff.active.is_(True)))
              .outerjoin(Region, Region.id == Staff.region_id)
              .where(Account.telegram_id == bindparam("telegram_id"))
              .order_by(Staff.id))


async def touch_actor(session: AsyncSession, user: TelegramUser, now: datetime, *, default_locale: str) -> Actor:
    """:func:`touch_account` and :func:`resolve_actor` for the user behind an update: the account (made
    on first contact), its resident, staff grants and language as one ``Actor``, read in one statement;
    the account row written only when something changed (see :func:`touch_account`). Its ``checkin`` roles
    are those at the start of the update."""
    rows = (await session.execute(ACTOR_ROWS, {"telegram_id": user.id})).all()
    account, resident, elder, helper = rows[0][:4] if rows else (None, None, False, False)
    account = await _touched(session, account, user, now)
    roles = CheckinRoles(resident is not None and bool(elder), bool(helper))
    grants = [StaffGrant(*tuple(row)[4:]) for row in rows if row[4] is not None]
    locale = account.locale or normalize_locale(user.language_code, default_locale)
    return Actor(account=account, resident=resident, staff=grants, locale=locale, checkin=roles)


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


async def note_blocked(session: AsyncSession, account: Account, now: datetime) -> None:
    """The person blocked the bot (Telegram says so, or a send came back 403). No commit."""
    account.unreachable_at = now
    await session.flush()


async def set_account_locale(session: AsyncSession, account: Account, locale: str) -> str:
    """Remember the account's language; unknown codes fall back to the default."""
    account.locale = locale if locale in LOCALES else normalize_locale(locale)
    await session.flush()
    return account.locale


def account_locale(account: Account, default_locale: str = "zh_Hans") -> str:
    """The language to write to this account in, outside of its own updates."""
    return account.locale or normalize_locale(account.language_code, default_locale)
