"""Becoming a verified resident: contact + knowledge check, household invite, manual review.

All methods share one lock: at most ``MAX_FAILURES`` failed attempts in 24 hours, counted per
account and, for the knowledge check, also per registry entry and per phone number (its blind
index). /forget keeps those failures (without the account), so neither a new Telegram account nor
deleting the old one starts the count afresh. Every attempt and every staff decision is audited
(never with phone or ID numbers). A refusal changes nothing but the failure count: every check comes
before the first write.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.identity import id_last4_matches, is_mobile, normalize_phone
from services.ids import is_db_id
from services.models import (
    Account,
    Household,
    HouseholdInvite,
    Region,
    RegionLevel,
    RequestStatus,
    Resident,
    ResidentStatus,
    Staff,
    StaffInvite,
    StaffRole,
    VerificationAttempt,
    VerificationRequest,
)
from services.notify import tell
from services.scope import Actor, committee_ids_in_scope

MAX_FAILURES = 5
LOCK_WINDOW = timedelta(hours=24)
# 12 characters of a 31-letter alphabet ≈ 59 bits: with 5 guesses a day, hopeless to guess.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12


class VerificationError(Exception):
    """A refusal the user is told about; ``reason`` is a stable code handlers translate."""

    def __init__(self, reason: str, **info) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


class NotFoundInScope(VerificationError):
    def __init__(self) -> None:
        super().__init__("not_found")


# --- codes -----------------------------------------------------------------------------------

def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", unicodedata.normalize("NFKC", text).upper())


def code_hash(code: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"invite:" + normalize_code(code).encode(), hashlib.sha256).hexdigest()


def format_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


# --- the lock --------------------------------------------------------------------------------

def _lock_keys(account_id: int | None, resident_id: int | None, phone: str | None) -> list:
    """One condition per thing failures are counted against (``phone``: clear, hashed by the type)."""
    conds = []
    if account_id is not None:
        conds.append(VerificationAttempt.account_id == account_id)
    if resident_id is not None:
        conds.append(VerificationAttempt.resident_id == resident_id)
    if phone is not None:
        conds.append(VerificationAttempt.phone_index == phone)
    return conds


async def _recent_failures(session: AsyncSession, cond, now: datetime) -> list[datetime]:
    """The newest ``MAX_FAILURES`` failures within the window, newest first."""
    return list((await session.scalars(
        select(VerificationAttempt.at)
        .where(cond, VerificationAttempt.success.is_(False), VerificationAttempt.at > now - LOCK_WINDOW)
        .order_by(VerificationAttempt.at.desc())
        .limit(MAX_FAILURES)
    )).all())


async def lock_until(session: AsyncSession, account_id: int | None, now: datetime, *,
                     resident_id: int | None = None, phone: str | None = None) -> datetime | None:
    """When the lock on the account (and on the registry entry / phone number, when given) ends, or
    None if it may try now."""
    ends = []
    for cond in _lock_keys(account_id, resident_id, phone):
        failures = await _recent_failures(session, cond, now)
        if len(failures) >= MAX_FAILURES:
            ends.append(failures[-1] + LOCK_WINDOW)
    return max(ends) if ends else None


async def remaining_attempts(session: AsyncSession, account_id: int | None, now: datetime, *,
                             resident_id: int | None = None, phone: str | None = None) -> int:
    """Failures still allowed before the lock: the least of the counters that apply."""
    left = MAX_FAILURES
    for cond in _lock_keys(account_id, resident_id, phone):
        left = min(left, MAX_FAILURES - len(await _recent_failures(session, cond, now)))
    return max(0, left)


async def ensure_not_locked(session: AsyncSession, account: Account, now: datetime, *,
                            resident: Resident | None = None) -> None:
    until = await lock_until(session, account.id, now, resident_id=resident.id if resident else None,
                             phone=resident.phone if resident else None)
    if until is not None:
        raise VerificationError("locked", until=until)


async def _attempt(session, account: Account, method: str, success: bool, now: datetime,
                   reason: str | None = None, region_id: int | None = None, target_id: int | None = None,
                   phone: str | None = None) -> None:
    session.add(VerificationAttempt(account_id=account.id, method=method, success=success, reason=reason, at=now,
                                    resident_id=target_id, phone_index=phone))
    audit.record(session, f"verify.{method}", now=now, actor_account_id=account.id,
                 target_type="resident" if target_id else None, target_id=target_id, region_id=region_id,
                 outcome="ok" if success else (reason or "failed"))
    await session.flush()


async def _fail(session, account: Account, method: str, reason: str, now: datetime,
                resident: Resident | None = None, **info) -> VerificationError:
    """Record a failure (against the account, and the registry entry and its phone when known)."""
    resident_id = resident.id if resident is not None else None
    phone = resident.phone if resident is not None else None
    await _attempt(session, account, method, False, now, reason, target_id=resident_id,
                   region_id=resident.committee_id if resident is not None else None, phone=phone)
    left = await remaining_attempts(session, account.id, now, resident_id=resident_id, phone=phone)
    until = await lock_until(session, account.id, now, resident_id=resident_id, phone=phone)
    return VerificationError(reason, remaining=left, until=until, **info)


# --- consent and linking ---------------------------------------------------------------------

def give_consent(account: Account, now: datetime) -> None:
    if account.consent_at is None:
        account.consent_at = now


async def _link(session, account: Account, resident: Resident, method: str, now: datetime) -> None:
    """Link account ↔ resident; a resident claimed by another account becomes a conflict review."""
    other = await session.scalar(select(Account).where(Account.resident_id == resident.id,
                                                       Account.id != account.id))
    if other is not None:
        session.add(VerificationRequest(account_id=account.id, committee_id=resident.committee_id, kind="conflict",
                                        name=resident.name, resident_id=resident.id,
                                        household_id=resident.household_id, created_at=now))
        audit.record(session, "verify.conflict", now=now, actor_account_id=account.id, target_type="resident",
                     target_id=resident.id, region_id=resident.committee_id, outcome="review")
        await session.flush()
        raise VerificationError("conflict")
    account.resident_id = resident.id
    account.verification_method = method
    account.verified_at = now
    if resident.status == ResidentStatus.withdrawn:
        resident.status = ResidentStatus.active
    await session.flush()


# --- method 1: contact + knowledge check -----------------------------------------------------

async def match_contact(session: AsyncSession, account: Account, *, contact_user_id: int | None,
                        phone: str, now: datetime) -> Resident:
    """Step 1: the shared contact must be the sender's own mobile number and match exactly one
    resident whose entry is not locked by failed knowledge checks (from any account). The sender's own
    valid mobile number is kept on the account (encrypted), matched or not: it is what staff call."""
    await ensure_not_locked(session, account, now)
    if contact_user_id != account.telegram_id:
        raise await _fail(session, account, "contact", "not_own_contact", now)
    normalized = normalize_phone(phone, international=True)
    if normalized is not None and not is_mobile(normalized):
        normalized = None  # a Telegram account's own number is a mobile; a landline cannot be shared
    if normalized is not None:
        # The account's own number (checked above: not a forwarded contact), kept encrypted so staff
        # can reach a resident verified some other way whose registry entry has no phone.
        account.phone = normalized
    rows = [] if normalized is None else (await session.scalars(
        select(Resident).where(Resident.phone_index == normalized,
                               Resident.status.in_([ResidentStatus.active, ResidentStatus.withdrawn]))
        .limit(2))).all()
    if len(rows) != 1:
        # Not a failure of the person: the registry has no (or several) matches; offer other methods.
        audit.record(session, "verify.contact", now=now, actor_account_id=account.id,
                     outcome="no_match" if not rows else "several")
        raise VerificationError("no_match" if not rows else "several")
    if not rows[0].id_last4_hash:
        audit.record(session, "verify.contact", now=now, actor_account_id=account.id, outcome="no_id_on_file")
        raise VerificationError("no_match")
    until = await lock_until(session, None, now, resident_id=rows[0].id, phone=normalized)
    if until is not None:
        raise VerificationError("locked", until=until, scope="entry")
    return rows[0]


def _same_name(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return re.sub(r"\s+", "", unicodedata.normalize("NFKC", s)).casefold()
    return norm(a) == norm(b)


async def knowledge_check(session: AsyncSession, account: Account, *, resident_id: int, full_name: str,
                          id_last4: str, secret_key: str, now: datetime) -> Resident:
    """Step 2: full name and the last four of the ID number (compared as keyed hashes); on success the
    account is linked. A wrong answer counts against the account, the entry and its phone number."""
    await ensure_not_locked(session, account, now)
    resident = await session.get(Resident, resident_id) if is_db_id(resident_id) else None
    if resident is None or resident.status not in (ResidentStatus.active, ResidentStatus.withdrawn):
        raise VerificationError("no_match")
    await ensure_not_locked(session, account, now, resident=resident)
    given = normalize_code(id_last4)[:8]
    right = id_last4_matches(given, resident.id_hash, resident.id_last4_hash, secret_key)
    if not (_same_name(full_name, resident.name) and right):
        raise await _fail(session, account, "knowledge", "wrong_answer", now, resident=resident)
    await _link(session, account, resident, "contact", now)
    await _attempt(session, account, "knowledge", True, now, region_id=resident.committee_id,
                   target_id=resident.id)
    return resident


# --- method 2: household invite codes --------------------------------------------------------

async def create_household_invites(session: AsyncSession, *, household: Household, count: int, secret_key: str,
                                   ttl: timedelta, now: datetime, created_by: int | None = None) -> list[str]:
    """Issue ``count`` one-time codes for one household; returns the clear codes (shown once)."""
    codes = []
    for _ in range(count):
        code = new_code()
        session.add(HouseholdInvite(code_hash=code_hash(code, secret_key), household_id=household.id,
                                    committee_id=household.committee_id, created_by_account_id=created_by,
                                    created_at=now, expires_at=now + ttl))
        codes.append(code)
    audit.record(session, "invite.create", now=now, actor_account_id=created_by, target_type="household",
                 target_id=household.id, region_id=household.committee_id, detail={"count": count})
    await session.flush()
    return codes


@dataclass
class InviteCheck:
    invite: HouseholdInvite
    household: Household
    members: list[Resident]  # registry members not yet linked to an account


async def open_invite(session: AsyncSession, account: Account, code: str, *, secret_key: str,
                      now: datetime) -> InviteCheck:
    """Check a household code; unknown codes count as failed attempts (guessing is hopeless)."""
    await ensure_not_locked(session, account, now)
    invite = await session.scalar(select(HouseholdInvite).where(
        HouseholdInvite.code_hash == code_hash(code, secret_key)))
    if invite is None:
        raise await _fail(session, account, "invite", "unknown_code", now)
    if invite.used_at is not None and invite.used_by_account_id != account.id:
        raise await _fail(session, account, "invite", "used_code", now)
    if invite.expires_at <= now:
        raise await _fail(session, account, "invite", "expired_code", now)
    household = await session.get(Household, invite.household_id)
    if household is None:  # deleted since the code was read (its invites go with it): not the user's fault
        raise VerificationError("unknown_code")
    linked = select(Account.resident_id).where(Account.resident_id.is_not(None))
    members = (await session.scalars(
        select(Resident).where(Resident.household_id == household.id,
                               Resident.status.in_([ResidentStatus.active, ResidentStatus.withdrawn]),
                               Resident.id.not_in(linked))
        .order_by(Resident.name))).all()
    return InviteCheck(invite, household, list(members))


async def redeem_invite(session: AsyncSession, account: Account, code: str, *, secret_key: str, now: datetime,
                        resident_id: int | None = None, new_member_name: str | None = None) -> Resident | None:
    """Use a code: link to a chosen household member, or file a new member for staff to confirm.

    Checked before anything is written: a refused redemption (a member of another household or one
    already linked, no name) leaves the code unused."""
    check = await open_invite(session, account, code, secret_key=secret_key, now=now)
    if check.invite.used_at is not None:
        raise VerificationError("used_code")
    if resident_id is not None:
        resident = next((m for m in check.members if m.id == resident_id), None)
        if resident is None:
            raise VerificationError("not_found")
        check.invite.used_at = now
        check.invite.used_by_account_id = account.id
        await _link(session, account, resident, "invite", now)
        await _attempt(session, account, "invite", True, now, region_id=resident.committee_id,
                       target_id=resident.id)
        return resident
    name = (new_member_name or "").strip()[:100]
    if not name:
        raise VerificationError("name_required")
    check.invite.used_at = now
    check.invite.used_by_account_id = account.id
    session.add(VerificationRequest(account_id=account.id, committee_id=check.household.committee_id,
                                    kind="new_member", name=name, household_id=check.household.id,
                                    address=check.household.code, created_at=now))
    await _attempt(session, account, "invite", True, now, reason="new_member",
                   region_id=check.household.committee_id)
    return None


# --- method 3: manual review -----------------------------------------------------------------

async def find_committees(session: AsyncSession, text: str, limit: int = 8) -> list[Region]:
    """Committees whose name or code contains the text (the user picks theirs)."""
    q = text.strip()[:50]
    if not q:
        return []
    pattern = f"%{q}%"
    return list((await session.scalars(
        select(Region).where(Region.level == RegionLevel.committee,
                             or_(Region.name.ilike(pattern), Region.name_en.ilike(pattern),
                                 Region.code.ilike(pattern)))
        .order_by(Region.name).limit(limit))).all())


async def request_review(session: AsyncSession, account: Account, *, committee_id: int, name: str,
                         address: str, now: datetime) -> VerificationRequest:
    """File a manual review request (one pending request per account at a time)."""
    await ensure_not_locked(session, account, now)
    committee = await session.get(Region, committee_id) if is_db_id(committee_id) else None
    if committee is None or committee.level != RegionLevel.committee:
        raise VerificationError("not_found")
    pending = await session.scalar(select(VerificationRequest).where(
        VerificationRequest.account_id == account.id, VerificationRequest.status == RequestStatus.pending))
    if pending is not None:
        raise VerificationError("already_pending")
    req = VerificationRequest(account_id=account.id, committee_id=committee_id, kind="review",
                              name=name.strip()[:100], address=address.strip()[:200], created_at=now)
    session.add(req)
    audit.record(session, "verify.review_request", now=now, actor_account_id=account.id,
                 region_id=committee_id, outcome="pending")
    await session.flush()
    return req


def _requests_in_scope(actor: Actor):
    sub = committee_ids_in_scope(actor)
    if sub is None or not actor.is_staff:
        return None
    return VerificationRequest.committee_id.in_(sub)


async def pending_requests(session: AsyncSession, actor: Actor, limit: int = 20,
                           offset: int = 0) -> list[VerificationRequest]:
    """Pending requests of the staff member's region and below, oldest first (pages by ``offset``)."""
    cond = _requests_in_scope(actor)
    if cond is None:
        return []
    return list((await session.scalars(
        select(VerificationRequest).where(cond, VerificationRequest.status == RequestStatus.pending)
        .order_by(VerificationRequest.created_at, VerificationRequest.id).limit(limit).offset(offset))).all())


