"""Loading the catalogue from YAML files (``communitybot policies load DIR``).

Every file is read and checked before anything is written: a bad rule is reported with its file,
line, policy and column; one problem anywhere loads nothing (the caller commits once). A policy's
versions are replaced by the file's (the file is the history: an old version stays as long as the
file lists it); policies absent from the files are left as they are (``active: false`` retires one).

The file format (see ``policies/sample/*.yaml``)::

    sample: true                # sample data, not advice (shown to residents)
    fields:                     # questionnaire fields: data the registry lacks
      - name: has_ltc_assessment
        type: bool              # int, decimal, bool, str (needs choices), date
        label: {zh: …, en: …}
        question: {zh: …, en: …}
        choices: [{value: …, zh: …, en: …}]   # str fields; optional for int
        min: 0                  # numbers: the accepted range
        max: 100000
    policies:
      - code: old_age_allowance
        region: "310000"        # optional: the region it applies to (default everywhere)
        active: true
        title: {zh: …, en: …}
        summary: {zh: …, en: …}
        rule: 'age >= 65 and hukou == "local"'
        benefit: {text: {zh, en}, unit: {zh, en}, amounts: [{when: "between(age, 65, 69)", amount: 75}]}
        apply: {where: {zh, en}, documents: {zh: […], en: […]}, deadline: 2026-12-31}
        source: "…"
        valid_from: 2024-01-01
        valid_to: null
        versions:               # later versions: valid_from plus what changes
          - {valid_from: 2026-07-01, benefit: {…}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.expressions import FIELDS, ExpressionError, compile_sql, parse
from services.i18n import _
from services.models import Policy, PolicyField, PolicyFieldType, PolicyVersion, Region
from services.policies.catalogue import Choice, QuestionField
from services.policies.matching import sql_fields

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
FIELD_TYPES = {t.value for t in PolicyFieldType}
VERSIONED = ("title", "summary", "rule", "benefit", "apply", "source", "valid_to")


class CatalogueError(ValueError):
    """The files were refused; ``problems`` lists each one (nothing was loaded)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class LoadResult:
    files: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Lines(dict):
    """A mapping from the file that remembers the line of each key (1-based)."""

    lines: dict[str, int]
    line: int


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Lines:
    loader.flatten_mapping(node)
    out = _Lines()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _line(node: Any, key: str | None = None) -> int:
    if isinstance(node, _Lines):
        return node.lines.get(key, node.line) if key else node.line
    return 0


# ---------------------------------------------------------------------------------------------
# Checking


class _Checker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []

    def problem(self, line: int, where: str | None, message: str) -> None:
        head = f"{self.name}:{line}" if line else self.name
        if where:
            head += ": " + _("policy {code}").format(code=where)
        self.problems.append(f"{head}: {message}")

    def texts(self, node: Any, key: str, where: str | None, *, required: bool = True) -> dict[str, str] | None:
        value = node.get(key) if isinstance(node, Mapping) else None
        if value is None and not required:
            return None
        if not isinstance(value, Mapping) or not all(_filled(value.get(k)) for k in ("zh", "en")):
            self.problem(_line(node, key), where, _("\"{key}\" needs a text in zh and en").format(key=key))
            return None
        return {"zh": value["zh"].strip(), "en": value["en"].strip()}

    def a_date(self, node: Mapping, key: str, where: str | None, *, required: bool) -> date | None:
        value = node.get(key)
        if value is None:
            if required:
                self.problem(_line(node, key), where, _("\"{key}\" is required (a date, YYYY-MM-DD)").format(key=key))
            return None
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, date):
            self.problem(_line(node, key), where, _("\"{key}\" must be a date, YYYY-MM-DD").format(key=key))
            return None
        return value

    def number(self, node: Mapping, key: str, where: str | None) -> Decimal | None:
        value = node.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            return Decimal(str(value))
        except InvalidOperation:
            self.problem(_line(node, key), where, _("\"{key}\" must be a number").format(key=key))
            return None


