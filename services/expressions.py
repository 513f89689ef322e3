"""The one expression language of tags, segments, poll eligibility and policy rules.

Text such as ``age >= 80 and (living_alone == true or has_tag("aged_80"))`` (or, in Chinese,
``年龄 >= 80 且 (独居 或 有标签("aged_80"))``) is read by a hand-written tokenizer and a
recursive-descent parser into a tree of frozen dataclasses; nothing is ever ``eval``-ed. The
tree then

- compiles to a SQLAlchemy filter over ``Resident`` (``compile_sql``), so that a segment over a
  million residents is counted by the database, on SQLite and PostgreSQL alike;
- evaluates in Python with three-valued (Kleene) logic over a mapping (``evaluate``), so that
  the policy questionnaire can tell which missing fields could still change an answer
  (``unknown_fields``).

The two agree: whenever the Python answer is not UNKNOWN, a resident is selected by the SQL
filter exactly when the answer is TRUE (a property test checks it on both backends). Missing
values behave like SQL NULL: a comparison with a missing value is unknown, ``not unknown`` is
unknown, and a row whose filter is unknown is not selected.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ColumnElement,
    Numeric,
    Select,
    SQLColumnExpression,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import Grouping, UnaryExpression

from services.i18n import N_, _
from services.limits import clip
from services.models import Account, Region, Resident, ResidentStatus, ResidentTag, Tag

MAX_LENGTH = 2000
MAX_DEPTH = 32
MAX_NODES = 200
MAX_LIST = 100
# A number literal binds as is into the registry's whole-number columns, which are 32-bit INTEGER on
# PostgreSQL (SQLite's are 64-bit): anything larger could only fail in the database driver.
MAX_NUMBER = 2**31 - 1
MAX_DECIMALS = 6

FieldType: TypeAlias = Literal["int", "str", "date", "bool", "decimal"]
Value: TypeAlias = int | Decimal | str | date | bool

# ---------------------------------------------------------------------------------------------
# Errors


class ExpressionError(ValueError):
    """A mistake in an expression, at a 1-based column; the message is translated when raised."""

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        self.message = message
        super().__init__(_("column {column}: {message}").format(column=position, message=message))


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------
# Three-valued logic


class Truth(enum.Enum):
    """Kleene's three truth values: a missing value makes a comparison UNKNOWN."""

    FALSE = 0
    UNKNOWN = 1
    TRUE = 2

    @classmethod
    def of(cls, value: bool | None) -> Truth:
        if value is None:
            return cls.UNKNOWN
        return cls.TRUE if value else cls.FALSE

    def __and__(self, other: Truth) -> Truth:
        return self if self.value <= other.value else other

    def __or__(self, other: Truth) -> Truth:
        return self if self.value >= other.value else other

    def __invert__(self) -> Truth:
        return Truth(2 - self.value)

    def __bool__(self) -> bool:
        # ``if truth:`` would silently treat UNKNOWN as true or false; make callers choose.
        raise TypeError("compare a Truth with Truth.TRUE / Truth.FALSE explicitly")


# ---------------------------------------------------------------------------------------------
# The field registry


@dataclass(frozen=True, slots=True)
class SqlContext:
    """What a field's SQL needs besides the ``Resident`` row: the date ``age`` is counted at, and
    whether the query is confined to a few thousand residents (one committee), see ``compile_sql``."""

    today: date
    few_residents: bool = False


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the language.

    ``sql(ctx)`` returns a column expression over ``Resident`` (None for fields that only exist
    in Python, such as questionnaire answers); ``py(resident, today)`` reads the value from a
    mapping (None = missing). ``choices`` maps accepted literals to stored values
    (``"男"`` → ``"M"``); when set, other values are an error. ``py`` defaults to reading the
    key ``name``. An "int" field holds whole numbers, so ``< 1500.5`` compiles to ``<= 1500``.
    """

    name: str
    type: FieldType
    aliases: tuple[str, ...] = ()
    sql: Callable[[SqlContext], ColumnElement[Any]] | None = None
    py: Callable[[Mapping[str, Any], date], Any] | None = None
    choices: tuple[tuple[str, str], ...] = ()

    def value_of(self, resident: Mapping[str, Any], today: date) -> Any:
        if self.py is not None:
            return self.py(resident, today)
        return resident.get(self.name)


FIELDS: dict[str, FieldSpec] = {}


def register_field(spec: FieldSpec, registry: dict[str, FieldSpec] | None = None) -> FieldSpec:
    """Add a field (or replace one of the same name) to the default registry or to ``registry``."""
    target = FIELDS if registry is None else registry
    names = {spec.name, *spec.aliases}
    for other in list(target.values()):
        if other.name != spec.name and names & {other.name, *other.aliases}:
            raise ValueError(f"field name or alias clash between {spec.name!r} and {other.name!r}")
    target[spec.name] = spec
    return spec


def fields_with(extra: Iterable[FieldSpec], base: Mapping[str, FieldSpec] | None = None) -> dict[str, FieldSpec]:
    """A field registry for ``parse(text, fields)``: the default fields (or ``base``) plus ``extra``,
    e.g. the questionnaire fields policy files declare. An extra field never replaces a field
    already there; a name or alias clash raises ``ValueError``."""
    registry = dict(FIELDS if base is None else base)
    for spec in extra:
        if spec.name in registry:
            raise ValueError(f"field {spec.name!r} already exists")
        register_field(spec, registry)
    return registry


# Built-in tag codes that were renamed: the old code still reads as the new one (saved segments, habits).
RENAMED_TAGS = {"lives_alone": "living_alone"}


def canonical_tag_code(code: str) -> str:
    """The current code of a tag (``lives_alone`` is ``living_alone``, like the field it is made of)."""
    return RENAMED_TAGS.get(code, code)


def age_at(birth: date, today: date) -> int:
    """Whole years lived at ``today``; someone born on 29 February turns a year older on 1 March."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _py_age(resident: Mapping[str, Any], today: date) -> int | None:
    # A questionnaire may ask for the age itself; otherwise count it from the birth date.
    if resident.get("age") is not None:
        return resident["age"]
    birth = resident.get("birth_date")
    return None if birth is None else age_at(birth, today)


