"""Who qualifies, counted by the database: a policy's rule compiled to one SQL filter over the
residents in the actor's scope (and the policy's region), questionnaire answers outer-joined by field.

SQL's NULL is the evaluator's UNKNOWN: a resident is eligible when the filter is TRUE, not eligible
when its negation is TRUE, and unknown otherwise (a property test checks this against the Python
evaluator). Unknown residents are counted apart and never pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.expressions import Expr, FieldSpec, compile_sql, fields_used
from services.i18n import _
from services.models import Account, CaseStatus, PolicyAnswer, PolicyCase, Region, Resident, ResidentStatus
from services.policies.catalogue import PolicyView, QuestionField, declared_fields, get_policy, policy_registry
from services.scope import Actor, resident_scope, wide_scope
from services.tags import NotInScope

PREVIEW = 10
_VALUE_COLUMN = {"int": "value_int", "decimal": "value_num", "bool": "value_bool", "str": "value_str",
                 "date": "value_date"}


class PolicyNotFound(LookupError):
    """No active policy with that code is in force today (a translated message)."""

    def __init__(self, code: str) -> None:
        super().__init__(_("There is no policy {code} in force.").format(code=code))


@dataclass(frozen=True, slots=True)
class SqlFields:
    """Policy fields with SQL: questionnaire answers read from one outer-joined alias per field."""

    registry: dict[str, FieldSpec]
    aliases: dict[str, Any]

    def joined(self, query: Select, tree: Expr) -> Select:
        """``query`` with the answer aliases the rule reads joined to ``Resident``."""
        for name in sorted(fields_used(tree) & set(self.aliases)):
            alias = self.aliases[name]
            query = query.outerjoin(alias, and_(alias.resident_id == Resident.id, alias.field == name))
        return query


def sql_fields(declared: Iterable[QuestionField]) -> SqlFields:
    aliases, specs = {}, []
    for f in declared:
        alias = aliased(PolicyAnswer, name=f"answer_{f.name}")
        column = getattr(alias, _VALUE_COLUMN[f.type])
        aliases[f.name] = alias
        base = f.spec()
        specs.append(FieldSpec(base.name, base.type, sql=lambda _ctx, c=column: c, choices=base.choices))
    return SqlFields(policy_registry(specs), aliases)


async def load_sql_fields(session: AsyncSession) -> SqlFields:
    return sql_fields((await declared_fields(session)).values())


def policy_region_filter(policy: PolicyView) -> ColumnElement[bool] | None:
    if not policy.region_path:
        return None
    return Resident.committee_id.in_(select(Region.id).where(Region.path.startswith(policy.region_path,
                                                                                     autoescape=True)))


def eligible_filter(policy: PolicyView, actor: Actor, today: date) -> ColumnElement[bool]:
    return compile_sql(policy.rule, today=today, few_residents=not wide_scope(actor))


def base_query(policy: PolicyView, actor: Actor, fields: SqlFields, *columns) -> Select:
    query = fields.joined(select(*columns).select_from(Resident), policy.rule).where(
        resident_scope(actor), Resident.status == ResidentStatus.active)
    region = policy_region_filter(policy)
    return query if region is None else query.where(region)


@dataclass
class MatchResult:
    code: str
    policy: PolicyView
    in_scope: int = 0
    eligible: int = 0
    not_eligible: int = 0
    unknown: int = 0
    enrolled: int = 0  # in scope, whatever the rule says now
    eligible_enrolled: int = 0
    eligible_applied: int = 0
    eligible_declined: int = 0
    eligible_notified_recently: int = 0
    eligible_not_on_bot: int = 0
    to_push: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eligible_not_enrolled(self) -> int:
        return self.eligible - self.eligible_enrolled

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code, "in_scope": self.in_scope, "eligible": self.eligible, "unknown": self.unknown,
            "not_eligible": self.not_eligible, "enrolled": self.enrolled,
            "eligible_not_enrolled": self.eligible_not_enrolled, "eligible_applied": self.eligible_applied,
            "eligible_declined": self.eligible_declined,
            "eligible_notified_recently": self.eligible_notified_recently,
            "eligible_not_on_bot": self.eligible_not_on_bot, "to_push": self.to_push,
        }


def count_where(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def push_condition(case_row, account, recent: datetime) -> ColumnElement[bool]:
    """Reachable on the bot, not applied/enrolled/declined, and not pushed since ``recent``."""
    return and_(account.id.is_not(None), account.unreachable_at.is_(None),
                or_(case_row.id.is_(None),
                    and_(case_row.status == CaseStatus.notified, case_row.notified_at <= recent)))


async def match_policy(session: AsyncSession, actor: Actor, code: str, *, today: date, now: datetime,
                       push_interval: timedelta, fields: SqlFields | None = None,
                       preview: int = PREVIEW) -> MatchResult:
    """Counts for one policy over the active residents the actor (staff) may see, in one query, plus a
    preview of eligible residents not enrolled. ``PolicyNotFound``/``NotInScope`` refuse."""
    if not actor.is_staff:
        raise NotInScope(_("Only staff can match policies."))
    fields = fields or await load_sql_fields(session)
    policy = await get_policy(session, code, today, registry=fields.registry)
    if policy is None:
        raise PolicyNotFound(code)
    cond = eligible_filter(policy, actor, today)
    pc = aliased(PolicyCase)
    acct = aliased(Account)
    status = pc.status
    recent = now - push_interval
    counts = (await session.execute(
        base_query(policy, actor, fields,
                   func.count(Resident.id), count_where(cond), count_where(not_(cond)),
                   count_where(status == CaseStatus.enrolled), count_where(and_(cond, status == CaseStatus.enrolled)),
                   count_where(and_(cond, status == CaseStatus.applied)),
                   count_where(and_(cond, status == CaseStatus.declined)),
                   count_where(and_(cond, status == CaseStatus.notified, pc.notified_at > recent)),
                   count_where(and_(cond, acct.id.is_(None))),
                   count_where(and_(cond, push_condition(pc, acct, recent))))
        .outerjoin(pc, and_(pc.resident_id == Resident.id, pc.policy_id == policy.id))
        .outerjoin(acct, acct.resident_id == Resident.id)
    )).one()
    result = MatchResult(code, policy, *[int(c or 0) for c in counts[:3]])
    result.unknown = result.in_scope - result.eligible - result.not_eligible
    (result.enrolled, result.eligible_enrolled, result.eligible_applied, result.eligible_declined,
     result.eligible_notified_recently, result.eligible_not_on_bot, result.to_push) = (int(c or 0) for c in counts[3:])
    if preview:
        rows = await session.execute(
            base_query(policy, actor, fields, Resident.id, Resident.name, Resident.building, Resident.unit,
                       Resident.room, status, acct.id)
            .outerjoin(pc, and_(pc.resident_id == Resident.id, pc.policy_id == policy.id))
            .outerjoin(acct, acct.resident_id == Resident.id)
            .where(cond, or_(status.is_(None), status != CaseStatus.enrolled))
            .order_by(Resident.building, Resident.unit, Resident.room, Resident.name, Resident.id).limit(preview))
        result.preview = [
            {"id": rid, "name": name, "room": "-".join(p for p in (b, u, r) if p), "status": st.value if st else None,
             "on_bot": account_id is not None}
            for rid, name, b, u, r, st, account_id in rows.all()]
    return result


async def eligible_ids(session: AsyncSession, actor: Actor, policy: PolicyView, fields: SqlFields, today: date,
                       *, truth: str = "eligible") -> list[int]:
    """Ids of residents in scope for whom the rule is TRUE (``truth="eligible"``), FALSE
    (``"not_eligible"``) or neither (``"unknown"``); for checks and tests."""
    cond = eligible_filter(policy, actor, today)
    where = {"eligible": cond, "not_eligible": not_(cond),
             "unknown": and_(not_(func.coalesce(cond, False)), not_(func.coalesce(not_(cond), False)))}[truth]
    return list(await session.scalars(base_query(policy, actor, fields, Resident.id).where(where)
                                      .order_by(Resident.id)))
