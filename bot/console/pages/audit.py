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
    "staff.invite": N_("made a staff invite"),
    "invite.create": N_("made household invite codes"),
    "registry.upload": N_("uploaded a registry file"),
    "verify.knowledge": N_("verified with name and ID number"),
    "verify.invite": N_("verified with an invite code"),
    "verify.contact": N_("shared their phone number to verify"),
    "verify.staff_invite": N_("used a staff invite"),
    "verify.review_request": N_("asked staff to verify them"),
    "verify.conflict": N_("claimed an entry someone else holds"),
    "topic.create": N_("opened a topic"),
    "comment.create": N_("commented"),
    "comment.report": N_("reported a comment"),
    "comment.auto_hide": N_("a comment was hidden by reports"),
    "discussion.residents_publish": N_("changed who may publish topics"),
    "checkin.enrol_segment": N_("enrolled a segment in check-ins"),
    "checkin.contact_added": N_("added an emergency contact"),
    "checkin.contact_removed": N_("removed an emergency contact"),
    "checkin.helper": N_("set a check-in helper"),
    "checkin.handover": N_("handed check-ins over"),
    "checkin.handover_end": N_("ended a hand-over"),
    "policy.test": N_("tested a programme's rule"),
    "policy.push": N_("told residents of a programme"),
    "policy.eligible_export": N_("exported a programme's eligible residents"),
}

# What an entry is about, and how it ended; anything else shows as its code.
TARGETS = {
    "resident": N_("resident"), "account": N_("account"), "region": N_("region"), "household": N_("household"),
    "notice": N_("notice"), "poll": N_("poll"), "topic": N_("topic"), "comment": N_("comment"),
    "segment": N_("segment"), "tag": N_("tag"), "alert": N_("alert"), "policy": N_("programme"),
    "verification_request": N_("verification request"),
}
OUTCOMES = {
    "ok": N_("done"), "failed": N_("did not succeed"), "wrong_answer": N_("wrong answer"),
    "not_own_contact": N_("not their own contact"), "unknown_code": N_("unknown code"),
    "used_code": N_("code already used"), "expired_code": N_("code expired"), "no_match": N_("not in the registry"),
    "several": N_("several registry entries"), "no_id_on_file": N_("no ID number on file"),
    "review": N_("sent to staff review"), "pending": N_("waiting for staff"), "approved": N_("approved"),
    "rejected": N_("rejected"), "cancelled": N_("cancelled"), "unknown": N_("unknown link"),
    "used": N_("link already used"), "expired": N_("link expired"), "not_staff": N_("not staff"),
}


def action_label(action: str) -> str:
    return _(ACTIONS[action]) if action in ACTIONS else action


def target_label(target_type: str | None) -> str:
    return _(TARGETS[target_type]) if target_type in TARGETS else (target_type or "")


def outcome_label(outcome: str) -> str:
    return _(OUTCOMES[outcome]) if outcome in OUTCOMES else outcome


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
                  target_label=target_label, outcome_label=outcome_label, detail_text=detail_text,
                  filters={"action": action} if action else {},
                  export_url=url("/audit/export.xlsx", action=action))


@routes.get("/audit/export.xlsx")
async def audit_export(request: web.Request) -> web.Response:
    c = ctx(request)
    action = (request.query.get("action") or "").strip()[:64] or None
    page = await audit.entries(c.db, c.actor, action=action, per_page=EXPORT_ROWS)
    rows = [(fmt.local_time(e.at, c.tz, with_zone=False), e.actor_name or "—", action_label(e.action),
             target_label(e.target_type), e.target_id, e.region or "", outcome_label(e.outcome), detail_text(e.detail))
            for e in page.entries]
    headers = [_("Time"), _("Who"), _("Action"), _("Target"), _("Id"), _("Region"), _("Outcome"), _("Detail")]
    return await xlsx_response(f"audit-{c.now.date().isoformat()}.xlsx", _("Audit log"), headers, rows)