def _sql_household_size(_ctx: SqlContext) -> ColumnElement[Any]:
    other = aliased(Resident)
    members = (
        select(func.count(other.id))
        .where(other.household_id == Resident.household_id, other.status == ResidentStatus.active)
        .correlate(Resident)
        .scalar_subquery()
    )
    return case((Resident.household_id.is_(None), None), else_=members)


def _sql_verified(_ctx: SqlContext) -> ColumnElement[Any]:
    return select(Account.id).where(Account.resident_id == Resident.id).correlate(Resident).exists()


def _sql_committee(_ctx: SqlContext) -> ColumnElement[Any]:
    return select(Region.code).where(Region.id == Resident.committee_id).correlate(Resident).scalar_subquery()


def _column(col) -> Callable[[SqlContext], ColumnElement[Any]]:
    return lambda _ctx: col


for _spec in (
    # ``age`` has no column: compile_sql turns comparisons on it into birth-date ranges.
    FieldSpec("age", "int", ("年龄",), None, _py_age),
    FieldSpec("birth_date", "date", ("出生日期", "生日"), _column(Resident.birth_date)),
    FieldSpec("gender", "str", ("性别",), _column(Resident.gender),
              choices=(("M", "M"), ("F", "F"), ("m", "M"), ("f", "F"), ("男", "M"), ("女", "F"))),
    FieldSpec("building", "str", ("楼号", "楼"), _column(Resident.building)),
    FieldSpec("unit", "str", ("单元",), _column(Resident.unit)),
    FieldSpec("room", "str", ("房号", "室"), _column(Resident.room)),
    FieldSpec("compound", "str", ("小区",), _column(Resident.compound)),
    FieldSpec("household_size", "int", ("户人数",), _sql_household_size),
    FieldSpec("living_alone", "bool", ("独居",), _column(Resident.living_alone)),
    FieldSpec("hukou", "str", ("户籍",), _column(Resident.hukou)),
    FieldSpec("disability_level", "int", ("残疾等级",), _column(Resident.disability_level)),
    FieldSpec("monthly_income", "int", ("月收入",), _column(Resident.monthly_income)),
    FieldSpec("verified", "bool", ("已认证",), _sql_verified),
    FieldSpec("committee", "str", ("居委", "居委会"), _sql_committee),
):
    register_field(_spec)


# ---------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True, slots=True)
class Const:
    """A literal value; ``pos`` (1-based column) is kept for messages, not for equality."""

    value: Value
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    spec: FieldSpec = field(compare=False, hash=False, repr=False)
    pos: int = field(default=0, compare=False)


CompareOp: TypeAlias = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class Compare:
    field: Field
    op: CompareOp
    value: Const


@dataclass(frozen=True, slots=True)
class InList:
    field: Field
    values: tuple[Const, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between:
    field: Field
    low: Const
    high: Const


@dataclass(frozen=True, slots=True)
class HasTag:
    code: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Bool:
    """A constant condition: ``true`` selects everyone (in scope), ``false`` nobody."""

    value: bool


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


Expr: TypeAlias = Compare | InList | Between | HasTag | Bool | Not | And | Or

_OPS: dict[str, CompareOp] = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP: dict[str, CompareOp] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

# ---------------------------------------------------------------------------------------------
# Tokenizer

# Full-width punctuation and typographic quotes, so text typed with a Chinese IME parses.
_PUNCT = {
    "（": "(", "）": ")", "，": ",", "、": ",", "＝": "=", "＜": "<", "＞": ">", "！": "!",
    "≥": ">=", "≤": "<=", "≠": "!=",
}
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "＂": "＂", "＇": "＇"}
_CLOSERS = {'"': {'"'}, "'": {"'"}, "“": {"”", '"'}, "‘": {"’", "'"}, "「": {"」"},
            "『": {"』"}, "＂": {"＂", '"'}, "＇": {"＇", "'"}}

_KEYWORDS = {
    "and": "and", "且": "and", "并且": "and", "而且": "and",
    "or": "or", "或": "or", "或者": "or",
    "not": "not", "非": "not",
    "in": "in", "在": "in",
    "true": "true", "是": "true",
    "false": "false", "否": "false",
}
_FUNCTIONS = {
    "has_tag": "has_tag", "有标签": "has_tag", "between": "between", "介于": "between",
    "date": "date", "日期": "date",
}
_CJK_STOPS = ("并且", "而且", "或者", "且", "或", "非")

_DATE_RE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?![\w.])")
_NUMBER_RE = re.compile(r"\d+(\.\d+)?")
_ASCII_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num, str, date, ident, kw, op, "(", ")", ",", "-", end
    text: str
    pos: int  # 1-based column
    value: Any = None


def _is_cjk(ch: str) -> bool:
    return ch.isalpha() and not ch.isascii()


