"""Discussion messages (议事厅): the topic list and a topic's page with their buttons, the digest, the
proposal staff review, the decision and mute notices, and the refusals.

Services hand over dataclasses or plain JSON; the words are chosen here in the reader's language.
Residents appear by building ("Resident of building 3"), staff by role; a name is shown only to staff
readers, and every value is escaped by ``t()`` and ``templates/discussions/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from notifications.callbacks import CommentCb, TopicCb, TopicsCb
from notifications.limits import clip, pages
from notifications.render import Buttons, MessageBuilder, Rendered, render_template, t
from services.discussions import Author, CommentView, DiscussionError, TopicPage, TopicView
from services.i18n import N_, _

ROLE_WORDS = {"committee": N_("Committee staff"), "street": N_("Street office staff"),
              "district": N_("District staff"), "admin": N_("Administrator")}
MAX_BUTTONS = 90  # Telegram allows 100 per keyboard


def author_label(author: Author | Mapping[str, Any]) -> Markup:
    """A writer as readers see them: staff by role, residents by building; staff readers also see
    the name behind it."""
    if isinstance(author, Mapping):
        author = Author(author.get("role"), author.get("building"))
    if author.role:
        label = t(ROLE_WORDS.get(author.role, N_("Committee staff")))
    elif author.building:
        label = t("Resident of building {building}", building=author.building)
    else:
        label = t("Resident")
    if author.name:
        return t("{label} ({name}, account {account})", label=label, name=clip(author.name, 60),
                 account=author.account_id or "—")
    return label


def comment_line(c: CommentView | Mapping[str, Any]) -> Markup:
    if isinstance(c, Mapping):
        return render_template("discussions/comment.html", id=c["id"], author=author_label(c["author"]),
                               body=c["body"], hidden=False, reason=None)
    return render_template("discussions/comment.html", id=c.id, author=author_label(c.author), body=c.body,
                           hidden=c.hidden, reason=c.hidden_reason or "—")


# --- the list and a topic -------------------------------------------------------------------------------


def list_text(page: TopicPage) -> Markup:
    return render_template(
        "discussions/list.html", header=_("Neighbourhood discussions"),
        topics=[{"id": i.id, "title": i.title, "building": i.building, "comments": i.comments,
                 "locked": i.status == "locked"} for i in page.items],
        page=page.page + 1, pages=page.pages,
        footer=_("Press a topic to read it and take part. /topic_new proposes a new one."))


def list_buttons(page: TopicPage) -> Buttons:
    rows: Buttons = [[{"text": f"#{i.id} {clip(i.title, 40)} ({i.comments})",
                       "callback_data": TopicCb(a="view", t=i.id).pack()}] for i in page.items]
    nav = []
    if page.page > 0:
        nav.append({"text": _("« Previous"), "callback_data": TopicsCb(pg=page.page - 1).pack()})
    if page.page + 1 < page.pages:
        nav.append({"text": _("Next »"), "callback_data": TopicsCb(pg=page.page + 1).pack()})
    if nav:
        rows.append(nav)
    return rows


def topic_text(view: TopicView) -> Markup:
    comments = [{"line": comment_line(c), "replies": [{"line": comment_line(r)} for r in c.replies]}
                for c in view.comments]
    return render_template("discussions/topic.html", id=view.id, title=view.title, author=author_label(view.author),
                           building=view.building, status=view.status, body=view.body, count=view.count,
                           page=view.page + 1, pages=view.pages, comments=comments)


def topic_buttons(view: TopicView) -> Buttons:
    """Reply and report per comment (not on hidden ones or one's own), paging, comment, subscribe."""
    rows: Buttons = []
    count = 0
    open_ = view.status == "open"
    for c in view.comments:
        row = []
        if not c.hidden and open_:
            row.append({"text": _("↩ Reply #{id}").format(id=c.id),
                        "callback_data": CommentCb(a="reply", t=view.id, c=c.id).pack()})
        for target in [c, *c.replies]:
            if not target.hidden and not target.mine and not view.moderator:
                row.append({"text": _("⚠ #{id}").format(id=target.id),
                            "callback_data": CommentCb(a="report", t=view.id, c=target.id).pack()})
        for i in range(0, len(row), 4):
            if count + len(row[i:i + 4]) > MAX_BUTTONS:
                break
            rows.append(row[i:i + 4])
            count += len(row[i:i + 4])
    nav = []
    if view.page + 1 < view.pages:
        nav.append({"text": _("« Older"), "callback_data": TopicCb(a="view", t=view.id, pg=view.page + 1).pack()})
    if view.page > 0:
        nav.append({"text": _("Newer »"), "callback_data": TopicCb(a="view", t=view.id, pg=view.page - 1).pack()})
    if nav:
        rows.append(nav)
    last = []
    if open_:
        last.append({"text": _("💬 Comment"), "callback_data": TopicCb(a="say", t=view.id).pack()})
    if view.subscribed:
        last.append({"text": _("🔕 Unsubscribe"), "callback_data": TopicCb(a="unsub", t=view.id).pack()})
    else:
        last.append({"text": _("🔔 Subscribe"), "callback_data": TopicCb(a="sub", t=view.id).pack()})
    rows.append(last)
    return rows


def topic_messages(view: TopicView, lead: Markup | None = None) -> list[Rendered]:
    """A topic page as one message, or several when long (the buttons go with the last); ``lead``, a
    line saying what was just done, opens the first."""
    text = topic_text(view) if lead is None else lead + Markup("\n\n") + topic_text(view)
    parts = pages(text.split("\n"))
    out = [Rendered(Markup(p)) for p in parts[:-1]]
    out.append(Rendered(Markup(parts[-1]), topic_buttons(view)))
    return out


# --- outbox messages ----------------------------------------------------------------------------------


def digest(data: Mapping[str, Any]) -> Rendered:
    topic = data["topic"]
    text = render_template("discussions/digest.html", topic=topic, more=data.get("more", 0),
                           comments=[{"reply": c.get("reply"), "line": comment_line(c)} for c in data["comments"]])
    return Rendered(text, [[{"text": _("Open the topic"), "callback_data": TopicCb(a="view", t=topic["id"]).pack()},
                            {"text": _("🔕 Unsubscribe"), "callback_data": TopicCb(a="unsub", t=topic["id"]).pack()}]])


def proposed(data: Mapping[str, Any]) -> Rendered:
    topic = data["topic"]
    text = render_template("discussions/proposed.html", id=topic["id"], title=topic["title"],
                           body=clip(topic["body"], 2500), building=topic.get("building"),
                           author=author_label(topic["author"]))
    return Rendered(text, [[{"text": _("✅ Publish"), "callback_data": TopicCb(a="approve", t=topic["id"]).pack()},
                            {"text": _("✖ Reject"), "callback_data": TopicCb(a="reject", t=topic["id"]).pack()}]])


def decided(data: Mapping[str, Any]) -> Rendered:
    topic = data["topic"]
    if data.get("approved"):
        return Rendered(t("Your topic #{id} “{title}” is published. Neighbours can comment now; you are "
                          "subscribed.", id=topic["id"], title=topic["title"]),
                        [[{"text": _("Open the topic"), "callback_data": TopicCb(a="view", t=topic["id"]).pack()}]])
    return Rendered(t("Your topic #{id} “{title}” was not published by the committee.", id=topic["id"],
                      title=topic["title"]))


def auto_hidden(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("Comment #{id} in topic #{topic} “{title}” was reported {n} times and is hidden pending "
                      "your review:\n{body}\n\n/comment_restore {id} REASON shows it again; /comment_hide {id} "
                      "REASON keeps it hidden.", id=data["comment"]["id"], topic=data["topic"]["id"],
                      title=data["topic"]["title"], n=data["reports"], body=clip(data["comment"]["body"], 1000)))


def muted(data: Mapping[str, Any]) -> Rendered:
    if not data.get("until"):
        return Rendered(t("You can write in the neighbourhood discussions again."))
    text = t("The committee has paused your writing in the neighbourhood discussions until {until}.",
             until=data["until"])
    if data.get("reason"):
        text = Markup("{}\n{}").format(text, t("Reason: {reason}", reason=data["reason"]))
    return Rendered(text)


# --- refusals ------------------------------------------------------------------------------------------

REFUSALS = {
    "not_verified": N_("Discussions are among verified residents. Send /start to verify."),
    "not_staff": N_("Only committee staff can do this."),
    "no_topic": N_("That topic does not exist or is not open to you (or the button is no longer valid)."),
    "no_comment": N_("That comment is not available (it may be hidden, or the button is no longer valid)."),
    "pending": N_("This topic is waiting for the committee's approval."),
    "locked": N_("This topic is locked: it can be read, but no new comments are taken."),
    "closed": N_("This topic was not published."),
    "empty": N_("Please write some text."),
    "own_comment": N_("You cannot report your own comment."),
    "reported": N_("You have already reported this comment. Thank you."),
    "bad_page": N_("That page does not exist."),
    "not_pending": N_("This proposal has already been decided."),
    "already": N_("Nothing to change: it is already so."),
    "bad_until": N_("Give a time in the future, within a year: 24h, 7d or YYYY-MM-DD HH:MM."),
    "bad_scope": N_("That choice of who takes part is not available."),
}


def refusal(err: DiscussionError) -> Markup:
    """A discussion refusal in the reader's language."""
    info = err.info
    if err.reason == "muted":
        return t("The committee has paused your writing in discussions until {until}.", until=info["until"])
    if err.reason == "too_long":
        return t("That is too long: at most {limit} characters. Nothing was posted.", limit=info["limit"])
    if err.reason == "too_many_comments":
        return t("You have written {limit} comments in the last {minutes} minutes. Please wait a little.",
                 limit=info["limit"], minutes=info["minutes"])
    if err.reason == "too_many_topics":
        return t("You can propose at most {limit} topics a day. Please try again tomorrow.", limit=info["limit"])
    if err.reason == "bad_reason":
        return t("Please give a reason (at most {limit} characters).", limit=info["limit"])
    if err.reason == "not_committee":
        return (t("There is no committee {code} in your area.", code=info["code"]) if info.get("code")
                else t("Discussions are run by committee staff for their committee."))
    return t(REFUSALS.get(err.reason, N_("That did not work. Please try again.")))


MESSAGES: dict[str, MessageBuilder] = {"discussions.digest": digest, "discussions.proposed": proposed,
                                       "discussions.decided": decided, "discussions.auto_hidden": auto_hidden,
                                       "discussions.muted": muted}
