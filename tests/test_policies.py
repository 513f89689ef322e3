"""Policy matching as a service: the catalogue and its checks, versions by date, the questionnaire that
asks only what can still matter, SQL matching that agrees with the Python evaluator, pushes with their
90-day limit and follow-up, take-up tracking and the report. SQLite file and PostgreSQL."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from bot.db import session_factory
from services import policies as pol
from services.expressions import Truth, evaluate, parse, unknown_fields
from services.i18n import use_locale
from services.models import (
    Account,
    CaseStatus,
    OutboxMessage,
    Policy,
    PolicyAnswer,
    PolicyCase,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    StaffRole,
)
from services.policies.catalogue import Choice, QuestionField
from services.policies.matching import count_policies, eligible_ids, sql_fields
from services.policies.questionnaire import Profile
from services.regions import ensure_demo_regions
from services.scope import Actor, StaffGrant
from tests.conftest import NOW
from tests.seed import seed_registry

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "policies" / "sample"
TODAY = NOW.date()
CFG = pol.PolicyConfig(push_interval=timedelta(days=90), followup_after=timedelta(days=14))


def staff_of(region: Region, role: StaffRole = StaffRole.committee) -> Actor:
    return Actor(staff=[StaffGrant(0, role, region.id, region.path, region.code, region.name)])


async def region(session, code: str) -> Region:
    return await session.scalar(select(Region).where(Region.code == code))


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


GOOD = """\
    sample: true
    fields:
      - name: pension_ok
        type: bool
        label: {zh: 有养老金, en: has a pension}
        question: {zh: 您有养老金吗？, en: "Do you have a pension?"}
    policies:
      - code: good_one
        title: {zh: 好, en: Good}
        summary: {zh: 好, en: Good}
        rule: 'age >= 60 and pension_ok'
        benefit: {text: {zh: 钱, en: money}}
        apply: {where: {zh: 居委, en: the committee}}
        valid_from: 2024-01-01
"""
BAD = """\
    policies:
      - code: bad_one
        title: {zh: 坏, en: Bad}
        summary: {zh: 坏, en: Bad}
        benefit: {text: {zh: 钱, en: money}}
        apply: {where: {zh: 居委, en: the committee}}
        valid_from: 2024-01-01
        rule: 'age >= 60 and pension_okk'