def tokenize(text: str, fields: Mapping[str, FieldSpec] | None = None) -> list[Token]:
    """Split ``text`` into tokens; runs of Chinese characters are cut at known words and keywords."""
    registry = FIELDS if fields is None else fields
    known_cjk = sorted(
        {w for w in (*_KEYWORDS, *_FUNCTIONS) if not w.isascii()}
        | {a for s in registry.values() for a in (s.name, *s.aliases) if not a.isascii()},
        key=len, reverse=True,
    )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        pos = i + 1
        if ch.isspace() or ch == "\u3000":
            i += 1
            continue
        if ch in _QUOTES:
            closers = _CLOSERS[ch]
            j, out = i + 1, []
            while j < n and text[j] not in closers:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                out.append(text[j])
                j += 1
            if j >= n:
                raise ExpressionError(pos, _("unterminated text: a closing quote is missing"))
            tokens.append(Token("str", text[i:j + 1], pos, "".join(out)))
            i = j + 1
            continue
        p = _PUNCT.get(ch, ch)
        if p in "()," and len(p) == 1:
            tokens.append(Token(p, ch, pos))
            i += 1
            continue
        if p in ("=", "<", ">", "!", ">=", "<=", "!="):
            nxt = _PUNCT.get(text[i + 1], text[i + 1]) if i + 1 < n else ""
            if len(p) == 2:
                op, i = p, i + 1
            elif nxt == "=":
                op, i = p + "=", i + 2
            elif p == "!":
                raise ExpressionError(pos, _("unexpected character \"{char}\"").format(char=ch))
            else:
                op, i = p, i + 1
            tokens.append(Token("op", "==" if op == "=" else op, pos))
            continue
        if ch == "-":
            tokens.append(Token("-", ch, pos))
            i += 1
            continue
        if ch.isdigit() and ch.isascii():
            m = _DATE_RE.match(text, i)
            if m:
                tokens.append(Token("date", m.group(), pos, _parse_date(m.group(), pos)))
                i = m.end()
                continue
            m = _NUMBER_RE.match(text, i)
            assert m is not None  # ch is an ASCII digit, so \d+ matches here
            raw = m.group()
            whole, _dot, decimals = raw.partition(".")
            if len(whole.lstrip("0")) > len(str(MAX_NUMBER)) or Decimal(raw) > MAX_NUMBER:
                raise ExpressionError(pos, _("the number {number} is too large (at most {limit})").format(
                    number=clip(raw, 20), limit=MAX_NUMBER))
            if len(decimals) > MAX_DECIMALS:
                raise ExpressionError(pos, _("the number {number} has too many decimal places (at most "
                                             "{limit})").format(number=clip(raw, 20), limit=MAX_DECIMALS))
            value: Value = Decimal(raw) if "." in raw else int(raw)
            tokens.append(Token("num", raw, pos, value))
            i = m.end()
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _ASCII_IDENT_RE.match(text, i)
            assert m is not None  # ch is an ASCII letter or "_", so the identifier pattern matches
            word = m.group()
            low = word.lower()
            if low in _KEYWORDS:
                tokens.append(Token("kw", word, pos, _KEYWORDS[low]))
            else:
                tokens.append(Token("ident", word, pos, word))
            i = m.end()
            continue
        if _is_cjk(ch):
            found = next((w for w in known_cjk if text.startswith(w, i)), None)
            end = i + len(found) if found else i
            if found is not None and end < n and _is_cjk(text[end]) and not any(
                    text.startswith(w, end) for w in known_cjk):
                found = None  # 年龄龄 is a misspelt word, not 年龄 followed by 龄
            if found is None:
                # An unknown word: take the run of letters up to the next keyword, for the message.
                j = i + 1
                while j < n and (_is_cjk(text[j]) or text[j].isdigit() or text[j] == "_") and not any(
                        text.startswith(s, j) for s in _CJK_STOPS):
                    j += 1
                found = text[i:j]
            word = found
            if word in _KEYWORDS:
                tokens.append(Token("kw", word, pos, _KEYWORDS[word]))
            else:
                tokens.append(Token("ident", word, pos, word))
            i += len(word)
            continue
        raise ExpressionError(pos, _("unexpected character \"{char}\"").format(char=ch))
    tokens.append(Token("end", "", n + 1))
    return tokens


def _parse_date(raw: str, pos: int) -> date:
    try:
        y, m, d = (int(part) for part in raw.strip().split("-"))
        return date(y, m, d)
    except ValueError:
        raise ExpressionError(pos, _("invalid date \"{text}\" (use YYYY-MM-DD)").format(text=raw)) from None


# ---------------------------------------------------------------------------------------------
# Parser

_TYPE_NAMES = {
    "int": N_("a number"), "decimal": N_("a number"), "str": N_("text"), "date": N_("a date"),
    "bool": N_("true or false"),
}


