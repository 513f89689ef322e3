"""Take-up: eligible → notified → applied → enrolled, or declined with a reason.

Pushes go through the outbox in the same transaction as the case they update, at most one per
policy and resident within ``PolicyConfig.push_interval`` (90 days by default), and one follow-up
``followup_after`` later when the resident has not said they applied. Eligibility itself is never
stored: it is what the rule says over the registry now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from services import audit
from services.expressions import Truth
from services.i18n import _
from services.identity import quoted_cell
from services.models import Account, CaseStatus, Policy, PolicyCase, Resident, ResidentStatus, Tag
from services.notify import tell
from services.outbox import Priority
from services.policies.catalogue import PolicyView, declared_fields, get_policy
from services.policies.matching import (
    MatchResult,
    PolicyNotFound,
    SqlFields,
    base_query,
    eligible_filter,
    load_sql_fields,
    match_all,
    match_policy,
    push_condition,
)
from services.policies.questionnaire import explain, registry_values, resident_tags, stored_answers
from services.residents import get_resident, parse_room, room_filter
from services.scope import Actor, resident_scope
from services.tags import NotInScope

MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How often a resident may be told about the same policy, and when the one follow-up comes."""

    push_interval: timedelta = timedelta(days=90)
    followup_after: timedelta = timedelta(days=14)


class CaseError(ValueError):
    """A translated reason why a take-up change was refused (nothing changed)."""


def policy_data(policy: PolicyView) -> dict[str, Any]:
    """The policy's texts in both languages as plain JSON (for outbox messages)."""
    return {"code": policy.code, "title": dict(policy.title), "summary": dict(policy.summary),
            "benefit": dict(policy.benefit), "apply": dict(policy.apply), "sample": policy.sample}


async def tag_labels(session: AsyncSession, reasons: Iterable[dict[str, Any]]) -> None:
    """Give tag reasons their names in both languages (in place)."""
    codes = {r["code"] for r in reasons if r.get("kind") == "tag"}
    if not codes:
        return
    names = {t.code: {"zh": t.name_zh, "en": t.name_en} for t in await session.scalars(
        select(Tag).where(Tag.code.in_(codes)).order_by(Tag.region_id.is_not(None)))}
    for r in reasons:
        if r.get("kind") == "tag" and r["code"] in names:
            r["label"] = names[r["code"]]


@dataclass
class PushResult:
    code: str
    pushed: int = 0
    match: MatchResult | None = None


async def push_policy(session: AsyncSession, actor: Actor, code: str, cfg: PolicyConfig, *, today: date,
                      now: datetime, fields: SqlFields | None = None) -> PushResult:
    """Tell every eligible resident in scope who is on the bot, not enrolled, applied or declined and
    not told within ``cfg.push_interval``; each push updates their case in the same transaction.
    Idempotent: pressing twice pushes nobody twice. Unknowns are never pushed. Audited."""
    fields = fields or await load_sql_fields(session)
    match = await match_policy(session, actor, code, today=today, now=now, push_interval=cfg.push_interval,
                               fields=fields, preview=0)
    policy = match.policy
    pc = aliased(PolicyCase)
    acct = aliased(Account)
    recent = now - cfg.push_interval
    rows = (await session.execute(
        base_query(policy, actor, fields, Resident, acct, pc)
        .outerjoin(pc, and_(pc.resident_id == Resident.id, pc.policy_id == policy.id))
        .outerjoin(acct, acct.resident_id == Resident.id)
        .where(eligible_filter(policy, actor, today), push_condition(pc, acct, recent))
        .order_by(Resident.id))).all()
    declared = await declared_fields(session)
    data_policy = policy_data(policy)
    result = PushResult(code, match=match)
    for resident, account, case_row in rows:
        values = await registry_values(session, resident)
        values.update(await stored_answers(session, resident.id, declared))
        tags = await resident_tags(session, resident.id)
        reasons = explain(policy.rule, values, today, tags, declared)
        await tag_labels(session, reasons)
        band, amount = policy.amount(values, today, tags)
        if case_row is None:
            case_row = PolicyCase(policy_id=policy.id, resident_id=resident.id, status=CaseStatus.notified)
            session.add(case_row)
        case_row.status = CaseStatus.notified
        case_row.notified_at = now
        case_row.followup_at = None
        case_row.updated_at = now
        case_row.updated_by_account_id = actor.account_id
        await session.flush()
        await tell(session, account, f"policy:{case_row.id}:push:{now.date().isoformat()}", "policies.push",
                   {"case": case_row.id, "name": resident.name, "policy": data_policy, "reasons": reasons,
                    "amount": str(amount) if band is Truth.TRUE and amount is not None else None},
                   now=now, priority=Priority.broadcast, ref_type="policy_case", ref_id=case_row.id)
        result.pushed += 1
    audit.record(session, "policy.push", now=now, actor_account_id=actor.account_id, target_type="policy",
                 target_id=policy.id, detail={"code": code, "pushed": result.pushed, "unknown": match.unknown})
    await session.flush()
    return result