"""


# ---------------------------------------------------------------------------------------------
# Catalogue


async def test_a_bad_rule_names_file_line_policy_and_column_and_nothing_is_loaded(session, tmp_path):
    write(tmp_path, "a_good.yaml", GOOD)
    write(tmp_path, "b_bad.yaml", BAD)
    with pytest.raises(pol.CatalogueError) as err, use_locale("en"):
        await pol.load_catalogue(session, tmp_path, NOW)
    (problem,) = err.value.problems
    assert problem.startswith("b_bad.yaml:8: policy bad_one: rule: column 15: ")
    assert "pension_okk" in problem and "pension_ok" in problem.split("pension_okk", 1)[1]  # the suggestion
    await session.rollback()
    assert await session.scalar(select(func.count(Policy.id))) == 0
    with pytest.raises(pol.CatalogueError) as err, use_locale("zh_Hans"):
        await pol.load_catalogue(session, tmp_path, NOW)
    assert err.value.problems[0].startswith("b_bad.yaml:8: 政策 bad_one: 规则：第 15 列：")


async def test_sample_catalogue_loads_idempotently_with_versions_by_date(session):
    await ensure_demo_regions(session)  # three sample policies apply to Shanghai (310000) only
    first = await pol.load_catalogue(session, SAMPLE, NOW)
    await session.commit()
    assert 8 <= len(first.created) <= 12 and not first.updated
    again = await pol.load_catalogue(session, SAMPLE, NOW)
    await session.commit()
    assert not again.created and sorted(again.updated) == sorted(first.created)
    before = await pol.get_policy(session, "minimum_living_allowance", date(2025, 6, 30))
    after = await pol.get_policy(session, "minimum_living_allowance", date(2025, 7, 1))
    assert "1510" in before.rule_text and "1550" in after.rule_text
    assert before.valid_to == date(2025, 6, 30) and after.valid_to is None
    assert await pol.get_policy(session, "home_safety_retrofit", date(2024, 6, 1)) is None  # not yet in force
    view = await pol.get_policy(session, "old_age_allowance", TODAY)
    amounts = [view.amount({"age": a, "hukou": "local"}, TODAY, set())[1] for a in (65, 69, 70, 85, 95, 100)]
    assert [int(a) for a in amounts] == [75, 75, 150, 180, 350, 600]


# ---------------------------------------------------------------------------------------------
# The questionnaire


INCOME = QuestionField("income", "int", {"zh": "收入", "en": "income"}, {"zh": "收入？", "en": "Income?"})
PENSION = QuestionField("pension", "bool", {"zh": "养老金", "en": "pension"}, {"zh": "?", "en": "?"})
HOME = QuestionField("home", "str", {"zh": "住房", "en": "home"}, {"zh": "?", "en": "?"},
                     (Choice("own", {"zh": "自有", "en": "own"}), Choice("rent", {"zh": "租", "en": "rent"})))
ASKABLE = {f.name: f for f in (INCOME, PENSION, HOME)}
REGISTRY = pol.policy_registry(ASKABLE.values())


def view(code: str, rule: str) -> pol.PolicyView:
    return pol.PolicyView(id=hash(code) % 10_000, code=code, region_id=None, region_path=None, sample=True,
                          valid_from=date(2024, 1, 1), valid_to=None, title={"zh": code, "en": code},
                          rule_text=rule, rule=parse(rule, REGISTRY), summary={}, benefit={}, apply={}, source="")


def test_registry_fields_are_never_asked_and_the_most_decisive_question_comes_first():
    policies = [view("a", "age >= 80 and income < 2000"), view("b", "living_alone and income < 3000"),
                view("c", "pension == false and age >= 60"), view("d", 'home == "own" or income < 100')]
    profile = Profile({"birth_date": date(1940, 1, 1), "living_alone": True}, set(), dict(ASKABLE), 1)
    first = pol.assess(policies, profile, TODAY)
    assert first.next_question.name == "income"  # settles a and b alone, and takes part in d
    assert {f for r in first.results for f in r.unknown} <= set(ASKABLE)
    profile.values["income"] = 1500
    second = pol.assess(policies, profile, TODAY)
    assert [r.truth for r in second.results][:2] == [Truth.TRUE, Truth.TRUE]
    assert second.next_question.name == "home"  # c and d each hang on one answer: ties go by name
    assert pol.assess(policies, profile, TODAY, skipped=["home"]).next_question.name == "pension"
    assert pol.assess(policies, profile, TODAY, skipped=["home", "pension"]).next_question is None


def test_reasons_name_the_satisfied_parts():
    tree = parse("age >= 80 and (living_alone or income < 10)", REGISTRY)
    reasons = pol.explain(tree, {"birth_date": date(1944, 1, 1), "living_alone": True, "income": 50}, TODAY, set())
    assert [(r["field"], r.get("op"), r["actual"]) for r in reasons] == [("age", ">=", 82),
                                                                         ("living_alone", "==", True)]


def test_answers_are_validated_in_the_service():
    assert pol.parse_answer(INCOME, text=" １,５００ 元") == 1500
    assert pol.parse_answer(HOME, choice=1) == "rent"
    assert pol.parse_answer(PENSION, choice=0) is False
    for bad in ({"text": "lots"}, {"text": "12.5"}, {"text": "-3"} if INCOME.minimum is not None else {"text": "x"}):
        with pytest.raises(pol.AnswerError):
            pol.parse_answer(INCOME, **bad)
    with pytest.raises(pol.AnswerError):
        pol.parse_answer(HOME, choice=7)  # a forged button
    with pytest.raises(pol.AnswerError):
        pol.parse_answer(PENSION, choice=2)


# Property tests over random rules and people ------------------------------------------------

FIELD_VALUES = {
    "age": st.integers(55, 95), "living_alone": st.booleans(), "hukou": st.sampled_from(["local", "nonlocal"]),
    "disability_level": st.integers(1, 4), "income": st.integers(0, 4000), "pension": st.booleans(),
    "home": st.sampled_from(["own", "rent"]),
}
CONSTS = {"age": [60, 65, 80], "disability_level": [1, 2, 3], "income": [1000, 1550, 3100]}


@st.composite
def rule_atoms(draw):
    name = draw(st.sampled_from(sorted(FIELD_VALUES)))
    if name in CONSTS:
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return f"{name} {op} {draw(st.sampled_from(CONSTS[name]))}"
    if name in ("living_alone", "pension"):
        return f"{name} == {draw(st.sampled_from(['true', 'false']))}"
    return f'{name} == "{draw(FIELD_VALUES[name])}"'


rules = st.recursive(rule_atoms(), lambda inner: st.one_of(
    inner.map(lambda r: f"not ({r})"),
    st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) and ({ab[1]})"),
    st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) or ({ab[1]})")), max_leaves=6)
known = st.fixed_dictionaries({}, optional={name: s for name, s in FIELD_VALUES.items()})


def changes_some_result(policies, values, name) -> bool:
    """Brute force: some values of the other missing fields and two of ``name``'s give two results."""
    missing = sorted({f for p in policies for f in unknown_fields(p.rule, values, today=TODAY, tags=set())}
                     | {name})
    domains = {f: [*(CONSTS.get(f) or []), *[c + d for c in CONSTS.get(f, []) for d in (-1, 1)]]
               if f in CONSTS else ([True, False] if f in ("living_alone", "pension") else
                                    ["local", "nonlocal", "own", "rent"]) for f in missing}
    others = [f for f in missing if f != name]
    for combo in itertools.product(*(domains[f] for f in others)):
        base = {**values, **dict(zip(others, combo, strict=True))}
        for p in policies:
            seen = {evaluate(p.rule, {**base, name: v}, today=TODAY, tags=set()) for v in domains[name]}
            if len(seen) > 1:
                return True
    return False


