"""Family members as emergency contacts: one-time invite links, redeeming them, the elder's list."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.checkins.common import CheckinError, account_name, insert_into
from services.checkins.config import CheckinConfig
from services.models import Account, EmergencyContact, FamilyInvite, Resident
from services.notify import tell

INVITE_PREFIX = "fam_"  # ``/start fam_<code>``


def _code_hash(code: str, secret_key: str) -> str:
    if not secret_key:
        raise ValueError("CheckinConfig.secret_key is empty: family codes cannot be hashed")
    return hmac.new(secret_key.encode(), b"family:" + code.strip().encode(), hashlib.sha256).hexdigest()


async def create_family_invite(session: AsyncSession, resident_id: int, *, issued_by: str, cfg: CheckinConfig,
                               now: datetime, by_account_id: int | None = None) -> str:
    """A new one-time code for ``?start=fam_<code>`` (only its HMAC is stored; valid
    ``cfg.family_invite_ttl``). The caller has checked that the actor may invite for this elder."""
    code = secrets.token_urlsafe(12)
    session.add(FamilyInvite(resident_id=resident_id, code_hash=_code_hash(code, cfg.secret_key), issued_by=issued_by,
                             created_by_account_id=by_account_id, created_at=now,
                             expires_at=now + cfg.family_invite_ttl))
    await session.flush()
    return code


async def redeem_family_invite(session: AsyncSession, account: Account, code: str, *, cfg: CheckinConfig,
                               now: datetime) -> Resident:
    """Make ``account`` an emergency contact of the invite's elder and use the invite up; the elder
    is told. Every refusal (unknown, used, expired, own link, already a contact) is checked before
    anything is written, so the invite stays usable for the person it was meant for."""
    invite = await session.scalar(select(FamilyInvite).where(
        FamilyInvite.code_hash == _code_hash(code, cfg.secret_key)).with_for_update())
    if invite is None:
        raise CheckinError("unknown_code")
    if invite.used_at is not None:
        raise CheckinError("used_code")
    if invite.expires_at <= now:
        raise CheckinError("expired_code")
    if account.resident_id == invite.resident_id:
        raise CheckinError("own_code")
    already = await session.scalar(select(EmergencyContact.id).where(
        EmergencyContact.resident_id == invite.resident_id, EmergencyContact.account_id == account.id))
    resident = await session.get_one(Resident, invite.resident_id)  # a CASCADE foreign key of the invite
    if already is not None:
        raise CheckinError("already_contact", name=resident.name)
    invite.used_at, invite.used_by_account_id = now, account.id
    await session.execute(insert_into(session, EmergencyContact).values(
        resident_id=invite.resident_id, account_id=account.id, added_via=invite.issued_by, created_at=now,
    ).on_conflict_do_nothing(index_elements=["resident_id", "account_id"]))
    audit.record(session, "checkin.contact_added", now=now, actor_account_id=account.id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id, detail={"via": invite.issued_by})
    elder = await session.scalar(select(Account).where(Account.resident_id == resident.id))
    if elder is not None:
        await tell(session, elder, f"famjoin:{invite.id}", "checkins.contact_added", {"who": account_name(account)},
                   now=now)
    await session.flush()
    return resident


@dataclass(frozen=True, slots=True)
class ContactLine:
    id: int
    name: str  # plain text (a Telegram name): escaped when rendered


async def list_contacts(session: AsyncSession, resident_id: int) -> list[ContactLine]:
    """The elder's emergency contacts, in the order they were added."""
    rows = await session.execute(
        select(EmergencyContact.id, Account).join(Account, Account.id == EmergencyContact.account_id)
        .where(EmergencyContact.resident_id == resident_id).order_by(EmergencyContact.id))
    return [ContactLine(cid, account_name(account)) for cid, account in rows]


async def remove_contact(session: AsyncSession, account: Account | None, contact_id: int, *, now: datetime) -> bool:
    """The elder removes one of their own emergency contacts; False (nothing changed) for any other id."""
    if account is None or account.resident_id is None:
        return False
    contact = await session.scalar(select(EmergencyContact).where(
        EmergencyContact.id == contact_id, EmergencyContact.resident_id == account.resident_id))
    if contact is None:
        return False
    await session.delete(contact)
    audit.record(session, "checkin.contact_removed", now=now, actor_account_id=account.id, target_type="resident",
                 target_id=account.resident_id)
    await session.flush()
    return True
