"""Signing staff in to the web console without passwords, and keeping them signed in.

Two ways in, both for active staff only:

- ``/console`` in the bot gives a link (:func:`issue_link`) valid once, for ``link_ttl``;
  :func:`redeem_link` spends it and opens a session;
- inside Telegram the console opens as a Mini App; the web layer checks Telegram's signature of
  ``initData`` (aiogram, which services do not import) and hands the user here
  (:func:`open_mini_app_session`), with the time Telegram signed it.

Only SHA-256 hashes of the link and session tokens are stored, and no token is ever logged or put
in the audit log. A session ends on logout or after ``session_idle`` without a request
(:func:`resume` checks and touches it); a member who is no longer staff is signed out at their
next request. Each session has its own CSRF token, derived from it (:func:`csrf_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.accounts import TelegramUser, resolve_actor
from services.i18n import LOCALES
from services.models import Account, ConsoleLink, ConsoleSession
from services.scope import Actor
from services.sql import rowcount

VIA_LINK = "link"
VIA_MINI_APP = "mini_app"
LINK_PATH = "/console/login"  # the token rides in the fragment (#t=…): never sent to a server, never logged
MINI_APP_PATH = "/console/app"
TOKEN_BYTES = 32
# A session's "last seen" is written at most this often (not on every page): idle expiry is counted
# from the last write, so a session may end up to this much earlier than CONSOLE_SESSION_IDLE says.
SESSION_TOUCH = timedelta(minutes=1)
# Spent and expired links, and ended sessions, are kept this long (a late click on a link is told it
# was used or expired, not that it is unknown), then deleted (forget_stale).
STALE_KEPT = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """Where the console is reached and how long its links and sessions last (built by ``bot.app``)."""

    public_url: str  # scheme://host[:port], no trailing slash
    session_idle: timedelta = timedelta(hours=8)
    link_ttl: timedelta = timedelta(minutes=10)
    init_data_ttl: timedelta = timedelta(minutes=10)  # a Mini App's initData older than this is refused

    @property
    def secure(self) -> bool:
        """Cookies are marked Secure: the console is reached over HTTPS."""
        return self.public_url.startswith("https://")

    @property
    def mini_app(self) -> bool:
        """Staff chats get a menu button opening the Mini App: Telegram needs an HTTPS URL; a loopback
        one is only ever reached from the sandbox (the demo), which plays Telegram locally."""
        if self.secure:
            return True
        host = urlsplit(self.public_url).hostname or ""
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def url(self, path: str) -> str:
        return self.public_url + path


class ConsoleAuthError(Exception):
    """Why signing in was refused: ``unknown``, ``expired``, ``used`` or ``not_staff``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoginLink:
    url: str  # holds the token: give it to the staff member only, never log it
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str  # for the session cookie only
    session_id: int
    account_id: int


@dataclass(slots=True)
class SignedIn:
    """The staff member behind a console request, and their session."""

    actor: Actor
    session: ConsoleSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _top_region(actor: Actor) -> int | None:
    grants = sorted(actor.staff, key=lambda g: len(g.region_path))
    return grants[0].region_id if grants else None