@settings(max_examples=80, deadline=None)
@given(texts=st.lists(rules, min_size=1, max_size=4), values=known, registry_known=st.booleans())
def test_the_questionnaire_asks_only_what_can_change_an_unknown_result(texts, values, registry_known):
    policies = [view(f"p{i}", text) for i, text in enumerate(texts)]
    askable = dict(ASKABLE) if registry_known else {**pol.registry_questions(), **ASKABLE}
    profile = Profile(dict(values), set(), askable)
    asked = set()
    for _round in range(len(FIELD_VALUES) + 1):
        assessment = pol.assess(policies, profile, TODAY)
        question = assessment.next_question
        if question is None:
            break
        assert question.name in askable and question.name not in profile.values and question.name not in asked
        assert changes_some_result(policies, profile.values, question.name), (texts, profile.values, question.name)
        asked.add(question.name)
        profile.values[question.name] = next(iter(CONSTS.get(question.name, []))) if question.name in CONSTS \
            else (question.choices[0].value if question.choices else True)
    else:
        pytest.fail("the questionnaire did not end")
    # Every question answered: nothing that an answer could decide stays unknown.
    for r in pol.assess(policies, profile, TODAY).results:
        if r.truth is Truth.UNKNOWN:
            assert not set(r.unknown) & set(askable), (r.policy.rule_text, profile.values)


# ---------------------------------------------------------------------------------------------
# SQL matching agrees with the evaluator


DECLARED = [INCOME, PENSION, HOME]


# A resident's take-up case of a policy: its status and when they were last told (days ago).
CASES = {None: None, "notified_old": ("notified", 100), "notified_new": ("notified", 10),
         "notified_unknown": ("notified", None), "applied": ("applied", 5), "enrolled": ("enrolled", None),
         "declined": ("declined", 200)}


@st.composite
def people(draw):
    person = {name: draw(st.one_of(st.none(), s)) for name, s in FIELD_VALUES.items()}
    person["account"] = draw(st.sampled_from([None, "reachable", "unreachable"]))
    person["cases"] = draw(st.lists(st.sampled_from(sorted(CASES, key=str)), min_size=3, max_size=3))
    return person


