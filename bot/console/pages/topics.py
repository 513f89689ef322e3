"""Topics and moderation: the committees' topics, proposals waiting for review and comments hidden by
reports; a topic with its comments as staff see them (names, hidden text and its reason); publishing
or rejecting a proposal, locking and reopening a topic, hiding and restoring a comment with a reason,
muting and unmuting its author; staff opening a topic. Every rule and every audit record is
``services.discussions``' (the bot's /topics_review and /comment_hide call the same functions).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from aiohttp import web
from multidict import MultiMapping

from bot.console.core import Ctx, NavItem, ctx, not_found, query_int, render, url
from bot.console.export import xlsx_response
from notifications.messages import discussions as views
from services import discussions as ds
from services.i18n import N_, _
from services.ids import parse_db_id
from services.residents import committees_in_scope

routes = web.RouteTableDef()
NAV = (NavItem("topics", N_("Topics"), "/topics", order=50),)
TOPICS_PAGE = 20
COMMENTS_PAGE = 20
EXPORT_ROWS = 10_000
MAX_PAGE = 10_001  # services.discussions.check_page: pages 0 … 10,000
MUTES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MUTE_NAMES = {"1d": N_("for a day"), "7d": N_("for a week"), "30d": N_("for 30 days")}
STATUS_NAMES = {"open": N_("open"), "locked": N_("locked"), "pending": N_("waiting for review"),
                "rejected": N_("rejected")}
DONE = {"approved": N_("Published; its author is told."), "rejected": N_("Rejected; its author is told."),
        "locked": N_("The topic is locked."), "unlocked": N_("The topic is open again."),
        "hidden": N_("The comment is hidden."), "restored": N_("The comment is shown again."),
        "muted": N_("Its author cannot write in this committee's discussions until then."),
        "unmuted": N_("Its author may write again."), "opened": N_("The topic is open.")}
# Refusals that mean "not here" answer 404: another committee's topic looks exactly like a missing one.
NOT_HERE = frozenset({"no_topic", "no_comment", "not_staff", "not_committee"})


def _cfg(c: Ctx) -> ds.DiscussionConfig:
    return dataclasses.replace(c.console.data("discussion_config"), topics_page=TOPICS_PAGE,
                               comments_page=COMMENTS_PAGE)


def _refused(err: ds.DiscussionError) -> str:
    if err.reason in NOT_HERE:
        not_found()
    return str(views.refusal(err).striptags())


def _reason(form: MultiMapping[str]) -> str | None:
    value = form.get("reason")
    return value if isinstance(value, str) else None


# --- the lists ---------------------------------------------------------------------------------------


async def _list_page(request: web.Request, *, form: MultiMapping[str] | None = None, error: str | None = None,
                     status: int = 200) -> web.Response:
    c = ctx(request)
    cfg = _cfg(c)
    listed = await ds.list_topics(c.db, c.actor, query_int(request.query, "page", hi=MAX_PAGE) - 1, cfg=cfg)
    pending = await ds.list_topics(c.db, c.actor, 0, cfg=cfg, pending=True)
    hidden = await ds.hidden_by_reports(c.db, c.actor, limit=50)
    done = request.query.get("done", "")
    return render(request, "topics.html", status=status, listed=listed,
                  pager={"page": listed.page + 1, "pages": listed.pages, "total": listed.total},
                  pending=pending.items, hidden=[(h, views.author_label(h.author)) for h in hidden],
                  committees=await committees_in_scope(c.db, c.actor), form=form or {}, error=error,
                  done=_(DONE[done]) if done in DONE else None, status_name=lambda s: _(STATUS_NAMES.get(s, s)),
                  max_title=cfg.max_title, max_body=cfg.max_body)


@routes.get("/topics")
async def topics_page(request: web.Request) -> web.Response:
    return await _list_page(request)


@routes.post("/topics")
async def open_topic(request: web.Request) -> web.Response:
    """Staff open a topic in a committee of theirs, for all of it or one building."""
    c = ctx(request)
    form = await request.post()
    building = str(form.get("building") or "").strip()
    draft = ds.TopicDraft(title=str(form.get("title") or ""), body=str(form.get("body") or ""),
                          scope="building" if building else "committee", building=building or None)
    try:
        result = await ds.create_topic(c.db, c.actor, draft, now=c.now, cfg=_cfg(c),
                                       code=str(form.get("committee") or "") or None)
    except ds.DiscussionError as err:
        return await _list_page(request, form=form, error=_refused(err), status=400)
    raise web.HTTPSeeOther(url(f"/topics/{result.topic.id}", done="opened"))


@routes.get("/topics/export.xlsx")
async def topics_export(request: web.Request) -> web.Response:
    c = ctx(request)
    cfg = dataclasses.replace(_cfg(c), topics_page=EXPORT_ROWS)
    listed = await ds.list_topics(c.db, c.actor, 0, cfg=cfg)
    rows = [(t.id, t.title, _(STATUS_NAMES.get(t.status, t.status)), t.building or "", t.comments)
            for t in listed.items]
    return await xlsx_response("topics.xlsx", _("Topics"),
                               [_("Number"), _("Title"), _("Status"), _("Building"), _("Comments")], rows)


# --- one topic ----------------------------------------------------------------------------------------


async def _topic_page(request: web.Request, topic_id: object, *, error: str | None = None,
                      status: int = 200) -> web.Response:
    c = ctx(request)
    try:
        view = await ds.topic_view(c.db, c.actor, topic_id, query_int(request.query, "page", hi=MAX_PAGE) - 1,
                                   cfg=_cfg(c))
    except ds.DiscussionError as err:
        _refused(err)
        raise  # every reason of topic_view is "not here" (a page beyond the last is the last)
    if not view.moderator:
        not_found()
    done = request.query.get("done", "")
    return render(request, "topic.html", status=status, view=view, error=error,
                  done=_(DONE[done]) if done in DONE else None, author_label=views.author_label,
                  status_name=_(STATUS_NAMES.get(view.status, view.status)), mutes=MUTE_NAMES,
                  pager={"page": view.page + 1, "pages": view.pages})


@routes.get(r"/topics/{id:\d+}")
async def topic_page(request: web.Request) -> web.Response:
    return await _topic_page(request, parse_db_id(request.match_info["id"]))


async def _topic_action(request: web.Request, action, done: str) -> web.Response:
    c = ctx(request)
    topic_id = parse_db_id(request.match_info["id"])
    form = await request.post()
    try:
        await action(c, topic_id, form)
    except ds.DiscussionError as err:
        return await _topic_page(request, topic_id, error=_refused(err), status=400)
    raise web.HTTPSeeOther(url(f"/topics/{topic_id}", done=done))


@routes.post(r"/topics/{id:\d+}/approve")
async def approve(request: web.Request) -> web.Response:
    return await _topic_action(request, lambda c, tid, form: ds.decide_topic(c.db, c.actor, tid, True, now=c.now),
                               "approved")


@routes.post(r"/topics/{id:\d+}/reject")
async def reject(request: web.Request) -> web.Response:
    return await _topic_action(request, lambda c, tid, form: ds.decide_topic(c.db, c.actor, tid, False, now=c.now),
                               "rejected")


@routes.post(r"/topics/{id:\d+}/lock")
async def lock(request: web.Request) -> web.Response:
    return await _topic_action(request, lambda c, tid, form: ds.set_locked(
        c.db, c.actor, tid, True, now=c.now, reason=_reason(form), cfg=_cfg(c)), "locked")


@routes.post(r"/topics/{id:\d+}/unlock")
async def unlock(request: web.Request) -> web.Response:
    return await _topic_action(request, lambda c, tid, form: ds.set_locked(
        c.db, c.actor, tid, False, now=c.now, reason=_reason(form), cfg=_cfg(c)), "unlocked")


# --- comments: hide, restore, mute their author ------------------------------------------------------------


async def _comment_action(request: web.Request, action, done: str) -> web.Response:
    """Act on comment ``id``; the service checks that it lies in the staff member's committees (the
    topic in the URL only says where to go back to)."""
    c = ctx(request)
    topic_id = parse_db_id(request.match_info["topic"])
    comment_id = parse_db_id(request.match_info["id"])
    form = await request.post()
    try:
        await action(c, comment_id, form)
    except ds.DiscussionError as err:
        return await _topic_page(request, topic_id, error=_refused(err), status=400)
    raise web.HTTPSeeOther(url(f"/topics/{topic_id}", done=done))


@routes.post(r"/topics/{topic:\d+}/comments/{id:\d+}/hide")
async def hide(request: web.Request) -> web.Response:
    return await _comment_action(request, lambda c, cid, form: ds.hide_comment(
        c.db, c.actor, cid, _reason(form), now=c.now, cfg=_cfg(c)), "hidden")


@routes.post(r"/topics/{topic:\d+}/comments/{id:\d+}/restore")
async def restore(request: web.Request) -> web.Response:
    return await _comment_action(request, lambda c, cid, form: ds.restore_comment(
        c.db, c.actor, cid, _reason(form), now=c.now, cfg=_cfg(c)), "restored")


async def _mute(c: Ctx, comment_id: int | None, form: MultiMapping[str]):
    length = MUTES.get(str(form.get("for") or ""))
    if length is None:
        raise ds.DiscussionError("bad_until")
    return await ds.mute_author(c.db, c.actor, comment_id, c.now + length, now=c.now, cfg=_cfg(c),
                                reason=_reason(form))


@routes.post(r"/topics/{topic:\d+}/comments/{id:\d+}/mute")
async def mute(request: web.Request) -> web.Response:
    return await _comment_action(request, _mute, "muted")


@routes.post(r"/topics/{topic:\d+}/comments/{id:\d+}/unmute")
async def unmute(request: web.Request) -> web.Response:
    return await _comment_action(request, lambda c, cid, form: ds.mute_author(
        c.db, c.actor, cid, None, now=c.now, cfg=_cfg(c)), "unmuted")