def _type_of(value: Value) -> FieldType:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, date):
        return "date"
    return "str"


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FieldSpec]) -> None:
        self.fields = fields
        self.aliases = {a: s for s in fields.values() for a in (s.name, *s.aliases)}
        self.tokens = tokenize(text, fields)
        self.i = 0
        self.depth = 0
        self.nodes = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return tok.kind == "kw" and tok.value == word

    def count(self, pos: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(pos, _("expression is too large (at most {limit} parts)").format(
                limit=MAX_NODES))

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(pos, _("expression is nested too deeply (at most {limit} levels)").format(
                limit=MAX_DEPTH))

    def unexpected(self, tok: Token) -> ExpressionError:
        if tok.kind == "end":
            return ExpressionError(tok.pos, _("unexpected end of expression"))
        return ExpressionError(tok.pos, _("unexpected \"{token}\"").format(token=tok.text))

    def expect(self, kind: str, shown: str) -> Token:
        tok = self.tok
        if tok.kind != kind:
            if tok.kind == "end":
                raise ExpressionError(tok.pos, _("unexpected end of expression: \"{token}\" expected").format(
                    token=shown))
            raise ExpressionError(tok.pos, _("\"{expected}\" expected instead of \"{token}\"").format(
                expected=shown, token=tok.text))
        return self.advance()

    # -- grammar
    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise ExpressionError(self.tok.pos, _("the expression is empty"))
        expr = self.parse_or()
        if self.tok.kind != "end":
            raise self.unexpected(self.tok)
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.is_kw("or"):
            self.count(self.advance().pos)
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.is_kw("and"):
            self.count(self.advance().pos)
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Expr:
        if self.is_kw("not"):
            tok = self.advance()
            self.count(tok.pos)
            self.enter(tok.pos)
            item = self.parse_unary()
            self.depth -= 1
            return Not(item)
        return self.parse_primary()

    def parse_primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "(":
            self.advance()
            self.enter(tok.pos)
            expr = self.parse_or()
            self.depth -= 1
            self.expect(")", ")")
            return expr
        if (tok.kind == "ident" and self.tokens[self.i + 1].kind == "(" and tok.value not in self.aliases
                and self._function(tok) != "date"):
            return self.parse_call()
        if tok.kind == "kw" and tok.value in ("true", "false") and not self._operator_follows():
            self.advance()
            self.count(tok.pos)
            return Bool(tok.value == "true")
        return self.parse_comparison()

    def _operator_follows(self) -> bool:
        return self.tokens[self.i + 1].kind == "op" or self.is_kw("in", 1) or (
            self.is_kw("not", 1) and self.is_kw("in", 2))

    @staticmethod
    def _function(tok: Token) -> str | None:
        return _FUNCTIONS.get(tok.value) or _FUNCTIONS.get(tok.value.lower())

    def parse_call(self) -> Expr:
        tok = self.advance()
        name = self._function(tok)
        if name is None:
            hint = _suggest(tok.value, _FUNCTIONS)
            if hint:
                raise ExpressionError(tok.pos, _(
                    "unknown function \"{name}\" — did you mean \"{hint}\"?").format(
                    name=tok.value, hint=hint))
            raise ExpressionError(tok.pos, _("unknown function \"{name}\"").format(name=tok.value))
        self.count(tok.pos)
        self.enter(tok.pos)
        self.expect("(", "(")
        if name == "has_tag":
            arg = self.tok
            if arg.kind != "str":
                raise ExpressionError(arg.pos, _(
                    "has_tag() takes a tag code in quotes, e.g. has_tag(\"aged_80\")"))
            self.advance()
            self.expect(")", ")")
            self.depth -= 1
            code = arg.value.strip()
            if not code:
                raise ExpressionError(arg.pos, _("the tag code is empty"))
            return HasTag(canonical_tag_code(code), tok.pos)
        # between(field, low, high)
        fld = self.parse_field()
        self.expect(",", ",")
        low = self.parse_value()
        self.expect(",", ",")
        high = self.parse_value()
        self.expect(")", ")")
        self.depth -= 1
        self.check_order(fld, "between", low)
        self.check_order(fld, "between", high)
        return Between(fld, self.coerce(fld, low), self.coerce(fld, high))

    def parse_comparison(self) -> Expr:
        tok = self.tok
        left = self.parse_operand()
        if self.tok.kind == "op":
            op_tok = self.advance()
            right = self.parse_operand(left)
            if isinstance(left, Field) and isinstance(right, Const):
                fld, op, value = left, _OPS[op_tok.text], right
            elif isinstance(left, Const) and isinstance(right, Field):
                fld, op, value = right, _FLIP[op_tok.text], left
            else:
                raise ExpressionError(op_tok.pos, _("compare a field with a value, such as age >= 80"))
            self.count(op_tok.pos)
            if op not in ("==", "!="):
                self.check_order(fld, op, value)
            return Compare(fld, op, self.coerce(fld, value))
        negated = False
        if self.is_kw("not") and self.is_kw("in", 1):
            self.advance()
            negated = True
        if self.is_kw("in"):
            in_tok = self.advance()
            if not isinstance(left, Field):
                raise ExpressionError(tok.pos, _("a field name is expected before \"in\""))
            self.count(in_tok.pos)
            values = self.parse_list(left)
            return InList(left, tuple(self.coerce(left, v) for v in values), negated)
        if isinstance(left, Field):
            if left.spec.type == "bool":
                # A yes/no field on its own reads as "is true": 独居 且 年龄 >= 80.
                return Compare(left, "==", Const(True, left.pos))
            if self.tok.kind == "end":
                raise ExpressionError(self.tok.pos, _("unexpected end of expression: a comparison such as "
                                                      "{field} == … is expected").format(field=left.name))
        raise ExpressionError(self.tok.pos, _("a comparison is expected, such as age >= 80"))

    def parse_list(self, fld: Field) -> list[Const]:
        self.expect("(", "(")
        values = [self.parse_listed(fld)]
        while self.tok.kind == ",":
            self.advance()
            if self.tok.kind == ")":  # a trailing comma is harmless
                break
            values.append(self.parse_listed(fld))
            if len(values) > MAX_LIST:
                raise ExpressionError(values[-1].pos, _(
                    "too many values in the list (at most {limit})").format(limit=MAX_LIST))
        self.expect(")", ")")
        return values

    def parse_listed(self, fld: Field) -> Const:
        value = self.parse_operand(fld)
        if isinstance(value, Field):
            raise ExpressionError(value.pos, _("a value is expected instead of \"{token}\"").format(
                token=value.name))
        return value

    def parse_operand(self, other: Field | Const | None = None) -> Field | Const:
        tok = self.tok
        if tok.kind == "end":
            raise self.unexpected(tok)
        if (isinstance(other, Field) and tok.kind == "ident" and tok.value not in self.aliases
                and tok.value in dict(other.spec.choices)):
            # 性别 == 男: a listed choice may go without quotes.
            self.advance()
            self.count(tok.pos)
            return Const(tok.value, tok.pos)
        if tok.kind == "ident" and tok.value not in self.aliases and self._function(tok) == "date":
            return self.parse_value()
        if tok.kind == "ident":
            return self.parse_field()
        return self.parse_value()

    def parse_field(self) -> Field:
        tok = self.tok
        if tok.kind != "ident":
            if tok.kind == "end":
                raise ExpressionError(tok.pos, _("unexpected end of expression: a field name is expected"))
            raise ExpressionError(tok.pos, _("a field name is expected instead of \"{token}\"").format(
                token=tok.text))
        self.advance()
        spec = self.aliases.get(tok.value) or self.aliases.get(tok.value.lower())
        if spec is None:
            hint = _suggest(tok.value, self.aliases)
            if hint:
                raise ExpressionError(tok.pos, _(
                    "unknown field \"{name}\" — did you mean \"{hint}\"?").format(name=tok.value, hint=hint))
            raise ExpressionError(tok.pos, _("unknown field \"{name}\"").format(name=tok.value))
        self.count(tok.pos)
        return Field(spec.name, spec, tok.pos)

    def parse_value(self) -> Const:
        tok = self.tok
        if tok.kind == "-":
            self.advance()
            num = self.tok
            if num.kind != "num":
                raise self.unexpected(num)
            self.advance()
            self.count(tok.pos)
            return Const(-num.value, tok.pos)
        if tok.kind in ("num", "str", "date"):
            self.advance()
            self.count(tok.pos)
            return Const(tok.value, tok.pos)
        if tok.kind == "kw" and tok.value in ("true", "false"):
            self.advance()
            self.count(tok.pos)
            return Const(tok.value == "true", tok.pos)
        if tok.kind == "ident" and self._function(tok) == "date":
            self.advance()
            self.expect("(", "(")
            arg = self.tok
            if arg.kind not in ("str", "date"):
                raise ExpressionError(arg.pos, _("date() takes a date in quotes, e.g. date(\"2026-01-01\")"))
            self.advance()
            self.expect(")", ")")
            self.count(tok.pos)
            value = arg.value if arg.kind == "date" else _parse_date(arg.value, arg.pos)
            return Const(value, tok.pos)
        if tok.kind == "end":
            raise ExpressionError(tok.pos, _("unexpected end of expression: a value is expected"))
        raise ExpressionError(tok.pos, _("a value is expected instead of \"{token}\"").format(token=tok.text))

    # -- types
    def check_order(self, fld: Field, op: str, value: Const) -> None:
        if fld.spec.type in ("str", "bool"):
            raise ExpressionError(value.pos, _(
                "\"{op}\" does not apply to {field} ({type}); use ==, != or in").format(
                op=op, field=fld.name, type=_(_TYPE_NAMES[fld.spec.type])))

    def coerce(self, fld: Field, const: Const) -> Const:
        ftype, vtype, value = fld.spec.type, _type_of(const.value), const.value
        ok = (
            ftype == vtype
            or (ftype in ("int", "decimal") and vtype in ("int", "decimal"))
            or (ftype == "str" and vtype == "int")
            or (ftype == "date" and vtype == "str")
        )
        if not ok:
            raise ExpressionError(const.pos, _(
                "{field} is {field_type} and cannot be compared with {value_type}").format(
                field=fld.name, field_type=_(_TYPE_NAMES[ftype]), value_type=_(_TYPE_NAMES[vtype])))
        if ftype == "str" and vtype == "int":
            value = str(value)  # 楼号 == 3 means building "3"
        elif ftype == "date" and isinstance(value, str):
            value = _parse_date(value, const.pos)
        if fld.spec.choices:
            mapping = dict(fld.spec.choices)
            if not isinstance(value, str) or value not in mapping:
                raise ExpressionError(const.pos, _("{field} must be one of: {choices}").format(
                    field=fld.name, choices=", ".join(dict.fromkeys(mapping))))
            value = mapping[value]
        return Const(value, const.pos) if value is not const.value else const


def parse(text: str, fields: Mapping[str, FieldSpec] | None = None) -> Expr:
    """Parse ``text`` into a tree, or raise ``ExpressionError`` with a column and a translated message."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(MAX_LENGTH + 1, _("expression is too long ({length} characters, at most "
                                                "{limit})").format(length=len(text), limit=MAX_LENGTH))
    return _Parser(text, FIELDS if fields is None else fields).parse()


def as_tree(expression: str | Expr, fields: Mapping[str, FieldSpec] | None = None) -> Expr:
    return parse(expression, fields) if isinstance(expression, str) else expression


# ---------------------------------------------------------------------------------------------
# Back to text


def _literal_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return f'date("{value.isoformat()}")'
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_text(expr: Expr) -> str:
    """The canonical English text of a tree; ``parse(to_text(t)) == t``."""
    match expr:
        case Compare(fld, op, value):
            return f"{fld.name} {op} {_literal_text(value.value)}"
        case InList(fld, values, negated):
            items = ", ".join(_literal_text(v.value) for v in values)
            return f"{fld.name} {'not in' if negated else 'in'} ({items})"
        case Between(fld, low, high):
            return f"between({fld.name}, {_literal_text(low.value)}, {_literal_text(high.value)})"
        case HasTag(code):
            return f"has_tag({_literal_text(code)})"
        case Bool(value):
            return "true" if value else "false"
        case Not(item):
            inner = to_text(item)
            return f"not ({inner})" if isinstance(item, And | Or) else f"not {inner}"
        case And(items):
            return " and ".join(f"({to_text(i)})" if isinstance(i, And | Or) else to_text(i) for i in items)
        case Or(items):
            return " or ".join(f"({to_text(i)})" if isinstance(i, Or) else to_text(i) for i in items)
    raise TypeError(f"not an expression: {expr!r}")


def walk(expr: Expr) -> Iterable[Expr]:
    yield expr
    match expr:
        case Not(item):
            yield from walk(item)
        case And(items) | Or(items):
            for item in items:
                yield from walk(item)


def fields_used(expr: Expr) -> set[str]:
    return {n.field.name for n in walk(expr) if isinstance(n, Compare | InList | Between)}


def tags_used(expr: Expr) -> set[str]:
    return {n.code for n in walk(expr) if isinstance(n, HasTag)}


# ---------------------------------------------------------------------------------------------
# Python evaluation (three-valued)


def _compare(left: Any, op: str, right: Any) -> bool:
    match op:
        case "==":
            return left == right
        case "!=":
            return left != right
        case "<":
            return left < right
        case "<=":
            return left <= right
        case ">":
            return left > right
        case _:
            return left >= right


def _eval(expr: Expr, resident: Mapping[str, Any], today: date, tags: set[str] | None) -> Truth:
    match expr:
        case Compare(fld, op, value):
            v = fld.spec.value_of(resident, today)
            return Truth.UNKNOWN if v is None else Truth.of(_compare(v, op, value.value))
        case InList(fld, values, negated):
            v = fld.spec.value_of(resident, today)
            if v is None:
                return Truth.UNKNOWN
            return Truth.of(any(v == c.value for c in values) != negated)
        case Between(fld, low, high):
            v = fld.spec.value_of(resident, today)
            return Truth.UNKNOWN if v is None else Truth.of(low.value <= v <= high.value)
        case HasTag(code):
            return Truth.UNKNOWN if tags is None else Truth.of(code in tags)
        case Bool(value):
            return Truth.of(value)
        case Not(item):
            return ~_eval(item, resident, today, tags)
        case And(items):
            result = Truth.TRUE
            for item in items:
                result = result & _eval(item, resident, today, tags)
                if result is Truth.FALSE:
                    break
            return result
        case Or(items):
            result = Truth.FALSE
            for item in items:
                result = result | _eval(item, resident, today, tags)
                if result is Truth.TRUE:
                    break
            return result
    raise TypeError(f"not an expression: {expr!r}")


def evaluate(expr: str | Expr, resident: Mapping[str, Any], *, today: date,
             tags: set[str] | None = None) -> Truth:
    """TRUE, FALSE or UNKNOWN (a missing value, or ``tags`` not given, that the answer depends on)."""
    return _eval(as_tree(expr), resident, today, tags)


def _candidates(spec: FieldSpec, consts: list[Value]) -> list[Any]:
    """A few values of a field that between them reach every outcome of the given comparisons."""
    out: list[Any] = []
    if spec.type == "bool":
        return [True, False]
    for c in consts:
        # The parser coerced every literal to its field's type: numbers for int/decimal, dates for date.
        if spec.type in ("int", "decimal") and isinstance(c, int | Decimal):
            whole = spec.type == "int"
            lo, hi = (math.floor(c), math.ceil(c)) if whole else (c, c)
            step = 1 if whole else Decimal("0.5")
            out += [lo - step, lo, c, hi, hi + step] if whole else [c - step, c, c + step]
        elif spec.type == "date" and isinstance(c, date):
            out += [c - timedelta(days=1), c, c + timedelta(days=1)]
        else:
            out.append(c)
    if spec.type == "str":
        out.append("\x00other")  # a value equal to none of the literals
    elif not out:
        out.append(0 if spec.type != "date" else date(2000, 1, 1))
    if spec.type == "int":
        out = [v for v in out if isinstance(v, int) or v == int(v)]
        out = [int(v) for v in out]
    return list(dict.fromkeys(out))


_MAX_COMBINATIONS = 20_000


def unknown_fields(expr: str | Expr, resident: Mapping[str, Any], *, today: date,
                   tags: set[str] | None = None) -> set[str]:
    """The missing fields whose values could still change the answer (empty when it is decided).

    A missing field counts when, for some values of the other missing fields, two of its own
    values give different answers. Tags, when unknown, are named ``tag:<code>``.
    """
    tree = as_tree(expr)
    if _eval(tree, resident, today, tags) is not Truth.UNKNOWN:
        return set()
    atoms: dict[str, tuple[FieldSpec, list[Value]]] = {}
    for node in walk(tree):
        if isinstance(node, Compare | InList | Between):
            spec = node.field.spec
            if spec.value_of(resident, today) is not None:
                continue
            consts = ([node.value.value] if isinstance(node, Compare)
                      else [c.value for c in node.values] if isinstance(node, InList)
                      else [node.low.value, node.high.value])
            atoms.setdefault(spec.name, (spec, []))[1].extend(consts)
    names = sorted(atoms)
    choices = [_candidates(*atoms[name]) for name in names]
    tag_codes = sorted(tags_used(tree)) if tags is None else []
    combos = math.prod(len(c) for c in choices) * 2 ** len(tag_codes)
    if combos > _MAX_COMBINATIONS:
        return set(names) | {f"tag:{c}" for c in tag_codes}
    keys = names + [f"tag:{c}" for c in tag_codes]
    domains = choices + [[False, True]] * len(tag_codes)
    results: dict[tuple, Truth] = {}

    def assign(k: int, current: list[Any]) -> None:
        if k == len(keys):
            values = dict(resident)
            values.update(zip(names, current[:len(names)], strict=True))
            given = tags
            if tag_codes:
                given = {c for c, on in zip(tag_codes, current[len(names):], strict=True) if on}
            results[tuple(current)] = _eval(_with_values(tree, names), values, today, given)
            return
        for v in domains[k]:
            assign(k + 1, [*current, v])

    assign(0, [])
    relevant = set()
    for k, key in enumerate(keys):
        seen: dict[tuple, Truth] = {}
        for combo, truth in results.items():
            rest = combo[:k] + combo[k + 1:]
            if seen.setdefault(rest, truth) is not truth:
                relevant.add(key)
                break
    return relevant


def _with_values(tree: Expr, names: list[str]) -> Expr:
    """The tree with the named fields read straight from the mapping (their hypothetical values)."""
    def direct(fld: Field) -> Field:
        if fld.name not in names:
            return fld
        return replace(fld, spec=replace(fld.spec, py=None))

    def go(e: Expr) -> Expr:
        match e:
            case Compare(fld, op, value):
                return Compare(direct(fld), op, value)
            case InList(fld, values, negated):
                return InList(direct(fld), values, negated)
            case Between(fld, low, high):
                return Between(direct(fld), low, high)
            case Not(item):
                return Not(go(item))
            case And(items):
                return And(tuple(go(i) for i in items))
            case Or(items):
                return Or(tuple(go(i) for i in items))
        return e

    return go(tree)


# ---------------------------------------------------------------------------------------------
# SQL


def _never(col: SQLColumnExpression[Any]) -> ColumnElement[bool]:
    # FALSE for a known value, NULL for a missing one (a plain false() would turn not-unknown true).
    return col != col


def _always(col: SQLColumnExpression[Any]) -> ColumnElement[bool]:
    return col == col


def _number(value: Value) -> int | Decimal:
    """A literal of a number field (the parser coerced it to one)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"not a number: {value!r}")
    return value