def expected_counts(truths: list[Truth], crowd: list[dict], i: int) -> dict[str, int]:
    """What ``match_all`` must say of policy ``i``, from the evaluator's answers and each case, by hand."""
    out = dict.fromkeys(("in_scope", "eligible", "not_eligible", "unknown", "enrolled", "eligible_enrolled",
                         "eligible_applied", "eligible_declined", "eligible_notified_recently",
                         "eligible_not_on_bot", "to_push", "notified", "applied", "declined"), 0)
    for truth, p in zip(truths, crowd, strict=True):
        case_row = CASES[p["cases"][i]]
        status, told = (None, None) if case_row is None else case_row
        out["in_scope"] += 1
        out[{Truth.TRUE: "eligible", Truth.FALSE: "not_eligible", Truth.UNKNOWN: "unknown"}[truth]] += 1
        for st_ in ("enrolled", "applied", "declined"):
            out[st_] += status == st_
        out["notified"] += told is not None
        if truth is not Truth.TRUE:
            continue
        for st_ in ("enrolled", "applied", "declined"):
            out[f"eligible_{st_}"] += status == st_
        out["eligible_notified_recently"] += status == "notified" and told is not None and told < 90
        out["eligible_not_on_bot"] += p["account"] is None
        out["to_push"] += p["account"] == "reachable" and (
            status is None or (status == "notified" and told is not None and told >= 90))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(texts=st.lists(rules, min_size=1, max_size=3), crowd=st.lists(people(), min_size=1, max_size=8))
async def test_sql_matching_and_the_python_evaluator_agree(engine, texts, crowd):
    """Per policy (``eligible_ids``) and for all policies in one pass (``match_all``'s counts, with
    take-up cases and accounts), for a committee and for a wider scope (computed another way)."""
    fields = sql_fields(DECLARED)
    async with session_factory(engine)() as session:
        committee = await session.scalar(select(Region).where(Region.code == "PK"))
        if committee is None:
            committee = Region(code="PK", name="PK", level=RegionLevel.committee, path="/PK/")
            session.add(committee)
            await session.flush()
        for model in (PolicyCase, Account, PolicyAnswer, Resident, Policy):
            await session.execute(delete(model))
        rows = [Policy(code=f"p{i}", sample=True, created_at=NOW, updated_at=NOW) for i in range(len(texts))]
        session.add_all(rows)
        await session.flush()
        policies = [replace(view(f"p{i}", text), id=row.id, rule=parse(text, fields.registry))
                    for i, (text, row) in enumerate(zip(texts, rows, strict=True))]
        ids = []
        for n, p in enumerate(crowd):
            birth = None if p["age"] is None else date(TODAY.year - p["age"], 1, 1)
            r = Resident(committee_id=committee.id, name=f"r{n}", birth_date=birth, living_alone=p["living_alone"],
                         hukou=p["hukou"], disability_level=p["disability_level"], status=ResidentStatus.active,
                         created_at=NOW, updated_at=NOW)
            session.add(r)
            await session.flush()
            ids.append(r.id)
            for f in DECLARED:
                if p[f.name] is not None:
                    await pol.keep_answer(session, r.id, f, p[f.name], NOW)
            if p["account"] is not None:
                session.add(Account(telegram_id=7000 + n, chat_id=7000 + n, resident_id=r.id, created_at=NOW,
                                    unreachable_at=NOW if p["account"] == "unreachable" else None))
            for policy, key in zip(policies, p["cases"], strict=False):
                if CASES[key] is not None:
                    status, told = CASES[key]
                    session.add(PolicyCase(policy_id=policy.id, resident_id=r.id, status=CaseStatus(status),
                                           notified_at=None if told is None else NOW - timedelta(days=told),
                                           updated_at=NOW))
        await session.commit()
        truths = []
        for policy in policies:
            row = []
            for p in crowd:
                values = {k: v for k, v in p.items() if v is not None and k in FIELD_VALUES and k != "age"}
                if p["age"] is not None:
                    values["birth_date"] = date(TODAY.year - p["age"], 1, 1)
                row.append(evaluate(policy.rule, values, today=TODAY, tags=set()))
            truths.append(row)
        for actor in (staff_of(committee), staff_of(committee, StaffRole.street)):
            for policy, row in zip(policies, truths, strict=True):
                got = {t: set(await eligible_ids(session, actor, policy, fields, TODAY, truth=t))
                       for t in ("eligible", "not_eligible", "unknown")}
                for rid, p, truth in zip(ids, crowd, row, strict=True):
                    expected = {Truth.TRUE: "eligible", Truth.FALSE: "not_eligible", Truth.UNKNOWN: "unknown"}[truth]
                    assert rid in got[expected], (policy.rule_text, p, truth, got)
            batch = await count_policies(session, actor, policies, today=TODAY, now=NOW,
                                         push_interval=CFG.push_interval, fields=fields)
            for i, (policy, result) in enumerate(zip(policies, batch, strict=True)):
                got = {k: getattr(result, k) for k in expected_counts(truths[i], crowd, i)}
                assert result.code == policy.code
                assert got == expected_counts(truths[i], crowd, i), (policy.rule_text, crowd)


