"""Polls: the committees' polls; making one (who may vote counted live as the expression is typed);
a poll's results as the bot words them, with its bar chart (``notifications.poll_chart``) and the
open ballots; closing early; XLSX of the results and of the ballots. Every check is
``services.polls``' (the same draft checks as /poll_new, the same count as the tally).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web
from multidict import MultiMapping

from bot.console.core import Ctx, NavItem, ctx, not_found, render, url
from bot.console.export import xlsx_response
from bot.console.pages.segments import Shown, asked, shown
from notifications.format import room_text
from notifications.messages import polls as views
from notifications.poll_chart import chart_writer, poll_chart
from services import polls
from services.clock import local_time, parse_local_time
from services.expressions import MAX_LENGTH, ExpressionError
from services.i18n import N_, _
from services.ids import parse_db_id
from services.models import Poll, Region
from services.residents import committees_in_scope
from services.segments import LiveCount

routes = web.RouteTableDef()
NAV = (NavItem("polls", N_("Polls"), "/polls", order=45),)
LIST_LIMIT = 100
BALLOTS_SHOWN = 200
EXPORT_ROWS = 10_000
UNITS = {"resident": N_("Each resident"), "household": N_("Each household"), "owner": N_("Each owner household")}
RULES = {"majority": N_("More agree than reject"), "fraction:2/3": N_("Agree from 2/3 of all who may vote"),
         "plurality": N_("Most votes (no decision)"),
         "civil-code-ordinary": N_("Civil Code: ordinary matter (1/2 of area and owners)"),
         "civil-code-major": N_("Civil Code: major matter, e.g. an elevator (3/4 of area and owners)")}
PHASES = {"scheduled": N_("scheduled"), "open": N_("open"), "closed": N_("closed")}


def _cfg(c: Ctx) -> polls.PollConfig:
    return c.console.data("poll_config")


def _today(c: Ctx):
    return _cfg(c).local(c.now).date()


async def _staff_poll(c: Ctx, raw: str) -> Poll:
    try:
        return await polls.staff_poll(c.db, c.actor, parse_db_id(raw))
    except polls.PollError:
        not_found()


# --- the list ---------------------------------------------------------------------------------------


async def _committee_names(c: Ctx) -> dict[int, str]:
    return {r.id: r.name for r in await committees_in_scope(c.db, c.actor)}


@routes.get("/polls")
async def polls_page(request: web.Request) -> web.Response:
    c = ctx(request)
    items = await polls.committee_polls(c.db, c.actor, limit=LIST_LIMIT)
    names = await _committee_names(c)
    rows = [(p, names.get(p.committee_id, ""), _(PHASES[polls.poll_phase(p, c.now)])) for p in items]
    return render(request, "polls.html", rows=rows, several=len(names) > 1)


@routes.get("/polls/export.xlsx")
async def polls_export(request: web.Request) -> web.Response:
    c = ctx(request)
    names = await _committee_names(c)
    rows = [(p.id, names.get(p.committee_id, ""), p.question, _(PHASES[polls.poll_phase(p, c.now)]),
             _(UNITS.get(p.unit.value, p.unit.value)), p.eligible or "",
             local_time(p.closes_at, c.tz).strftime("%Y-%m-%d %H:%M"))
            for p in await polls.committee_polls(c.db, c.actor, limit=EXPORT_ROWS)]
    headers = [_("Number"), _("Committee"), _("Question"), _("Status"), _("Who has one vote?"), _("Who may vote"),
               _("Closes")]
    return await xlsx_response(f"polls-{_today(c).isoformat()}.xlsx", _("Polls"), headers, rows)


# --- making one ---------------------------------------------------------------------------------------


async def _committee(c: Ctx, code: str | None) -> Region:
    try:
        return await polls.staff_committee(c.db, c.actor, code or None)
    except polls.PollError:
        not_found()


async def _eligible_count(c: Ctx, committee: Region, eligible: str, unit: str) -> Shown:
    try:
        n = await polls.eligible_units(c.db, c.actor, committee, eligible[:MAX_LENGTH + 1] or None, unit, _today(c))
    except ExpressionError as err:
        return shown(eligible, LiveCount(None, err.position, err.message))
    except polls.PollError as err:
        return Shown(False, str(views.refusal(err).striptags()), None)
    units = _(views.UNIT_NAMES.get(unit, "residents"))
    return Shown(True, _("Who may vote now: {n} ({units}).").format(n=n, units=units), None)


async def _new_page(request: web.Request, *, form: MultiMapping[str] | None = None, error: str | None = None,
                    status: int = 200) -> web.Response:
    c = ctx(request)
    form = form if form is not None else request.query
    committees = await committees_in_scope(c.db, c.actor)
    # Street staff choose among their committees (the form's select): the first is chosen to begin with.
    committee = await _committee(c, form.get("committee") or (committees[0].code if committees else None))
    live = await _eligible_count(c, committee, form.get("eligible", ""), form.get("unit") or "resident")
    return render(request, "poll_new.html", status=status, form=form, error=error, live=live,
                  committees=committees, committee=committee, units=UNITS, rules=RULES, max_length=MAX_LENGTH,
                  max_question=polls.MAX_QUESTION)


@routes.get("/polls/new")
async def new_page(request: web.Request) -> web.Response:
    return await _new_page(request)


@routes.get("/polls/eligible")
@routes.post("/polls/eligible")
async def eligible_count(request: web.Request) -> web.Response:
    """JSON for the form: how many units may vote with the expression as typed, or its mistake."""
    c = ctx(request)
    fields = await asked(request)
    committee = await _committee(c, str(fields.get("committee") or "") or None)
    view = await _eligible_count(c, committee, str(fields.get("eligible") or ""),
                                 str(fields.get("unit") or "resident"))
    return web.json_response({"ok": view.ok, "text": view.text, "position": view.position})


def _draft(form: MultiMapping[str], closes: datetime | None) -> polls.PollDraft:
    secret = form.get("secret") == "on"
    multiple = form.get("multiple") or "1"
    return polls.PollDraft(
        question=str(form.get("question") or ""), options=str(form.get("options") or "").splitlines(),
        multiple=int(multiple) if multiple.isascii() and multiple.isdigit() and len(multiple) < 3 else 0,
        eligible=str(form.get("eligible") or "") or None, unit=str(form.get("unit") or "resident"),
        rule=str(form.get("rule") or "majority"), quorum=str(form.get("quorum") or "") or None, secret=secret,
        allow_change=not secret and form.get("allow_change", "on") == "on", closes_at=closes)


@routes.post("/polls")
async def create(request: web.Request) -> web.Response:
    """Publish a poll (``services.polls.create_poll``: every draft check, scoped, audited); everyone
    who may vote is told by the tick."""
    c = ctx(request)
    form = await request.post()
    committee = await _committee(c, str(form.get("committee") or "") or None)
    raw = form.get("closes_at")
    closes = parse_local_time(raw.replace("T", " "), c.tz) if isinstance(raw, str) and raw else None
    try:
        poll = await polls.create_poll(c.db, c.actor, committee, _draft(form, closes), now=c.now, cfg=_cfg(c))
    except polls.PollError as err:
        return await _new_page(request, form=form, error=str(views.refusal(err).striptags()), status=400)
    raise web.HTTPSeeOther(url(f"/polls/{poll.id}", done="created"))


# --- one poll ---------------------------------------------------------------------------------------------


@routes.get(r"/polls/{id:\d+}")
async def poll_page(request: web.Request) -> web.Response:
    c = ctx(request)
    poll = await _staff_poll(c, request.match_info["id"])
    results = await polls.poll_results(c.db, c.actor, poll.id, now=c.now, cfg=_cfg(c))
    ballots = [] if poll.secret else await polls.poll_ballots(c.db, c.actor, poll.id, limit=BALLOTS_SHOWN)
    done = {"created": _("The poll is published. Everyone who may vote is told."),
            "closed": _("The poll is closed; the results go to its voters and to staff.")}.get(
        request.query.get("done", ""))
    committee = await c.db.get(Region, poll.committee_id)
    return render(request, "poll.html", poll=poll, results=results, results_text=views.results_text(results),
                  rule_text=views.rule_text(poll.rule, poll.options, poll.quorum), phase=polls.poll_phase(poll, c.now),
                  phase_name=_(PHASES[polls.poll_phase(poll, c.now)]), unit_name=_(UNITS[poll.unit.value]),
                  ballots=[(b, room_text(b.building, b.unit, b.room) or "—",
                            ", ".join(poll.options[i] for i in b.choices if i < len(poll.options))) for b in ballots],
                  more_ballots=len(ballots) >= BALLOTS_SHOWN, committee=committee, done=done,
                  error=_refusal_of(request.query.get("error")))


def _refusal_of(reason: str | None) -> str | None:
    """A refusal named in the URL after a redirect, worded here (unknown names show nothing)."""
    if reason not in views.REFUSALS:
        return None
    return str(views.refusal(polls.PollError(reason)).striptags())


@routes.get(r"/polls/{id:\d+}/chart.png")
async def chart(request: web.Request) -> web.Response:
    """The results' bar chart, as the bot sends it (drawn in a worker thread)."""
    c = ctx(request)
    poll = await _staff_poll(c, request.match_info["id"])
    results = await polls.poll_results(c.db, c.actor, poll.id, now=c.now, cfg=_cfg(c))
    png = await asyncio.to_thread(poll_chart, results)
    return web.Response(body=png, content_type="image/png")


