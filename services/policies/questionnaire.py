"""The questionnaire: evaluate every policy from what is known, and ask only what can still matter.

Each policy's rule is evaluated with three-valued logic over what is known about the person (the
registry row and earlier answers for a verified resident; only their answers for anyone else).
For the policies still UNKNOWN, ``unknown_fields`` names the missing fields whose value could still
change the result; the next question is the askable one among them that settles the most policies
(first: the unknown policies it can decide; then: those for which it is the only missing datum). A field
the registry holds is never asked of a verified resident (the registry is the committee's record);
an anonymous user may answer the common registry fields (age, living alone, …) for themselves.

Reasons ("why") are plain JSON, so that a push in the outbox can carry them and the render layer
words them in the recipient's language.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.expressions import (
    And,
    Between,
    Bool,
    Compare,
    Expr,
    HasTag,
    InList,
    Not,
    Or,
    Truth,
    evaluate,
    unknown_fields,
)
from services.i18n import N_, _, translate
from services.models import (
    PolicyAnswer,
    PolicyConsent,
    Region,
    Resident,
    ResidentStatus,
    ResidentTag,
    Tag,
)
from services.policies.catalogue import Choice, PolicyView, QuestionField
from services.sql import rowcount

MAX_ANSWER_TEXT = 40


class AnswerError(ValueError):
    """A translated, polite reason why an answer was not accepted (nothing was stored)."""


# ---------------------------------------------------------------------------------------------
# Registry fields an anonymous user may answer for themselves


def _both(msgid: str) -> dict[str, str]:
    return {"zh": translate("zh_Hans", msgid), "en": translate("en", msgid)}


_REGISTRY_QUESTIONS: tuple[tuple[str, str, str, str, tuple[tuple[Any, str], ...], int | None, int | None], ...] = (
    ("age", "int", N_("age"), N_("How old are you? Please type a number."), (), 0, 130),
    ("living_alone", "bool", N_("lives alone"), N_("Do you live alone?"), (), None, None),
    ("hukou", "str", N_("hukou"), N_("Is your hukou (household registration) in this city?"),
     (("local", N_("Yes, a local hukou")), ("nonlocal", N_("No, elsewhere"))), None, None),
    ("disability_level", "int", N_("disability level"),
     N_("Do you hold a disability certificate? If so, which level?"),
     ((0, N_("No certificate")), (1, N_("Level 1")), (2, N_("Level 2")), (3, N_("Level 3")),
      (4, N_("Level 4"))), None, None),
    ("household_size", "int", N_("people in the household"),
     N_("How many people live in your household, yourself included? Please type a number."), (), 1, 30),
    ("monthly_income", "int", N_("monthly income"),
     N_("Roughly how much is your own monthly income, in yuan? Please type a number."), (), 0, 10_000_000),
)


def registry_questions() -> dict[str, QuestionField]:
    """Registry fields an anonymous user may answer, with their questions in both languages."""
    out = {}
    for name, ftype, label, question, choices, lo, hi in _REGISTRY_QUESTIONS:
        out[name] = QuestionField(
            name, ftype, _both(label), _both(question), tuple(Choice(v, _both(t)) for v, t in choices),
            None if lo is None else Decimal(lo), None if hi is None else Decimal(hi), registry=True)
    return out


# ---------------------------------------------------------------------------------------------
# What is known about someone


@dataclass
class Profile:
    """What policy rules are evaluated over: values by field name, tags (None: not known), and the
    fields that may be asked."""

    values: dict[str, Any]
    tags: set[str] | None
    askable: dict[str, QuestionField]
    resident_id: int | None = None
    consented: bool = False


_REGISTRY_COLUMNS = ("birth_date", "gender", "compound", "building", "unit", "room", "living_alone", "hukou",
                     "disability_level", "monthly_income")


async def registry_values(session: AsyncSession, resident: Resident) -> dict[str, Any]:
    """A resident's registry fields as the expression language names them (None: not recorded)."""
    values: dict[str, Any] = {c: getattr(resident, c) for c in _REGISTRY_COLUMNS}
    if resident.household_id is not None:
        values["household_size"] = await session.scalar(select(func.count(Resident.id)).where(
            Resident.household_id == resident.household_id, Resident.status == ResidentStatus.active))
    values["verified"] = True
    values["committee"] = await session.scalar(select(Region.code).where(Region.id == resident.committee_id))
    return values


async def resident_tags(session: AsyncSession, resident_id: int) -> set[str]:
    return set(await session.scalars(select(Tag.code).join(ResidentTag, ResidentTag.tag_id == Tag.id)
                                     .where(ResidentTag.resident_id == resident_id)))


def answer_value(row: PolicyAnswer, ftype: str) -> Any:
    return {"int": row.value_int, "decimal": row.value_num, "bool": row.value_bool, "str": row.value_str,
            "date": row.value_date}[ftype]


