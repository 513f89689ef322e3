"""Notices: compose, preview the audience, send now or at a time, track delivery and "Received".

A notice's audience is the active, verified residents in the author's scope, narrowed to a tag or a
saved segment. Releasing a notice writes its recipients and their outbox rows in one transaction;
the outbox sender delivers them (broadcast priority, so alerts overtake them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, and_, case, delete, exists, func, or_, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.accounts import account_locale
from services.i18n import N_, _
from services.ids import is_db_id, parse_db_id
from services.models import (
    Account,
    Notice,
    NoticeRecipient,
    NoticeStatus,
    OutboxMessage,
    OutboxStatus,
    Region,
    Resident,
    ResidentStatus,
    Segment,
)
from services.outbox import MAX_CAPTION, MAX_TEXT, OutboxItem, Priority, enqueue_many, message_payload
from services.scope import Actor, load_staff_grants, resident_scope
from services.segments import get_segment, list_segments, segment_filter
from services.sql import rowcount
from services.tags import list_tags

REF = "notice"
REMINDER_REF = "notice_reminder"
MAX_TAGS = 5  # tags of one audience ("any of"), joined by commas in ``audience_ref``
MAX_AUDIENCE_REF = 100  # Notice.audience_ref


class NoticeError(ValueError):
    """Why a notice cannot be created, sent or changed: a msgid and its values, rendered (escaped) by
    the caller in the reader's language; ``str()`` gives the plain sentence in the current one."""

    def __init__(self, msgid: str, /, **values: Any) -> None:
        super().__init__(msgid)
        self.msgid = msgid
        self.values = values

    def __str__(self) -> str:
        return _(self.msgid).format(**self.values)


@dataclass
class Audience:
    kind: str  # committee / tag / segment
    ref: str | None
    expression: str | None  # None: everyone in scope


async def audience(session: AsyncSession, actor: Actor, kind: str, ref: str | None) -> Audience:
    """Resolve an audience choice to the expression it stands for (scoped; unknown refs refused).

    ``kind`` ``tag``: ``ref`` is a tag code of the actor's area, or up to ``MAX_TAGS`` of them joined
    by commas (residents with any of them)."""
    if kind == "committee":
        return Audience(kind, None, None)
    if kind == "tag" and ref and len(ref) <= MAX_AUDIENCE_REF:
        codes = ref.split(",")
        known = {tag.code for tag in await list_tags(session, actor)}
        if len(codes) <= MAX_TAGS and len(set(codes)) == len(codes) and all(c in known for c in codes):
            # Codes match tags.CODE_RE (word characters and "-"): none can end the quotes or hold a comma.
            return Audience(kind, ref, " or ".join(f'has_tag("{c}")' for c in codes))
    if kind == "segment" and (segment_id := parse_db_id(ref)) is not None:
        segment = await get_segment(session, actor, segment_id)
        if segment is not None:
            return Audience(kind, ref, segment.expression)
    raise NoticeError(N_("This audience is not available."))


def _audience_filter(actor: Actor, expression: str | None, today: date):
    if expression is None:
        return and_(resident_scope(actor), Resident.status == ResidentStatus.active)
    return segment_filter(actor, expression, today)


def _recipients_query(actor: Actor, expression: str | None, today: date):
    """Accounts linked to matching active residents in scope (unverified accounts never match)."""
    return (select(Account.id, Account.chat_id, Account.locale, Account.language_code)
            .join(Resident, Resident.id == Account.resident_id)
            .where(_audience_filter(actor, expression, today)))


async def count_recipients(session: AsyncSession, actor: Actor, aud: Audience, today: date) -> tuple[int, int]:
    """(residents in the audience, of whom reachable in the bot) — the preview's two numbers."""
    residents = await session.scalar(select(func.count()).select_from(Resident)
                                     .where(_audience_filter(actor, aud.expression, today))) or 0
    reachable = await session.scalar(select(func.count()).select_from(
        _recipients_query(actor, aud.expression, today).where(Account.unreachable_at.is_(None)).subquery())) or 0
    return residents, reachable


@dataclass(frozen=True, slots=True)
class CallEntry:
    """A resident of an audience whom the bot cannot reach: staff phone them instead."""

    resident_id: int
    name: str
    building: str | None
    unit: str | None
    room: str | None
    phone: str | None


