"""The bot's commands, in one place: /help, the menu and ``set_my_commands`` read this list."""

from __future__ import annotations

from dataclasses import dataclass

from services.i18n import N_
from services.scope import Actor


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str  # an untranslated msgid; translate with _() where shown
    audience: str  # "all", "resident" (verified), "staff"


COMMANDS: tuple[Command, ...] = (
    Command("start", N_("Start, or join your community"), "all"),
    Command("menu", N_("Main menu"), "all"),
    Command("help", N_("What I can do"), "all"),
    Command("lang", N_("Switch language (中文 / English)"), "all"),
    Command("mydata", N_("See what is held about you"), "all"),
    Command("forget", N_("Delete your personal data"), "all"),
    Command("pending", N_("Verification requests waiting for review"), "staff"),
    Command("invite", N_("Issue household invite codes"), "staff"),
    Command("whois", N_("Look up a resident by name or room"), "staff"),
    Command("export", N_("Download your committee's registry (XLSX)"), "staff"),
    Command("checkin", N_("Daily check-in: change time, pause, resume"), "resident"),
    Command("family", N_("Emergency contacts for your daily check-in"), "resident"),
    Command("checkins", N_("Today's check-in board"), "staff"),
    Command("alerts", N_("Open check-in alerts"), "staff"),
    Command("checkin_enrol", N_("Enrol a resident or segment in daily check-ins"), "staff"),
    Command("checkin_stop", N_("Stop daily check-ins for a resident"), "staff"),
    Command("checkin_family", N_("Family invite link for an enrolled resident"), "staff"),
    Command("checkins_week", N_("Weekly check-in report (chart + XLSX)"), "staff"),
    Command("duty", N_("Go on or off duty for check-in alerts"), "staff"),
    Command("tags", N_("The tag dictionary"), "staff"),
    Command("tag", N_("Tag a resident: /tag 3-2-201 volunteer"), "staff"),
    Command("untag", N_("Remove a tag from a resident"), "staff"),
    Command("segment", N_("Count residents matching an expression"), "staff"),
    Command("segment_save", N_("Save a segment: /segment_save name = expression"), "staff"),
    Command("segments", N_("Saved segments with live counts"), "staff"),
    Command("notice", N_("Write a notice to residents"), "staff"),
    Command("notices", N_("Recent notices"), "staff"),
    Command("notice_report", N_("Delivery report of a notice"), "staff"),
    Command("notice_cancel", N_("Cancel a scheduled notice"), "staff"),
    Command("cancel", N_("Stop what you are doing"), "all"),
)


def commands_for(actor: Actor | None) -> list[Command]:
    """The commands this actor may use, in display order."""
    staff = actor is not None and actor.is_staff
    verified = actor is not None and actor.is_verified
    return [
        c for c in COMMANDS
        if c.audience == "all" or (c.audience == "staff" and staff) or (c.audience == "resident" and verified)
    ]