async def stored_answers(session: AsyncSession, resident_id: int, fields: Mapping[str, QuestionField]
                         ) -> dict[str, Any]:
    """The kept answers of a resident to fields the catalogue still declares."""
    out = {}
    for row in await session.scalars(select(PolicyAnswer).where(PolicyAnswer.resident_id == resident_id)):
        f = fields.get(row.field)
        if f is not None and not f.registry:
            out[row.field] = answer_value(row, f.type)
    return out


async def has_consented(session: AsyncSession, resident_id: int) -> bool:
    return await session.get(PolicyConsent, resident_id) is not None


async def resident_profile(session: AsyncSession, resident: Resident, declared: Mapping[str, QuestionField],
                           extra: Mapping[str, Any] | None = None) -> Profile:
    """A verified resident: the registry, their kept answers, answers of this run (``extra``, when
    they chose not to keep them); only the declared questionnaire fields may be asked."""
    values = await registry_values(session, resident)
    values.update(await stored_answers(session, resident.id, declared))
    values.update({k: v for k, v in (extra or {}).items() if k in declared})
    return Profile(values, await resident_tags(session, resident.id), dict(declared), resident.id,
                   await has_consented(session, resident.id))


def anonymous_profile(declared: Mapping[str, QuestionField], answers: Mapping[str, Any]) -> Profile:
    """Someone not verified: only their answers of this run; registry fields may be asked too."""
    askable = {**registry_questions(), **declared}
    return Profile({k: v for k, v in answers.items() if k in askable}, None, askable)


# ---------------------------------------------------------------------------------------------
# Assessing and choosing the next question


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy: PolicyView
    truth: Truth
    reasons: tuple[dict[str, Any], ...] = ()  # why TRUE (or why FALSE), plain JSON
    unknown: tuple[str, ...] = ()  # when UNKNOWN: the fields that could still decide it
    amount: Decimal | None = None
    amount_unknown: bool = False


@dataclass
class Assessment:
    results: list[PolicyResult]
    next_question: QuestionField | None
    asked_about: dict[str, int] = field(default_factory=dict)  # field → unknown policies it could decide
    askable: dict[str, QuestionField] = field(default_factory=dict)

    def by(self, truth: Truth) -> list[PolicyResult]:
        return [r for r in self.results if r.truth is truth]


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _atom(node: Compare | InList | Between | HasTag, values: Mapping[str, Any], today: date, negated: bool,
          fields: Mapping[str, QuestionField]) -> dict[str, Any]:
    if isinstance(node, HasTag):
        return {"kind": "tag", "code": node.code, "negated": negated}
    fld = node.field
    actual = fld.spec.value_of(values, today)
    out: dict[str, Any] = {"field": fld.name, "actual": _jsonable(actual), "negated": negated}
    q = fields.get(fld.name)
    if q is not None:
        out["label"] = dict(q.label)
        choice = q.choice(actual)
        if choice is not None:
            out["actual_label"] = dict(choice.label)
    if isinstance(node, Compare):
        out.update(kind="compare", op=node.op, value=_jsonable(node.value.value))
    elif isinstance(node, InList):
        out.update(kind="in", values=[_jsonable(v.value) for v in node.values], negated=negated != node.negated)
    elif isinstance(node, Between):
        out.update(kind="between", low=_jsonable(node.low.value), high=_jsonable(node.high.value))
    return out


def explain(tree: Expr, values: Mapping[str, Any], today: date, tags: set[str] | None,
            fields: Mapping[str, QuestionField] | None = None, want: bool = True) -> list[dict[str, Any]]:
    """The parts of the rule that make it ``want`` (TRUE by default): every part of an AND, the
    first part that holds of an OR; plain JSON for the render layer."""
    fields = fields or {}

    def holds(e: Expr, target: bool) -> bool:
        return evaluate(e, values, today=today, tags=tags) is (Truth.TRUE if target else Truth.FALSE)

    def why(e: Expr, target: bool) -> list[dict[str, Any]]:
        match e:
            case Compare() | InList() | Between() | HasTag():
                return [_atom(e, values, today, not target, fields)]
            case Bool():
                return []
            case Not(item):
                return why(item, not target)
            case And(items) | Or(items):
                every = isinstance(e, And) == target  # all parts matter: AND true, OR false
                if every:
                    return [r for i in items for r in why(i, target)]
                for i in items:
                    if holds(i, target):
                        return why(i, target)
        return []

    return why(tree, want)


def _order(fields: Iterable[str], askable: Mapping[str, QuestionField]) -> tuple[str, ...]:
    return tuple(sorted(fields, key=lambda f: (f not in askable, f)))


