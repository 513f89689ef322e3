"""Daily check-in messages: the words, the escaping and the buttons of everything check-ins say.

Services store plain data (names as typed, times as local ISO text); the builders here turn it into
HTML through autoescaped templates (``notifications/templates/checkins/``) and ``t()``, and build
keyboards from the typed callback data. Handlers use the same helpers for their direct replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from markupsafe import Markup

from notifications.callbacks import (
    AlertCb,
    CheckinCb,
    CheckinMenuCb,
    ContactCb,
    EnrolCb,
    HandoverCb,
    HelperCb,
    HelperPickCb,
)
from notifications.limits import MAX_CAPTION, MAX_MESSAGE, clip, pages
from notifications.render import Buttons, MessageBuilder, Rendered, render_template, t, tn
from services.checkins import format_minute
from services.checkins.common import account_name
from services.i18n import N_, _
from services.models.checkins import EVERY_DAY

# --- words for codes ---------------------------------------------------------------------------

HEADLINES = {
    "no_answer": N_("🔔 Check-in alert: {name} has not answered today's check-in."),
    "unreachable": N_("🔔 Check-in alert: {name} cannot be reached (the bot is blocked)."),
    "help": N_("🆘 {name} pressed \"I need help\"!"),
    "unreached": N_("🔔 Check-in alert: {helper} could not reach {name} today."),
}
# When a helper was to answer: who did not, and who reported what.
HELPER_HEADLINES = {
    ("no_answer", "proxy"): N_("🔔 Check-in alert: nobody answered for {name} today — their helper {helper} did "
                               "not answer."),
    ("no_answer", "self_then_helper"): N_("🔔 Check-in alert: {name} has not answered today's check-in, and their "
                                          "helper {helper} did not answer either."),
    ("no_answer", "duty"): N_("🔔 Check-in alert: nobody answered for {name} today — the committee's staff on duty "
                              "were asked and did not answer."),
    ("help", "helper"): N_("🆘 {helper} reports that {name} needs help!"),
    ("helper_blocked", "proxy"): N_("🔔 Check-in alert: nobody can answer for {name} today — their helper {helper} "
                                    "cannot be reached (the bot is blocked)."),
    ("helper_blocked", "self_then_helper"): N_("🔔 Check-in alert: {name} has not answered today's check-in, and "
                                               "their helper {helper} cannot be reached (the bot is blocked)."),
}
OUTCOME_NAMES = {
    "safe": N_("safe"),
    "needed_help": N_("needed help"),
    "not_reachable": N_("not reachable"),
    "all_clear": N_("all clear: answered \"I'm fine\""),
}
ANSWER_NAMES = {"ok": N_("I'm fine"), "help": N_("I need help"), "noreach": N_("could not reach")}
LEVEL_LINES = {
    1: N_("Level {level} of {levels} — sent to the committee's staff on duty."),
    2: N_("Level {level} of {levels} — sent to street staff (the committee did not respond in time)."),
    3: N_("Level {level} of {levels} — sent to the elder's family (emergency contacts)."),
}
EVENT_NAMES = {
    "prompted": N_("asked"), "reminded": N_("reminded"), "answered": N_("answered"), "paused": N_("paused"),
    "unreachable": N_("could not be reached"), "alert_opened": N_("alert opened"),
    "alert_reopened": N_("alert re-opened"), "alert_sent": N_("alert sent to"), "help_sent": N_("help call sent to"),
    "level_empty": N_("nobody at level"), "escalated": N_("escalated"), "acknowledged": N_("on it"),
    "resolved": N_("closed"), "all_clear": N_("all clear"), "clear_sent": N_("all clear sent to"),
    "ack_sent": N_("told who is on it:"), "resolved_sent": N_("told the outcome:"),
    "family_told": N_("family told:"), "resolve_reminder_sent": N_("reminded to close:"),
    "elder_told": N_("elder told someone checked:"), "stopped": N_("check-ins stopped by"),
    "helper_asked": N_("helper asked:"), "helper_reminded": N_("helper reminded:"),
    "helper_silent": N_("no answer from the helper:"),
    "helper_unreachable": N_("the helper cannot be reached (blocked the bot):"), "handed_over": N_("handed over from"),
}
DAY_NAMES = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


def outcome_name(outcome: str) -> str:
    return _(OUTCOME_NAMES.get(outcome, outcome))


def answer_name(answer: str | None) -> str:
    return _(ANSWER_NAMES[answer]) if answer in ANSWER_NAMES else "?"


def format_days(mask: int) -> str:
    """A weekday mask in the current locale: "every day" or "Mon, Wed, Fri"."""
    if mask == EVERY_DAY:
        return _("every day")
    return ", ".join(_(n) for i, n in enumerate(DAY_NAMES) if mask & (1 << i))


def when(iso: str | None) -> str:
    """A local ISO time as ``MM-DD HH:MM`` (``—`` for none)."""
    return datetime.fromisoformat(iso).strftime("%m-%d %H:%M") if iso else "—"


def clock(iso: str | None) -> str:
    """A local ISO time as ``HH:MM``."""
    return datetime.fromisoformat(iso).strftime("%H:%M") if iso else "—"


def bold(text: str) -> Markup:
    return Markup("<b>{}</b>").format(text)


def button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


# --- the elder ---------------------------------------------------------------------------------

def answer_buttons(round_id: int, *answers: str) -> Buttons:
    """The elder's answer buttons for one round (``ok``, ``help``)."""
    labels = {"ok": _("😊 I'm fine"), "help": _("🆘 I need help"), "ok_now": _("😊 I'm fine now")}
    return [[button(labels[a], CheckinCb(id=round_id, a=a.removesuffix("_now")).pack())] for a in answers]