async def _followup_page(session: AsyncSession, cfg: PolicyConfig, now: datetime, after: int, limit: int,
                         views: dict[str, PolicyView | None]) -> tuple[int, int | None]:
    """Follow-ups for the next ``limit`` due cases with ids above ``after``: (sent, last id looked at or
    None when no due case is left)."""
    rows = (await session.execute(
        select(PolicyCase, Policy, Account)
        .join(Policy, Policy.id == PolicyCase.policy_id)
        .join(Resident, Resident.id == PolicyCase.resident_id)
        .join(Account, Account.resident_id == Resident.id)
        .where(PolicyCase.status == CaseStatus.notified, PolicyCase.followup_at.is_(None),
               PolicyCase.notified_at <= now - cfg.followup_after, PolicyCase.id > after,
               Policy.active.is_(True), Resident.status == ResidentStatus.active, Account.unreachable_at.is_(None))
        .order_by(PolicyCase.id).limit(limit))).all()
    sent = 0
    for case_row, policy, account in rows:
        if policy.code not in views:
            views[policy.code] = await get_policy(session, policy.code, now.date())
        view = views[policy.code]
        if view is None or case_row.notified_at is None:  # no longer in force: nothing to remind of
            continue
        case_row.followup_at = now
        case_row.updated_at = now
        if await tell(session, account, f"policy:{case_row.id}:followup:{case_row.notified_at.isoformat()}",
                      "policies.followup", {"case": case_row.id, "policy": policy_data(view)},
                      now=now, priority=Priority.broadcast, ref_type="policy_case", ref_id=case_row.id):
            sent += 1
    await session.flush()
    return sent, (rows[-1][0].id if len(rows) == limit else None)


async def send_followups(session: AsyncSession, cfg: PolicyConfig, *, now: datetime, limit: int = 1000) -> int:
    """The one follow-up for cases notified at least ``cfg.followup_after`` ago and still only
    notified (not applied, enrolled or declined); idempotent (a case gets one follow-up per push, and
    the outbox key holds it to one however many workers run this). Returns how many were queued."""
    sent = 0
    views: dict[str, PolicyView | None] = {}
    after: int | None = 0
    while after is not None:
        page, after = await _followup_page(session, cfg, now, after, limit, views)
        sent += page
    return sent


async def followups_tick(sessions: async_sessionmaker[AsyncSession], cfg: PolicyConfig, now: datetime, *,
                         limit: int = 1000) -> int:
    """The scheduler's ``policies`` tick: ``send_followups``, committed every ``limit`` cases."""
    sent = 0
    views: dict[str, PolicyView | None] = {}
    after: int | None = 0
    while after is not None:
        async with sessions() as session:
            page, after = await _followup_page(session, cfg, now, after, limit, views)
            await session.commit()
        sent += page
    return sent


# ---------------------------------------------------------------------------------------------
# Residents: "I have applied" / "not for me"


async def _policy_row(session: AsyncSession, policy_id: int) -> Policy:
    policy = await session.get(Policy, policy_id)
    if policy is None or not policy.active:
        raise CaseError(_("This programme is no longer offered."))
    return policy


async def _case(session: AsyncSession, policy_id: int, resident_id: int) -> PolicyCase | None:
    return await session.scalar(select(PolicyCase).where(PolicyCase.policy_id == policy_id,
                                                         PolicyCase.resident_id == resident_id))


async def _resident_case(session: AsyncSession, actor: Actor, *, policy_id: int | None = None,
                         case_id: int | None = None) -> tuple[Policy, PolicyCase | None, Resident]:
    """The policy, the actor's own case (if any) and resident, from a button's ids; ``CaseError``
    when they are not theirs."""
    resident = actor.verified_resident
    if resident is None:
        raise CaseError(_("Only verified residents can keep track of applications. Send /start to verify."))
    if case_id is not None:
        case_row = await session.get(PolicyCase, case_id)
        if case_row is None or case_row.resident_id != resident.id:
            raise CaseError(_("This programme is no longer offered."))
        return await _policy_row(session, case_row.policy_id), case_row, resident
    policy = await _policy_row(session, policy_id or 0)
    return policy, await _case(session, policy.id, resident.id), resident