def _check_field(ck: _Checker, node: Any) -> QuestionField | None:
    if not isinstance(node, Mapping):
        ck.problem(_line(node), None, _("a field must be a mapping with name, type, label and question"))
        return None
    name = node.get("name")
    if not isinstance(name, str) or not CODE_RE.match(name):
        ck.problem(_line(node, "name"), None, _("field name \"{name}\" must be lower-case letters, digits and _")
                   .format(name=name))
        return None
    if name in FIELDS or any(name in s.aliases for s in FIELDS.values()):
        ck.problem(_line(node, "name"), None, _("field \"{name}\" is a registry field; the registry answers it")
                   .format(name=name))
        return None
    ftype = node.get("type")
    if ftype not in FIELD_TYPES:
        ck.problem(_line(node, "type"), None, _("field {name}: type must be one of {types}").format(
            name=name, types=", ".join(sorted(FIELD_TYPES))))
        return None
    label = ck.texts(node, "label", None)
    question = ck.texts(node, "question", None)
    choices = []
    for ch in node.get("choices") or ():
        if not isinstance(ch, Mapping) or "value" not in ch or not all(
                isinstance(ch.get(k), str) for k in ("zh", "en")):
            ck.problem(_line(ch) or _line(node, "choices"), None,
                       _("field {name}: each choice needs value, zh and en").format(name=name))
            return None
        value = ch["value"]
        ok = (isinstance(value, str) if ftype == "str" else isinstance(value, int) and not isinstance(value, bool)
              if ftype == "int" else False)
        if not ok:
            ck.problem(_line(ch), None, _("field {name}: choice {value} does not fit type {type}").format(
                name=name, value=value, type=ftype))
            return None
        choices.append(Choice(value, {"zh": ch["zh"], "en": ch["en"]}))
    if ftype == "str" and not choices:
        ck.problem(_line(node), None, _("field {name}: a text field needs choices").format(name=name))
        return None
    if label is None or question is None:
        return None
    return QuestionField(name, ftype, label, question, tuple(choices), ck.number(node, "min", None),
                         ck.number(node, "max", None))


def _field_content(f: QuestionField) -> dict[str, Any]:
    return {
        "label": dict(f.label), "question": dict(f.question),
        "choices": [{"value": c.value, **c.label} for c in f.choices],
        "min": None if f.minimum is None else str(f.minimum), "max": None if f.maximum is None else str(f.maximum),
    }


@dataclass
class _Version:
    valid_from: date
    valid_to: date | None
    title: dict[str, str]
    rule: str
    content: dict[str, Any]


@dataclass
class _Policy:
    code: str
    file: str
    region: str | None
    active: bool
    sample: bool
    versions: list[_Version]


def _check_rule(ck: _Checker, node: Mapping, key: str, code: str, registry, today: date, what: str) -> str | None:
    text = node.get(key)
    if not isinstance(text, str) or not text.strip():
        ck.problem(_line(node, key), code, _("\"{key}\" needs an expression").format(key=key))
        return None
    try:
        compile_sql(parse(text, registry), today=today)
    except ExpressionError as err:
        ck.problem(_line(node, key), code, _("{what}: column {column}: {message}").format(
            what=what, column=err.position, message=err.message))
        return None
    return text.strip()


def _check_benefit(ck: _Checker, node: Mapping, code: str, registry, today: date) -> dict[str, Any] | None:
    benefit = node.get("benefit")
    if not isinstance(benefit, Mapping):
        ck.problem(_line(node, "benefit"), code, _("\"benefit\" needs at least a text in zh and en"))
        return None
    text = ck.texts(benefit, "text", code)
    out: dict[str, Any] = {"text": text}
    if benefit.get("unit") is not None:
        out["unit"] = ck.texts(benefit, "unit", code)
    amounts = []
    for i, band in enumerate(benefit.get("amounts") or (), start=1):
        if not isinstance(band, Mapping):
            ck.problem(_line(benefit, "amounts"), code, _("amount band {n} needs when and amount").format(n=i))
            continue
        when = _check_rule(ck, band, "when", code, registry, today, _("amount band {n}").format(n=i))
        amount = ck.number(band, "amount", code)
        if amount is None:
            ck.problem(_line(band), code, _("amount band {n} needs an amount").format(n=i))
        if when and amount is not None:
            amounts.append({"when": when, "amount": str(amount)})
    if amounts:
        out["amounts"] = amounts
    return out if text else None