# ---------------------------------------------------------------------------------------------
# Matching, pushing, tracking


async def _seeded(session, engine):
    await seed_registry(session_factory(engine), NOW)
    await pol.load_catalogue(session, SAMPLE, NOW)
    await session.commit()
    committee = await region(session, "DXYC")
    residents = {r.name: r for r in await session.scalars(select(Resident).where(
        Resident.committee_id == committee.id))}
    for n, r in enumerate(residents.values()):
        session.add(Account(telegram_id=5000 + n, chat_id=5000 + n, resident_id=r.id, created_at=NOW))
    await session.commit()
    return committee, residents


async def test_match_counts_unknowns_apart_and_push_respects_the_interval(session, engine):
    committee, people_by_name = await _seeded(session, engine)
    actor = staff_of(committee)
    # meal_assistance: age >= 80 or (age >= 60 and living_alone). 赵桂兰 (88, alone) and 王秀英 (81) qualify.
    match = await pol.match_policy(session, actor, "meal_assistance", today=TODAY, now=NOW,
                                   push_interval=CFG.push_interval)
    assert match.eligible == 2 and match.to_push == 2
    assert {p["name"] for p in match.preview} == {"赵桂兰", "王秀英"}
    # emergency_call_device needs an answer nobody gave: unknown, never pushed.
    device = await pol.match_policy(session, actor, "emergency_call_device", today=TODAY, now=NOW,
                                    push_interval=CFG.push_interval)
    assert device.eligible == 0 and device.unknown >= 1
    pushed = await pol.push_policy(session, actor, "meal_assistance", CFG, today=TODAY, now=NOW)
    await session.commit()
    assert pushed.pushed == 2
    rows = list(await session.scalars(select(OutboxMessage)))
    assert len(rows) == 2 and all(r.payload["message"] == "policies.push" for r in rows)
    assert all(r.payload["data"]["reasons"] for r in rows)
    assert (await pol.push_policy(session, actor, "emergency_call_device", CFG, today=TODAY, now=NOW)).pushed == 0
    # Pressed again, the next day, or 89 days later: nobody is told twice.
    for later in (NOW, NOW + timedelta(days=1), NOW + timedelta(days=89)):
        again = await pol.push_policy(session, actor, "meal_assistance", CFG, today=later.date(), now=later)
        assert again.pushed == 0
    await session.commit()
    assert await session.scalar(select(func.count(OutboxMessage.id))) == 2
    # The one follow-up after 14 days, once.
    assert await pol.send_followups(session, CFG, now=NOW + timedelta(days=13)) == 0
    assert await pol.send_followups(session, CFG, now=NOW + timedelta(days=15), limit=1) == 2  # page by page
    await session.commit()
    assert await pol.followups_tick(session_factory(engine), CFG, NOW + timedelta(days=16), limit=1) == 0
    assert await pol.send_followups(session, CFG, now=NOW + timedelta(days=16)) == 0
    # One resident applies; after 90 days only the other is told again.
    zhao = people_by_name["赵桂兰"]
    zhao_actor = Actor(resident=zhao)
    case_id = await session.scalar(select(PolicyCase.id).where(PolicyCase.resident_id == zhao.id))
    _policy, changed = await pol.mark_applied(session, zhao_actor, now=NOW + timedelta(days=2), case_id=case_id)
    assert changed
    assert (await pol.mark_applied(session, zhao_actor, now=NOW, case_id=case_id))[1] is False  # idempotent
    later = NOW + timedelta(days=91)
    assert (await pol.push_policy(session, actor, "meal_assistance", CFG, today=later.date(), now=later)).pushed == 1
    await session.commit()
    # Staff record the enrolment; the report shows it.
    assert await pol.record_outcome(session, actor, "meal_assistance", zhao.id, CaseStatus.enrolled, now=later)
    assert not await pol.record_outcome(session, actor, "meal_assistance", zhao.id, CaseStatus.enrolled, now=later)
    report = {r.code: r for r in await pol.policy_report(session, actor, CFG, today=later.date(), now=later)}
    meal = report["meal_assistance"]
    assert (meal.eligible, meal.notified, meal.applied, meal.enrolled) == (2, 2, 0, 1)
    assert str(meal.take_up) == "0.500"