def _reachable_in_bot():
    return exists().where(Account.resident_id == Resident.id, Account.unreachable_at.is_(None))


async def unreachable_residents(session: AsyncSession, actor: Actor, aud: Audience, today: date, *,
                                limit: int = 50, offset: int = 0) -> list[CallEntry]:
    """The call list: residents of the audience, in the actor's scope, with no account in the bot or
    one that blocked it; by building, unit, room and name (stable pages by ``offset``)."""
    rows = await session.execute(
        select(Resident.id, Resident.name, Resident.building, Resident.unit, Resident.room, Resident.phone)
        .where(_audience_filter(actor, aud.expression, today), ~_reachable_in_bot())
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name, Resident.id)
        .limit(limit).offset(offset))
    return [CallEntry(*row) for row in rows.all()]


PERSONAL_LISTS = {"call_list": "notice.call_list", "unconfirmed": "notice.unconfirmed"}


def record_list_view(session: AsyncSession, actor: Actor, notice: Notice, which: str, *, rows: int, now: datetime,
                     export: bool = False) -> None:
    """Audit that staff saw (or, ``export``, downloaded) a list of a notice's residents with their
    phone numbers: ``which`` is ``call_list`` or ``unconfirmed``. Only how many rows, never the rows."""
    audit.record(session, PERSONAL_LISTS[which], now=now, actor_account_id=actor.account_id, target_type="notice",
                 target_id=notice.id, region_id=notice.region_id, detail={"rows": rows, "export": export})


async def notice_audience(session: AsyncSession, actor: Actor, notice_id: int) -> Audience:
    """The audience a notice in the actor's scope was written for (as the registry stands now)."""
    notice = await get_notice(session, actor, notice_id)
    return Audience(notice.audience_kind, notice.audience_ref, notice.audience_expression)


def check_text(text: str, media_kind: str | None) -> str:
    """The notice text as it will be stored (stripped), or ``NoticeError`` if empty or too long for a
    message (or, with a photo or file, for a caption) with its heading."""
    text = (text or "").strip()
    limit = (MAX_CAPTION if media_kind else MAX_TEXT) - 100  # room for the heading
    if not text:
        raise NoticeError(N_("A notice needs some text."))
    if len(text) > limit:
        raise NoticeError(N_("The notice is too long: at most {n} characters."), n=limit)
    return text


async def save_draft(session: AsyncSession, actor: Actor, *, text: str, aud: Audience, now: datetime,
                     media_kind: str | None = None, media_file_id: str | None = None,
                     draft_id: int | None = None) -> Notice:
    """The staff member's notice as previewed, kept as a draft until it is sent (``send_draft``): the
    draft ``draft_id`` of theirs if it is still one (a second audience chosen for the same notice),
    else a new one. Only staff; scoped to their first region; nobody is told anything yet."""
    if not actor.is_staff:
        raise NoticeError(N_("Only committee staff can send notices."))
    text = check_text(text, media_kind)
    notice = await session.scalar(select(Notice).where(
        Notice.id == draft_id, Notice.author_account_id == actor.account_id,
        Notice.status == NoticeStatus.draft)) if is_db_id(draft_id) else None
    if notice is None:
        notice = Notice(region_id=actor.staff[0].region_id, author_account_id=actor.account_id,
                        status=NoticeStatus.draft, created_at=now, text=text, audience_kind=aud.kind)
        session.add(notice)
    notice.text, notice.media_kind, notice.media_file_id = text, media_kind, media_file_id
    notice.audience_kind, notice.audience_ref, notice.audience_expression = aud.kind, aud.ref, aud.expression
    await session.flush()
    return notice


