"""What the check-in routers share: refusals worded politely, in the user's language."""

from __future__ import annotations

from markupsafe import Markup, escape

from services.checkins import MAX_PAUSE_DAYS, CheckinError
from services.i18n import _


def refusal(err: CheckinError) -> str:
    """A refusal as plain text (for callback answers, which Telegram shows without HTML)."""
    texts = {
        "not_yours": lambda: _("This button is no longer valid."),
        "not_found": lambda: _("This alert does not exist or is outside your area."),
        "closed": lambda: _("This alert is already closed."),
        "taken": lambda: _("{who} is already on it.").format(who=err.info.get("by", "?")),
        "bad_outcome": lambda: _("This button is no longer valid."),
        "not_enrolled": lambda: _("You are not enrolled in daily check-ins. Your committee staff can enrol you."),
        "bad_time": lambda: _("That is not a time of day. Please give a time between 00:00 and 23:59, like 08:30."),
        "bad_days": lambda: _("Those are not days of the week. Please use daily, weekdays, 1-5 or 1,3,5 "
                              "(1 = Monday)."),
        "past_date": lambda: _("That date has already passed."),
        "too_far": lambda: _("Please choose a date within {n} days.").format(n=err.info.get("days", MAX_PAUSE_DAYS)),
        "not_active": lambda: _("This resident is not active in the registry."),
        "unknown_code": lambda: _("This family link is not valid."),
        "used_code": lambda: _("This family link has already been used. Please ask for a new one."),
        "expired_code": lambda: _("This family link has expired. Please ask for a new one."),
        "own_code": lambda: _("This is your own family link: send it to a family member."),
        "already_contact": lambda: _("You are already an emergency contact of {name}. The link stays unused: "
                                     "it can go to someone else.").format(name=err.info.get("name", "?")),
        "not_a_helper": lambda: _("They cannot answer for this elder: a helper is a verified resident of the "
                                  "committee, one of the elder's emergency contacts, or staff."),
        "own_helper": lambda: _("An elder cannot be their own helper."),
        "too_many": lambda: _("They already answer for {n} elders, as many as one list can hold.").format(
            n=err.info.get("n", "?")),
        "bad_mode": lambda: _("This button is no longer valid."),
        "answered": lambda: _("Already answered today. If they need help now, press \"Needs help\" or call the "
                              "committee."),
        "unknown_helper_code": lambda: _("This helper link is not valid."),
        "used_helper_code": lambda: _("This helper link has already been used. Please ask for a new one."),
        "expired_helper_code": lambda: _("This helper link has expired. Please ask for a new one."),
        "bad_days_handover": lambda: _("Please choose between 1 and {n} days.").format(n=err.info.get("n", "?")),
    }
    text = texts.get(err.reason)
    return text() if text else _("Sorry, that did not work.")


def refusal_html(err: CheckinError) -> Markup:
    """A refusal for a message (HTML): the same words, escaped."""
    return escape(refusal(err))
