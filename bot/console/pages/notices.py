"""Notices: the list; composing one for an audience (everyone, residents with any of some tags, or a
saved segment) with its recipients counted live; the preview of the draft, sent now or at a time;
the delivery report that fills as the sender works, with who has not received it; the call list of
residents the bot cannot reach. Every rule is ``services.notices``' (the bot's /notice uses the same
drafts, the same count and the same release), so a double click sends nothing twice.
"""

from __future__ import annotations

import html
import re

from aiohttp import web
from multidict import MultiMapping

from bot.console.core import Ctx, NavItem, ctx, not_found, query_int, render, url
from bot.console.export import xlsx_response
from handlers.notices import STATUS_NAMES
from notifications.format import room_text
from notifications.render import plain
from services import notices as ns
from services.clock import local_time, parse_local_time
from services.i18n import N_, _, ngettext
from services.ids import parse_db_id
from services.models import Notice, NoticeStatus
from services.outbox import MAX_TEXT
from services.segments import list_segments
from services.tags import list_tags, tag_name

routes = web.RouteTableDef()
NAV = (NavItem("notices", N_("Notices"), "/notices", order=40),)
LIST_LIMIT = 100
PER_PAGE = 50
EXPORT_ROWS = 10_000
MAX_NOTICE = MAX_TEXT - 100  # services.notices.check_text keeps room for the heading
DELIVERY = {"failed": N_("failed"), "unreachable": N_("blocked the bot"), "pending": N_("waiting"),
            "sending": N_("waiting"), "sent": N_("delivered, not confirmed"), "cancelled": N_("cancelled"),
            "none": N_("not sent")}
DONE = {"sent": N_("The notice is on its way."), "scheduled": N_("The notice is scheduled."),
        "cancelled": N_("The notice is cancelled; nobody will receive it."),
        "discarded": N_("The draft was discarded."), "reminded": N_("A reminder went to those who have not confirmed.")}
_TAG = re.compile(r"<[^>]*>")


def notice_text(stored: str) -> str:
    """A notice's text as plain characters: the stored text is Telegram HTML (the bot keeps its author's
    bold and italics); the page shows the words, escaped again like any other value."""
    return html.unescape(_TAG.sub("", stored))


def _today(c: Ctx):
    return local_time(c.now, c.tz).date()


def _audience_choice(form: MultiMapping[str]) -> tuple[str, str | None]:
    """(kind, ref) as ``services.notices.audience`` takes them, from the form's fields."""
    kind = form.get("audience") or "committee"
    if kind == "tag":
        return kind, ",".join(v for v in form.getall("tags", []) if isinstance(v, str)) or None
    if kind == "segment":
        return kind, form.get("segment") or None
    return kind, None


async def _audience(c: Ctx, kind: str, ref: str | None) -> ns.Audience:
    """``services.notices.audience``; a segment named by an id that is not in the area is a 404, like
    every other id of another committee (a missing one looks the same)."""
    try:
        return await ns.audience(c.db, c.actor, kind, ref)
    except ns.NoticeError:
        if kind == "segment" and ref:
            not_found()
        raise


def _count_text(residents: int, reachable: int) -> str:
    return ngettext("Audience: {n} resident, of whom {reachable} can be reached in the bot.",
                    "Audience: {n} residents, of whom {reachable} can be reached in the bot.",
                    residents).format(n=residents, reachable=reachable)


async def _audience_label(c: Ctx, notice: Notice) -> str:
    if notice.audience_kind == "committee":
        return _("Everyone in my area")
    if notice.audience_kind == "tag":
        names = {t.code: tag_name(t, c.locale) for t in await list_tags(c.db, c.actor)}
        return ", ".join(names.get(code, code) for code in (notice.audience_ref or "").split(","))
    segments = {str(s.id): s.name for s in await list_segments(c.db, c.actor)}
    return segments.get(notice.audience_ref or "", _("a saved segment"))