def _whole(op: str, value: Value) -> list[tuple[str, int]] | bool:
    """``x op value`` over whole numbers, as integer comparisons (True/False: always/never)."""
    number = _number(value)
    if isinstance(number, int) or number == number.to_integral_value():
        return [(op, int(number))]
    lo, hi = math.floor(number), math.ceil(number)
    parts: dict[str, list[tuple[str, int]] | bool] = {
        "<": [("<=", lo)], "<=": [("<=", lo)], ">": [(">=", hi)], ">=": [(">=", hi)], "==": False, "!=": True}
    return parts[op]


def _birth_cutoff(years: int, today: date) -> date | None:
    """The latest birth date of someone at least ``years`` old today (None: out of the calendar)."""
    year = today.year - years
    if not 1 <= year <= 9999:
        return None
    try:
        return today.replace(year=year)
    except ValueError:  # 29 February in a common year: the birthday has not come yet
        return date(year, 2, 28)


def _age_at_least(years: int, today: date) -> ColumnElement[bool]:
    birth = Resident.birth_date
    cutoff = _birth_cutoff(years, today)
    if cutoff is None:
        return _never(birth) if today.year - years < 1 else _always(birth)
    return birth <= cutoff


def _age_below(years: int, today: date) -> ColumnElement[bool]:
    birth = Resident.birth_date
    cutoff = _birth_cutoff(years, today)
    if cutoff is None:
        return _always(birth) if today.year - years < 1 else _never(birth)
    return birth > cutoff