def _check_apply(ck: _Checker, node: Mapping, code: str) -> dict[str, Any] | None:
    apply = node.get("apply")
    if not isinstance(apply, Mapping):
        ck.problem(_line(node, "apply"), code, _("\"apply\" needs at least where (zh and en)"))
        return None
    out: dict[str, Any] = {"where": ck.texts(apply, "where", code)}
    docs = apply.get("documents")
    if docs is not None:
        if not (isinstance(docs, Mapping) and all(isinstance(docs.get(k), list) for k in ("zh", "en"))):
            ck.problem(_line(apply, "documents"), code, _("\"documents\" needs a list in zh and in en"))
        else:
            out["documents"] = {k: [str(d) for d in docs[k]] for k in ("zh", "en")}
    deadline = ck.a_date(apply, "deadline", code, required=False)
    out["deadline"] = deadline.isoformat() if deadline else None
    return out if out["where"] else None


def _check_policy(ck: _Checker, node: Any, sample: bool, registry, today: date) -> _Policy | None:
    if not isinstance(node, Mapping):
        ck.problem(_line(node), None, _("a policy must be a mapping"))
        return None
    code = node.get("code")
    if not isinstance(code, str) or not CODE_RE.match(code):
        ck.problem(_line(node, "code"), None, _("policy code \"{code}\" must be lower-case letters, digits and _")
                   .format(code=code))
        return None
    before = len(ck.problems)
    region = node.get("region")
    active = node.get("active", True)
    if not isinstance(active, bool):
        ck.problem(_line(node, "active"), code, _("\"active\" must be true or false"))
    first = _Version(
        valid_from=ck.a_date(node, "valid_from", code, required=True) or date.min,
        valid_to=ck.a_date(node, "valid_to", code, required=False),
        title=ck.texts(node, "title", code) or {},
        rule=_check_rule(ck, node, "rule", code, registry, today, _("rule")) or "",
        content={"summary": ck.texts(node, "summary", code), "benefit": _check_benefit(ck, node, code, registry, today),
                 "apply": _check_apply(ck, node, code), "source": str(node.get("source") or "")},
    )
    versions = [first]
    for later in node.get("versions") or ():
        if not isinstance(later, Mapping):
            ck.problem(_line(node, "versions"), code, _("each version must be a mapping with valid_from"))
            continue
        prev = versions[-1]
        start = ck.a_date(later, "valid_from", code, required=True)
        if start is None:
            continue
        if start <= prev.valid_from:
            ck.problem(_line(later, "valid_from"), code, _("versions must start later than the one before"))
            continue
        content = dict(prev.content)
        if "summary" in later:
            content["summary"] = ck.texts(later, "summary", code)
        if "benefit" in later:
            content["benefit"] = _check_benefit(ck, later, code, registry, today)
        if "apply" in later:
            content["apply"] = _check_apply(ck, later, code)
        if "source" in later:
            content["source"] = str(later.get("source") or "")
        if prev.valid_to is None or prev.valid_to >= start:
            prev.valid_to = start.fromordinal(start.toordinal() - 1)
        versions.append(_Version(
            valid_from=start, valid_to=ck.a_date(later, "valid_to", code, required=False),
            title=(ck.texts(later, "title", code) or {}) if "title" in later else prev.title,
            rule=(_check_rule(ck, later, "rule", code, registry, today, _("rule")) or "") if "rule" in later
            else prev.rule,
            content=content,
        ))
    unknown = set(node) - {"code", "region", "active", "valid_from", "versions", *VERSIONED}
    if unknown:
        ck.problem(_line(node), code, _("unknown keys: {keys}").format(keys=", ".join(sorted(map(str, unknown)))))
    for v in versions:
        if v.valid_to is not None and v.valid_to < v.valid_from:
            ck.problem(_line(node, "valid_to"), code, _("valid_to is before valid_from"))
    if len(ck.problems) > before:
        return None
    return _Policy(code, ck.name, None if region is None else str(region), active, sample, versions)