async def send_draft(session: AsyncSession, actor: Actor, notice_id: int, *, now: datetime,
                     send_at: datetime | None = None) -> Notice:
    """Send the actor's draft now (recipients and their outbox rows written at once) or schedule it for
    ``send_at``. Once: leaving the draft state is one conditional UPDATE, so a second tap of "Send
    now" (another worker's too: it waits for the first's row lock, then finds no draft) is refused with
    ``NoticeError`` and sends nothing."""
    if not actor.is_staff:
        raise NoticeError(N_("Only committee staff can send notices."))
    if send_at is not None and send_at <= now:
        raise NoticeError(N_("The send time must be in the future."))
    claimed = await session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.author_account_id == actor.account_id,
                             Notice.status == NoticeStatus.draft)
        .values(status=NoticeStatus.scheduled, send_at=send_at or now)) if is_db_id(notice_id) else None
    notice = await session.scalar(select(Notice).where(Notice.id == notice_id, Notice.author_account_id
                                                       == actor.account_id)) if is_db_id(notice_id) else None
    if notice is None:
        raise NoticeError(N_("There is no notice #{id} in your area."), id=notice_id)
    if claimed is None or rowcount(claimed) != 1:
        if notice.status == NoticeStatus.scheduled:
            raise NoticeError(N_("Notice #{id} is already scheduled."), id=notice_id)
        if notice.status == NoticeStatus.sent:
            raise NoticeError(N_("Notice #{id} has already been sent."), id=notice_id)
        raise NoticeError(N_("There is no notice #{id} in your area."), id=notice_id)
    await session.refresh(notice)
    audit.record(session, "notice.create", now=now, actor_account_id=actor.account_id, target_type="notice",
                 target_id=notice.id, region_id=notice.region_id,
                 detail={"audience": notice.audience_kind, "scheduled": send_at is not None})
    if send_at is None:
        await release(session, notice, actor, now)
    return notice


async def discard_draft(session: AsyncSession, actor: Actor, notice_id: int | None) -> bool:
    """Delete the actor's draft (the compose was abandoned); a sent or scheduled notice stays."""
    if not is_db_id(notice_id) or actor.account_id is None:
        return False
    gone = await session.execute(delete(Notice).where(Notice.id == notice_id, Notice.author_account_id
                                                      == actor.account_id, Notice.status == NoticeStatus.draft))
    return rowcount(gone) == 1


async def create_notice(session: AsyncSession, actor: Actor, *, text: str, aud: Audience, now: datetime,
                        send_at: datetime | None = None, media_kind: str | None = None,
                        media_file_id: str | None = None) -> Notice:
    """A staff member's notice, scheduled or released now (a draft sent at once). Only staff; scoped to
    their first region."""
    draft = await save_draft(session, actor, text=text, aud=aud, now=now, media_kind=media_kind,
                             media_file_id=media_file_id)
    return await send_draft(session, actor, draft.id, now=now, send_at=send_at)


def _payload(notice: Notice, locale: str, *, reminder: bool = False) -> dict:
    """What to send (rendered by the sender in ``locale``, with its Received button)."""
    media = {"file_id": notice.media_file_id} if notice.media_file_id else None
    return message_payload("notices.notice", {"id": notice.id, "text": notice.text, "reminder": reminder},
                           locale=locale, photo=media if notice.media_kind == "photo" else None,
                           document=media if notice.media_kind == "document" else None)


async def release(session: AsyncSession, notice: Notice, actor: Actor, now: datetime) -> int:
    """Write recipients and enqueue their messages; idempotent (keys are per notice and account)."""
    rows = (await session.execute(_recipients_query(actor, notice.audience_expression, now.date()))).all()
    payloads: dict[str, dict] = {}
    items = []
    for account_id, chat_id, locale, language_code in rows:
        loc = account_locale(Account(locale=locale, language_code=language_code))
        if loc not in payloads:
            payloads[loc] = _payload(notice, loc)
        payload = payloads[loc]
        items.append(OutboxItem(key=f"notice:{notice.id}:{account_id}", chat_id=chat_id, payload=payload,
                                priority=Priority.broadcast, account_id=account_id, ref_type=REF, ref_id=notice.id))
    if rows:
        await session.execute(_insert_ignore(session, NoticeRecipient),
                              [{"notice_id": notice.id, "account_id": r[0]} for r in rows])
    await enqueue_many(session, items, now=now)
    notice.status = NoticeStatus.sent
    notice.released_at = now
    notice.recipients = len(rows)
    await session.flush()
    return len(rows)


def _insert_ignore(session: AsyncSession, model):
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing()


async def _author_actor(session: AsyncSession, notice: Notice) -> Actor:
    grants = await load_staff_grants(session, notice.author_account_id) if notice.author_account_id else []
    return Actor(account=await session.get(Account, notice.author_account_id) if notice.author_account_id else None,
                 staff=[g for g in grants if g.region_id == notice.region_id] or grants)