async def count_pending_requests(session: AsyncSession, actor: Actor) -> int:
    """How many requests wait in the staff member's region and below (0 for non-staff)."""
    cond = _requests_in_scope(actor)
    if cond is None:
        return 0
    return await session.scalar(select(func.count()).select_from(VerificationRequest).where(
        cond, VerificationRequest.status == RequestStatus.pending)) or 0


async def get_request(session: AsyncSession, actor: Actor, request_id: int) -> VerificationRequest:
    cond = _requests_in_scope(actor)
    req = None if cond is None or not is_db_id(request_id) else await session.scalar(
        select(VerificationRequest).where(VerificationRequest.id == request_id, cond))
    if req is None:
        raise NotFoundInScope()
    return req


async def decide_request(session: AsyncSession, actor: Actor, request_id: int, *, approve: bool,
                         now: datetime) -> tuple[VerificationRequest, Account | None]:
    """Approve or reject a request within scope, and tell its account the decision (outbox, once per
    request); returns the request and that account. A request already decided is refused
    (``already_decided``) and nothing changes; one outside the scope is ``NotFoundInScope``."""
    req = await get_request(session, actor, request_id)
    if req.status != RequestStatus.pending:
        raise VerificationError("already_decided", status=req.status.value)
    account = await session.get(Account, req.account_id) if req.account_id else None
    req.status = RequestStatus.approved if approve else RequestStatus.rejected
    req.decided_by_account_id = actor.account_id
    req.decided_at = now
    if approve and account is not None:
        resident = await _resident_for_request(session, req, now)
        if req.kind == "conflict":
            # Staff decided this account is the rightful one: the other link is removed.
            others = (await session.scalars(select(Account).where(Account.resident_id == resident.id))).all()
            for other in others:
                other.resident_id = None
                other.verified_at = None
            await session.flush()
        account.resident_id = resident.id
        account.verification_method = "review"
        account.verified_at = now
        if resident.status != ResidentStatus.active:
            resident.status = ResidentStatus.active
    audit.record(session, "verify.decision", now=now, actor_account_id=actor.account_id,
                 target_type="verification_request", target_id=req.id, region_id=req.committee_id,
                 outcome=req.status.value)
    await session.flush()
    if account is not None:
        await tell(session, account, f"vreq:{req.id}:decision", "verification.decision", {"approved": approve},
                   now=now)
    return req, account


