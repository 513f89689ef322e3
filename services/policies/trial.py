"""Staff trying a rule against one resident: a policy's rule as in force, or a rule being written, over
what is known of the resident (registry, tags, kept answers), with the same three-valued evaluation
and reasons as the questionnaire and the pushes. Scoped and audited (it reads a resident's record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.expressions import ExpressionError, Truth, evaluate, parse, unknown_fields
from services.i18n import _
from services.policies.catalogue import PolicyView, declared_fields, get_policy, policy_registry
from services.policies.matching import MatchResult, match_policy
from services.policies.questionnaire import explain, resident_profile
from services.policies.tracking import tag_labels
from services.residents import get_resident
from services.scope import Actor
from services.tags import NotInScope


@dataclass(frozen=True, slots=True)
class RuleTrial:
    """The answer of a rule for one resident: TRUE, FALSE or UNKNOWN, why (plain JSON reasons, as a
    push words them), which missing fields could still decide it, and the policy's amount if any.
    ``error``/``position``: the rule does not parse (nothing was evaluated)."""

    resident_id: int
    name: str
    rule: str
    truth: Truth | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    unknown: tuple[str, ...] = ()
    amount: Decimal | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # questionnaire fields of ``unknown``
    error: str | None = None
    position: int | None = None


async def try_rule(session: AsyncSession, actor: Actor, resident_id: int, rule: str | None, *, today: date,
                   now: datetime, code: str | None = None) -> tuple[RuleTrial, PolicyView | None] | None:
    """``rule`` (or, when it is empty, the rule of policy ``code`` in force) for the resident, as staff
    in scope try it. None when the resident is outside the actor's area (or does not exist) or, given a
    ``code``, there is no such policy in force. Audited (``policy.test``: who, which resident, which
    policy; never the answer). ``NotInScope`` refuses anyone but staff."""
    if not actor.is_staff:
        raise NotInScope(_("Only staff can match policies."))
    resident = await get_resident(session, actor, resident_id)
    if resident is None:
        return None
    declared = await declared_fields(session)
    registry = policy_registry(declared.values())
    policy = await get_policy(session, code, today, registry=registry) if code else None
    if code and policy is None:
        return None
    text = (rule or "").strip() or (policy.rule_text if policy else "")
    audit.record(session, "policy.test", now=now, actor_account_id=actor.account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id, detail={"code": code} if code else None)
    try:
        tree = parse(text, registry)
    except ExpressionError as err:
        return RuleTrial(resident.id, resident.name, text, error=err.message, position=err.position), policy
    profile = await resident_profile(session, resident, declared)
    truth = evaluate(tree, profile.values, today=today, tags=profile.tags)
    reasons: list[dict[str, Any]] = []
    unknown: tuple[str, ...] = ()
    if truth is Truth.UNKNOWN:
        unknown = tuple(sorted(unknown_fields(tree, profile.values, today=today, tags=profile.tags)))
    else:
        reasons = explain(tree, profile.values, today, profile.tags, declared, want=truth is Truth.TRUE)
        await tag_labels(session, reasons)
    amount = None
    if policy is not None and truth is Truth.TRUE and text == policy.rule_text:
        band, value = policy.amount(profile.values, today, profile.tags)
        amount = value if band is Truth.TRUE else None
    await session.flush()
    labels = {name: dict(declared[name].label) for name in unknown if name in declared}
    return RuleTrial(resident.id, resident.name, text, truth, reasons, unknown, amount, labels), policy


def in_area(policy: PolicyView, actor: Actor) -> bool:
    """Whether a policy concerns the staff member's area: a policy for everywhere, for a region of theirs
    or below it, or for a region above theirs (a city's policy for a committee's staff)."""
    if policy.region_path is None:
        return True
    return any(policy.region_path.startswith(p) or p.startswith(policy.region_path) for p in actor.region_paths())


async def eligible_list(session: AsyncSession, actor: Actor, code: str, *, today: date, now: datetime,
                        push_interval: timedelta, limit: int) -> MatchResult:
    """``match_policy`` with up to ``limit`` eligible residents not enrolled (name, room, case), for a
    download by staff in scope; audited (``policy.eligible_export``, with the number of rows).
    ``PolicyNotFound``/``NotInScope`` refuse."""
    result = await match_policy(session, actor, code, today=today, now=now, push_interval=push_interval,
                                preview=limit)
    audit.record(session, "policy.eligible_export", now=now, actor_account_id=actor.account_id,
                 target_type="policy", target_id=result.policy.id,
                 detail={"code": code, "rows": len(result.preview)})
    await session.flush()
    return result
