"""Policies (政策找人): the catalogue in force in the staff member's area; one policy with who in the
area qualifies (counted by the database), telling the eligible through the bot, and trying its rule (or
a rule being written) against one resident with the reasons; the take-up report; XLSX of each list.

Every figure and action is the bot's own (``services.policies``: ``match_policy``, ``push_policy``,
``policy_report``; ``try_rule`` evaluates as the questionnaire and the pushes do), scoped to the
member's area; a policy for another region is a 404 here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from aiohttp import web

from bot.console.core import Ctx, NavItem, ctx, not_found, render, url
from bot.console.export import XLSX, xlsx_response
from notifications.messages import policies as views
from notifications.policy_report import report_sheet
from services import policies as pol
from services.clock import local_time
from services.expressions import MAX_LENGTH, Truth
from services.i18n import N_, _, current_locale
from services.ids import parse_db_id
from services.residents import find_residents
from services.tags import NotInScope

routes = web.RouteTableDef()
NAV = (NavItem("policies", N_("Policies"), "/policies", order=45),)
CODE = r"{code:[a-z][a-z0-9_]{1,63}}"
FOUND_SHOWN = 10
EXPORT_ROWS = 5000
TRUTHS = {Truth.TRUE: N_("Qualifies"), Truth.FALSE: N_("Does not qualify"),
          Truth.UNKNOWN: N_("Not known yet")}


def _today(c: Ctx) -> date:
    return local_time(c.now, c.tz).date()


def _cfg(c: Ctx) -> pol.PolicyConfig:
    return c.console.data("policy_config")


async def _policies(c: Ctx) -> list[pol.PolicyView]:
    return [p for p in await pol.policies_in_force(c.db, _today(c)) if pol.in_area(p, c.actor)]


async def _policy(c: Ctx, code: str) -> pol.PolicyView:
    policy = await pol.get_policy(c.db, code, _today(c))
    if policy is None or not pol.in_area(policy, c.actor):
        not_found()
    return policy


def title(policy: pol.PolicyView | Any) -> str:
    return pol.pick(policy.title, _locale())


def _locale() -> str:
    return current_locale()  # the request's (set by the console for every request)


def _valid(policy: pol.PolicyView) -> str:
    return policy.valid_from.isoformat() + " – " + (policy.valid_to.isoformat() if policy.valid_to else "")


@routes.get("/policies")
async def catalogue(request: web.Request) -> web.Response:
    c = ctx(request)
    return render(request, "policies.html", policies=await _policies(c), title=title, valid=_valid)


@routes.get("/policies/catalogue.xlsx")
async def catalogue_export(request: web.Request) -> web.Response:
    c = ctx(request)
    rows = [(p.code, title(p), p.rule_text, p.valid_from.isoformat(), p.valid_to.isoformat() if p.valid_to else "",
             pol.pick(p.summary, _locale()), _("sample data") if p.sample else "") for p in await _policies(c)]
    headers = [_("Code"), _("Programme"), _("Rule"), _("Valid from"), _("Valid until"), _("Summary"), _("Note")]
    return await xlsx_response(f"policies-{_today(c).isoformat()}.xlsx", _("Policies"), headers, rows)


# --- one policy ---------------------------------------------------------------------------------------


async def _trial(c: Ctx, policy: pol.PolicyView, query: Mapping[str, str]) -> dict[str, Any]:
    """The "try it on a resident" part: residents found by name or room, and the answer for one."""
    rule = (query.get("rule") or "")[:MAX_LENGTH + 1]
    q = (query.get("q") or "").strip()[:50]
    found = await find_residents(c.db, c.actor, q, limit=FOUND_SHOWN) if q else []
    trial = None
    resident_id = parse_db_id(query.get("resident"))
    if query.get("resident"):
        tried = None if resident_id is None else await pol.try_rule(c.db, c.actor, resident_id, rule, today=_today(c),
                                                                    now=c.now, code=policy.code)
        if tried is None:
            not_found()
        trial = tried[0]
    return {"q": q, "found": found, "trial": trial, "rule": rule or policy.rule_text,
            "truth_name": lambda truth: _(TRUTHS[truth]), "reason_text": views.reason_text,
            "field_label": lambda name: _field_label(trial, name), "max_length": MAX_LENGTH}


def _field_label(trial: pol.RuleTrial | None, name: str) -> str:
    """A field that would decide a rule, in words (a tag: its code)."""
    if name.startswith("tag:"):
        return name[4:]
    return views.field_label({"field": name, "label": trial.labels.get(name) if trial else None})


@routes.get("/policies/" + CODE)
async def policy_page(request: web.Request) -> web.Response:
    """A policy: its texts, who in the area qualifies and the push, and trying it on a resident."""
    c = ctx(request)
    policy = await _policy(c, request.match_info["code"])
    match = await pol.match_policy(c.db, c.actor, policy.code, today=_today(c), now=c.now,
                                   push_interval=_cfg(c).push_interval)
    done = None
    if request.query.get("done") == "pushed":
        pushed = parse_db_id(request.query.get("n")) or 0
        done = _("Notices queued for {n} residents.").format(n=pushed)
    return render(request, "policy.html", policy=policy, match=match, title=title, valid=_valid, done=done,
                  summary=pol.pick(policy.summary, _locale()), benefit=views.amount_text(policy.benefit, None),
                  apply=views.apply_lines(policy.apply), status_name=views.status_name,
                  push_days=_cfg(c).push_interval.days, **await _trial(c, policy, request.query))


@routes.post("/policies/" + CODE + "/push")
async def push(request: web.Request) -> web.Response:
    """Tell the eligible residents (``push_policy``: once per resident within the push interval, never
    the unknown; audited); pressing twice tells nobody twice."""
    c = ctx(request)
    policy = await _policy(c, request.match_info["code"])
    try:
        result = await pol.push_policy(c.db, c.actor, policy.code, _cfg(c), today=_today(c), now=c.now)
    except (pol.PolicyNotFound, NotInScope):
        not_found()
    raise web.HTTPSeeOther(url(f"/policies/{policy.code}", done="pushed", n=str(result.pushed)))


@routes.get("/policies/" + CODE + "/eligible.xlsx")
async def eligible_export(request: web.Request) -> web.Response:
    """The eligible residents of the area who are not enrolled, with their case (audited)."""
    c = ctx(request)
    policy = await _policy(c, request.match_info["code"])
    result = await pol.eligible_list(c.db, c.actor, policy.code, today=_today(c), now=c.now,
                                     push_interval=_cfg(c).push_interval, limit=EXPORT_ROWS)
    rows = [(r["name"], r["room"], views.status_name(r["status"]) or "", _("yes") if r["on_bot"] else _("no"))
            for r in result.preview]
    return await xlsx_response(f"policy-{policy.code}-eligible-{_today(c).isoformat()}.xlsx", title(policy),
                               [_("Name"), _("Room"), _("Status"), _("In the bot")], rows)


# --- take-up -----------------------------------------------------------------------------------------


async def _report(c: Ctx) -> list[pol.ReportRow]:
    codes = [p.code for p in await _policies(c)]
    return await pol.policy_report(c.db, c.actor, _cfg(c), today=_today(c), now=c.now, codes=codes) if codes else []


@routes.get("/policies/take-up")
async def report_page(request: web.Request) -> web.Response:
    """Per policy in force: eligible now, unknown, told, applied, enrolled, declined, and the take-up."""
    c = ctx(request)
    rows = await _report(c)
    return render(request, "policy_report.html", rows=rows, day=_today(c),
                  title_of=lambda r: pol.pick(r.title, _locale()))


@routes.get("/policies/take-up.xlsx")
async def report_export(request: web.Request) -> web.Response:
    c = ctx(request)
    rows = await _report(c)
    sheet = report_sheet(rows, _locale(), _("Policy take-up, {date}").format(date=_today(c).isoformat()))
    return web.Response(body=sheet, content_type=XLSX, headers={
        "Content-Disposition": f'attachment; filename="policy-take-up-{_today(c).isoformat()}.xlsx"'})