async def _notice(c: Ctx, raw: str) -> Notice:
    """A notice of the staff member's area; a draft only to its author (anything else: 404)."""
    notice_id = parse_db_id(raw)
    try:
        notice = await ns.get_notice(c.db, c.actor, notice_id or 0)
    except ns.NoticeError:
        not_found()
    if notice.status == NoticeStatus.draft and notice.author_account_id != c.actor.account_id:
        not_found()
    return notice


# --- the list ---------------------------------------------------------------------------------------


@routes.get("/notices")
async def notices_page(request: web.Request) -> web.Response:
    c = ctx(request)
    items = await ns.list_notices(c.db, c.actor, limit=LIST_LIMIT)
    rows = [(n, _(STATUS_NAMES[n.status.value]), await _audience_label(c, n), notice_text(n.text)) for n in items]
    done = request.query.get("done", "")
    return render(request, "notices.html", rows=rows, done=_(DONE[done]) if done in DONE else None)


@routes.get("/notices/export.xlsx")
async def notices_export(request: web.Request) -> web.Response:
    c = ctx(request)
    items = await ns.list_notices(c.db, c.actor, limit=EXPORT_ROWS)
    rows = [(n.id, _(STATUS_NAMES[n.status.value]), await _audience_label(c, n),
             local_time(n.send_at, c.tz).strftime("%Y-%m-%d %H:%M") if n.send_at else "", n.recipients,
             notice_text(n.text)) for n in items]
    headers = [_("Number"), _("Status"), _("Audience"), _("Send time"), _("Recipients"), _("Text")]
    return await xlsx_response(f"notices-{_today(c).isoformat()}.xlsx", _("Notices"), headers, rows)


# --- composing ----------------------------------------------------------------------------------------


async def _compose(request: web.Request, *, form: MultiMapping[str] | None = None, error: str | None = None,
                   status: int = 200) -> web.Response:
    c = ctx(request)
    form = form if form is not None else request.query
    kind, ref = _audience_choice(form)
    try:
        aud = await _audience(c, kind, ref)
        residents, reachable = await ns.count_recipients(c.db, c.actor, aud, _today(c))
        count = (True, _count_text(residents, reachable))
    except ns.NoticeError as err:
        count = (False, str(err))
    return render(request, "notice_new.html", status=status, error=error, count=count, kind=kind,
                  text=form.get("text", ""), chosen_tags=set(form.getall("tags", [])),
                  chosen_segment=form.get("segment", ""), tags=await list_tags(c.db, c.actor),
                  segments=await list_segments(c.db, c.actor), max_length=MAX_NOTICE)


@routes.get("/notices/new")
async def compose_page(request: web.Request) -> web.Response:
    return await _compose(request)


@routes.get("/notices/count")
async def live_count(request: web.Request) -> web.Response:
    """JSON for the compose form: how many residents the audience has and how many the bot reaches."""
    c = ctx(request)
    kind, ref = _audience_choice(request.query)
    try:
        aud = await _audience(c, kind, ref)
    except ns.NoticeError as err:
        return web.json_response({"ok": False, "text": str(err)})
    residents, reachable = await ns.count_recipients(c.db, c.actor, aud, _today(c))
    return web.json_response({"ok": True, "text": _count_text(residents, reachable), "residents": residents,
                              "reachable": reachable})


@routes.post("/notices")
async def save_draft(request: web.Request) -> web.Response:
    """The composed notice becomes the author's draft (``services.notices.save_draft``); it is sent
    from its preview. Plain text typed here is stored as the Telegram HTML of those characters."""
    c = ctx(request)
    form = await request.post()
    kind, ref = _audience_choice(form)
    text = form.get("text")
    if not isinstance(text, str):
        raise web.HTTPBadRequest()
    try:
        aud = await _audience(c, kind, ref)
        draft = await ns.save_draft(c.db, c.actor, text=str(plain(text.strip())), aud=aud, now=c.now)
    except ns.NoticeError as err:
        return await _compose(request, form=form, error=str(err), status=400)
    raise web.HTTPSeeOther(url(f"/notices/{draft.id}"))