def assess(policies: Sequence[PolicyView], profile: Profile, today: date,
           skipped: Iterable[str] = ()) -> Assessment:
    """Every policy's result for ``profile`` and the most decisive question still worth asking (None
    when no askable, unskipped field could change any unknown result)."""
    skipped = set(skipped)
    results = []
    for p in policies:
        truth = evaluate(p.rule, profile.values, today=today, tags=profile.tags)
        reasons: tuple[dict[str, Any], ...] = ()
        unknown: tuple[str, ...] = ()
        amount, amount_unknown = None, False
        if truth is Truth.TRUE:
            reasons = tuple(explain(p.rule, profile.values, today, profile.tags, profile.askable))
            band, amount = p.amount(profile.values, today, profile.tags)
            amount_unknown = band is Truth.UNKNOWN
        elif truth is Truth.UNKNOWN:
            unknown = _order(unknown_fields(p.rule, profile.values, today=today, tags=profile.tags),
                             profile.askable)
        results.append(PolicyResult(p, truth, reasons, unknown, amount, amount_unknown))
    sure: dict[str, int] = {}
    part: dict[str, int] = {}
    for r in results:
        for f in r.unknown:
            if f in profile.askable and f not in skipped:
                part[f] = part.get(f, 0) + 1
                if len(r.unknown) == 1:
                    sure[f] = sure.get(f, 0) + 1
    best = max(part, key=lambda f: (part[f], sure.get(f, 0), _neg(f)), default=None)
    return Assessment(results, profile.askable[best] if best else None, part, profile.askable)


def _neg(name: str) -> tuple[int, ...]:
    # max() with ties broken alphabetically (the smallest name wins).
    return tuple(-ord(c) for c in name)


# ---------------------------------------------------------------------------------------------
# Answers


def parse_answer(f: QuestionField, *, text: str | None = None, choice: int | None = None) -> Any:
    """The value of an answer, from a button (``choice``: the index of a choice; for yes/no 1 or 0)
    or typed text; ``AnswerError`` when it does not fit the field."""
    if choice is not None:
        if f.type == "bool":
            if choice not in (0, 1):
                raise AnswerError(_("That answer is not one of the choices."))
            return bool(choice)
        if not 0 <= choice < len(f.choices):
            raise AnswerError(_("That answer is not one of the choices."))
        return f.choices[choice].value
    raw = unicodedata.normalize("NFKC", text or "").strip().replace(",", "").replace(" ", "")[:MAX_ANSWER_TEXT]
    if f.type in ("int", "decimal") and not f.choices:
        raw = raw.removesuffix("元").removesuffix("岁").removesuffix("yuan")
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise AnswerError(_("Please type a number, such as 1500.")) from None
        if not number.is_finite():
            raise AnswerError(_("Please type a number, such as 1500."))
        if f.type == "int":
            if number != number.to_integral_value():
                raise AnswerError(_("Please type a whole number, such as 1500."))
            number = Decimal(int(number))
        if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
            raise AnswerError(_("Please type a number from {low} to {high}.").format(
                low=f.minimum if f.minimum is not None else "…", high=f.maximum if f.maximum is not None else "…"))
        return int(number) if f.type == "int" else number
    raise AnswerError(_("Please use the buttons below the question."))


async def keep_answer(session: AsyncSession, resident_id: int, f: QuestionField, value: Any, now: datetime) -> None:
    """Store (or replace) one answer of a resident who agreed that answers are kept."""
    if f.registry:
        raise AnswerError(_("That question is not part of the questionnaire."))
    row = await session.get(PolicyAnswer, (resident_id, f.name))
    if row is None:
        row = PolicyAnswer(resident_id=resident_id, field=f.name)
        session.add(row)
    row.value_int = value if f.type == "int" else None
    row.value_num = value if f.type == "decimal" else None
    row.value_bool = value if f.type == "bool" else None
    row.value_str = value if f.type == "str" else None
    row.value_date = value if f.type == "date" else None
    row.answered_at = now
    await session.flush()


async def give_consent(session: AsyncSession, resident_id: int, now: datetime) -> bool:
    """Record that the resident's answers may be kept; idempotent (False when already given)."""
    if await session.get(PolicyConsent, resident_id) is not None:
        return False
    session.add(PolicyConsent(resident_id=resident_id, given_at=now))
    await session.flush()
    return True


async def erase_answers(session: AsyncSession, resident_id: int) -> int:
    """Delete a resident's answers and consent (``/forget``, or on request). Returns answers deleted."""
    deleted = await session.execute(delete(PolicyAnswer).where(PolicyAnswer.resident_id == resident_id))
    await session.execute(delete(PolicyConsent).where(PolicyConsent.resident_id == resident_id))
    return rowcount(deleted)


async def answers_for_mydata(session: AsyncSession, resident_id: int) -> dict[str, Any]:
    """The resident's kept answers as plain JSON for /mydata (every answer, even to retired fields)."""
    consent = await session.get(PolicyConsent, resident_id)
    rows = await session.scalars(select(PolicyAnswer).where(PolicyAnswer.resident_id == resident_id)
                                 .order_by(PolicyAnswer.field))
    answers = {}
    for r in rows:
        value = next((v for v in (r.value_int, r.value_num, r.value_bool, r.value_str, r.value_date)
                      if v is not None), None)
        answers[r.field] = _jsonable(value)
    return {"consent_at": consent.given_at.isoformat() if consent else None, "answers": answers}