def prompt(data: Mapping[str, Any]) -> Rendered:
    """Today's question, or the one reminder, with the two answer buttons."""
    if data.get("kind") == "remind":
        text = t("⏰ Reminder: we have not heard from you today.\nPlease tap one button.")
    else:
        text = t("☀️ Good day! How are you today?\nPlease tap one button.")
    return Rendered(text, answer_buttons(int(data["round_id"]), "ok", "help"))


def enrolled(data: Mapping[str, Any]) -> Rendered:
    return Rendered(render_template("checkins/enrolled.html", time=format_minute(data["minute"]),
                                    days=format_days(data["days"]), starts_on=data["starts_on"]))


def stopped(_data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("Your committee has stopped your daily check-ins. If you did not expect this, please "
                      "call your committee."))


def checked_on(data: Mapping[str, Any]) -> Rendered:
    if data.get("outcome") == "needed_help":
        return Rendered(t("🤝 {who} from your committee has dealt with today's alert about you. Take care!",
                          who=data.get("who") or "—"))
    return Rendered(t("🤝 You did not answer today's check-in, so {who} from your committee checked on you. "
                      "All is well, thank you! Take care.", who=data.get("who") or "—"))


def contact_added(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("{who} is now one of your emergency contacts. Send /family to see or change them.",
                      who=data["who"]))


def plan_text(minute: int, days: int, paused_until: str | None) -> Markup:
    """The elder's own plan (/checkin)."""
    return render_template("checkins/plan.html", time=format_minute(minute), days=format_days(days),
                           paused_until=paused_until)


def menu_buttons(*, paused: bool) -> Buttons:
    rows = [[button(_("🕘 Change time"), CheckinMenuCb(a="time").pack())]]
    rows.append([button(_("▶️ Resume check-ins"), CheckinMenuCb(a="resume").pack())] if paused
                else [button(_("⏸ Pause (travel, hospital)"), CheckinMenuCb(a="pause").pack())])
    rows.append([button(_("👪 Family contacts"), CheckinMenuCb(a="family").pack())])
    return rows


def time_buttons(minutes: Sequence[int]) -> Buttons:
    rows = [[button(format_minute(m), CheckinMenuCb(a="t", v=m).pack()) for m in minutes[i:i + 3]]
            for i in range(0, len(minutes), 3)]
    rows.append([button(_("⌨️ Type another time"), CheckinMenuCb(a="tt").pack())])
    return rows


def pause_buttons(days: Sequence[int]) -> Buttons:
    rows = [[button(_("{n} days").format(n=n), CheckinMenuCb(a="p", v=n).pack()) for n in days[i:i + 2]]
            for i in range(0, len(days), 2)]
    rows.append([button(_("📅 Until a date"), CheckinMenuCb(a="pd").pack())])
    return rows


