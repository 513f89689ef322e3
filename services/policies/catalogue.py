"""The policy catalogue as the rest of the feature reads it: the version of each policy in force on a
date, its rule parsed over the registry fields plus the questionnaire fields the files declared.

Texts come in both languages (``{"zh": …, "en": …}``) and are picked by :func:`pick`; they are data
written by the catalogue's authors, so the render layer escapes them like any other value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.expressions import FIELDS, Expr, FieldSpec, FieldType, Truth, evaluate, fields_with, parse
from services.models import Policy, PolicyField, PolicyVersion, Region

Texts = Mapping[str, str]


def pick(texts: Texts | None, locale: str) -> str:
    """The text for ``locale`` (zh for zh_*, en otherwise), falling back to the other language."""
    if not texts:
        return ""
    first, second = ("zh", "en") if locale.startswith("zh") else ("en", "zh")
    return texts.get(first) or texts.get(second) or ""


@dataclass(frozen=True, slots=True)
class Choice:
    value: Any
    label: Texts


# The types a questionnaire field may have (PolicyFieldType), as the expression language names them.
_FIELD_TYPES: dict[str, FieldType] = {"int": "int", "decimal": "decimal", "bool": "bool", "str": "str", "date": "date"}


@dataclass(frozen=True, slots=True)
class QuestionField:
    """A field the questionnaire may ask: declared by a policy file, or a registry field that an
    anonymous user answers for themselves (``registry=True``, never asked of a verified resident)."""

    name: str
    type: str  # int, decimal, bool, str, date
    label: Texts
    question: Texts
    choices: tuple[Choice, ...] = ()
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    registry: bool = False

    def spec(self) -> FieldSpec:
        mapping = tuple((str(c.value), str(c.value)) for c in self.choices) if self.type == "str" else ()
        return FieldSpec(self.name, _FIELD_TYPES[self.type], choices=mapping)

    def choice(self, value: Any) -> Choice | None:
        return next((c for c in self.choices if c.value == value), None)


def question_field(row: PolicyField) -> QuestionField:
    c = row.content
    choices = tuple(Choice(ch["value"], {"zh": ch["zh"], "en": ch["en"]}) for ch in c.get("choices") or ())
    return QuestionField(row.name, row.type.value, c["label"], c["question"], choices,
                         _decimal(c.get("min")), _decimal(c.get("max")))


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def policy_registry(fields: Iterable[QuestionField | FieldSpec],
                    base: Mapping[str, FieldSpec] | None = None) -> dict[str, FieldSpec]:
    """The expression fields of policy rules: the registry's plus the declared questionnaire fields."""
    specs = [f.spec() if isinstance(f, QuestionField) else f for f in fields]
    return fields_with(specs, FIELDS if base is None else base)


@dataclass(frozen=True, slots=True)
class Band:
    """An amount that applies when ``rule`` holds (the first band that holds counts)."""

    rule: Expr
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PolicyView:
    """One policy as in force on a date."""

    id: int
    code: str
    region_id: int | None
    region_path: str | None
    sample: bool
    valid_from: date
    valid_to: date | None
    title: Texts
    rule_text: str
    rule: Expr
    summary: Texts
    benefit: Mapping[str, Any]
    apply: Mapping[str, Any]
    source: str
    bands: tuple[Band, ...] = field(default=())

    def amount(self, values: Mapping[str, Any], today: date, tags: set[str] | None) -> tuple[Truth, Decimal | None]:
        """(TRUE, amount) from the first band that holds; (UNKNOWN, None) when an undecided band comes
        first; (FALSE, None) when the policy has no bands or none holds."""
        for band in self.bands:
            truth = evaluate(band.rule, values, today=today, tags=tags)
            if truth is Truth.TRUE:
                return Truth.TRUE, band.amount
            if truth is Truth.UNKNOWN:
                return Truth.UNKNOWN, None
        return Truth.FALSE, None


def in_force(versions: Iterable[PolicyVersion], on: date) -> PolicyVersion | None:
    """The version that applies on ``on``: the latest one started by then and not ended before."""
    best = None
    for v in versions:
        if v.valid_from <= on and (v.valid_to is None or v.valid_to >= on) and (
                best is None or v.valid_from > best.valid_from):
            best = v
    return best


def view_of(policy: Policy, version: PolicyVersion, region_path: str | None,
            registry: Mapping[str, FieldSpec]) -> PolicyView:
    content = version.content
    benefit = content.get("benefit") or {}
    bands = tuple(Band(parse(b["when"], registry), Decimal(str(b["amount"]))) for b in benefit.get("amounts") or ())
    return PolicyView(
        id=policy.id, code=policy.code, region_id=policy.region_id, region_path=region_path, sample=policy.sample,
        valid_from=version.valid_from, valid_to=version.valid_to,
        title={"zh": version.title_zh, "en": version.title_en}, rule_text=version.rule,
        rule=parse(version.rule, registry), summary=content.get("summary") or {}, benefit=benefit,
        apply=content.get("apply") or {}, source=content.get("source") or "", bands=bands,
    )


async def declared_fields(session: AsyncSession) -> dict[str, QuestionField]:
    """The questionnaire fields the loaded policy files declare, by name."""
    rows = await session.scalars(select(PolicyField).order_by(PolicyField.name))
    return {r.name: question_field(r) for r in rows}


async def policies_in_force(
    session: AsyncSession,
    on: date,
    *,
    registry: Mapping[str, FieldSpec] | None = None,
    committee_path: str | None = None,
    codes: Iterable[str] | None = None,
    include_inactive: bool = False,
) -> list[PolicyView]:
    """Policies with a version in force on ``on``, by code. ``committee_path``: only those whose region
    covers that committee (None: every region). ``registry``: the fields to parse rules with (default:
    the registry's plus the declared questionnaire fields)."""
    if registry is None:
        registry = policy_registry((await declared_fields(session)).values())
    query = (select(Policy, Region.path).outerjoin(Region, Region.id == Policy.region_id)
             .options(selectinload(Policy.versions)).order_by(Policy.code))
    if not include_inactive:
        query = query.where(Policy.active.is_(True))
    if codes is not None:
        query = query.where(Policy.code.in_(list(codes)))
    if committee_path is not None:
        query = query.where(or_(Policy.region_id.is_(None), Region.path.is_(None),
                                _prefix_of(committee_path)))
    out = []
    for policy, path in (await session.execute(query)).all():
        version = in_force(policy.versions, on)
        if version is not None:
            out.append(view_of(policy, version, path, registry))
    return out


def _prefix_of(committee_path: str):
    return literal(committee_path).startswith(Region.path)


async def get_policy(session: AsyncSession, code: str, on: date, *,
                     registry: Mapping[str, FieldSpec] | None = None) -> PolicyView | None:
    """The active policy ``code`` as in force on ``on``, or None."""
    found = await policies_in_force(session, on, registry=registry, codes=[code])
    return found[0] if found else None


async def catalogue_rows(session: AsyncSession, on: date) -> list[tuple[Policy, PolicyVersion | None]]:
    """Every policy (active or not) with the version in force on ``on`` (None: none is)."""
    rows = await session.scalars(select(Policy).options(selectinload(Policy.versions)).order_by(Policy.code))
    return [(p, in_force(p.versions, on) or (p.versions[-1] if p.versions else None)) for p in rows]
