"""The verification queue: requests for staff review in the staff member's area, oldest first, to
approve or reject, as the bot's /pending does (``services.verification.decide_request`` decides,
tells the requester and audits; an approved resident's command list is published here too, as the
bot's decision button does)."""

from __future__ import annotations

from aiohttp import web

from bot.console.core import Ctx, NavItem, ctx, not_found, query_int, render, url
from bot.console.export import xlsx_response
from handlers.commands import publish_for_account
from services import verification as vs
from services.clock import local_time
from services.i18n import N_, _
from services.ids import parse_db_id
from services.residents import committees_in_scope

routes = web.RouteTableDef()
NAV = (NavItem("verification", N_("Verification"), "/verification", order=25),)
PER_PAGE = 50
EXPORT_ROWS = 10_000
KINDS = {"review": N_("manual review"), "new_member": N_("new household member"),
         "conflict": N_("conflicting claim")}
DONE = {"approved": N_("Approved"), "rejected": N_("Rejected")}


async def _names(c: Ctx) -> dict[int, str]:
    return {r.id: r.name for r in await committees_in_scope(c.db, c.actor)}


async def _queue_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    c = ctx(request)
    total = await vs.count_pending_requests(c.db, c.actor)
    pages = max(1, -(-total // PER_PAGE))
    page = min(query_int(request.query, "page"), pages)
    reqs = await vs.pending_requests(c.db, c.actor, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    names = await _names(c)
    done = request.query.get("done", "")
    return render(request, "verification.html", status=status, error=error,
                  rows=[(r, names.get(r.committee_id, ""), _(KINDS.get(r.kind, r.kind))) for r in reqs],
                  several=len(names) > 1, pager={"page": page, "pages": pages, "total": total}, total=total,
                  done=_(DONE[done]) if done in DONE else None)


@routes.get("/verification")
async def queue_page(request: web.Request) -> web.Response:
    return await _queue_page(request)


@routes.post(r"/verification/{id:\d+}/{decision:approve|reject}")
async def decide(request: web.Request) -> web.Response:
    c = ctx(request)
    approve = request.match_info["decision"] == "approve"
    try:
        _req, account = await vs.decide_request(c.db, c.actor, parse_db_id(request.match_info["id"]) or 0,
                                                approve=approve, now=c.now)
    except vs.NotFoundInScope:
        not_found()
    except vs.VerificationError:
        return await _queue_page(request, error=_("This request has already been decided."), status=409)
    if account is not None and approve:  # their "/" list now shows what a verified resident may use
        await publish_for_account(c.console.rt.bot, c.db, account, default_locale=c.console.app_config.default_locale)
    raise web.HTTPSeeOther(url("/verification", done="approved" if approve else "rejected"))


@routes.get("/verification/export.xlsx")
async def queue_export(request: web.Request) -> web.Response:
    c = ctx(request)
    names = await _names(c)
    rows = [(r.id, names.get(r.committee_id, ""), _(KINDS.get(r.kind, r.kind)), r.name, r.address or "",
             local_time(r.created_at, c.tz).strftime("%Y-%m-%d %H:%M"))
            for r in await vs.pending_requests(c.db, c.actor, limit=EXPORT_ROWS)]
    return await xlsx_response("verification-requests.xlsx", _("Verification requests"),
                               [_("Number"), _("Committee"), _("Kind"), _("Name"), _("Address"), _("Asked")], rows)