def paused_text(until: str) -> Markup:
    return t("Check-ins paused until {date} (inclusive). Take care! Send /checkin to resume earlier.", date=until)


def family_text(contacts: Sequence[str], link: str, days: int) -> Markup:
    """The elder's emergency contacts (names as typed in Telegram, escaped) and an invite link."""
    return render_template("checkins/family.html", contacts=contacts, link=link, days=days)


def contact_buttons(contacts: Sequence[tuple[int, str]]) -> Buttons:
    # Button labels are plain text (Telegram does not parse them): clipped, not escaped.
    return [[button(_("Remove {name}").format(name=clip(name, 40)), ContactCb(id=cid).pack())]
            for cid, name in contacts]


# --- staff and family: alerts --------------------------------------------------------------------

def alert_buttons(alert_id: int, *, acknowledged: bool = False, history: bool = False) -> Buttons:
    """"I'm on it" (until someone is), the three outcomes, and optionally the history."""
    rows = [] if acknowledged else [[button(_("🙋 I'm on it"), AlertCb(id=alert_id, a="ack").pack())]]
    rows.append([button(_("✅ Safe"), AlertCb(id=alert_id, a="safe").pack()),
                 button(_("🚑 Needed help"), AlertCb(id=alert_id, a="help").pack())])
    rows.append([button(_("📵 Not reachable"), AlertCb(id=alert_id, a="unr").pack())])
    if history:
        rows.append([button(_("📜 History"), AlertCb(id=alert_id, a="hist").pack())])
    return rows


def level_line(level: int, levels: int) -> Markup:
    return t(LEVEL_LINES.get(level, LEVEL_LINES[1]), level=level, levels=levels)


def helper_name(data: Mapping[str, Any]) -> str:
    """Who was to answer for the elder, as plain text: the helper's name, or the on-duty staff."""
    return data.get("helper") or _("the committee's staff on duty")


def alert_headline(data: Mapping[str, Any]) -> Markup:
    """The alert's first line: what happened, and for an elder a helper answers for, who did not
    answer or who reported it."""
    reason, mode = data["reason"], data.get("mode") or "self"
    if reason == "help" and data.get("reported_by"):
        msgid = HELPER_HEADLINES[("help", "helper")]
        return t(msgid, name=bold(data["name"]), helper=data["reported_by"])
    if reason == "unreached":
        return t(HEADLINES["unreached"], name=bold(data["name"]), helper=data.get("reported_by") or helper_name(data))
    if reason == "helper_blocked":
        msgid = HELPER_HEADLINES.get((reason, mode), HELPER_HEADLINES[(reason, "proxy")])
        return t(msgid, name=bold(data["name"]), helper=helper_name(data))
    if reason == "no_answer" and data.get("helper_role") == "duty":
        return t(HELPER_HEADLINES[(reason, "duty")], name=bold(data["name"]))
    if reason == "no_answer" and (reason, mode) in HELPER_HEADLINES and data.get("helper_role"):
        return t(HELPER_HEADLINES[(reason, mode)], name=bold(data["name"]), helper=helper_name(data))
    return t(HEADLINES.get(reason, HEADLINES["no_answer"]), name=bold(data["name"]))


def alert_text(data: Mapping[str, Any], *, view: bool = False) -> Markup:
    """The alert card: who, where, phone, last answer, contacts, level (and, in /alerts, since when
    and who is on it). ``data["family"]``: the reader is one of the elder's emergency contacts."""
    if data.get("last_answer"):
        last = _("{answer}, {time}").format(answer=answer_name(data["last_answer"]), time=when(data["last_answer_at"]))
    else:
        last = _("never")
    headline = alert_headline(data)
    helper = helper_name(data) if data.get("helper_role") else None
    return render_template(
        "checkins/alert.html", headline=headline,
        committee=data["committee"], room=data["room"], phone=data.get("phone"),
        phone_shared=data.get("phone_source") == "telegram", last=last,
        contacts=data.get("contacts") or [], level=level_line(int(data["level"]), int(data["levels"])),
        family=bool(data.get("family")) and not view, name=data["name"], view=view, helper=helper,
        since=when(data.get("opened_at")), acknowledged_by=data.get("acknowledged_by"),
        open=data.get("status") == "open")


def outcome_answer(outcome: str) -> str:
    """"Closed: safe." as plain text (a button's answer)."""
    return _("Closed: {outcome}.").format(outcome=outcome_name(outcome))