async def _resident_for_request(session: AsyncSession, req: VerificationRequest, now: datetime) -> Resident:
    if req.resident_id is not None:
        resident = await session.get(Resident, req.resident_id)
        if resident is not None:
            return resident
    linked = select(Account.resident_id).where(Account.resident_id.is_not(None))
    conds = [Resident.committee_id == req.committee_id, Resident.name == req.name, Resident.id.not_in(linked),
             Resident.status != ResidentStatus.withdrawn]
    if req.household_id is not None:
        conds.append(Resident.household_id == req.household_id)
    matches = (await session.scalars(select(Resident).where(*conds).limit(2))).all()
    if len(matches) == 1:
        return matches[0]
    household = await session.get(Household, req.household_id) if req.household_id else None
    resident = Resident(committee_id=req.committee_id, household_id=req.household_id, name=req.name,
                        building=household.building if household else None,
                        unit=household.unit if household else None,
                        room=household.room if household else (req.address or None),
                        status=ResidentStatus.active, created_at=now, updated_at=now)
    if resident.room and len(resident.room) > 32:
        resident.room = resident.room[:32]
    session.add(resident)
    await session.flush()
    return resident


# --- staff enrolment -------------------------------------------------------------------------

async def create_staff_invite(session: AsyncSession, *, region: Region, role: StaffRole, secret_key: str,
                              ttl: timedelta, now: datetime) -> str:
    code = new_code()
    session.add(StaffInvite(code_hash=code_hash(code, secret_key), region_id=region.id, role=role,
                            created_at=now, expires_at=now + ttl))
    audit.record(session, "staff.invite", now=now, target_type="region", target_id=region.id,
                 region_id=region.id, detail={"role": role.value})
    await session.flush()
    return code


