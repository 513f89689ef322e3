"""The audit log of the staff member's area: who did what, when, with what outcome; XLSX export."""

from __future__ import annotations

from aiohttp import web

from bot.console.core import NavItem, ctx, query_int, render, url
from bot.console.export import xlsx_response
from notifications import format as fmt
from services import audit
from services.i18n import N_, _

routes = web.RouteTableDef()
NAV = (NavItem("audit", N_("Audit log"), "/audit", order=90),)
PER_PAGE = 50
EXPORT_ROWS = 10_000

# Actions as staff read them; an action without an entry shows as its code.
ACTIONS = {
    "resident.view": N_("viewed a resident"),
    "resident.export": N_("exported residents"),
    "tag.add": N_("added a tag"),
    "tag.remove": N_("removed a tag"),
    "tag.define": N_("defined a tag"),
    "segment.save": N_("saved a segment"),
    "segment.delete": N_("deleted a segment"),
    "console.link": N_("asked for a console link"),
    "console.login": N_("signed in to the console"),
    "console.logout": N_("signed out of the console"),
    "registry.import": N_("imported the registry"),
    "registry.confirm": N_("confirmed a resident"),
    "verify.decision": N_("decided a verification request"),
    "notice.create": N_("wrote a notice"),
    "notice.cancel": N_("cancelled a notice"),
    "poll.create": N_("made a poll"),
    "poll.close": N_("closed a poll"),
    "poll.ballots_export": N_("exported a poll's ballots"),
    "notice.call_list": N_("viewed a notice's call list"),
    "notice.unconfirmed": N_("viewed who has not received a notice"),
    "comment.hide": N_("hid a comment"),
    "comment.restore": N_("restored a comment"),
    "topic.approve": N_("published a proposed topic"),
    "topic.reject": N_("rejected a proposed topic"),
    "topic.lock": N_("locked a topic"),
    "topic.unlock": N_("reopened a topic"),
    "discussion.mute": N_("muted a resident in discussions"),
    "discussion.unmute": N_("unmuted a resident in discussions"),
    "checkin.enrol": N_("enrolled a resident in check-ins"),
    "checkin.unenrol": N_("stopped check-ins"),
    "checkin.alert_ack": N_("took on an alert"),
    "checkin.alert_resolve": N_("closed an alert"),
    "privacy.forget": N_("deleted their data"),
    "staff.enrol": N_("joined as staff"),
}


def action_label(action: str) -> str:
    return _(ACTIONS[action]) if action in ACTIONS else action


def detail_text(detail: dict | None) -> str:
    """The audit detail as ``key: value`` pairs (services never put phone or ID numbers in it)."""
    if not detail:
        return ""
    return "; ".join(f"{k}: {v}" for k, v in detail.items() if v not in (None, ""))


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.Response:
    c = ctx(request)
    action = (request.query.get("action") or "").strip()[:64] or None
    page = await audit.entries(c.db, c.actor, action=action, page=query_int(request.query, "page"),
                               per_page=PER_PAGE)
    actions = await audit.actions_in_scope(c.db, c.actor)
    return render(request, "audit.html", page=page, action=action or "", actions=actions, action_label=action_label,
                  detail_text=detail_text, filters={"action": action} if action else {},
                  export_url=url("/audit/export.xlsx", action=action))


@routes.get("/audit/export.xlsx")
async def audit_export(request: web.Request) -> web.Response:
    c = ctx(request)
    action = (request.query.get("action") or "").strip()[:64] or None
    page = await audit.entries(c.db, c.actor, action=action, per_page=EXPORT_ROWS)
    rows = [(fmt.local_time(e.at, c.tz, with_zone=False), e.actor_name or "—", action_label(e.action),
             e.target_type or "", e.target_id, e.region or "", e.outcome, detail_text(e.detail)) for e in page.entries]
    headers = [_("Time"), _("Who"), _("Action"), _("Target"), _("Id"), _("Region"), _("Outcome"), _("Detail")]
    return await xlsx_response(f"audit-{c.now.date().isoformat()}.xlsx", _("Audit log"), headers, rows)