def alert(data: Mapping[str, Any]) -> Rendered:
    return Rendered(alert_text(data), alert_buttons(int(data["alert_id"]),
                                                    acknowledged=data.get("status") == "acknowledged"))


def alert_view(data: Mapping[str, Any]) -> Rendered:
    """An open alert as /alerts lists it (with the history button)."""
    return Rendered(alert_text(data, view=True), alert_buttons(
        int(data["alert_id"]), acknowledged=data.get("status") == "acknowledged", history=True))


def alert_taken(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("🙋 {who} is on it: {name} ({room}).", who=data["who"], name=data["name"], room=data["room"]))


def alert_closed(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("{name} ({room}): closed by {who} — {outcome}.", name=data["name"], room=data["room"],
                      who=data["who"], outcome=outcome_name(data["outcome"])))


def all_clear(data: Mapping[str, Any]) -> Rendered:
    if data.get("helper"):
        return Rendered(t("✅ All clear: {helper} saw or spoke to {name} ({room}) at {time}: all well.",
                          helper=data["helper"], name=data["name"], room=data["room"], time=when(data["at"])))
    return Rendered(t("✅ All clear: {name} ({room}) answered \"I'm fine\" at {time}.", name=data["name"],
                      room=data["room"], time=when(data["at"])))


def family_unreachable(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("The committee could not reach {name} today. Please check on them.", name=data["name"]))


def resolve_reminder(data: Mapping[str, Any]) -> Rendered:
    text = t("⏳ Still open: you said you are on it for {name} ({room}) at {time}. Please close it with a button.",
             name=data["name"], room=data["room"], time=when(data["acknowledged_at"]))
    return Rendered(text, alert_buttons(int(data["alert_id"]), acknowledged=True))


def paused(data: Mapping[str, Any]) -> Rendered:
    return Rendered(render_template("checkins/paused.html", name=data["name"], room=data["room"],
                                    until=data["until"], note=data.get("note")))


def history_lines(steps: Sequence[Any]) -> list[Markup]:
    """An alert's history, one escaped line per step."""
    lines = []
    for step in steps:
        parts: list[Any] = [when(step.at), _(EVENT_NAMES.get(step.kind, step.kind))]
        parts += [p for p in (step.actor, step.target) if p]
        if step.answer:
            parts.append(answer_name(step.answer))
        if step.outcome:
            parts.append(outcome_name(step.outcome))
        if step.level:
            parts.append(f"L{step.level}")
        lines.append(Markup(" · ").join(parts))
    return lines


# --- staff: enrolment and the board ----------------------------------------------------------------

def enrol_buttons(choices: Sequence[tuple[int, str]], minute: int | None, days: int | None) -> Buttons:
    """One button per matching resident (labels are plain text), carrying the typed time and days."""
    return [[button(label, EnrolCb(rid=rid, m=-1 if minute is None else minute, d=days or 0).pack())]
            for rid, label in choices]


def enrolled_reply(name: str, room: str, minute: int, days: int, starts_on: str, *, on_bot: bool,
                   mode: str = "self") -> Markup:
    text = t("Enrolled {name} ({room}): daily check-in at {time}, {days}, from {start}.", name=name, room=room,
             time=format_minute(minute), days=format_days(days), start=starts_on)
    if mode == "proxy":
        return text + "\n" + t("Their helper answers for them (/checkin_helper).")
    if on_bot:
        return text + "\n" + t("They have been told when they will be asked and how to change or pause it.")
    return text + "\n" + t("They have not joined the bot yet: check-ins start once they do (household invite: "
                           "/invite).")


def committee_list(committees: Sequence[Any], limit: int = 20) -> str:
    """``name (code), …`` of a few committees (plain text), or ``—``."""
    return ", ".join(f"{clip(c.name, 40)} ({c.code})" for c in committees[:limit]) or "—"


BOARD_SECTIONS = (
    ("help", N_("🆘 Need help")),
    ("alerted", N_("🔔 Alerted")),
    ("handled", N_("✅ Checked by staff")),
    ("helper_wait", N_("🧑‍🤝‍🧑 Waiting for a helper")),
    ("reminded", N_("⏰ Reminded, no answer yet")),
    ("pending", N_("⌛ Asked, no answer yet")),
    ("answered", N_("😊 Answered")),
    ("paused", N_("⏸ Paused")),
    ("later", N_("🕘 Later today")),
    ("not_on_bot", N_("📵 Not on the bot yet")),
)
MAX_BOARD_LINES = 30