def _age_sql(op: str, value: Value, today: date) -> ColumnElement[bool]:
    birth = Resident.birth_date
    parts = _whole(op, value)
    if parts is True:
        return _always(birth)
    if parts is False:
        return _never(birth)
    ((op, n),) = parts
    match op:
        case ">=":
            return _age_at_least(n, today)
        case ">":
            return _age_at_least(n + 1, today)
        case "<":
            return _age_below(n, today)
        case "<=":
            return _age_below(n + 1, today)
        case "==":
            return and_(_age_at_least(n, today), _age_below(n + 1, today))
        case _:
            return or_(_age_below(n, today), _age_at_least(n + 1, today))


def _field_sql(fld: Field, ctx: SqlContext) -> ColumnElement[Any]:
    if fld.spec.sql is None:
        raise ExpressionError(fld.pos, _("field \"{name}\" cannot be used in a database filter").format(
            name=fld.name))
    return fld.spec.sql(ctx)


def _bind(fld: Field, value: Value) -> Any:
    if fld.spec.type == "decimal":
        return literal(value, Numeric(30, 10))
    return value


_SQL_OPERATORS = {"==": operators.eq, "!=": operators.ne, "<": operators.lt, "<=": operators.le,
                  ">": operators.gt, ">=": operators.ge}


