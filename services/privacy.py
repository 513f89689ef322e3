"""Personal-data rights: what is held about a person (/mydata), and erasing it (/forget)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.checkins import helped_elders, helper_leaves, my_handovers
from services.i18n import N_, _
from services.models import (
    Household,
    OutboxMessage,
    OutboxStatus,
    Region,
    Resident,
    ResidentStatus,
    ResidentTag,
    Staff,
    Tag,
    VerificationAttempt,
)
from services.models.verification import RequestStatus, VerificationRequest
from services.policies import answers_for_mydata, erase_answers
from services.scope import Actor
from services.verification import LOCK_WINDOW

# What /mydata says in place of the ID number: the number itself was never stored.
ID_NUMBER_HELD_AS = N_("held only as a keyed hash (HMAC-SHA256): neither the number nor its last four "
                       "characters can be read back")

RESIDENT_EXPORT_FIELDS = ("name", "phone", "birth_date", "gender", "compound", "building", "unit", "room",
                          "living_alone", "hukou", "disability_level", "monthly_income", "emergency_contact_phone",
                          "status")


class NoAccount(PermissionError):
    """/mydata and /forget speak for one Telegram account; an update without a user has none."""


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else (value.value if hasattr(value, "value") else value)


async def my_data(session: AsyncSession, actor: Actor, *, today: date) -> dict[str, Any]:
    """Everything held about the actor's own account and linked resident, and for a helper whom they
    answer the daily check-in for and their hand-overs not over by ``today`` (local date). The ID
    number is held only as keyed hashes, so there is nothing to show of it but that."""
    account = actor.account
    if account is None:
        raise NoAccount
    data: dict[str, Any] = {
        "account": {
            "telegram_id": account.telegram_id,
            "first_name": account.first_name,
            "last_name": account.last_name,
            "username": account.username,
            "phone": account.phone,  # shared as your Telegram contact while verifying (encrypted at rest)
            "language": account.locale or account.language_code,
            "consent_at": _iso(account.consent_at),
            "verification_method": account.verification_method,
            "verified_at": _iso(account.verified_at),
            "created_at": _iso(account.created_at),
        },
        "resident": None,
        "tags": [],
        "staff_roles": [{"role": g.role.value, "region": g.region_name} for g in actor.staff],
        # Helping with check-ins: the elders as the helper's own list names them, and hand-overs.
        "helping": [{"name": e.name, "room": e.room, "committee": e.committee, "mode": e.mode}
                    for e in await helped_elders(session, account.id)],
        "handovers": [{"committee": h.committee, "start": h.start, "end": h.end, "away": h.away,
                       "helper": h.helper, "substitute": h.substitute}
                      for h in await my_handovers(session, account.id, today)],
    }
    if actor.resident is not None:
        r = actor.resident
        committee = await session.get(Region, r.committee_id)
        data["resident"] = {f: _iso(getattr(r, f)) for f in RESIDENT_EXPORT_FIELDS}
        if r.id_hash:
            data["resident"]["id_number"] = _(ID_NUMBER_HELD_AS)
        data["resident"]["committee"] = committee.name if committee else None
        data["resident"].update(await _household_facts(session, r.household_id))
        data["tags"] = await _tags_of(session, r.id)
        data["policy_answers"] = await answers_for_mydata(session, r.id)  # /benefits answers kept with consent
    return data


async def _household_facts(session: AsyncSession, household_id: int | None) -> dict[str, Any]:
    """What the registry holds about the resident's household for owners' votes."""
    household = await session.get(Household, household_id) if household_id is not None else None
    if household is None:
        return {"owner": None, "floor_area": None}
    area = household.floor_area
    return {"owner": household.owner, "floor_area": float(area) if area is not None else None}


async def _tags_of(session: AsyncSession, resident_id: int) -> list[dict[str, str]]:
    rows = await session.execute(select(Tag.code, Tag.name_zh, Tag.name_en).join(
        ResidentTag, ResidentTag.tag_id == Tag.id).where(ResidentTag.resident_id == resident_id))
    return [{"code": c, "zh": zh, "en": en} for c, zh, en in rows]


@dataclass(frozen=True, slots=True)
class HeldField:
    """One field held about a person, with its typed value (``bool``, ``date``, ``datetime``, codes)."""

    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class HeldTag:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class HeldElder:
    """An elder the person answers the daily check-in for (as their list names them)."""

    name: str
    room: str
    committee: str
    mode: str  # proxy, self_then_helper


@dataclass(frozen=True, slots=True)
class HeldHandover:
    """A hand-over not over yet: the person away (``away``), or standing in for ``helper``."""

    committee: str
    start: str
    end: str
    away: bool
    helper: str
    substitute: str | None  # None: the committee's on-duty staff


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """What /mydata shows in the chat; the file (``my_data``) has every value in full."""

    account: list[HeldField]
    resident: list[HeldField] | None
    tags: list[HeldTag]
    staff_roles: list[tuple[str, str]]  # (role, region name)
    helping: list[HeldElder] = field(default_factory=list)
    handovers: list[HeldHandover] = field(default_factory=list)


_TIMES = ("consent_at", "verified_at", "created_at")


def _typed(field: str, value: Any) -> Any:
    if isinstance(value, str) and field in _TIMES:
        return datetime.fromisoformat(value)
    if isinstance(value, str) and field == "birth_date":
        return date.fromisoformat(value)
    return value


def summary(data: dict[str, Any]) -> HeldSummary:
    """The chat summary of :func:`my_data`: filled fields only, values typed again (not ISO text)."""
    def fields(part: dict[str, Any]) -> list[HeldField]:
        return [HeldField(k, _typed(k, v)) for k, v in part.items() if v not in (None, "")]

    return HeldSummary(
        account=fields(data["account"]),
        resident=fields(data["resident"]) if data["resident"] else None,
        tags=[HeldTag(tag["code"], tag["zh"], tag["en"]) for tag in data["tags"]],
        staff_roles=[(r["role"], r["region"]) for r in data["staff_roles"]],
        helping=[HeldElder(**e) for e in data.get("helping", [])],
        handovers=[HeldHandover(**h) for h in data.get("handovers", [])],
    )


async def forget(session: AsyncSession, actor: Actor, now: datetime, *, today: date | None = None) -> None:
    """Unlink and erase the account; the committee's registry row stays, marked withdrawn. A helper's
    elders (and hand-overs they stand in for) fall to the committee's on-duty staff, who are told
    which (``today``: the local date, for hand-overs not over yet).

    Failed verification attempts of the lock window stay, without the account: they hold the time,
    the method, the registry entry tried and a keyed hash of the phone number, and keep the lock on
    that entry and number (else /forget and a new account would reset it). The rest goes, the
    phone the account shared with it (the account's row)."""
    account = actor.account
    if account is None:
        raise NoAccount
    await helper_leaves(session, account, now=now, today=today or now.date())
    resident_id = account.resident_id
    region_id = actor.resident.committee_id if actor.resident else None
    if resident_id is not None:
        await session.execute(update(Resident).where(Resident.id == resident_id)
                              .values(status=ResidentStatus.withdrawn, updated_at=now))
        await erase_answers(session, resident_id)  # /benefits answers are theirs, not the registry's
    await session.execute(update(VerificationRequest).where(
        VerificationRequest.account_id == account.id, VerificationRequest.status == RequestStatus.pending
    ).values(status=RequestStatus.cancelled))
    await session.execute(delete(VerificationAttempt).where(
        VerificationAttempt.account_id == account.id,
        or_(VerificationAttempt.success.is_(True), VerificationAttempt.at <= now - LOCK_WINDOW,
            (VerificationAttempt.resident_id.is_(None) & VerificationAttempt.phone_index.is_(None)))))
    await session.execute(update(VerificationAttempt).where(VerificationAttempt.account_id == account.id)
                          .values(account_id=None))
    await session.execute(delete(Staff).where(Staff.account_id == account.id))
    # Nothing more is sent to them; what was sent stays as a delivery record without the account link.
    await session.execute(update(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                      OutboxMessage.status == OutboxStatus.pending)
                          .values(status=OutboxStatus.cancelled))
    await session.execute(update(OutboxMessage).where(OutboxMessage.account_id == account.id)
                          .values(account_id=None))
    audit.record(session, "privacy.forget", now=now, actor_account_id=None, target_type="resident",
                 target_id=resident_id, region_id=region_id)
    await session.delete(account)
    await session.flush()
    actor.account = None
    actor.resident = None
    actor.staff = []