async def redeem_staff_invite(session: AsyncSession, account: Account, code: str, *, secret_key: str,
                              now: datetime) -> tuple[Staff, Region]:
    """Enrol the account as staff of the invite's region and role; one use, expires."""
    await ensure_not_locked(session, account, now)
    invite = await session.scalar(select(StaffInvite).where(StaffInvite.code_hash == code_hash(code, secret_key)))
    if invite is None:
        raise await _fail(session, account, "staff_invite", "unknown_code", now)
    if invite.used_at is not None:
        raise await _fail(session, account, "staff_invite", "used_code", now)
    if invite.expires_at <= now:
        raise await _fail(session, account, "staff_invite", "expired_code", now)
    region = await session.get(Region, invite.region_id)
    if region is None:  # deleted since the code was read (its invites go with it): not the user's fault
        raise VerificationError("unknown_code")
    invite.used_at = now
    invite.used_by_account_id = account.id
    staff = await session.scalar(select(Staff).where(Staff.account_id == account.id,
                                                     Staff.region_id == invite.region_id,
                                                     Staff.role == invite.role))
    if staff is None:
        staff = Staff(account_id=account.id, region_id=invite.region_id, role=invite.role, created_at=now)
        session.add(staff)
    staff.active = True
    audit.record(session, "staff.enrol", now=now, actor_account_id=account.id, target_type="region",
                 target_id=invite.region_id, region_id=invite.region_id, detail={"role": invite.role.value})
    await session.flush()
    return staff, region


async def pending_request_of(session: AsyncSession, account_id: int) -> tuple[VerificationRequest | None,
                                                                             Region | None]:
    """The account's latest pending request and its committee."""
    req = await session.scalar(select(VerificationRequest).where(
        VerificationRequest.account_id == account_id, VerificationRequest.status == RequestStatus.pending)
        .order_by(VerificationRequest.id.desc()))
    return (req, await session.get(Region, req.committee_id)) if req else (None, None)