def _compare_sql(fld: Field, op: str, value: Value, ctx: SqlContext) -> ColumnElement[bool]:
    if fld.name == "age" and fld.spec.sql is None:
        return _age_sql(op, value, ctx.today)
    col = _field_sql(fld, ctx)
    if fld.spec.type == "int":
        parts = _whole(op, value)
        if parts is True:
            return _always(col)
        if parts is False:
            return _never(col)
        ((op, value),) = parts
    if fld.spec.type == "bool":
        return col if (op == "==") == bool(value) else not_(col)
    return col.operate(_SQL_OPERATORS[op], _bind(fld, value))


def _sql(expr: Expr, ctx: SqlContext) -> ColumnElement[bool]:
    match expr:
        case Compare(fld, op, value):
            return _compare_sql(fld, op, value.value, ctx)
        case InList(fld, values, negated):
            parts = [_compare_sql(fld, "==", v.value, ctx) for v in values]
            if fld.name != "age" and fld.spec.type != "bool":
                kept = [v.value for v in values
                        if fld.spec.type != "int" or _whole("==", v.value) is not False]
                if kept:
                    col = _field_sql(fld, ctx)
                    kept = [int(_number(v)) if fld.spec.type == "int" else _bind(fld, v) for v in kept]
                    return col.not_in(kept) if negated else col.in_(kept)
            return not_(or_(*parts)) if negated else or_(*parts)
        case Between(fld, low, high):
            return and_(_compare_sql(fld, ">=", low.value, ctx), _compare_sql(fld, "<=", high.value, ctx))
        case HasTag(code):
            return _HasTag((code,), ctx.few_residents)
        case Bool(value):
            return true() if value else false()
        case Not(item):
            return not_(_sql(item, ctx))
        case And(items):
            return and_(*(_sql(i, ctx) for i in items))
        case Or(items):
            # has_tag(a) or has_tag(b) … becomes one membership test over both tags: one tagged set
            # to build instead of one per tag (has_tag is never unknown, so this is exact).
            codes = [i.code for i in items if isinstance(i, HasTag)]
            rest = [_sql(i, ctx) for i in items if not isinstance(i, HasTag)]
            tagged = [_HasTag(tuple(codes), ctx.few_residents)] if codes else []
            return or_(*tagged, *rest)
    raise TypeError(f"not an expression: {expr!r}")


