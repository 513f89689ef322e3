"""Policy matching messages: results with reasons, questions, pushes and follow-ups, staff summaries.

Services hand over plain data (policy texts in both languages, reasons as JSON atoms of the rule);
the words are chosen here in the reader's language and every value is escaped by ``t()`` and the
templates under ``notifications/templates/policies/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from notifications.callbacks import BenefitCb, PolicyCaseCb, PolicyPushCb
from notifications.limits import pages
from notifications.render import Buttons, MessageBuilder, Rendered, join, render_template, t
from services.expressions import Truth
from services.i18n import N_, _, current_locale
from services.labels import label as registry_label
from services.policies import QuestionField, pick

EXTRA_LABELS = {"household_size": N_("people in the household")}
STATUS_WORDS = {"notified": N_("notified"), "applied": N_("applied"), "enrolled": N_("enrolled"),
                "declined": N_("declined")}
VALUE_WORDS = {("hukou", "local"): N_("local hukou"), ("hukou", "nonlocal"): N_("hukou elsewhere"),
               ("gender", "M"): N_("male"), ("gender", "F"): N_("female")}


def status_name(status: str | None) -> str | None:
    return _(STATUS_WORDS[status]) if status in STATUS_WORDS else status


def _loc() -> str:
    return current_locale()


def field_label(reason: Mapping[str, Any]) -> str:
    if reason.get("label"):
        return pick(reason["label"], _loc())
    name = reason.get("field", "")
    return _(EXTRA_LABELS[name]) if name in EXTRA_LABELS else registry_label(name)


def _number(value: Any) -> str:
    if isinstance(value, str):
        try:
            d = Decimal(value)
        except ArithmeticError:
            return value
        return format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    return str(value)


def _value(reason: Mapping[str, Any], value: Any) -> str:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    key = (reason.get("field"), value)
    if key in VALUE_WORDS:
        return _(VALUE_WORDS[key])
    return _number(value)


_FLIP = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_CONDITIONS = {
    ">=": N_("{value} or more"), ">": N_("more than {value}"), "<": N_("less than {value}"),
    "<=": N_("{value} or less"), "!=": N_("not {value}"),
}


def reason_text(reason: Mapping[str, Any]) -> Markup:
    """One satisfied part of a rule in plain words: "you are 82 (80 or older)", "lives alone: yes"."""
    kind = reason.get("kind")
    negated = bool(reason.get("negated"))
    if kind == "tag":
        name = pick(reason.get("label"), _loc()) or reason.get("code", "")
        return t("not registered as: {tag}", tag=name) if negated else t("registered as: {tag}", tag=name)
    name = field_label(reason)
    actual = reason.get("actual")
    shown = pick(reason["actual_label"], _loc()) if reason.get("actual_label") else _value(reason, actual)
    if kind == "compare":
        op = reason["op"]
        value = reason["value"]
        if isinstance(value, bool):
            return t("{field}: {value}", field=name, value=_value(reason, actual))
        if negated:
            op = _FLIP[op]
        condition = None if op == "==" else _(_CONDITIONS[op]).format(value=_value(reason, value))
        if reason.get("field") == "age":
            if condition is None:
                return t("you are {age}", age=shown)
            return t("you are {age} ({condition})", age=shown, condition=condition)
        if condition is None:
            return t("{field}: {value}", field=name, value=shown)
        return t("{field}: {value} ({condition})", field=name, value=shown, condition=condition)
    if kind == "between":
        low, high = _value(reason, reason["low"]), _value(reason, reason["high"])
        if reason.get("field") == "age":
            if negated:
                return t("you are {age} (not {low} to {high})", age=shown, low=low, high=high)
            return t("you are {age} ({low} to {high})", age=shown, low=low, high=high)
        if negated:
            return t("{field}: {value} (not {low} to {high})", field=name, value=shown, low=low, high=high)
        return t("{field}: {value} ({low} to {high})", field=name, value=shown, low=low, high=high)
    return t("{field}: {value}", field=name, value=shown)


def reasons_text(reasons: Sequence[Mapping[str, Any]]) -> Markup:
    return join([reason_text(r) for r in reasons], Markup(_("; ")))


def amount_text(benefit: Mapping[str, Any], amount: str | None) -> Markup:
    text = pick(benefit.get("text"), _loc())
    if amount is None:
        return t("{text}", text=text)
    return t("{text}: {amount} {unit}", text=text, amount=_number(amount), unit=pick(benefit.get("unit"), _loc()))


def apply_lines(apply: Mapping[str, Any]) -> dict[str, Any]:
    docs = (apply.get("documents") or {})
    return {"where": pick(apply.get("where"), _loc()),
            "documents": docs.get("zh" if _loc().startswith("zh") else "en") or [],
            "deadline": apply.get("deadline")}


def unknown_text(fields: Sequence[str], askable: Mapping[str, QuestionField],
                 anonymous: bool) -> Markup:
    """What would decide a policy still unknown, in words."""
    parts = []
    for f in fields:
        if f.startswith("tag:"):
            parts.append(t("the committee's records ({tag})", tag=f[4:]))
        elif f in askable:
            parts.append(t("your answer: {question}", question=pick(askable[f].label, _loc())))
        elif anonymous:
            parts.append(t("{field} (known once you are verified)", field=registry_label(f)))
        else:
            parts.append(t("{field} in your registry record (ask your committee to update it)",
                           field=_(EXTRA_LABELS[f]) if f in EXTRA_LABELS else registry_label(f)))
    return join(parts, Markup(_("; ")))


# --- /benefits ---------------------------------------------------------------------------------


def question(f: QuestionField, *, remaining: int) -> Rendered:
    """One question, with a button per choice (yes/no for yes-or-no fields), skip and stop."""
    rows: Buttons = []
    if f.type == "bool":
        rows.append([{"text": _("Yes"), "callback_data": BenefitCb(a="ans", f=f.name, v=1).pack()},
                     {"text": _("No"), "callback_data": BenefitCb(a="ans", f=f.name, v=0).pack()}])
    for i, c in enumerate(f.choices):
        rows.append([{"text": pick(c.label, _loc()), "callback_data": BenefitCb(a="ans", f=f.name, v=i).pack()}])
    rows.append([{"text": _("Skip this question"), "callback_data": BenefitCb(a="skip", f=f.name).pack()},
                 {"text": _("Show results now"), "callback_data": BenefitCb(a="stop").pack()}])
    text = render_template("policies/question.html", question=pick(f.question, _loc()), remaining=remaining,
                           typed=not f.choices and f.type != "bool")
    return Rendered(text, rows)


def consent_question() -> Rendered:
    rows = [[{"text": _("Yes, keep my answers"), "callback_data": BenefitCb(a="keep").pack()}],
            [{"text": _("No, only for this time"), "callback_data": BenefitCb(a="once").pack()}]]
    return Rendered(render_template("policies/consent.html"), rows)


def results(assessment, *, anonymous: bool, cases: Mapping[int, str] | None = None) -> list[Rendered]:
    """The results of /benefits: what they qualify for (why, benefit, how to apply), what is still
    unknown and what would decide it; one "I have applied" button per policy for a verified resident."""
    cases = cases or {}
    loc = _loc()
    eligible = []
    for r in assessment.by(Truth.TRUE):
        eligible.append({
            "title": pick(r.policy.title, loc), "summary": pick(r.policy.summary, loc),
            "why": reasons_text(r.reasons),
            "benefit": amount_text(r.policy.benefit, None if r.amount is None else str(r.amount)),
            "amount_unknown": r.amount_unknown, "apply": apply_lines(r.policy.apply),
            "status": status_name(cases.get(r.policy.id)), "sample": r.policy.sample,
        })
    unknown = [{"title": pick(r.policy.title, loc), "decide": unknown_text(r.unknown, assessment.askable, anonymous)}
               for r in assessment.by(Truth.UNKNOWN)]
    blocks = render_template("policies/results.html", eligible=eligible, unknown=unknown,
                             not_eligible=len(assessment.by(Truth.FALSE)), anonymous=anonymous,
                             sample=any(r.policy.sample for r in assessment.results)).split("\n\n")
    texts = pages(blocks)
    rows: Buttons = []
    if not anonymous:
        for r in assessment.by(Truth.TRUE):
            if cases.get(r.policy.id) in ("applied", "enrolled"):
                continue
            rows.append([{"text": _("✅ I have applied: {title}").format(title=pick(r.policy.title, loc)),
                          "callback_data": BenefitCb(a="applied", p=r.policy.id).pack()}])
    out = [Rendered(text) for text in texts]
    if out and rows:
        out[-1] = Rendered(out[-1].text, rows)
    return out


# --- outbox: push and follow-up ------------------------------------------------------------------


def _case_buttons(case_id: int) -> Buttons:
    return [[{"text": _("✅ I have applied"), "callback_data": PolicyCaseCb(a="applied", id=case_id).pack()},
             {"text": _("Not for me"), "callback_data": PolicyCaseCb(a="no", id=case_id).pack()}]]


def push(data: Mapping[str, Any]) -> Rendered:
    policy = data["policy"]
    loc = _loc()
    text = render_template(
        "policies/push.html", name=data.get("name") or "", title=pick(policy["title"], loc),
        summary=pick(policy["summary"], loc), why=reasons_text(data.get("reasons") or []),
        benefit=amount_text(policy.get("benefit") or {}, data.get("amount")),
        apply=apply_lines(policy.get("apply") or {}), sample=policy.get("sample", False))
    return Rendered(text, _case_buttons(data["case"]))


def followup(data: Mapping[str, Any]) -> Rendered:
    policy = data["policy"]
    loc = _loc()
    text = render_template("policies/followup.html", title=pick(policy["title"], loc),
                           apply=apply_lines(policy.get("apply") or {}))
    return Rendered(text, _case_buttons(data["case"]))


# --- staff -----------------------------------------------------------------------------------------


def match_summary(match, *, push_days: int) -> Rendered:
    for r in match.preview:
        r["status"] = status_name(r["status"])
    text = render_template("policies/match.html", m=match, title=pick(match.policy.title, _loc()),
                           push_days=push_days)
    rows: Buttons = []
    if match.to_push:
        rows.append([{"text": _("📣 Tell {n} residents").format(n=match.to_push),
                      "callback_data": PolicyPushCb(a="push", code=match.code).pack()}])
    return Rendered(text, rows or None)


def report(rows, *, title_of) -> Markup:
    return render_template("policies/report.html", rows=[
        {"code": r.code, "title": title_of(r), "eligible": r.eligible, "unknown": r.unknown, "notified": r.notified,
         "applied": r.applied, "enrolled": r.enrolled, "declined": r.declined,
         "take_up": None if r.take_up is None else f"{r.take_up * 100:.1f}%"} for r in rows])


MESSAGES: dict[str, MessageBuilder] = {"policies.push": push, "policies.followup": followup}
