"""Polls: a committee asks its residents (narrowed by an expression of the segment language), one
ballot per resident, household or owner household, decided by a rule (majority, a fraction of the
eligible, or the Civil Code art. 278 double majority of area and owners) when the tick closes it.

The modules, by sub-domain:

- ``config``: :class:`PollConfig`, built once by the composition root;
- ``rules``: rules and exact fractions, the verdict from counts (pure);
- ``ballots``: drafts and their checks, creating, who may vote, voting, a resident's open polls;
- ``tally``: counting (results as data), closing, and the tick (open, announce, remind, close).
"""

from services.polls.ballots import (
    MAX_OPTION,
    MAX_OPTIONS,
    MAX_QUESTION,
    BallotRow,
    MyPoll,
    PollDraft,
    VoteResult,
    check_draft,
    check_eligible,
    check_options,
    check_question,
    committee_polls,
    create_poll,
    eligible_residents,
    get_poll,
    my_open_polls,
    poll_ballots,
    poll_phase,
    staff_committee,
    staff_poll,
    vote,
)
from services.polls.common import REF_POLL, PollError
from services.polls.config import PollConfig
from services.polls.rules import Counts, OptionCount, Rule, Verdict, parse_fraction, parse_rule, verdict
from services.polls.tally import (
    ChartWriter,
    OptionResult,
    PollResults,
    PollTickReport,
    close_now,
    close_poll,
    count_poll,
    eligible_units,
    poll_card,
    poll_results,
    tick,
)

__all__ = [
    "MAX_OPTION",
    "MAX_OPTIONS",
    "MAX_QUESTION",
    "REF_POLL",
    "BallotRow",
    "ChartWriter",
    "Counts",
    "MyPoll",
    "OptionCount",
    "OptionResult",
    "PollConfig",
    "PollDraft",
    "PollError",
    "PollResults",
    "PollTickReport",
    "Rule",
    "Verdict",
    "VoteResult",
    "check_draft",
    "check_eligible",
    "check_options",
    "check_question",
    "close_now",
    "close_poll",
    "committee_polls",
    "count_poll",
    "create_poll",
    "eligible_residents",
    "eligible_units",
    "get_poll",
    "my_open_polls",
    "parse_fraction",
    "parse_rule",
    "poll_ballots",
    "poll_card",
    "poll_phase",
    "poll_results",
    "staff_committee",
    "staff_poll",
    "tick",
    "verdict",
    "vote",
]