async def mark_applied(session: AsyncSession, actor: Actor, *, now: datetime, policy_id: int | None = None,
                       case_id: int | None = None) -> tuple[Policy, bool]:
    """The resident says they applied; staff see it in the report. Idempotent (False: already so);
    refused once enrolled."""
    policy, case_row, resident = await _resident_case(session, actor, policy_id=policy_id, case_id=case_id)
    if case_row is not None and case_row.status == CaseStatus.enrolled:
        raise CaseError(_("You are already enrolled in this programme."))
    if case_row is not None and case_row.status == CaseStatus.applied:
        return policy, False
    if case_row is None:
        case_row = PolicyCase(policy_id=policy.id, resident_id=resident.id, status=CaseStatus.applied)
        session.add(case_row)
    case_row.status = CaseStatus.applied
    case_row.applied_at = now
    case_row.updated_at = now
    case_row.updated_by_account_id = actor.account_id
    await session.flush()
    return policy, True


async def mark_not_interested(session: AsyncSession, actor: Actor, *, now: datetime,
                              case_id: int) -> tuple[Policy, bool]:
    """The resident does not want it: declined, and never pushed again. Idempotent; refused once
    applied or enrolled (staff record the outcome then)."""
    policy, case_row, _resident = await _resident_case(session, actor, case_id=case_id)
    if case_row is None:  # found by its id or refused; never None here
        raise CaseError(_("This programme is no longer offered."))
    if case_row.status in (CaseStatus.applied, CaseStatus.enrolled):
        raise CaseError(_("You have already applied; the committee records the outcome."))
    if case_row.status == CaseStatus.declined:
        return policy, False
    case_row.status = CaseStatus.declined
    case_row.reason = _("not interested (said by the resident)")
    case_row.declined_at = now
    case_row.updated_at = now
    case_row.updated_by_account_id = actor.account_id
    await session.flush()
    return policy, True


async def resident_cases(session: AsyncSession, resident_id: int) -> dict[int, CaseStatus]:
    """policy id → status of the resident's cases."""
    rows = await session.execute(select(PolicyCase.policy_id, PolicyCase.status)
                                 .where(PolicyCase.resident_id == resident_id))
    return dict(rows.all())


# ---------------------------------------------------------------------------------------------
# Staff: enrolment and decline, in the bot, from a file, from the command line


STAFF_STATUSES = {"enrolled": CaseStatus.enrolled, "declined": CaseStatus.declined, "applied": CaseStatus.applied,
                  "已纳入": CaseStatus.enrolled, "已享受": CaseStatus.enrolled, "已办理": CaseStatus.enrolled,
                  "不符合": CaseStatus.declined, "已拒绝": CaseStatus.declined, "放弃": CaseStatus.declined,
                  "已申请": CaseStatus.applied}


async def record_outcome(session: AsyncSession, actor: Actor, code: str, resident_id: int, status: CaseStatus, *,
                         now: datetime, reason: str | None = None) -> bool:
    """Staff record that a resident in their scope is enrolled (or declined, with a reason, or has
    applied). Idempotent (False: nothing changed); audited."""
    if not actor.is_staff:
        raise NotInScope(_("Only staff can record enrolments."))
    if status not in (CaseStatus.enrolled, CaseStatus.declined, CaseStatus.applied):
        raise CaseError(_("Unknown status."))
    policy = await session.scalar(select(Policy).where(Policy.code == code))
    if policy is None:
        raise PolicyNotFound(code)
    resident = await get_resident(session, actor, resident_id)
    if resident is None:
        raise NotInScope()
    reason = " ".join((reason or "").split())[:MAX_REASON] or None
    if status == CaseStatus.declined and not reason:
        raise CaseError(_("Give a reason when recording a decline."))
    case_row = await _case(session, policy.id, resident.id)
    if case_row is not None and case_row.status == status and (status != CaseStatus.declined
                                                               or case_row.reason == reason):
        return False
    if case_row is None:
        case_row = PolicyCase(policy_id=policy.id, resident_id=resident.id, status=status)
        session.add(case_row)
    case_row.status = status
    stamp = {CaseStatus.enrolled: "enrolled_at", CaseStatus.declined: "declined_at",
             CaseStatus.applied: "applied_at"}[status]
    setattr(case_row, stamp, now)
    case_row.reason = reason if status == CaseStatus.declined else case_row.reason
    case_row.updated_at = now
    case_row.updated_by_account_id = actor.account_id
    await session.flush()
    audit.record(session, f"policy.{status.value}", now=now, actor_account_id=actor.account_id,
                 target_type="resident", target_id=resident.id, region_id=resident.committee_id,
                 detail={"code": code, **({"reason": reason} if reason else {})})
    return True


@dataclass
class ImportResult:
    changed: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)


_HEADERS = {
    "policy": ("policy", "code", "政策", "政策代码"),
    "id": ("resident", "resident_id", "id", "居民编号"),
    "name": ("name", "姓名"),
    "room": ("room", "房号", "室"),
    "status": ("status", "状态"),
    "reason": ("reason", "原因", "备注"),
}


