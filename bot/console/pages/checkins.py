"""Check-ins: today's board of a committee and its alerts, live; "I'm on it" and closing an alert from
the page; an alert's card and history; XLSX of the board and of the open alerts.

The board is live without a framework: ``static/board.js`` opens an ``EventSource`` on
``/checkins/{committee}/events`` and, when an event says the board changed, fetches the board again
as an HTML fragment (``/checkins/{committee}/live``). The stream is one committee's (an id outside the
staff member's area: 404) and holds no database connection while it waits: every ``POLL_SECONDS`` it
asks ``services.checkins.board_version`` in a short transaction of its own (which also re-checks that
the session is open and the committee still in the member's area), and a change made in this process
(an alert taken or closed from the console) wakes the streams of that committee at once. Everything
acts through the bot's own functions (``services.checkins.acknowledge``, ``resolve``), with the same
refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

from aiohttp import web

from bot.console.core import CONSOLE, Ctx, NavItem, ctx, not_found, render, url
from bot.console.export import xlsx_response
from handlers.checkins.common import refusal
from notifications.messages import checkins as views
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.console_auth import still_signed_in
from services.i18n import N_, _
from services.ids import parse_db_id
from services.models import AlertOutcome, Region
from services.residents import committees_in_scope

routes = web.RouteTableDef()
NAV = (NavItem("checkins", N_("Check-ins"), "/checkins", order=40),)
POLL_SECONDS = 3.0  # how often an open stream asks the database whether its board changed
KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
RETRY_MS = 3000  # the browser's wait before it reconnects a dropped stream
ALERTS_SHOWN = 50
EXPORT_ROWS = 5000
OUTCOMES = {"safe": AlertOutcome.safe, "needed_help": AlertOutcome.needed_help,
            "not_reachable": AlertOutcome.not_reachable}
REASONS = {"no_answer": N_("No answer"), "unreachable": N_("Cannot be reached"), "help": N_("Asked for help"),
           "unreached": N_("Helper could not reach them"), "helper_blocked": N_("Their helper cannot be reached")}
STATUSES = {"open": N_("open"), "acknowledged": N_("someone is on it"), "resolved": N_("closed")}
DONE = {"ack": N_("You are on it. Please close the alert when you know more."),
        "resolved": N_("The alert is closed.")}


# --- in-process wake-ups and the streams' end --------------------------------------------------


class LiveBoards:
    """The open event streams of this process, by committee: a change made here wakes them at once
    (the database poll catches every other change, made by the bot or another worker)."""

    def __init__(self) -> None:
        self._waiting: dict[int, set[asyncio.Event]] = {}
        self.closing = False

    @contextlib.contextmanager
    def listening(self, committee_id: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(committee_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiting.get(committee_id, set())
            waiting.discard(event)
            if not waiting:
                self._waiting.pop(committee_id, None)

    def changed(self, committee_id: int) -> None:
        for event in self._waiting.get(committee_id, ()):
            event.set()

    def streams(self) -> int:
        return sum(len(events) for events in self._waiting.values())

    async def close(self, _app: web.Application) -> None:
        """On shutdown: every stream ends now (the browser reconnects to whichever worker is left)."""
        self.closing = True
        for events in self._waiting.values():
            for event in events:
                event.set()


LIVE = web.AppKey("checkins_live", LiveBoards)


def setup(app: web.Application) -> None:
    """Called by the console as it is built: the streams' registry, ended on shutdown."""
    app[LIVE] = LiveBoards()
    app.on_shutdown.append(app[LIVE].close)


# --- helpers --------------------------------------------------------------------------------------


def _cfg(c: Ctx) -> CheckinConfig:
    return c.console.data("checkin_config")


async def _committee(c: Ctx, raw: str) -> Region:
    committee = await cs.committee_in_reach(c.db, c.actor, parse_db_id(raw))
    if committee is None:
        not_found()
    return committee


