"""Residents: search and filter (tag, segment, committee, status), pages, XLSX export; a resident's
card (tags, household, verification, who viewed or changed what), with manual tags set and removed."""

from __future__ import annotations

from datetime import date

from aiohttp import web
from multidict import MultiMapping

from bot.console.core import Ctx, NavItem, ctx, not_found, query_int, render, url
from bot.console.export import xlsx_response
from bot.console.pages.audit import action_label, detail_text
from notifications import format as fmt
from services import residents as rs
from services import segments as seg
from services import tags as ts
from services.i18n import N_, _
from services.identity import mask_phone
from services.ids import parse_db_id
from services.models import ResidentStatus
from services.residents import ResidentFilter, ResidentListError

routes = web.RouteTableDef()
NAV = (NavItem("residents", N_("Residents"), "/residents", order=20),)
PER_PAGE = 50
STATUSES = {"active": ResidentStatus.active, "moved_out": ResidentStatus.moved_out,
            "withdrawn": ResidentStatus.withdrawn, "all": None}
DONE = {"added": N_("The tag was added."), "removed": N_("The tag was removed."),
        "unchanged": N_("Nothing changed: it was already so.")}


def _filter(query: MultiMapping[str]) -> ResidentFilter:
    status = query.get("status") or "active"
    return ResidentFilter(query=(query.get("q") or "").strip()[:50], tag=(query.get("tag") or "").strip() or None,
                          segment_id=parse_db_id(query.get("segment")),
                          committee_id=parse_db_id(query.get("committee")),
                          status=STATUSES.get(status, ResidentStatus.active))


async def _scoped_filter(c: Ctx, query: MultiMapping[str]) -> ResidentFilter:
    """The list's filter; a committee outside the staff member's area is a 404 (as a segment is)."""
    flt = _filter(query)
    if flt.committee_id is not None and flt.committee_id not in {
            r.id for r in await rs.committees_in_scope(c.db, c.actor)}:
        not_found()
    return flt


def _filter_query(query: MultiMapping[str]) -> dict[str, str]:
    """The list's filters as given, to carry into pager links and the export link."""
    return {k: query[k] for k in ("q", "tag", "segment", "committee", "status") if query.get(k)}


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


async def _choices(c: Ctx) -> dict:
    return {"tags": await ts.list_tags(c.db, c.actor), "segments": await seg.list_segments(c.db, c.actor),
            "committees": await rs.committees_in_scope(c.db, c.actor)}


@routes.get("/residents")
async def residents_list(request: web.Request) -> web.Response:
    c = ctx(request)
    flt = await _scoped_filter(c, request.query)
    today = c.console.data("checkin_config").today(c.now)
    error, status = None, 200
    try:
        page = await rs.list_residents(c.db, c.actor, flt, today=today, page=query_int(request.query, "page"),
                                       per_page=PER_PAGE)
    except ResidentListError as err:
        if err.field == "segment":
            not_found()
        error, status = str(err), 400
        page = rs.ResidentPage([], 0, 1, PER_PAGE)
    filters = _filter_query(request.query)
    return render(request, "residents.html", status=status, page=page, flt=flt, filters=filters, error=error,
                  status_key=request.query.get("status") or "active", today=today, age=_age,
                  export_url=url("/residents/export.xlsx", **filters), **await _choices(c))


@routes.get("/residents/export.xlsx")
async def residents_export(request: web.Request) -> web.Response:
    c = ctx(request)
    flt = await _scoped_filter(c, request.query)
    today = c.console.data("checkin_config").today(c.now)
    try:
        rows = await rs.export_residents(c.db, c.actor, flt, today=today, now=c.now)
    except ResidentListError:
        not_found()
    headers = [_("Name"), _("Committee"), _("Building"), _("Unit"), _("Room"), _("Age"), _("Gender"), _("Status"),
               _("In the bot")]
    body = [(r.name, r.committee, r.building, r.unit, r.room, _age(r.birth_date, today),
             _gender(r.gender),
             fmt.resident_status(r.status), fmt.yes_no(r.verified)) for r in rows]
    return await xlsx_response(f"residents-{today.isoformat()}.xlsx", _("Residents"), headers, body)


async def _card(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    c = ctx(request)
    resident_id = parse_db_id(request.match_info["id"])
    card = None if resident_id is None else await rs.resident_card(c.db, c.actor, resident_id, now=c.now)
    if card is None:
        not_found()
    today = c.console.data("checkin_config").today(c.now)
    present = {t.tag.code for t in card.tags}
    manual = [tag for tag in await ts.list_tags(c.db, c.actor)
              if tag.kind == ts.TagKind.manual and tag.code not in present]
    done = request.query.get("done")
    return render(request, "resident.html", status=status, card=card, r=card.resident, today=today, age=_age,
                  phone=mask_phone(card.resident.phone), manual_tags=manual, error=error,
                  done=_(DONE[done]) if done in DONE else None, gender=_gender(card.resident.gender),
                  action_label=action_label, detail_text=detail_text, verification_method=_method)


def _method(method: str | None) -> str:
    return _(fmt.VERIFICATION_METHODS[method]) if method in fmt.VERIFICATION_METHODS else (method or "—")


def _gender(code: str | None) -> str:
    return _(fmt.GENDERS[code]) if code in fmt.GENDERS else (code or "—")


@routes.get(r"/residents/{id:\d+}")
async def resident_page(request: web.Request) -> web.Response:
    return await _card(request)


@routes.post(r"/residents/{id:\d+}/tags")
async def resident_tag(request: web.Request) -> web.Response:
    """Add (``action=add``) or remove (``action=remove``) a manual tag: the bot's /tag and /untag."""
    c = ctx(request)
    resident_id = parse_db_id(request.match_info["id"])
    form = await request.post()
    code, action = form.get("code"), form.get("action")
    if resident_id is None or not isinstance(code, str) or action not in ("add", "remove"):
        raise web.HTTPBadRequest()
    change = ts.tag_resident if action == "add" else ts.untag_resident
    try:
        changed = await change(c.db, c.actor, resident_id, code, c.now)
    except ts.NotInScope:
        not_found()
    except ts.TagError as err:
        return await _card(request, error=str(err), status=400)
    done = ("added" if action == "add" else "removed") if changed else "unchanged"
    raise web.HTTPSeeOther(url(f"/residents/{resident_id}", done=done))