REGIONAL = """\
    policies:
      - code: street_60
        region: "310104003"
        title: {zh: 街道, en: Street}
        summary: {zh: 街道, en: Street}
        rule: 'age >= 60'
        benefit: {text: {zh: 钱, en: money}}
        apply: {where: {zh: 街道, en: the street}}
        valid_from: 2024-01-01
"""


async def test_match_all_gives_every_policy_the_counts_of_match_policy(session, engine, tmp_path):
    committee, people_by_name = await _seeded(session, engine)
    await pol.load_catalogue(session, write(tmp_path, "regional.yaml", REGIONAL), NOW)
    await session.commit()
    actor = staff_of(committee)
    await pol.push_policy(session, actor, "meal_assistance", CFG, today=TODAY, now=NOW)
    zhao, wang = people_by_name["赵桂兰"], people_by_name["王秀英"]
    case_id = await session.scalar(select(PolicyCase.id).where(PolicyCase.resident_id == zhao.id))
    await pol.mark_applied(session, Actor(resident=zhao), now=NOW, case_id=case_id)
    await pol.record_outcome(session, actor, "meal_assistance", wang.id, CaseStatus.enrolled, now=NOW)
    await pol.record_outcome(session, actor, "street_60", wang.id, CaseStatus.declined, now=NOW, reason="moved")
    await session.commit()
    district = staff_of(await region(session, "310104"), StaffRole.district)
    for who in (actor, district):
        codes = [p.code for p in await pol.policies_in_force(session, TODAY)]
        assert "street_60" in codes and "meal_assistance" in codes
        batch = await pol.match_all(session, who, today=TODAY, now=NOW, push_interval=CFG.push_interval)
        assert [m.code for m in batch] == codes
        for m in batch:
            one = await pol.match_policy(session, who, m.code, today=TODAY, now=NOW,
                                         push_interval=CFG.push_interval, preview=0)
            assert (m.as_json(), m.notified, m.applied, m.declined) == \
                (one.as_json(), one.notified, one.applied, one.declined), m.code
        meal = next(m for m in batch if m.code == "meal_assistance")
        assert (meal.eligible, meal.notified, meal.applied, meal.enrolled, meal.to_push) == (2, 2, 1, 1, 0)
    # The street's policy counts only the street's residents: FLSQ is in the district, not the street.
    street = {m.code: m for m in await pol.match_all(session, district, today=TODAY, now=NOW,
                                                     push_interval=CFG.push_interval)}
    flsq = await session.scalar(select(func.count(Resident.id)).where(
        Resident.committee_id == (await region(session, "FLSQ")).id))
    assert flsq and street["street_60"].in_scope == street["meal_assistance"].in_scope - flsq
    assert street["street_60"].declined == 1
    only = await pol.match_all(session, actor, today=TODAY, now=NOW, push_interval=CFG.push_interval,
                               codes=["street_60", "nope"])
    assert [m.code for m in only] == ["street_60"]
    from services.tags import NotInScope

    with pytest.raises(NotInScope):
        await pol.match_all(session, Actor(resident=zhao), today=TODAY, now=NOW, push_interval=CFG.push_interval)