def reason_name(reason: str) -> str:
    return _(REASONS[reason]) if reason in REASONS else reason


def status_name(status: str) -> str:
    return _(STATUSES[status]) if status in STATUSES else status


def line_text(state: str, line: cs.BoardLine) -> str:
    """What the board says of one elder besides name and room (plain text; the template escapes it)."""
    parts: list[str] = []
    if state == "answered":
        parts += [views.clock(line.at), _("by {helper}").format(helper=line.via) if line.via else _("self")]
    elif state in ("help", "alerted") and line.via:
        parts.append(_("reported by {helper}").format(helper=line.via))
    elif state == "handled":
        parts.append(views.outcome_name(line.outcome or "") + (f" ({line.by})" if line.by else ""))
    elif state == "paused":
        parts.append("→ " + (line.until or "—"))
    elif state == "later" and line.minute is not None:
        parts.append(cs.format_minute(line.minute))
    if line.helper is not None and state in ("helper_wait", "later"):
        parts.append(line.helper or _("the committee's staff on duty"))
    if state == "helper_wait" and line.late:
        parts.append(_("reminded"))
    return " · ".join(p for p in parts if p)


def _sections(board: cs.Board) -> list[dict]:
    if not board.committees:
        return []
    committee = board.committees[0]
    return [{"key": key, "title": _(title), "lines": [(line, line_text(key, line)) for line in getattr(committee, key)]}
            for key, title in views.BOARD_SECTIONS if getattr(committee, key)]


async def _live_data(c: Ctx, committee: Region) -> dict:
    cfg = _cfg(c)
    board = await cs.board(c.db, c.actor, now=c.now, cfg=cfg, committee_id=committee.id)
    alerts = await cs.open_alerts(c.db, c.actor, cfg=cfg, limit=ALERTS_SHOWN, committee_id=committee.id)
    version = await cs.board_version(c.db, c.actor, committee.id, now=c.now, cfg=cfg)
    helpers = [views.helper_stats_line(h.data()) for h in board.committees[0].helpers] if board.committees else []
    return {"committee": committee, "day": board.day, "sections": _sections(board), "alerts": alerts,
            "version": version, "helpers": helpers, "headline": views.alert_headline,
            "level_line": views.level_line, "when": views.when, "answer_name": views.answer_name,
            "reason_name": reason_name, "status_name": status_name,
            "counts": {key: len(getattr(board.committees[0], key)) if board.committees else 0
                       for key in cs.BOARD_STATES}}


async def _board_page(request: web.Request, committee: Region, *, error: str | None = None,
                      status: int = 200) -> web.Response:
    c = ctx(request)
    committees = await committees_in_scope(c.db, c.actor)
    done = request.query.get("done")
    return render(request, "checkins.html", status=status, committees=committees, error=error,
                  done=_(DONE[done]) if done in DONE else None, **await _live_data(c, committee))


def _back(committee_id: int, to: object, alert_id: int, **query: str) -> str:
    """Where a button's form goes back to: the alert's page, or its committee's board."""
    return url(f"/checkins/alerts/{alert_id}", **query) if to == "alert" else url(f"/checkins/{committee_id}",
                                                                                      **query)


# --- pages ---------------------------------------------------------------------------------------------


@routes.get("/checkins")
async def overview(request: web.Request) -> web.Response:
    """One committee: its board. Several: a line each (counts, open alerts), linking to their boards."""
    c = ctx(request)
    chosen = parse_db_id(request.query.get("committee"))
    if chosen is not None:  # the committee switch of a board page (its board checks the scope)
        raise web.HTTPSeeOther(url(f"/checkins/{chosen}"))
    committees = await committees_in_scope(c.db, c.actor)
    if len(committees) == 1:
        raise web.HTTPSeeOther(url(f"/checkins/{committees[0].id}"))
    board = await cs.board(c.db, c.actor, now=c.now, cfg=_cfg(c))
    by_id = {b.committee_id: b for b in board.committees}
    alerts = await cs.open_alerts(c.db, c.actor, cfg=_cfg(c), limit=ALERTS_SHOWN)
    open_by = {}
    for card in alerts:
        open_by[card.committee] = open_by.get(card.committee, 0) + 1
    rows = [(r, by_id.get(r.id), open_by.get(r.name, 0)) for r in committees]
    return render(request, "checkins_overview.html", rows=rows, day=board.day)