def _helper_label(line: Any) -> str:
    return line.helper or _("the committee's staff on duty")


def _board_item(kind: str, line: Any) -> str:
    label = f"{line.name} ({line.room})"
    if kind == "answered":
        who = _("by {helper}").format(helper=line.via) if line.via else _("self")
        return f"{label} {clock(line.at)} · {who}"
    if kind == "helper_wait":
        text = f"{label} · {_helper_label(line)}"
        return text + " ⏰" if line.late else text
    if kind in ("help", "alerted") and line.via:
        return f"{label} · " + _("reported by {helper}").format(helper=line.via)
    if kind == "later" and line.helper is not None:
        return f"{label} {format_minute(line.minute)} · {_helper_label(line)}"
    if kind == "paused":
        return f"{label} → {line.until or '—'}"
    if kind == "later":
        return f"{label} {format_minute(line.minute)}"
    if kind == "handled":
        return f"{label} — {outcome_name(line.outcome)}" + (f" ({line.by})" if line.by else "")
    return label


def board_pages(board: Any, limit: int = MAX_MESSAGE) -> list[Markup]:
    """Today's board as messages: every committee in detail when there is one, one line each
    otherwise; each section lists at most ``MAX_BOARD_LINES`` names."""
    if not board.committees:
        return [t("Nobody is enrolled in daily check-ins in your area.")]
    committees = []
    for c in board.committees:
        sections = []
        for kind, title in BOARD_SECTIONS:
            lines = getattr(c, kind)
            if lines:
                sections.append({"title": _(title), "count": len(lines),
                                 "lines": [_board_item(kind, line) for line in lines[:MAX_BOARD_LINES]],
                                 "more": max(0, len(lines) - MAX_BOARD_LINES)})
        committees.append({"name": c.committee, "sections": sections, "ok": len(c.answered), "help": len(c.help),
                           "alerted": len(c.alerted), "handled": len(c.handled), "waiting": c.waiting,
                           "paused": len(c.paused), "helpers": [helper_stats_line(h.data()) for h in c.helpers]})
    text = render_template("checkins/board.html", day=board.day.isoformat(), committees=committees,
                           detailed=len(committees) == 1)
    return [Markup(page) for page in pages(text.split("\n"), limit)]


# --- staff: the weekly report ------------------------------------------------------------------

def rate_text(answered: int, asked: int) -> str:
    return f"{answered * 100 / asked:.0f}%" if asked else "—"


def report_title(committee: str, start: str, end: str) -> str:
    """The report's title as plain text (chart title, sheet title)."""
    return _("Check-ins of {committee}, {start} – {end}").format(committee=committee, start=start, end=end)


def helper_stats_line(h: Mapping[str, Any]) -> str:
    """One helper's answers as plain text: "王阿姨: 5/6 answered, 1 late"."""
    name = clip(h["name"], 30) if h.get("name") else _("the committee's staff on duty")
    text = _("{helper}: {answered}/{asked} answered, {late} late").format(
        helper=name, answered=h["answered"], asked=h["asked"], late=h["late"])
    if h.get("silent"):
        text += ", " + _("{n} not answered").format(n=h["silent"])
    return text


MAX_REPORT_HELPERS = 8  # the weekly text is a photo caption (1,024 characters)


def weekly_text(data: Mapping[str, Any], limit: int = MAX_CAPTION) -> Markup:
    """The week as a message (short enough for a photo caption)."""
    days = [{**d, "label": date.fromisoformat(d["day"]).strftime("%m-%d"), "by_helper": d.get("by_helper", 0),
             "answered": d["ok"] + d["help"], "rate": rate_text(d["ok"] + d["help"], d["rounds"])}
            for d in data["days"]]
    asked = sum(d["rounds"] for d in days)
    answered = sum(d["answered"] for d in days)
    helpers = [helper_stats_line(h) for h in (data.get("helpers") or [])]
    return render_template("checkins/weekly.html", committee=clip(data["committee"], 60), start=data["start"],
                           end=data["end"], days=days, asked=asked, answered=answered,
                           rate=rate_text(answered, asked), helpers=helpers[:MAX_REPORT_HELPERS],
                           more_helpers=max(0, len(helpers) - MAX_REPORT_HELPERS))


