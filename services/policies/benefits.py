"""/benefits as use cases: check every policy for the actor, take one answer, keep it or not.

A verified resident is checked against their registry record, kept answers and tags; anyone else
anonymously, from the answers of this run alone, which the caller holds (conversation state) and
which are never written to the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.i18n import _
from services.models import Region
from services.policies.catalogue import QuestionField, declared_fields, policies_in_force
from services.policies.questionnaire import (
    AnswerError,
    Assessment,
    anonymous_profile,
    assess,
    give_consent,
    keep_answer,
    parse_answer,
    resident_profile,
)
from services.policies.tracking import resident_cases, tag_labels
from services.scope import Actor


@dataclass
class BenefitsCheck:
    assessment: Assessment
    anonymous: bool
    consented: bool
    cases: Mapping[int, str]  # policy id → the resident's case status

    @property
    def needs_consent(self) -> bool:
        """A verified resident is about to be asked and has not said whether answers are kept."""
        return not self.anonymous and not self.consented and self.assessment.next_question is not None


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal | date):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    return value


def from_json(f: QuestionField, value: Any) -> Any:
    if value is None:
        return None
    if f.type == "decimal":
        return Decimal(str(value))
    if f.type == "date":
        return date.fromisoformat(value)
    return value


def _typed(fields: Mapping[str, QuestionField], answers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_json(fields[k], v) for k, v in answers.items() if k in fields}


async def check_benefits(session: AsyncSession, actor: Actor, today: date, *, answers: Mapping[str, Any] | None = None,
                         skipped: Iterable[str] = ()) -> BenefitsCheck:
    """Every policy in force for the actor, and the next question worth asking. ``answers``: this
    run's answers not kept in the database (JSON values). Reads only."""
    declared = await declared_fields(session)
    answers = answers or {}
    resident = actor.verified_resident
    if resident is not None:
        committee = await session.get_one(Region, resident.committee_id)  # a RESTRICT foreign key
        policies = await policies_in_force(session, today, committee_path=committee.path)
        profile = await resident_profile(session, resident, declared, _typed(declared, answers))
        assessment = assess(policies, profile, today, skipped)
        for r in assessment.results:
            await tag_labels(session, list(r.reasons))
        return BenefitsCheck(assessment, False, profile.consented, await resident_cases(session, resident.id))
    policies = await policies_in_force(session, today)
    profile = anonymous_profile(declared, {})
    profile = anonymous_profile(declared, _typed(profile.askable, answers))
    return BenefitsCheck(assess(policies, profile, today, skipped), True, False, {})


async def answer_question(session: AsyncSession, actor: Actor, field_name: str, *, now: datetime, keep: bool,
                 choice: int | None = None, text: str | None = None) -> tuple[str, Any, bool]:
    """Validate one answer to ``field_name`` (from a button's ``choice`` or typed ``text``); keep it
    when the resident is verified and agreed (``keep``). Returns (field, JSON value, kept);
    ``AnswerError`` refuses and stores nothing."""
    declared = await declared_fields(session)
    askable = declared if actor.is_verified else anonymous_profile(declared, {}).askable
    f = askable.get(field_name)
    if f is None:
        raise AnswerError(_("That question is not part of the questionnaire."))
    value = parse_answer(f, choice=choice, text=text)
    resident = actor.verified_resident if keep else None
    if resident is not None:
        await keep_answer(session, resident.id, f, value, now)
    return f.name, to_json(value), resident is not None


async def consent_to_keep(session: AsyncSession, actor: Actor, answers: Mapping[str, Any], *, now: datetime) -> bool:
    """The resident agrees that answers are kept: consent recorded, and this run's answers kept too.
    Idempotent; False for anyone not verified (nothing stored)."""
    resident = actor.verified_resident
    if resident is None:
        return False
    await give_consent(session, resident.id, now)
    declared = await declared_fields(session)
    for name, value in answers.items():
        if name in declared:
            await keep_answer(session, resident.id, declared[name], from_json(declared[name], value), now)
    return True