def read_catalogue(directory: Path, today: date) -> tuple[list[QuestionField], list[_Policy], int]:
    """Every ``*.yaml``/``*.yml`` under ``directory``, checked; ``CatalogueError`` lists all problems."""
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()) \
        if directory.is_dir() else ([directory] if directory.is_file() else [])
    if not files:
        raise CatalogueError([_("{path}: no policy files (*.yaml) found").format(path=directory)])
    problems: list[str] = []
    docs = []
    for path in files:
        name = str(path.relative_to(directory)) if directory.is_dir() else path.name
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problems.append(f"{name}:{mark.line + 1 if mark else 0}: " + _("not valid YAML: {error}").format(
                error=getattr(err, "problem", None) or err))
            continue
        if not isinstance(doc, Mapping) or not isinstance(doc.get("policies", []), list) or not isinstance(
                doc.get("fields", []), list):
            problems.append(f"{name}: " + _("a policy file is a mapping with \"policies\" (and \"fields\") lists"))
            continue
        docs.append((name, doc))
    # Fields first: a rule in one file may use a field another file declares.
    fields: dict[str, tuple[QuestionField, str]] = {}
    checkers = {name: _Checker(name) for name, _doc in docs}
    for name, doc in docs:
        for node in doc.get("fields") or ():
            f = _check_field(checkers[name], node)
            if f is None:
                continue
            if f.name in fields and fields[f.name][0] != f:
                checkers[name].problem(_line(node, "name"), None, _(
                    "field {name} is declared differently in {other}").format(name=f.name, other=fields[f.name][1]))
                continue
            fields.setdefault(f.name, (f, name))
    registry = sql_fields([f for f, _n in fields.values()]).registry  # rules must compile to SQL
    policies: dict[str, _Policy] = {}
    for name, doc in docs:
        sample = doc.get("sample", False) is True
        for node in doc.get("policies") or ():
            p = _check_policy(checkers[name], node, sample, registry, today)
            if p is None:
                continue
            if p.code in policies:
                checkers[name].problem(_line(node, "code"), p.code, _("the code is also used in {other}").format(
                    other=policies[p.code].file))
                continue
            policies[p.code] = p
    for ck in checkers.values():
        problems += ck.problems
    if problems:
        raise CatalogueError(problems)
    return [f for f, _n in fields.values()], list(policies.values()), len(files)


async def load_catalogue(session: AsyncSession, directory: Path, now: datetime) -> LoadResult:
    """Check every file, then write fields and policies in the caller's transaction (commit once);
    ``CatalogueError`` when anything is wrong, before anything is written. Idempotent."""
    fields, policies, count = read_catalogue(directory, now.date())
    regions = {r.code: r.id for r in await session.scalars(
        select(Region).where(Region.code.in_({p.region for p in policies if p.region})))}
    missing = sorted({f"{p.file}: " + _("policy {code}").format(code=p.code) + ": " + _(
        "unknown region {region}").format(region=p.region) for p in policies if p.region and p.region not in regions})
    if missing:
        raise CatalogueError(missing)
    result = LoadResult(files=count)
    existing_fields = {f.name: f for f in await session.scalars(select(PolicyField))}
    for f in fields:
        field_row = existing_fields.get(f.name)
        if field_row is None:
            field_row = PolicyField(name=f.name)
            session.add(field_row)
        field_row.type = PolicyFieldType(f.type)
        field_row.content = _field_content(f)
        field_row.updated_at = now
        result.fields.append(f.name)
    existing = {p.code: p for p in await session.scalars(
        select(Policy).options(selectinload(Policy.versions)).where(Policy.code.in_([p.code for p in policies])))}
    for p in policies:
        row = existing.get(p.code)
        if row is None:
            row = Policy(code=p.code, created_at=now, versions=[])
            session.add(row)
            result.created.append(p.code)
        else:
            result.updated.append(p.code)
            row.versions.clear()  # the file is the history; flushed before the new versions go in
        row.region_id = regions.get(p.region) if p.region else None
        row.active = p.active
        row.sample = p.sample
        row.source_file = p.file
        row.updated_at = now
        await session.flush()
        for v in p.versions:
            session.add(PolicyVersion(policy_id=row.id, valid_from=v.valid_from, valid_to=v.valid_to,
                                      title_zh=v.title["zh"], title_en=v.title["en"], rule=v.rule, content=v.content))
    await session.flush()
    return result