def weekly(data: Mapping[str, Any]) -> Rendered:
    return Rendered(weekly_text(data))


def weekly_sheet(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("{title} (XLSX)", title=report_title(clip(data["committee"], 60), data["start"], data["end"])))


# --- helpers who answer for elders --------------------------------------------------------------

HELPER_STATES = {
    "waiting": N_("⌛ Waiting for your answer"),
    "alerted": N_("🔔 No answer in time: staff have been alerted. You can still answer."),
    "ok": N_("✅ All well ({time})"),
    "noreach": N_("📵 Could not reach ({time}): staff have been alerted."),
    "help": N_("🆘 Needs help ({time}): staff have been alerted."),
    "paused": N_("⏸ Check-ins paused"),
}
MODE_NAMES = {"self": N_("answers themselves"), "proxy": N_("a helper answers every day"),
              "self_then_helper": N_("answers themselves; if not, their helper")}


def mode_name(mode: str) -> str:
    return _(MODE_NAMES.get(mode, MODE_NAMES["self"]))


def helper_state(line: Mapping[str, Any]) -> Markup:
    text = t(HELPER_STATES.get(line["state"], HELPER_STATES["waiting"]), time=clock(line.get("at")))
    if line["state"] == "ok" and line.get("by") == "self":
        text += " — " + t("answered the check-in themselves")
    return text


def helper_buttons(lines: Sequence[Mapping[str, Any]]) -> Buttons:
    """Per elder still to answer: "Seen / spoke — all well", then "Could not reach" and "Needs help"
    (after "Could not reach", only "all well" is left: the helper may reach them later)."""
    rows: Buttons = []
    for i, line in enumerate(lines, 1):
        if line["state"] not in ("waiting", "alerted", "noreach"):
            continue
        rid = int(line["round_id"])
        rows.append([button(_("✅ {n}. {name}: seen / spoke — all well").format(n=i, name=clip(line["name"], 12)),
                            HelperCb(r=rid, a="ok").pack())])
        if line["state"] != "noreach":
            rows.append([button(_("📵 {n}. Could not reach").format(n=i), HelperCb(r=rid, a="noreach").pack()),
                         button(_("🆘 {n}. Needs help").format(n=i), HelperCb(r=rid, a="help").pack())])
    return rows


def helper_list_text(data: Mapping[str, Any]) -> Markup:
    """A helper's list (outbox ``checkins.helper_list``, /helping, and its edits): a headline by kind,
    then each elder with room, phone (as text: Telegram makes a number tap-to-call), note and state."""
    lines = data.get("lines") or []
    waiting = sum(1 for line in lines if line["state"] in ("waiting", "alerted", "noreach"))
    kind = data.get("kind") or "daily"
    day = date.fromisoformat(data["day"]).strftime("%m-%d")
    if kind == "fallback" and data.get("names"):
        headline = t("🔔 {names} did not answer today's check-in. Please look in on them or call, then tap a "
                     "button.", names=", ".join(clip(n, 30) for n in data["names"]))
    elif kind == "remind" and waiting:
        headline = tn("⏰ Reminder: {n} elder is still waiting for your answer today ({date}).",
                      "⏰ Reminder: {n} elders are still waiting for your answer today ({date}).", waiting, date=day)
    else:
        headline = t("🏠 Your check-ins for today, {date}: after a visit or a call, tap one button for each.",
                     date=day)
    items = [{"name": clip(line["name"], 60), "room": line["room"], "phone": line.get("phone"),
              "note": clip(line["note"], 100) if line.get("note") else None, "state": helper_state(line)}
             for line in lines]
    return render_template("checkins/helper_list.html", headline=headline, items=items,
                           covering=", ".join(data.get("covering") or []), duty=data.get("role") == "duty",
                           more=int(data.get("more") or 0))


def helper_list(data: Mapping[str, Any]) -> Rendered:
    return Rendered(helper_list_text(data), helper_buttons(data.get("lines") or []) or None)


