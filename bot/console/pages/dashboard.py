"""The dashboard: residents and verified share, open alerts, today's check-ins, open polls, recent notices."""

from __future__ import annotations

from aiohttp import web

from bot.console import charts
from bot.console.core import NavItem, ctx, render
from handlers.notices import STATUS_NAMES
from services.dashboard import dashboard
from services.i18n import N_, _

routes = web.RouteTableDef()
NAV = (NavItem("dashboard", N_("Dashboard"), "/", order=10),)


def notice_status(status: object) -> str:
    key = str(getattr(status, "value", status))
    return _(STATUS_NAMES[key]) if key in STATUS_NAMES else key


def _age_label(band: tuple[int, int | None]) -> str:
    lo, hi = band
    return _("{lo}+").format(lo=lo) if hi is None else f"{lo}–{hi}"


@routes.get("/")
async def dashboard_page(request: web.Request) -> web.Response:
    c = ctx(request)
    cfg = c.console.data("checkin_config")
    board = await dashboard(c.db, c.actor, now=c.now, today=cfg.today(c.now), checkin_cfg=cfg)
    ch = board.checkins
    checkin_chart = charts.bars([
        (_("Answered"), ch.answered, "ok"), (_("Waiting"), ch.waiting, "wait"),
        (_("Alert"), ch.alerted, "bad"), (_("Handled"), ch.handled, "muted"),
        (_("Later today"), ch.later, "muted"), (_("Paused"), ch.paused, "muted"),
        (_("Not in the bot"), ch.not_on_bot, "muted")], title=_("Today's check-ins"))
    age_chart = charts.bars([(_age_label(band), n, "info") for band, n in board.ages], title=_("Residents by age"))
    committee_chart = charts.shares([(cc.name, cc.verified, cc.residents) for cc in board.committees],
                                    title=_("Verified residents per committee"))
    return render(request, "dashboard.html", board=board, checkin_chart=checkin_chart, age_chart=age_chart,
                  committee_chart=committee_chart, verified_meter=charts.meter(board.verified_share or 0.0),
                  notice_status=notice_status)