class _HasTag(ColumnElement[bool]):
    """``has_tag(a) or has_tag(b) …`` over ``Resident``, one construct for the OR of its codes.

    On PostgreSQL it reads ``residents.tag_ids``, which triggers keep in step with resident_tags and a
    GIN index answers (see services.models.tags). Elsewhere, over many residents, it is ``resident.id
    IN (residents with one of the tags)``: SQLite materialises that set once and looks the residents
    up by id; over one committee's residents (``few_residents``) a per-resident EXISTS probe is faster
    (bench segments, 1M residents, one committee: 117 → 10 ms; city-wide the probe is 13× slower).
    """

    inherit_cache = False  # the SQL depends on the dialect; these statements are not cached
    type = Boolean()
    _is_implicitly_boolean = True  # a condition in itself: no "= 1" on SQLite

    def __init__(self, codes: tuple[str, ...], few_residents: bool) -> None:
        self.codes = codes
        self.few_residents = few_residents

    def _negate(self) -> ColumnElement[bool]:
        return UnaryExpression(self.self_group(), operator=operators.inv, type_=Boolean())

    def self_group(self, against=None) -> ColumnElement[bool]:
        return Grouping(self)

    def tag_ids(self) -> Select:
        # A database not yet migrated may still hold a renamed built-in under its former code.
        former = [old for old, new in RENAMED_TAGS.items() if new in self.codes]
        return select(Tag.id).where(Tag.code.in_([*self.codes, *former]))


@compiles(_HasTag)
def _has_tag_portable(element: _HasTag, compiler, **kw) -> str:
    if element.few_residents:
        probe = exists().where(ResidentTag.resident_id == Resident.id, ResidentTag.tag_id.in_(element.tag_ids()))
        return compiler.process(probe, **kw)
    tagged = select(ResidentTag.resident_id).where(ResidentTag.tag_id.in_(element.tag_ids()))
    return compiler.process(Resident.id.in_(tagged), **kw)


@compiles(_HasTag, "postgresql")
def _has_tag_postgresql(element: _HasTag, compiler, **kw) -> str:
    tag_ids = literal_column(f"{Resident.__tablename__}.tag_ids", ARRAY(BigInteger))
    return compiler.process(tag_ids.op("&&")(func.array(element.tag_ids().scalar_subquery())), **kw)


def compile_sql(expr: str | Expr, *, today: date, few_residents: bool = False) -> ColumnElement[bool]:
    """A filter over ``Resident`` selecting exactly the rows the expression is TRUE for.

    ``few_residents``: the rest of the query confines it to one committee or so; this only changes
    how the filter is computed (e.g. has_tag probing per resident), never what it selects."""
    return _sql(as_tree(expr), SqlContext(today, few_residents))


__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_LIST",
    "MAX_NODES",
    "MAX_NUMBER",
    "RENAMED_TAGS",
    "And",
    "Between",
    "Bool",
    "Compare",
    "Const",
    "Expr",
    "ExpressionError",
    "Field",
    "FieldSpec",
    "HasTag",
    "InList",
    "Not",
    "Or",
    "SqlContext",
    "Truth",
    "age_at",
    "as_tree",
    "canonical_tag_code",
    "compile_sql",
    "evaluate",
    "fields_used",
    "fields_with",
    "parse",
    "register_field",
    "tags_used",
    "to_text",
    "tokenize",
    "unknown_fields",
    "walk",
]