def helper_assigned(data: Mapping[str, Any]) -> Rendered:
    return Rendered(render_template("checkins/helper_assigned.html", by=data.get("by"), name=data["name"],
                                    room=data["room"], proxy=data["mode"] == "proxy", time=data["time"],
                                    days=format_days(int(data["days"])), note=data.get("note")))


def helper_removed(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("You no longer answer the daily check-in for {name} ({room}). Thank you for looking in on "
                      "them!", name=data["name"], room=data["room"]))


def helper_joined(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("🤝 {who} opened your helper link: they now answer the daily check-in for {name} ({room}).",
                      who=data["who"], name=data["name"], room=data["room"]))


def handover(data: Mapping[str, Any]) -> Rendered:
    return Rendered(render_template("checkins/handover.html", role=data["role"], helper=data["helper"],
                                    substitute=data.get("substitute"), start=data["start"], end=data["end"],
                                    elders=int(data["elders"]), committee=data["committee"], by=data.get("by")))


def helper_left(data: Mapping[str, Any]) -> Rendered:
    elders = [{"name": clip(e["name"], 60), "room": e["room"]} for e in data.get("elders") or []]
    return Rendered(render_template("checkins/helper_left.html", helper=data["helper"], committee=data["committee"],
                                    elders=elders, stood_in=data.get("stood_in") or []))


def handover_ended(data: Mapping[str, Any]) -> Rendered:
    return Rendered(t("🏠 {helper} is back: from tomorrow they answer for their elders of {committee} again "
                      "(the hand-over ends {end}).", helper=data["helper"], committee=data["committee"],
                      end=data["end"]))


def handover_reply(helper: str, substitute: str | None, end: str, moved: int) -> Markup:
    """What the one who arranged a hand-over reads."""
    to = substitute or _("the committee's staff on duty")
    text = t("🧳 Handed over until {end} (inclusive): {helper}'s elders go to {to}. The staff on duty have been "
             "told.", end=end, helper=helper, to=to)
    if moved:
        text += "\n" + tn("{n} of today's check-ins moved at once.", "{n} of today's check-ins moved at once.", moved)
    return text


def handover_days_buttons(helper_id: int, committee_id: int, choices: Sequence[int]) -> Buttons:
    rows = [[button(tn("{n} day", "{n} days", n), HandoverCb(a="d", h=helper_id, c=committee_id, d=n).pack())
             for n in choices[i:i + 2]] for i in range(0, len(choices), 2)]
    return rows


def handover_substitute_buttons(helper_id: int, committee_id: int, days: int,
                                candidates: Sequence[tuple[int, str]]) -> Buttons:
    # Button labels are plain text (Telegram does not parse them): clipped, not escaped.
    rows = [[button(clip(name, 40), HandoverCb(a="s", h=helper_id, c=committee_id, d=days, s=aid).pack())]
            for aid, name in candidates]
    rows.append([button(_("🏢 The committee's staff on duty"),
                        HandoverCb(a="s", h=helper_id, c=committee_id, d=days, s=0).pack())])
    return rows


def helping_buttons(lines: Sequence[Mapping[str, Any]], committees: Sequence[tuple[int, str]], helper_id: int,
                    handovers: Sequence[int]) -> Buttons:
    """/helping: the list's buttons, then "Hand over" per committee and "I'm back" per hand-over."""
    rows = helper_buttons(lines)
    for committee_id, name in committees:
        label = _("🧳 Hand over (travel, illness)") if len(committees) == 1 else \
            _("🧳 Hand over: {committee}").format(committee=clip(name, 30))
        rows.append([button(label, HandoverCb(a="h", h=helper_id, c=committee_id).pack())])
    for handover_id in handovers:
        rows.append([button(_("🏠 I'm back: end the hand-over"), HandoverCb(a="end", e=handover_id).pack())])
    return rows


def handover_lines(handovers: Sequence[Any]) -> list[Markup]:
    """The hand-overs not over yet, as the helper away or the substitute sees them."""
    out = []
    for h in handovers:
        if h.away:
            out.append(t("🧳 Handed over {start} – {end} ({committee}) to {to}.", start=h.start, end=h.end,
                         committee=h.committee, to=h.substitute or _("the committee's staff on duty")))
        else:
            out.append(t("🧳 You stand in for {helper} {start} – {end} ({committee}).", helper=h.helper,
                         start=h.start, end=h.end, committee=h.committee))
    return out