@routes.post(r"/notices/{id:\d+}/send")
async def send(request: web.Request) -> web.Response:
    """Send the draft now or schedule it (``when=later`` with ``send_at``, local time): once only."""
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    form = await request.post()
    send_at = None
    if form.get("when") == "later":
        raw = form.get("send_at")
        send_at = parse_local_time(raw.replace("T", " "), c.tz) if isinstance(raw, str) else None
        if send_at is None:
            return await _notice_page(request, notice, status=400,
                                      error=_("I could not read that time. Please use the form 2026-12-01 09:00."))
    try:
        await ns.send_draft(c.db, c.actor, notice.id, now=c.now, send_at=send_at)
    except ns.NoticeError as err:
        return await _notice_page(request, notice, error=str(err), status=400)
    raise web.HTTPSeeOther(url(f"/notices/{notice.id}", done="scheduled" if send_at else "sent"))


@routes.post(r"/notices/{id:\d+}/discard")
async def discard(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    if not await ns.discard_draft(c.db, c.actor, notice.id):
        return await _notice_page(request, notice, error=_("Only a draft can be discarded."), status=400)
    raise web.HTTPSeeOther(url("/notices", done="discarded"))


@routes.post(r"/notices/{id:\d+}/cancel")
async def cancel(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    try:
        await ns.cancel_notice(c.db, c.actor, notice.id, c.now)
    except ns.NoticeError as err:
        return await _notice_page(request, notice, error=str(err), status=400)
    raise web.HTTPSeeOther(url(f"/notices/{notice.id}", done="cancelled"))


@routes.post(r"/notices/{id:\d+}/remind")
async def remind(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    try:
        await ns.remind_unconfirmed(c.db, c.actor, notice.id, c.now)
    except ns.NoticeError as err:
        return await _notice_page(request, notice, error=str(err), status=400)
    raise web.HTTPSeeOther(url(f"/notices/{notice.id}", done="reminded"))


# --- one notice: the draft's preview, or the delivery report ------------------------------------------


def _figures(rep: ns.NoticeReport) -> dict[str, int]:
    return {"recipients": rep.recipients, "sent": rep.sent, "pending": rep.pending, "failed": rep.failed,
            "unreachable": rep.unreachable, "received": rep.received,
            "unconfirmed": max(0, rep.recipients - rep.received)}


def _final(notice: Notice, figures: dict[str, int]) -> bool:
    """Nothing will change any more: cancelled, or every message delivered and every "Received"
    pressed (until then the report page keeps asking: residents confirm for days)."""
    return notice.status == NoticeStatus.cancelled or (
        notice.status == NoticeStatus.sent and figures["pending"] == 0 and figures["unconfirmed"] == 0)


def _unconfirmed_rows(items: list[ns.Unconfirmed]) -> list[tuple[ns.Unconfirmed, str, str]]:
    return [(u, room_text(u.building, u.unit, u.room) or "—", _(DELIVERY.get(u.delivery, u.delivery)))
            for u in items]


async def _notice_page(request: web.Request, notice: Notice, *, error: str | None = None,
                       status: int = 200) -> web.Response:
    c = ctx(request)
    done = request.query.get("done", "")
    common = {"notice": notice, "text": notice_text(notice.text), "audience": await _audience_label(c, notice),
              "status_name": _(STATUS_NAMES[notice.status.value]), "error": error,
              "done": _(DONE[done]) if done in DONE else None}
    aud = await ns.notice_audience(c.db, c.actor, notice.id)
    residents, reachable = await ns.count_recipients(c.db, c.actor, aud, _today(c))
    if notice.status == NoticeStatus.draft:
        return render(request, "notice_draft.html", status=status, count=_count_text(residents, reachable),
                      unreachable=residents - reachable, reachable=reachable, **common)
    rep = await ns.report(c.db, c.actor, notice.id)
    page = query_int(request.query, "page")
    figures = _figures(rep)
    pages = max(1, -(-figures["unconfirmed"] // PER_PAGE))
    page = min(page, pages)
    items = await ns.unconfirmed_recipients(c.db, c.actor, notice.id, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    if items:
        ns.record_list_view(c.db, c.actor, notice, "unconfirmed", rows=len(items), now=c.now)
    return render(request, "notice_report.html", status=status, figures=figures,
                  final=_final(notice, figures),
                  can_remind=notice.reminded_at is None and rep.sent > rep.received,
                  unconfirmed=_unconfirmed_rows(items), pager={"page": page, "pages": pages},
                  unreachable=residents - reachable, **common)


@routes.get(r"/notices/{id:\d+}")
async def notice_page(request: web.Request) -> web.Response:
    c = ctx(request)
    return await _notice_page(request, await _notice(c, request.match_info["id"]))


@routes.get(r"/notices/{id:\d+}/report.json")
async def report_json(request: web.Request) -> web.Response:
    """The delivery figures now, for the report page to fill in as the sender works (reads only)."""
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    if notice.status == NoticeStatus.draft:
        not_found()
    rep = await ns.report(c.db, c.actor, notice.id)
    figures = _figures(rep)
    return web.json_response({"fields": figures, "final": _final(notice, figures)})


@routes.get(r"/notices/{id:\d+}/unconfirmed.xlsx")
async def unconfirmed_export(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    items = await ns.unconfirmed_recipients(c.db, c.actor, notice.id, limit=EXPORT_ROWS)
    ns.record_list_view(c.db, c.actor, notice, "unconfirmed", rows=len(items), now=c.now, export=True)
    rows = [(u.name, room, u.phone or "", delivery) for u, room, delivery in _unconfirmed_rows(items)]
    return await xlsx_response(f"notice-{notice.id}-not-received.xlsx", _("Not received"),
                               [_("Name"), _("Room"), _("Phone"), _("Delivery")], rows)


# --- the call list: residents of the audience the bot cannot reach --------------------------------------


@routes.get(r"/notices/{id:\d+}/calls")
async def call_list(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    aud = await ns.notice_audience(c.db, c.actor, notice.id)
    residents, reachable = await ns.count_recipients(c.db, c.actor, aud, _today(c))
    total = residents - reachable
    pages = max(1, -(-total // PER_PAGE))
    page = min(query_int(request.query, "page"), pages)
    entries = await ns.unreachable_residents(c.db, c.actor, aud, _today(c), limit=PER_PAGE,
                                             offset=(page - 1) * PER_PAGE)
    if entries:
        ns.record_list_view(c.db, c.actor, notice, "call_list", rows=len(entries), now=c.now)
    rows = [(e, room_text(e.building, e.unit, e.room) or "—") for e in entries]
    return render(request, "notice_calls.html", notice=notice, rows=rows, total=total,
                  pager={"page": page, "pages": pages, "total": total}, audience=await _audience_label(c, notice))


@routes.get(r"/notices/{id:\d+}/calls.xlsx")
async def call_list_export(request: web.Request) -> web.Response:
    c = ctx(request)
    notice = await _notice(c, request.match_info["id"])
    aud = await ns.notice_audience(c.db, c.actor, notice.id)
    entries = await ns.unreachable_residents(c.db, c.actor, aud, _today(c), limit=EXPORT_ROWS)
    ns.record_list_view(c.db, c.actor, notice, "call_list", rows=len(entries), now=c.now, export=True)
    rows = [(e.name, room_text(e.building, e.unit, e.room) or "", e.phone or "") for e in entries]
    return await xlsx_response(f"notice-{notice.id}-call-list.xlsx", _("Call list"),
                               [_("Name"), _("Room"), _("Phone")], rows)