async def tick(session: AsyncSession, now: datetime) -> int:
    """Release scheduled notices that are due; safe in several processes (a release is claimed)."""
    due = (await session.scalars(select(Notice.id).where(Notice.status == NoticeStatus.scheduled,
                                                         Notice.send_at <= now))).all()
    released = 0
    for notice_id in due:
        claimed = await session.execute(update(Notice).where(Notice.id == notice_id,
                                                             Notice.status == NoticeStatus.scheduled)
                                        .values(status=NoticeStatus.draft))
        if rowcount(claimed) != 1:
            continue
        notice = await session.get(Notice, notice_id)
        if notice is None:  # just claimed under its row lock, so never; nothing to release if it were gone
            continue
        await session.refresh(notice)
        actor = await _author_actor(session, notice)
        if not actor.staff:  # the author lost their staff role: the notice is not sent
            notice.status = NoticeStatus.cancelled
            continue
        await release(session, notice, actor, now)
        released += 1
    await session.commit()
    return released


def _notices_in_scope(actor: Actor):
    """Notices authored in the staff member's regions or below (None: no staff scope)."""
    if not actor.is_staff:
        return None
    return Notice.region_id.in_(select(Region.id).where(or_(*[Region.path.startswith(p, autoescape=True)
                                                               for p in actor.region_paths()])))


async def get_notice(session: AsyncSession, actor: Actor, notice_id: int) -> Notice:
    cond = _notices_in_scope(actor)
    notice = None if cond is None or not is_db_id(notice_id) else await session.scalar(
        select(Notice).where(Notice.id == notice_id, cond))
    if notice is None:
        raise NoticeError(N_("There is no notice #{id} in your area."), id=notice_id)
    return notice


async def cancel_notice(session: AsyncSession, actor: Actor, notice_id: int, now: datetime) -> Notice:
    """Cancel a scheduled notice before its send time (a sent one cannot be recalled)."""
    notice = await get_notice(session, actor, notice_id)
    if notice.status != NoticeStatus.scheduled:
        raise NoticeError(N_("Only a notice that has not been sent yet can be cancelled."))
    notice.status = NoticeStatus.cancelled
    audit.record(session, "notice.cancel", now=now, actor_account_id=actor.account_id, target_type="notice",
                 target_id=notice.id, region_id=notice.region_id)
    await session.flush()
    return notice


@dataclass
class NoticeReport:
    notice: Notice
    recipients: int
    sent: int
    pending: int
    failed: int
    unreachable: int
    received: int


async def report(session: AsyncSession, actor: Actor, notice_id: int) -> NoticeReport:
    """Live delivery figures of one notice in the actor's scope."""
    notice = await get_notice(session, actor, notice_id)
    counts = dict.fromkeys(OutboxStatus, 0)
    for status, n in await session.execute(
            select(OutboxMessage.status, func.count()).where(OutboxMessage.ref_type == REF,
                                                             OutboxMessage.ref_id == notice.id)
            .group_by(OutboxMessage.status)):
        counts[OutboxStatus(status)] = n
    received = await session.scalar(select(func.count()).select_from(NoticeRecipient).where(
        NoticeRecipient.notice_id == notice.id, NoticeRecipient.received_at.is_not(None))) or 0
    return NoticeReport(notice, notice.recipients, counts[OutboxStatus.sent],
                        counts[OutboxStatus.pending] + counts[OutboxStatus.sending], counts[OutboxStatus.failed],
                        counts[OutboxStatus.unreachable], received)


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """A recipient of a released notice who has not pressed Received, and where their message is:
    ``delivery`` is the outbox status (``pending``, ``sending``, ``sent``, ``failed``,
    ``unreachable``, ``cancelled``), or ``none`` when it has no outbox row."""

    account_id: int
    resident_id: int | None
    name: str
    building: str | None
    unit: str | None
    room: str | None
    phone: str | None
    delivery: str


DELIVERY_ORDER = ("failed", "unreachable", "pending", "sending", "sent", "cancelled", "none")