async def issue_link(session: AsyncSession, actor: Actor, *, now: datetime, cfg: ConsoleConfig) -> LoginLink:
    """A new one-time sign-in link for a staff member (``ConsoleAuthError("not_staff")`` for anyone
    else). Their spent and expired links are cleared on the way. Audited (without the token)."""
    if not actor.is_staff or actor.account is None:
        raise ConsoleAuthError("not_staff")
    await session.execute(delete(ConsoleLink).where(ConsoleLink.account_id == actor.account.id,
                                                    ConsoleLink.expires_at <= now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = ConsoleLink(token_hash=token_hash(token), account_id=actor.account.id, created_at=now,
                       expires_at=now + cfg.link_ttl)
    session.add(link)
    audit.record(session, "console.link", now=now, actor_account_id=actor.account.id, target_type="account",
                 target_id=actor.account.id, region_id=_top_region(actor))
    await session.flush()
    return LoginLink(url=f"{cfg.url(LINK_PATH)}#t={token}", expires_at=link.expires_at)


async def _staff_actor(session: AsyncSession, account: Account | None, default_locale: str) -> Actor | None:
    if account is None:
        return None
    actor = await resolve_actor(session, account, language_code=account.language_code, default_locale=default_locale)
    return actor if actor.is_staff else None


async def _open(session: AsyncSession, actor: Actor, via: str, now: datetime) -> OpenedSession:
    assert actor.account is not None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ConsoleSession(token_hash=token_hash(token), account_id=actor.account.id, via=via, created_at=now,
                         last_seen_at=now)
    session.add(row)
    await session.flush()
    audit.record(session, "console.login", now=now, actor_account_id=actor.account.id, target_type="account",
                 target_id=actor.account.id, region_id=_top_region(actor), detail={"via": via})
    await session.flush()
    return OpenedSession(token, row.id, actor.account.id)


async def redeem_link(session: AsyncSession, token: str, *, now: datetime, cfg: ConsoleConfig,
                      default_locale: str = "zh_Hans") -> OpenedSession:
    """Spend a sign-in link and open a session. Only the first use of a link within its lifetime
    counts, even when two requests race for it (one conditional UPDATE); otherwise
    ``ConsoleAuthError`` says ``unknown``, ``used``, ``expired`` or ``not_staff``."""
    digest = token_hash(token or "")
    spent = await session.execute(
        update(ConsoleLink).where(ConsoleLink.token_hash == digest, ConsoleLink.used_at.is_(None),
                                  ConsoleLink.expires_at > now).values(used_at=now))
    link = await session.scalar(select(ConsoleLink).where(ConsoleLink.token_hash == digest))
    if not rowcount(spent):
        if link is None:
            raise ConsoleAuthError("unknown")
        reason = "used" if link.used_at is not None else "expired"
        audit.record(session, "console.login", now=now, actor_account_id=link.account_id, target_type="account",
                     target_id=link.account_id, outcome=reason, detail={"via": VIA_LINK})
        raise ConsoleAuthError(reason)
    assert link is not None
    actor = await _staff_actor(session, await session.get(Account, link.account_id), default_locale)
    if actor is None:
        raise ConsoleAuthError("not_staff")
    return await _open(session, actor, VIA_LINK, now)


async def open_mini_app_session(session: AsyncSession, user: TelegramUser, *, signed_at: datetime, now: datetime,
                                cfg: ConsoleConfig, default_locale: str = "zh_Hans") -> OpenedSession:
    """Open a session for the Telegram user of a Mini App whose initData the caller has verified as
    signed by Telegram at ``signed_at``: refused when older than ``init_data_ttl`` (``expired``) or
    when the user is not active staff (``not_staff``)."""
    if signed_at > now + timedelta(minutes=1) or now - signed_at > cfg.init_data_ttl:
        raise ConsoleAuthError("expired")
    account = await session.scalar(select(Account).where(Account.telegram_id == user.id))
    actor = await _staff_actor(session, account, default_locale)
    if actor is None:
        raise ConsoleAuthError("not_staff")
    return await _open(session, actor, VIA_MINI_APP, now)


async def resume(session: AsyncSession, token: str | None, *, now: datetime, cfg: ConsoleConfig,
                 default_locale: str = "zh_Hans") -> SignedIn | None:
    """The staff member of a session cookie, with the session touched; None when the token is unknown,
    the session ended, was idle for ``session_idle`` (it ends now) or its member is no longer staff."""
    if not token:
        return None
    row = await session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token),
                                                            ConsoleSession.ended_at.is_(None)))
    if row is None:
        return None
    if now - row.last_seen_at >= cfg.session_idle:
        row.ended_at = now
        await session.flush()
        return None
    actor = await _staff_actor(session, await session.get(Account, row.account_id), default_locale)
    if actor is None:
        row.ended_at = now
        await session.flush()
        return None
    if now - row.last_seen_at >= SESSION_TOUCH:
        row.last_seen_at = now
    if row.locale:
        actor.locale = row.locale
    await session.flush()
    return SignedIn(actor, row)


async def still_signed_in(session: AsyncSession, session_id: int, *, now: datetime, cfg: ConsoleConfig,
                          default_locale: str = "zh_Hans") -> Actor | None:
    """The staff member of session ``session_id`` if it is still open (not ended, not idle, its member
    still staff), with their grants as they are now; None otherwise. Unlike :func:`resume` it does not
    touch the session: a live page's event stream is not activity of its own. Read only."""
    row = await session.scalar(select(ConsoleSession).where(ConsoleSession.id == session_id,
                                                            ConsoleSession.ended_at.is_(None)))
    if row is None or now - row.last_seen_at >= cfg.session_idle:
        return None
    actor = await _staff_actor(session, await session.get(Account, row.account_id), default_locale)
    if actor is not None and row.locale:
        actor.locale = row.locale
    return actor


async def end_session(session: AsyncSession, signed_in: SignedIn, *, now: datetime) -> None:
    """Sign out: the session's cookie no longer opens anything. Audited."""
    signed_in.session.ended_at = now
    audit.record(session, "console.logout", now=now, actor_account_id=signed_in.session.account_id,
                 target_type="account", target_id=signed_in.session.account_id,
                 region_id=_top_region(signed_in.actor))
    await session.flush()


async def set_locale(session: AsyncSession, signed_in: SignedIn, locale: str) -> str:
    """Switch the console's language for this session (the bot's stays as chosen with /lang)."""
    chosen = locale if locale in LOCALES else signed_in.actor.locale
    signed_in.session.locale = chosen
    signed_in.actor.locale = chosen
    await session.flush()
    return chosen


def csrf_token(console_session: ConsoleSession, secret_key: str) -> str:
    """The session's CSRF token: a keyed hash of the session, so nothing more is stored."""
    return hmac.new(secret_key.encode(), f"csrf:{console_session.token_hash}".encode(), hashlib.sha256).hexdigest()


def check_csrf(console_session: ConsoleSession, secret_key: str, value: str | None) -> bool:
    """True when ``value`` is this session's CSRF token (compared in constant time; as bytes, so a value
    that is not ASCII is simply wrong instead of an error)."""
    given = (value or "").encode("utf-8", "surrogateescape")
    return bool(given) and hmac.compare_digest(csrf_token(console_session, secret_key).encode(), given)


async def forget_stale(session: AsyncSession, *, now: datetime, cfg: ConsoleConfig) -> int:
    """Delete the links that expired and the sessions that ended (or went idle) more than
    ``STALE_KEPT`` ago; returns how many rows went. The caller commits."""
    links = await session.execute(delete(ConsoleLink).where(ConsoleLink.expires_at < now - STALE_KEPT))
    sessions = await session.execute(delete(ConsoleSession).where(
        (ConsoleSession.ended_at < now - STALE_KEPT)
        | (ConsoleSession.last_seen_at < now - cfg.session_idle - STALE_KEPT)))
    return rowcount(links) + rowcount(sessions)