@routes.get(r"/checkins/{committee:\d+}")
async def board_page(request: web.Request) -> web.Response:
    c = ctx(request)
    return await _board_page(request, await _committee(c, request.match_info["committee"]))


@routes.get(r"/checkins/{committee:\d+}/live")
async def board_fragment(request: web.Request) -> web.Response:
    """The live part of the board page (alerts and today's lists) as an HTML fragment."""
    c = ctx(request)
    committee = await _committee(c, request.match_info["committee"])
    return render(request, "checkins_live.html", **await _live_data(c, committee))


def _event(name: str, data: str, *, event_id: str | None = None) -> bytes:
    lines = [f"event: {name}"] + ([f"id: {event_id}"] if event_id else []) + [f"data: {data}", "", ""]
    return "\n".join(lines).encode()


@routes.get(r"/checkins/{committee:\d+}/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for one committee's board: ``board`` (data: the new version) whenever it
    changes, ``end`` when the session is over (the page reloads, to the sign-in), comments to keep the
    line open. The version the page has comes as ``?v=`` or, on a reconnect, as Last-Event-ID."""
    c = ctx(request)
    committee = await _committee(c, request.match_info["committee"])
    assert c.signed_in is not None
    session_id = c.signed_in.session.id
    console = request.app[CONSOLE]
    live = request.app[LIVE]
    cfg = _cfg(c)
    known = request.headers.get("Last-Event-ID") or request.query.get("v") or ""
    await c.db.commit()  # the request.s own transaction ends here: a waiting stream holds no connection
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        with live.listening(committee.id) as woken:
            while not live.closing and request.transport is not None and not request.transport.is_closing():
                now = console.now()
                async with console.rt.sessions() as db:
                    actor = await still_signed_in(db, session_id, now=now, cfg=console.cfg,
                                                  default_locale=console.app_config.default_locale)
                    version = None if actor is None else await cs.board_version(db, actor, committee.id, now=now,
                                                                                cfg=cfg)
                if version is None:  # signed out, idle, no longer staff, or the committee left their area
                    await response.write(_event("end", json.dumps({"reason": "signed_out"})))
                    break
                if version != known:
                    known = version
                    await response.write(_event("board", version, event_id=version))
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                    await response.write(b": still here\n\n")
                    quiet_since = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), POLL_SECONDS)
                woken.clear()
    except ConnectionError:  # the browser went away (it reconnects by itself if it wants to)
        pass
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


@routes.get(r"/checkins/alerts/{id:\d+}")
async def alert_page(request: web.Request) -> web.Response:
    """One alert (open or closed): its card, the buttons while it is open, and its round's history."""
    c = ctx(request)
    found = await cs.staff_alert(c.db, c.actor, parse_db_id(request.match_info["id"]), cfg=_cfg(c))
    if found is None:
        not_found()
    history = await cs.round_history(c.db, c.actor, found.card.alert_id, cfg=_cfg(c))
    done = request.query.get("done")
    return render(request, "checkin_alert.html", card=found.card, history=views.history_lines(history),
                  committee_id=found.committee_id, done=_(DONE[done]) if done in DONE else None,
                  headline=views.alert_headline, level_line=views.level_line, when=views.when,
                  answer_name=views.answer_name, reason_name=reason_name, status_name=status_name,
                  outcome_name=views.outcome_name)


async def _refused(request: web.Request, c: Ctx, alert_id: int, err: CheckinError) -> web.Response:
    """A refusal in the bot's own words, on the board of the alert's committee (nothing was changed)."""
    found = await cs.staff_alert(c.db, c.actor, alert_id, cfg=_cfg(c))
    if err.reason == "not_found" or found is None:
        not_found()
    committee = await _committee(c, str(found.committee_id))
    return await _board_page(request, committee, error=refusal(err), status=409)


@routes.post(r"/checkins/alerts/{id:\d+}/ack")
async def acknowledge(request: web.Request) -> web.Response:
    """"I'm on it": the bot's button, from the page (the others alerted hear who took it)."""
    c = ctx(request)
    alert_id = parse_db_id(request.match_info["id"])
    if alert_id is None:
        not_found()
    form = await request.post()
    try:
        alert = await cs.acknowledge(c.db, c.actor, alert_id, now=c.now)
    except CheckinError as err:
        return await _refused(request, c, alert_id, err)
    committee_id = alert.committee_id
    await c.db.commit()  # before the streams look again
    request.app[LIVE].changed(committee_id)
    raise web.HTTPSeeOther(_back(committee_id, form.get("back"), alert_id, done="ack"))


@routes.post(r"/checkins/alerts/{id:\d+}/resolve")
async def resolve(request: web.Request) -> web.Response:
    """Close an alert with an outcome (safe, needed help, not reachable): the bot's three buttons."""
    c = ctx(request)
    alert_id = parse_db_id(request.match_info["id"])
    if alert_id is None:
        not_found()
    form = await request.post()
    outcome = OUTCOMES.get(str(form.get("outcome") or ""))
    if outcome is None:
        raise web.HTTPBadRequest()
    try:
        alert = await cs.resolve(c.db, c.actor, alert_id, outcome, now=c.now, cfg=_cfg(c))
    except CheckinError as err:
        return await _refused(request, c, alert_id, err)
    committee_id = alert.committee_id
    await c.db.commit()
    request.app[LIVE].changed(committee_id)
    raise web.HTTPSeeOther(_back(committee_id, form.get("back"), alert_id, done="resolved"))


# --- downloads -------------------------------------------------------------------------------------


@routes.get(r"/checkins/{committee:\d+}/export.xlsx")
async def board_export(request: web.Request) -> web.Response:
    """Today's board of the committee, one elder a row, most urgent first."""
    c = ctx(request)
    committee = await _committee(c, request.match_info["committee"])
    board = await cs.board(c.db, c.actor, now=c.now, cfg=_cfg(c), committee_id=committee.id)
    rows = [(section["title"], line.name, line.room, text)
            for section in _sections(board) for line, text in section["lines"]][:EXPORT_ROWS]
    return await xlsx_response(f"checkins-{committee.code}-{board.day.isoformat()}.xlsx", _("Check-ins"),
                               [_("State"), _("Name"), _("Room"), _("Details")], rows)


@routes.get(r"/checkins/{committee:\d+}/alerts.xlsx")
async def alerts_export(request: web.Request) -> web.Response:
    """The committee's open alerts (open or taken), oldest first, with the phone to call."""
    c = ctx(request)
    committee = await _committee(c, request.match_info["committee"])
    cards = await cs.open_alerts(c.db, c.actor, cfg=_cfg(c), limit=EXPORT_ROWS, committee_id=committee.id)
    rows = [(views.when(a.opened_at), a.name, a.room, reason_name(a.reason), status_name(a.status),
             f"{a.level}/{a.levels}", a.phone or "", a.acknowledged_by or "", ", ".join(a.contacts)) for a in cards]
    day = _cfg(c).today(c.now).isoformat()
    headers = [_("Since"), _("Name"), _("Room"), _("Reason"), _("Status"), _("Level"), _("Phone"), _("On it"),
               _("Emergency contacts")]
    return await xlsx_response(f"alerts-{committee.code}-{day}.xlsx", _("Alerts"), headers, rows)