async def unconfirmed_recipients(session: AsyncSession, actor: Actor, notice_id: int, *, limit: int = 50,
                                 offset: int = 0) -> list[Unconfirmed]:
    """Who has not received a notice in the actor's scope (``NoticeError`` otherwise): its recipients
    without "Received", those whose message did not arrive first (failed, blocked, waiting), then by
    building, unit, room and name; stable pages by ``offset``. Reads only."""
    notice = await get_notice(session, actor, notice_id)
    delivery = (select(type_coerce(OutboxMessage.status, String))
                .where(OutboxMessage.ref_type == REF, OutboxMessage.ref_id == notice.id,
                       OutboxMessage.account_id == Account.id)
                .correlate(Account).limit(1).scalar_subquery())
    rank = case({status: i for i, status in enumerate(DELIVERY_ORDER)}, value=func.coalesce(delivery, "none"),
                else_=len(DELIVERY_ORDER))
    rows = await session.execute(
        select(Account.id, Resident.id, func.coalesce(Resident.name, Account.first_name), Resident.building,
               Resident.unit, Resident.room, Resident.phone, delivery)
        .select_from(NoticeRecipient).join(Account, Account.id == NoticeRecipient.account_id)
        .outerjoin(Resident, and_(Resident.id == Account.resident_id, resident_scope(actor)))
        .where(NoticeRecipient.notice_id == notice.id, NoticeRecipient.received_at.is_(None))
        .order_by(rank, Resident.building, Resident.unit, Resident.room, Resident.name, Account.id)
        .limit(limit).offset(offset))
    return [Unconfirmed(account_id, resident_id, name or "", building, unit, room, phone,
                        status or "none")
            for account_id, resident_id, name, building, unit, room, phone, status in rows.all()]


async def mark_received(session: AsyncSession, actor: Actor, notice_id: int, now: datetime) -> bool:
    """The recipient pressed Received; only a recipient of that notice can, and only once counts."""
    if actor.account is None or not is_db_id(notice_id):
        return False
    result = await session.execute(update(NoticeRecipient).where(
        NoticeRecipient.notice_id == notice_id, NoticeRecipient.account_id == actor.account_id,
        NoticeRecipient.received_at.is_(None)).values(received_at=now))
    if rowcount(result):
        return True
    exists = await session.scalar(select(NoticeRecipient.id).where(
        NoticeRecipient.notice_id == notice_id, NoticeRecipient.account_id == actor.account_id))
    if exists is None:
        raise NoticeError(N_("This notice was not sent to you."))
    return False


async def remind_unconfirmed(session: AsyncSession, actor: Actor, notice_id: int, now: datetime) -> int:
    """Send the notice once more to those who got it but have not pressed Received; only once."""
    notice = await get_notice(session, actor, notice_id)
    if notice.reminded_at is not None:
        raise NoticeError(N_("A reminder was already sent for this notice."))
    rows = (await session.execute(
        select(Account.id, Account.chat_id, Account.locale, Account.language_code)
        .join(NoticeRecipient, and_(NoticeRecipient.account_id == Account.id, NoticeRecipient.notice_id == notice.id))
        .join(OutboxMessage, and_(OutboxMessage.ref_type == REF, OutboxMessage.ref_id == notice.id,
                                  OutboxMessage.account_id == Account.id, OutboxMessage.status == OutboxStatus.sent))
        .where(NoticeRecipient.received_at.is_(None)))).all()
    items = []
    for account_id, chat_id, locale, language_code in rows:
        payload = _payload(notice, account_locale(Account(locale=locale, language_code=language_code)), reminder=True)
        items.append(OutboxItem(key=f"notice:{notice.id}:remind:{account_id}", chat_id=chat_id, payload=payload,
                                priority=Priority.broadcast, account_id=account_id, ref_type=REMINDER_REF,
                                ref_id=notice.id))
    await enqueue_many(session, items, now=now)
    notice.reminded_at = now
    await session.flush()
    return len(items)


async def list_notices(session: AsyncSession, actor: Actor, limit: int = 10) -> list[Notice]:
    cond = _notices_in_scope(actor)
    if cond is None:
        return []
    return list((await session.scalars(select(Notice).where(cond, Notice.status != NoticeStatus.draft)
                                       .order_by(Notice.id.desc()).limit(limit))).all())


async def audience_choices(session: AsyncSession, actor: Actor) -> tuple[list, list[Segment]]:
    """Tags and saved segments the actor may address."""
    return await list_tags(session, actor), await list_segments(session, actor)