def pick_helper_buttons(resident_id: int, candidates: Sequence[tuple[int, str]], *, me: int | None,
                        alone: bool) -> Buttons:
    """/checkin_helper: who answers for the elder (labels are plain text)."""
    rows = []
    if me is not None:
        rows.append([button(_("🙋 Me"), HelperPickCb(rid=resident_id, acc=me).pack())])
    rows += [[button(clip(label, 60), HelperPickCb(rid=resident_id, acc=aid).pack())] for aid, label in candidates]
    rows.append([button(_("🔗 Invite a helper by link"), HelperPickCb(rid=resident_id, m="link").pack())])
    if alone:
        rows.append([button(_("👤 The elder answers alone"), HelperPickCb(rid=resident_id, m="alone").pack())])
    return rows


def account_label(account: Any) -> str:
    """A person as others see them here: Telegram name, and @username when there is one (plain text)."""
    return account_name(account)


CANDIDATE_DETAILS = {"family": N_("family contact"), "helper": N_("helper"), "staff": N_("staff")}


def candidate_detail(detail: str) -> str:
    """What a possible helper is to the elder (a room stays as it is)."""
    return _(CANDIDATE_DETAILS[detail]) if detail in CANDIDATE_DETAILS else detail


def pick_helper_text(name: str, room: str, current: Any) -> Markup:
    """/checkin_helper: the elder, how they answer now, and how to choose someone."""
    if current is None:
        now_text = t("Not enrolled yet: choosing a helper enrols them (09:00 every day; change it with "
                     "/checkin_enrol).")
    else:
        now_text = t("Now: {mode}.", mode=mode_name(current.mode))
        if current.helper:
            now_text += " " + t("Helper: {helper}.", helper=current.helper)
    text = t("Who answers the daily check-in for {name} ({room})?", name=name, room=room) + "\n" + now_text
    if current is not None and current.note:
        text += "\n" + t("Their note: {note}", note=current.note)
    return text + "\n" + t("Send a name or room to find a resident on the bot (as /whois), or choose:")


def helper_assigned_reply(name: str, room: str, helper: str, mode: str, time: str) -> Markup:
    if mode == "proxy":
        return t("{helper} now answers the daily check-in for {name} ({room}): their list comes each day from "
                 "{time}. They have been told.", helper=helper, name=name, room=room, time=time)
    return t("{name} ({room}) answers the daily check-in themselves; when they do not, {helper} is asked. "
             "{helper} has been told.", helper=helper, name=name, room=room)


def handover_helper_buttons(rows: Sequence[tuple[int, int, str]]) -> Buttons:
    """/checkin_handover: one button per helper and committee (labels are plain text)."""
    return [[button(clip(label, 60), HandoverCb(a="h", h=helper_id, c=committee_id).pack())]
            for helper_id, committee_id, label in rows]


def mode_buttons(resident_id: int, account_id: int, *, link: bool = False) -> Buttons:
    """The two helper modes for a chosen helper (or for an invite link)."""
    proxy, first = ("lp", "ls") if link else ("p", "s")
    return [[button(_("🤝 The helper answers every day"),
                    HelperPickCb(rid=resident_id, acc=account_id, m=proxy).pack())],
            [button(_("👤 The elder first, the helper if they do not answer"),
                    HelperPickCb(rid=resident_id, acc=account_id, m=first).pack())]]


MESSAGES: dict[str, MessageBuilder] = {
    "checkins.prompt": prompt,
    "checkins.enrolled": enrolled,
    "checkins.stopped": stopped,
    "checkins.checked_on": checked_on,
    "checkins.contact_added": contact_added,
    "checkins.alert": alert,
    "checkins.alert_taken": alert_taken,
    "checkins.alert_closed": alert_closed,
    "checkins.all_clear": all_clear,
    "checkins.family_unreachable": family_unreachable,
    "checkins.resolve_reminder": resolve_reminder,
    "checkins.paused": paused,
    "checkins.weekly": weekly,
    "checkins.weekly_sheet": weekly_sheet,
    "checkins.helper_list": helper_list,
    "checkins.helper_assigned": helper_assigned,
    "checkins.helper_removed": helper_removed,
    "checkins.helper_joined": helper_joined,
    "checkins.handover": handover,
    "checkins.handover_ended": handover_ended,
    "checkins.helper_left": helper_left,
}
