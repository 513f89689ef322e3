"""The expression language: parsing, errors, three-valued evaluation, and SQL agreeing with Python."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from bot.db import session_factory
from services.expressions import (
    FIELDS,
    MAX_DEPTH,
    MAX_LIST,
    And,
    Between,
    Bool,
    Compare,
    Const,
    ExpressionError,
    Field,
    FieldSpec,
    HasTag,
    InList,
    Not,
    Or,
    Truth,
    age_at,
    compile_sql,
    evaluate,
    parse,
    register_field,
    to_text,
    unknown_fields,
)
from services.i18n import use_locale
from services.models import (
    Account,
    Household,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    ResidentTag,
    Tag,
    TagKind,
)

T, F, U = Truth.TRUE, Truth.FALSE, Truth.UNKNOWN
TODAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def english():
    with use_locale("en"):
        yield


def field(name: str) -> Field:
    return Field(name, FIELDS[name])


# --------------------------------------------------------------------------- parsing


def test_english_and_chinese_spellings_parse_to_the_same_tree():
    english = parse('age >= 80 and living_alone == true and gender == "F" or has_tag("volunteer")')
    chinese = parse("年龄>=80且独居 并且 性别=女 或 有标签（“volunteer”）")
    assert english == chinese
    assert to_text(chinese) == 'age >= 80 and living_alone == true and gender == "F" or has_tag("volunteer")'


def test_literals_dates_lists_and_between():
    tree = parse("birth_date < 1950-03-01 and birth_date >= date('1940-01-01') and building in (3, \"5\", )"
                 " and between(monthly_income, 0, 1500.5) and 户籍 not in ('local')")
    assert isinstance(tree, And)
    first, second, listed, between, not_in = tree.items
    assert first == Compare(field("birth_date"), "<", Const(date(1950, 3, 1)))
    assert second == Compare(field("birth_date"), ">=", Const(date(1940, 1, 1)))
    assert listed == InList(field("building"), (Const("3"), Const("5")))
    assert between == Between(field("monthly_income"), Const(0), Const(Decimal("1500.5")))
    assert not_in == InList(field("hukou"), (Const("local"),), negated=True)


def test_value_on_the_left_is_flipped_and_bare_yes_no_field_means_true():
    assert parse("80 <= age") == Compare(field("age"), ">=", Const(80))
    assert parse("not 独居") == Not(Compare(field("living_alone"), "==", Const(True)))
    assert parse("true") == Bool(True)
    assert parse("性别 == 男") == Compare(field("gender"), "==", Const("M"))


def test_precedence_not_binds_tighter_than_and_than_or():
    tree = parse("not has_tag('a') and has_tag('b') or has_tag('c')")
    assert tree == Or((And((Not(HasTag("a")), HasTag("b"))), HasTag("c")))
    grouped = parse("not (has_tag('a') and (has_tag('b') or has_tag('c')))")
    assert grouped == Not(And((HasTag("a"), Or((HasTag("b"), HasTag("c"))))))
    assert parse(to_text(grouped)) == grouped


def test_text_with_quotes_round_trips():
    tree = Compare(field("compound"), "==", Const('He said "hi" \\ 你好'))
    assert parse(to_text(tree)) == tree


def test_registered_fields_are_understood_by_parse_and_evaluate():
    registry = dict(FIELDS)
    register_field(FieldSpec("has_pension", "bool", ("有养老金",)), registry)
    tree = parse("有养老金 且 age >= 60", registry)
    assert evaluate(tree, {"has_pension": True, "age": 65}, today=TODAY) is T
    assert unknown_fields(tree, {"age": 65}, today=TODAY) == {"has_pension"}
    with pytest.raises(ExpressionError):
        parse("有养老金")  # not in the default registry
    with pytest.raises(ExpressionError, match="cannot be used in a database filter"):
        compile_sql(tree, today=TODAY)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("living_alone and agee >= 80", 18, 'unknown field "agee" — did you mean "age"?'),
        ('age == "abc"', 8, "age is a number and cannot be compared with text"),
        ("age >= 80 and", 14, "unexpected end of expression"),
        ("has_tags('x')", 1, 'unknown function "has_tags" — did you mean "has_tag"?'),
        ("age # 3", 5, 'unexpected character "#"'),
        ('building < "3"', 12, '"<" does not apply to building (text); use ==, != or in'),
        ('gender == "X"', 11, "gender must be one of: M, F, m, f, 男, 女"),
        ("age >= 80)", 10, 'unexpected ")"'),
        ("(age >= 80", 11, 'unexpected end of expression: ")" expected'),
        ("'open", 1, "unterminated text: a closing quote is missing"),
        ("birth_date < 2026-02-30", 14, 'invalid date "2026-02-30" (use YYYY-MM-DD)'),
        ("living_alone == 1", 17, "living_alone is true or false and cannot be compared with a number"),
        ("", 1, "the expression is empty"),
        ("age", 4, "unexpected end of expression: a comparison such as age == … is expected"),
    ],
)
def test_errors_name_the_column_and_the_mistake(text, column, message):
    with use_locale("en"), pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.position == column
    assert str(caught.value) == f"column {column}: {message}"


def test_errors_in_chinese_keep_the_column():
    with use_locale("zh_Hans"), pytest.raises(ExpressionError) as caught:
        parse("独居 且 年龄龄 >= 80")
    assert caught.value.position == 6
    assert "6" in str(caught.value)


def test_limits_on_length_depth_size_and_lists():
    with pytest.raises(ExpressionError, match="too long"):
        parse("age >= 1 or " * 200 + "age >= 1")
    deep = "(" * (MAX_DEPTH + 1) + "age >= 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(ExpressionError, match="nested too deeply") as caught:
        parse(deep)
    assert caught.value.position == MAX_DEPTH + 1
    parse("(" * MAX_DEPTH + "age >= 1" + ")" * MAX_DEPTH)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("not " * (MAX_DEPTH + 1) + "true")
    with pytest.raises(ExpressionError, match="too large"):
        parse(" or ".join(f"age == {i}" for i in range(70)))
    values = ", ".join(str(i) for i in range(MAX_LIST + 1))
    with pytest.raises(ExpressionError, match="too many values"):
        parse(f"age in ({values})")
    parse(f"age in ({', '.join(str(i) for i in range(MAX_LIST))})")


# --------------------------------------------------------------------------- evaluation


def test_kleene_logic_with_missing_values():
    someone = {"birth_date": date(1940, 5, 1), "living_alone": None}
    assert evaluate("age >= 80", someone, today=TODAY) is T
    assert evaluate("living_alone", someone, today=TODAY) is U
    assert evaluate("not living_alone", someone, today=TODAY) is U
    assert evaluate("age >= 80 or living_alone", someone, today=TODAY) is T
    assert evaluate("age < 80 and living_alone", someone, today=TODAY) is F
    assert evaluate("age >= 80 and living_alone", someone, today=TODAY) is U
    assert evaluate("has_tag('x')", someone, today=TODAY) is U
    assert evaluate("has_tag('x')", someone, today=TODAY, tags={"x"}) is T
    with pytest.raises(TypeError):
        bool(U)


def test_age_is_whole_years_and_leap_day_birthdays_turn_on_first_of_march():
    leap = date(2000, 2, 29)
    assert age_at(leap, date(2026, 2, 28)) == 25
    assert age_at(leap, date(2026, 3, 1)) == 26
    assert age_at(leap, date(2028, 2, 29)) == 28
    assert age_at(date(1946, 11, 28), TODAY) == 80
    assert age_at(date(1946, 11, 29), TODAY) == 79


def test_unknown_fields_are_those_that_could_change_the_answer():
    today = TODAY
    rule = parse("age >= 70 and (living_alone or disability_level <= 2) and hukou == 'local'")
    assert unknown_fields(rule, {"birth_date": date(1950, 1, 1), "hukou": "local"}, today=today) == {
        "living_alone", "disability_level"}
    assert unknown_fields(rule, {"birth_date": date(1950, 1, 1), "living_alone": True}, today=today) == {"hukou"}
    assert unknown_fields(rule, {"birth_date": date(1990, 1, 1)}, today=today) == set()  # already false
    # Whatever the tag says, the answer only depends on gender.
    assert unknown_fields("(has_tag('a') and gender == 'F') or (not has_tag('a') and gender == 'F')", {},
                          today=today) == {"gender"}
    assert unknown_fields("has_tag('a') or age >= 90", {}, today=today) == {"tag:a", "age"}


# --------------------------------------------------------------------------- SQL agrees with Python

TAG_CODES = ("t1", "t2", "t3")
TEXTS = ("1", "3", "5", "10", "3A", "甲", 'a"b', "")
HUKOU = ("local", "nonlocal", "本市")
COMMITTEES = ("C1", "C2")
TODAYS = (TODAY, date(2028, 2, 29), date(2027, 2, 28), date(2027, 3, 1), date(2024, 1, 1))

AGES = (0, 25, 80, 81)
FIXED_DATES = (date(2000, 2, 29), date(1928, 2, 29), date(1946, 3, 1), date(1950, 1, 1))


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return date(day.year - years, 2, 28)


def birth_dates(today: date):
    """Any birth date, or one on and around the day someone turns one of AGES today.

    The second kind hits the boundaries of age comparisons (leap days included) instead of
    only coming near them.
    """
    boundaries = [years_before(today, years) + timedelta(days=delta)
                  for years in AGES for delta in (-1, 0, 1)] + list(FIXED_DATES)
    return st.one_of(st.none(), st.dates(date(1900, 1, 1), date(2030, 12, 31)),
                     st.sampled_from(boundaries), st.sampled_from(boundaries))


residents = st.fixed_dictionaries({
    "gender": st.sampled_from([None, "M", "F"]),
    "building": st.sampled_from([None, *TEXTS]),
    "unit": st.sampled_from([None, "1", "2"]),
    "room": st.sampled_from([None, "101", "201"]),
    "compound": st.sampled_from([None, "丁香苑", "Yingchun"]),
    "living_alone": st.sampled_from([None, True, False]),
    "hukou": st.sampled_from([None, *HUKOU]),
    "disability_level": st.sampled_from([None, 1, 2, 3, 4]),
    "monthly_income": st.one_of(st.none(), st.integers(0, 4000)),
    "household": st.sampled_from([None, 0, 1, 2]),
    "active": st.booleans(),
    "verified": st.booleans(),
    "committee": st.sampled_from(COMMITTEES),
    "tags": st.frozensets(st.sampled_from(TAG_CODES)),
})

NUMBERS = {
    "age": st.one_of(st.sampled_from(AGES), st.sampled_from(AGES), st.integers(-2, 130),
                     st.sampled_from([Decimal("79.5"), Decimal("80.0"), Decimal("-0.5")])),
    "disability_level": st.one_of(st.integers(0, 5), st.just(Decimal("2.5"))),
    "monthly_income": st.one_of(st.integers(0, 4000), st.just(Decimal("1499.99"))),
    "household_size": st.integers(0, 4),
}
values_for = {
    **NUMBERS,
    "birth_date": st.one_of(st.dates(date(1900, 1, 1), date(2030, 12, 31)), st.sampled_from(FIXED_DATES)),
    "gender": st.sampled_from(["M", "F"]),
    "building": st.sampled_from(TEXTS),
    "unit": st.sampled_from(["1", "2", "3"]),
    "room": st.sampled_from(["101", "201", "301"]),
    "compound": st.sampled_from(["丁香苑", "Yingchun", "other"]),
    "hukou": st.sampled_from(HUKOU),
    "committee": st.sampled_from([*COMMITTEES, "C3"]),
    "living_alone": st.booleans(),
    "verified": st.booleans(),
}
ORDERED = [n for n, s in FIELDS.items() if s.type in ("int", "decimal", "date")]


@st.composite
def atoms(draw):
    kind = draw(st.sampled_from(["compare", "compare", "in", "between", "tag", "bool"]))
    if kind == "tag":
        return HasTag(draw(st.sampled_from([*TAG_CODES, "t9"])))
    if kind == "bool":
        return Bool(draw(st.booleans()))
    if kind == "between":
        name = draw(st.sampled_from(ORDERED))
        return Between(field(name), Const(draw(values_for[name])), Const(draw(values_for[name])))
    name = draw(st.sampled_from([*sorted(values_for), "age", "age", "age"]))
    if kind == "in":
        values = draw(st.lists(values_for[name], min_size=1, max_size=4))
        return InList(field(name), tuple(Const(v) for v in values), draw(st.booleans()))
    ops = ["==", "!="] + (["<", "<=", ">", ">="] if name in ORDERED else [])
    return Compare(field(name), draw(st.sampled_from(ops)), Const(draw(values_for[name])))


expressions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


def as_mapping(person: dict, everyone: list[dict]) -> dict:
    """What the registry knows about a generated resident, as the Python evaluator reads it."""
    household = person["household"]
    size = None if household is None else sum(
        1 for p in everyone if p["household"] == household and p["active"])
    return {**person, "household_size": size}


async def _fixtures(session) -> tuple[dict[str, int], list[int]]:
    """Committees, households and tag definitions shared by every example of one test."""
    committees = {}
    for code in COMMITTEES:
        region = Region(code=code, name=code, level=RegionLevel.committee, path=f"/{code}/")
        session.add(region)
        await session.flush()
        committees[code] = region.id
    households = []
    for i in range(3):
        hh = Household(committee_id=committees["C1"], code=f"H{i}")
        session.add(hh)
        await session.flush()
        households.append(hh.id)
    for code in TAG_CODES:
        session.add(Tag(code=code, name_zh=code, name_en=code, kind=TagKind.manual, created_at=NOW))
    # A committee's own definition of a code counts for has_tag() just like the default one.
    session.add(Tag(region_id=committees["C2"], code="t1", name_zh="t1", name_en="t1", kind=TagKind.manual,
                    created_at=NOW))
    await session.commit()
    return committees, households


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), today=st.sampled_from(TODAYS), trees=st.lists(expressions, min_size=1, max_size=4))
async def test_database_filter_agrees_with_python_evaluation(engine, data, today, trees):
    person = st.tuples(residents, birth_dates(today)).map(lambda pb: {**pb[0], "birth_date": pb[1]})
    people = data.draw(st.lists(person, min_size=1, max_size=8), label="people")
    async with session_factory(engine)() as session:
        if await session.scalar(select(Region.id).where(Region.code == "C1")) is None:
            await _fixtures(session)
        committees = dict((await session.execute(select(Region.code, Region.id))).all())
        households = list(await session.scalars(select(Household.id).order_by(Household.id)))
        tags = {(t.code, t.region_id): t.id for t in await session.scalars(select(Tag))}
        for table in (ResidentTag, Account, Resident):
            await session.execute(delete(table))
        ids = []
        for n, p in enumerate(people):
            r = Resident(
                committee_id=committees[p["committee"]], name=f"r{n}",
                household_id=None if p["household"] is None else households[p["household"]],
                status=ResidentStatus.active if p["active"] else ResidentStatus.moved_out,
                created_at=NOW, updated_at=NOW,
                **{k: p[k] for k in ("birth_date", "gender", "building", "unit", "room", "compound",
                                     "living_alone", "hukou", "disability_level", "monthly_income")},
            )
            session.add(r)
            await session.flush()
            ids.append(r.id)
            if p["verified"]:
                session.add(Account(telegram_id=1000 + n, chat_id=1000 + n, resident_id=r.id, created_at=NOW))
            for code in p["tags"]:
                region = committees["C2"] if code == "t1" and p["committee"] == "C2" else None
                session.add(ResidentTag(resident_id=r.id, tag_id=tags[(code, region)], source=TagKind.manual,
                                        set_at=NOW))
        await session.commit()

        for tree in trees:
            text = to_text(tree)
            assert parse(text) == tree, text
            selected = set(await session.scalars(select(Resident.id).where(compile_sql(tree, today=today))))
            probed = select(Resident.id).where(compile_sql(tree, today=today, few_residents=True))
            assert set(await session.scalars(probed)) == selected, text  # another plan, the same rows
            for rid, p in zip(ids, people, strict=True):
                truth = evaluate(tree, as_mapping(p, people), today=today, tags=set(p["tags"]))
                # SQL's WHERE keeps TRUE rows only: an UNKNOWN row is never selected, like a FALSE one
                assert (rid in selected) == (truth is T), (text, p, truth)
                if truth is not U:
                    assert unknown_fields(tree, as_mapping(p, people), today=today, tags=set(p["tags"])) == set()


@settings(max_examples=200, deadline=None)
@given(tree=expressions)
def test_canonical_text_round_trips(tree):
    assert parse(to_text(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(birth=st.dates(date(1900, 1, 1), date(2030, 12, 31)), today=st.sampled_from(TODAYS),
       years=st.integers(-1, 125))
def test_age_comparisons_match_whole_years(birth, today, years):
    age = age_at(birth, today)
    assert evaluate(f"age >= {years}", {"birth_date": birth}, today=today) is Truth.of(age >= years)
    assert age_at(birth, birth + timedelta(days=1)) == 0


@pytest.mark.parametrize("today", TODAYS)
async def test_age_filter_agrees_on_and_around_every_birthday(engine, today):
    async with session_factory(engine)() as session:
        committee = Region(code="C1", name="C1", level=RegionLevel.committee, path="/C1/")
        session.add(committee)
        await session.flush()
        births = {years_before(today, years) + timedelta(days=delta)
                  for years in (0, 1, 25, 26, 27, 60, 79, 80, 81, 82, 99, 100, 101, 109, 110)
                  for delta in (-1, 0, 1)} | set(FIXED_DATES)
        people = {}
        for n, birth in enumerate(sorted(births)):
            r = Resident(committee_id=committee.id, name=f"r{n}", birth_date=birth, created_at=NOW,
                         updated_at=NOW)
            session.add(r)
            people[birth] = r
        await session.commit()
        for years in (0, 1, 25, 26, 60, 79, 80, 81, 99, 100):
            for text in (f"age >= {years}", f"age > {years}", f"age < {years}", f"age <= {years}",
                         f"age == {years}", f"age != {years}", f"between(age, {years}, {years + 9})",
                         f"age in ({years}, {years + 2})", f"age not in ({years})", f"age < {years}.5"):
                tree = parse(text)
                selected = set(await session.scalars(select(Resident.birth_date).where(
                    Resident.committee_id == committee.id, compile_sql(tree, today=today))))
                expected = {b for b in people if evaluate(tree, {"birth_date": b}, today=today) is T}
                assert selected == expected, (text, today, sorted(selected ^ expected))