def _columns(header: list[str]) -> dict[str, int] | None:
    wanted = {str(c or "").strip().lower().lstrip("\ufeff"): i for i, c in enumerate(header)}
    found = {key: wanted[n] for key, names in _HEADERS.items() for n in names if n in wanted}
    return found if "policy" in found and ("id" in found or "name" in found) else None


def read_rows(name: str, content: bytes) -> list[list[str]]:
    """Rows of a CSV (UTF-8) or XLSX file, as text cells; ``ValueError`` for a file that is not one (a
    broken or foreign workbook included: openpyxl and zipfile raise errors of their own)."""
    if name.lower().endswith(".xlsx"):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).active
            return [["" if c is None else str(c) for c in row] for row in sheet.iter_rows(values_only=True)]
        except Exception as exc:
            raise ValueError("not a readable XLSX file") from exc
    return [list(r) for r in csv.reader(io.StringIO(content.decode("utf-8-sig")))]


async def _resolve(session: AsyncSession, actor: Actor, cells: dict[str, str]) -> int:
    base = select(Resident.id).where(resident_scope(actor), Resident.status == ResidentStatus.active)
    if cells.get("id"):
        if not cells["id"].isdigit():
            raise CaseError(_("\"{value}\" is not a resident number.").format(value=quoted_cell(cells["id"])))
        found = list(await session.scalars(base.where(Resident.id == int(cells["id"]))))
    elif cells.get("name") and cells.get("room"):
        room = parse_room(cells["room"])
        if room is None:
            raise CaseError(_("\"{value}\" is not a room such as 3-201.").format(value=quoted_cell(cells["room"])))
        found = list(await session.scalars(base.where(Resident.name == cells["name"], room_filter(room)).limit(2)))
    else:
        raise CaseError(_("Give a resident number, or a name and a room."))
    if not found:
        raise CaseError(_("No such resident in your area."))
    if len(found) > 1:
        raise CaseError(_("Several residents match; use the resident number instead."))
    return found[0]


async def import_enrolments(session: AsyncSession, actor: Actor, rows: list[list[str]], *, now: datetime
                            ) -> ImportResult:
    """Outcomes from a sheet (columns policy, resident id or name + room, status (default enrolled),
    reason); every good line applied and audited, every bad one reported by its line number. Scoped."""
    if not actor.is_staff:
        raise NotInScope(_("Only staff can record enrolments."))
    result = ImportResult()
    columns = _columns(rows[0]) if rows else None
    if columns is None:
        result.errors.append(_("line 1: the header needs a policy column and resident (or name and room)"))
        return result
    for number, row in enumerate(rows[1:], start=2):
        cells_list = [str(c or "").strip() for c in row]
        if not any(cells_list):
            continue
        cells = {k: cells_list[i] if i < len(cells_list) else "" for k, i in columns.items()}
        status = STAFF_STATUSES.get((cells.get("status") or "enrolled").lower())
        try:
            if status is None:
                raise CaseError(_("unknown status \"{value}\" (enrolled, declined or applied)").format(
                    value=quoted_cell(cells.get("status") or "")))
            resident_id = await _resolve(session, actor, cells)
            if await record_outcome(session, actor, cells["policy"], resident_id, status, now=now,
                                    reason=cells.get("reason")):
                result.changed += 1
            else:
                result.unchanged += 1
        except (CaseError, NotInScope, PolicyNotFound) as exc:
            result.errors.append(_("line {line}: {message}").format(line=number, message=exc))
    return result


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class ReportRow:
    code: str
    title: dict[str, str]
    eligible: int
    unknown: int
    notified: int
    applied: int
    enrolled: int
    declined: int
    take_up: Decimal | None  # enrolled / (eligible now or enrolled)


async def policy_report(session: AsyncSession, actor: Actor, cfg: PolicyConfig, *, today: date, now: datetime,
                        codes: Iterable[str] | None = None) -> list[ReportRow]:
    """Per policy, over the actor's scope: eligible now, unknown, and cases by status (notified counts
    everyone told, whatever happened next); take-up = enrolled / (eligible or enrolled). Two queries
    for all the policies (``match_all``)."""
    out = []
    for m in await match_all(session, actor, today=today, now=now, push_interval=cfg.push_interval, codes=codes):
        base = m.eligible + m.enrolled - m.eligible_enrolled  # eligible now or enrolled
        take_up = (Decimal(m.enrolled) / base).quantize(Decimal("0.001")) if base else None
        out.append(ReportRow(m.code, dict(m.policy.title), m.eligible, m.unknown, m.notified, m.applied,
                             m.enrolled, m.declined, take_up))
    return out
