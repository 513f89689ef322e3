"""Poll messages: the announcement and reminder with one button per option, the results, the refusals.

Services hand over plain data (``services.polls.poll_card``, ``PollResults.to_json()``); the words
are chosen here in the reader's language, values escaped by ``t()`` and ``templates/polls/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup

from notifications.callbacks import PollVoteCb
from notifications.render import Buttons, MessageBuilder, Rendered, render_template, t
from services.i18n import N_, _
from services.polls import PollError, PollResults, parse_rule

UNIT_WORDS = {"resident": N_("One vote per resident."),
              "household": N_("One vote per household: the first vote of a household counts."),
              "owner": N_("One vote per owner household (per the registry).")}
UNIT_NAMES = {"resident": N_("residents"), "household": N_("households"), "owner": N_("owner households")}


def local_time(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M") if iso else "—"


def rule_text(rule: str, options: Sequence[str], quorum: str | None = None) -> Markup:
    """How the poll is decided, in words."""
    r = parse_rule(rule)
    agree = options[0] if options else ""
    reject = options[1] if len(options) > 1 else ""
    if r.kind == "civil-code-major":
        text = t("Civil Code art. 278, major matter: owners with at least 2/3 of the area and 2/3 of the owners "
                 "must vote; “{agree}” then needs at least 3/4 of the participating area and of the "
                 "participating owners.", agree=agree)
    elif r.kind == "civil-code-ordinary":
        text = t("Civil Code art. 278: owners with at least 2/3 of the area and 2/3 of the owners must vote; "
                 "“{agree}” then needs more than half of the participating area and of the participating "
                 "owners.", agree=agree)
    elif r.kind == "fraction":
        text = t("Passes when “{agree}” gets at least {fraction} of all who may vote.", agree=agree,
                 fraction=str(r.fraction))
    elif r.kind == "plurality":
        text = t("The option with the most votes leads.")
    else:
        text = t("Passes with more “{agree}” than “{reject}” votes.", agree=agree, reject=reject)
    if quorum:
        text = Markup("{} {}").format(text, t("At least {quorum} of those who may vote must take part.",
                                              quorum=quorum))
    return text


def ballot_buttons(poll_id: int, options: Sequence[str], choices: Sequence[int], multiple: int) -> Buttons:
    """One button per option; a chosen one shows ✓ (and, for multiple choice, unchooses)."""
    rows = []
    for i, option in enumerate(options):
        chosen = i in choices
        on = not chosen if multiple > 1 else True
        label = f"✓ {option}" if chosen else option
        rows.append([{"text": label, "callback_data": PollVoteCb(p=poll_id, o=i, on=on).pack()}])
    return rows


def card_text(data: Mapping[str, Any], *, header: str | Markup | None = None, choices: Sequence[int] = (),
              status_line: str | Markup | None = None) -> Markup:
    return render_template(
        "polls/card.html", header=header, question=data["question"], options=data["options"],
        choices=list(choices), unit_text=_(UNIT_WORDS[data["unit"]]),
        rule_text=rule_text(data["rule"], data["options"], data.get("quorum")), multiple=data.get("multiple", 1),
        secret=data.get("secret", False), allow_change=data.get("allow_change", True),
        closes=local_time(data.get("closes")), status_line=status_line)


def card(data: Mapping[str, Any], *, header: str | Markup | None = None, choices: Sequence[int] = (),
         status_line: str | Markup | None = None, buttons: bool = True) -> Rendered:
    text = card_text(data, header=header, choices=choices, status_line=status_line)
    keyboard = ballot_buttons(data["id"], data["options"], choices, data.get("multiple", 1)) if buttons else None
    return Rendered(text, keyboard)


def announce(data: Mapping[str, Any]) -> Rendered:
    return card(data, header=t("New poll #{id}", id=data["id"]))


def reminder(data: Mapping[str, Any]) -> Rendered:
    return card(data, header=t("Reminder: poll #{id} closes soon and your vote is not in yet.", id=data["id"]))


def results_text(results: PollResults) -> Markup:
    closed = results.status == "closed"
    if results.quorum_met is None:
        quorum_line = None
    elif parse_rule(results.rule).civil_code:
        quorum_line = (t("Participation met (2/3 of the area and of the owners).") if results.quorum_met
                       else t("Participation not met (2/3 of the area and of the owners are needed)."))
    elif results.quorum:
        quorum_line = t("Quorum met.") if results.quorum_met else t("Quorum not met.")
    else:
        quorum_line = None
    verdict = None
    if results.passed is not None and closed:
        verdict = t("Passed.") if results.passed else t("Not passed.")
    elif results.passed is not None:
        verdict = t("If it closed now: passed.") if results.passed else t("If it closed now: not passed.")
    turnout = f"{results.turnout:.0%}" if results.turnout is not None else None
    return render_template(
        "polls/results.html", id=results.id, closed=closed, question=results.question,
        options=[{"text": o.text, "votes": o.votes, "area": _area(o.area)} for o in results.options],
        voted_units=results.voted_units, eligible_units=results.eligible_units, units=_(UNIT_NAMES[results.unit]),
        turnout=turnout, eligible_area=_area(results.eligible_area), voted_area=_area(results.voted_area),
        rule_text=rule_text(results.rule, [o.text for o in results.options], results.quorum),
        quorum_line=quorum_line, verdict=verdict)


def _area(value: float | None) -> str | None:
    return None if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def results(data: Mapping[str, Any]) -> Rendered:
    return Rendered(results_text(PollResults.from_json(dict(data["results"]))))


REFUSALS = {
    "no_poll": N_("That poll does not exist (or the button is no longer valid)."),
    "not_verified": N_("Only verified residents can vote. Send /start to verify."),
    "not_owner": N_("Only owner households vote in this poll, and the registry does not list yours as one. "
                    "If you own your home, ask the committee to update the registry."),
    "no_household": N_("The registry lists no household for you, and this poll counts households. "
                       "Please ask the committee."),
    "not_open": N_("This poll has not opened yet."),
    "closed": N_("This poll is closed."),
    "not_closed": N_("The results are shown when the poll closes."),
    "bad_option": N_("That button is no longer valid."),
    "household_voted": N_("Your household has already voted in this poll."),
    "final": N_("Your vote is already in and cannot be changed in this poll."),
    "bad_question": N_("A question is 1 to 300 characters."),
    "bad_options": N_("A poll needs 2 to 10 different options, one per line."),
    "bad_multiple": N_("Multiple choice allows between 1 and the number of options."),
    "bad_rule": N_("Unknown rule. Use majority, plurality, fraction:2/3, civil-code-ordinary or civil-code-major."),
    "bad_fraction": N_("A fraction is written like 2/3, 0.5 or 50%, more than 0 and at most 1."),
    "bad_times": N_("The closing time must be after the opening time, in the future, within a year."),
    "not_staff": N_("Only staff can do this."),
    "secret": N_("A secret ballot keeps no list of who chose what."),
}
COMBINATIONS = {
    "civil_owner": N_("The Civil Code rules count owners: use the owner unit."),
    "civil_quorum": N_("The Civil Code rules have their own participation threshold: no separate quorum."),
    "rule_single": N_("This rule counts “agree” against “reject”: single choice only."),
    "secret_single": N_("A secret ballot is single choice."),
    "multiple_change": N_("Multiple choice needs changeable votes."),
    "unit": N_("Unknown unit. Use resident, household or owner."),
}


def refusal(err: PollError) -> Markup:
    """A poll refusal in the reader's language."""
    info = err.info
    if err.reason == "not_eligible":
        if info.get("eligible"):
            return t("This poll is for some residents only ({who}), and you are not among them.",
                     who=info["eligible"])
        return t("This poll is for another committee's residents.")
    if err.reason == "too_many":
        return t("You can choose at most {k} options: unchoose one first.", k=info.get("limit", 1))
    if err.reason == "bad_option_text":
        return t("An option is at most {limit} characters: {option}", limit=info.get("limit", 60),
                 option=info.get("option", ""))
    if err.reason == "bad_expression":
        return t("The eligibility expression is not valid: {error}", error=info.get("error", ""))
    if err.reason == "not_committee":
        return (t("There is no committee {code} in your area.", code=info["code"]) if info.get("code")
                else t("Polls are made by committee staff for their committee."))
    if err.reason == "bad_combination":
        return t(COMBINATIONS.get(info.get("what", ""), N_("These settings do not go together.")))
    return t(REFUSALS.get(err.reason, N_("That did not work. Please try again.")))


MESSAGES: dict[str, MessageBuilder] = {"polls.announce": announce, "polls.reminder": reminder,
                                       "polls.results": results}