@routes.post(r"/polls/{id:\d+}/close")
async def close(request: web.Request) -> web.Response:
    c = ctx(request)
    poll = await _staff_poll(c, request.match_info["id"])
    try:
        await polls.close_now(c.db, c.actor, poll.id, now=c.now, cfg=_cfg(c), chart=chart_writer(_cfg(c)))
    except polls.PollError as err:  # the reason only: the page words it (no text of its own in a URL)
        raise web.HTTPSeeOther(url(f"/polls/{poll.id}", error=err.reason)) from None
    raise web.HTTPSeeOther(url(f"/polls/{poll.id}", done="closed"))


@routes.get(r"/polls/{id:\d+}/results.xlsx")
async def results_export(request: web.Request) -> web.Response:
    c = ctx(request)
    poll = await _staff_poll(c, request.match_info["id"])
    results = await polls.poll_results(c.db, c.actor, poll.id, now=c.now, cfg=_cfg(c))
    rows: list[tuple] = [(o.text, o.votes if o.votes is not None else "", o.area if o.area is not None else "")
                         for o in results.options]
    rows += [("", "", ""), (_("Voted"), results.voted_units, results.voted_area or ""),
             (_("May vote"), results.eligible_units, results.eligible_area or "")]
    return await xlsx_response(f"poll-{poll.id}-results.xlsx", f"#{poll.id} {poll.question}"[:200],
                               [_("Option"), _("Votes"), _("Area (m²)")], rows)


@routes.get(r"/polls/{id:\d+}/ballots.xlsx")
async def ballots_export(request: web.Request) -> web.Response:
    c = ctx(request)
    poll = await _staff_poll(c, request.match_info["id"])
    try:
        ballots = await polls.poll_ballots(c.db, c.actor, poll.id, limit=EXPORT_ROWS, exported_at=c.now)
    except polls.PollError:  # a secret ballot: there is no such list
        not_found()
    rows = [(b.name or "", room_text(b.building, b.unit, b.room) or "",
             ", ".join(poll.options[i] for i in b.choices if i < len(poll.options)),
             float(b.area) if b.area is not None else "", local_time(b.updated_at, c.tz).strftime("%Y-%m-%d %H:%M"))
            for b in ballots]
    return await xlsx_response(f"poll-{poll.id}-ballots.xlsx", f"#{poll.id} {poll.question}"[:200],
                               [_("Name"), _("Room"), _("Choice"), _("Area (m²)"), _("Time")], rows)