async def test_refusals_change_nothing(session, engine):
    committee, people_by_name = await _seeded(session, engine)
    foreign = staff_of(await region(session, "FLSQ"))
    wang = people_by_name["王秀英"]
    with pytest.raises(pol.CaseError):
        await pol.record_outcome(session, staff_of(committee), "meal_assistance", wang.id, CaseStatus.declined,
                                 now=NOW)  # a decline needs a reason
    from services.tags import NotInScope

    with pytest.raises(NotInScope):
        await pol.record_outcome(session, foreign, "meal_assistance", wang.id, CaseStatus.enrolled, now=NOW)
    with pytest.raises(NotInScope):
        await pol.match_policy(session, Actor(resident=wang), "meal_assistance", today=TODAY, now=NOW,
                               push_interval=CFG.push_interval)
    with pytest.raises(pol.CaseError):  # someone else's case id
        other = PolicyCase(policy_id=await session.scalar(select(Policy.id).limit(1)),
                           resident_id=people_by_name["李建国"].id, status=CaseStatus.notified, updated_at=NOW)
        session.add(other)
        await session.flush()
        await pol.mark_applied(session, Actor(resident=wang), now=NOW, case_id=other.id)
    assert await session.scalar(select(func.count(PolicyCase.id)).where(
        PolicyCase.status != CaseStatus.notified)) == 0
    # A foreign committee sees none of DXYC's eligible residents.
    assert (await pol.match_policy(session, foreign, "meal_assistance", today=TODAY, now=NOW,
                                   push_interval=CFG.push_interval)).eligible == 0


async def test_enrolments_import_reports_bad_lines_and_applies_good_ones(session, engine):
    committee, people_by_name = await _seeded(session, engine)
    actor = staff_of(committee)
    zhao = people_by_name["赵桂兰"]
    rows = [["policy", "resident", "name", "room", "status", "reason"],
            ["meal_assistance", str(zhao.id), "", "", "enrolled", ""],
            ["meal_assistance", "", "王秀英", "3-2-201", "declined", "has a carer"],
            ["no_such_policy", str(zhao.id), "", "", "", ""],
            ["meal_assistance", "", "王秀英", "3-2-201", "maybe", ""],
            ["meal_assistance", "999999", "", "", "", ""]]
    with use_locale("en"):
        result = await pol.import_enrolments(session, actor, rows, now=NOW)
    assert result.changed == 2 and len(result.errors) == 3
    assert [e.split(":")[0] for e in result.errors] == ["line 4", "line 5", "line 6"]
    again = await pol.import_enrolments(session, actor, rows[:3], now=NOW)
    assert again.changed == 0 and again.unchanged == 2


async def test_benefits_for_a_verified_resident_keep_answers_only_with_consent(session, engine):
    _committee, people_by_name = await _seeded(session, engine)
    zhao = Actor(resident=people_by_name["赵桂兰"])
    check = await pol.check_benefits(session, zhao, TODAY)
    asked = check.assessment.next_question.name
    assert asked not in ("age", "living_alone", "birth_date") and check.needs_consent
    name, value, kept = await pol.answer_question(session, zhao, "household_income_per_head", now=NOW, keep=False,
                                                  text="1200")
    assert (name, value, kept) == ("household_income_per_head", 1200, False)
    assert await session.scalar(select(func.count()).select_from(PolicyAnswer)) == 0
    with pytest.raises(pol.AnswerError):
        await pol.answer_question(session, zhao, "age", now=NOW, keep=True, text="70")  # the registry knows it
    assert await pol.consent_to_keep(session, zhao, {name: value}, now=NOW)
    assert (await pol.answers_for_mydata(session, zhao.resident.id))["answers"] == {name: 1200}
    check = await pol.check_benefits(session, zhao, TODAY)
    assert "elderly_care_subsidy" in {r.policy.code for r in check.assessment.by(Truth.TRUE)}
    assert await pol.erase_answers(session, zhao.resident.id) == 1
    anonymous = await pol.check_benefits(session, Actor(), TODAY)
    assert anonymous.anonymous and anonymous.assessment.next_question.name == "age"
