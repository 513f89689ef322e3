"""Daily check-ins for elderly residents, with escalation (PRODUCT.md part 5).

The state machine lives in the database and moves only when :func:`tick` (or an answer, or a staff
button) runs with an explicit ``now``; everything a person is told is an outbox message payload
rendered in ``notifications.messages.checkins``. The modules, by sub-domain:

- ``config``: :class:`CheckinConfig`, built once by the composition root;
- ``plans``: enrolment, the elder's time, pauses; parsing times, days and dates;
- ``rounds``: the tick (open rounds, remind, alert the silent and the unreachable), the answer;
- ``alerts``: raising, the escalation ladder, "I'm on it", closing, duty;
- ``family``: family invite links and emergency contacts;
- ``board``: today's board, open alerts, an alert's history;
- ``reports``: weekly statistics and their once-per-week claim.
"""

from services.checkins.alerts import (
    ALERT_LEVELS,
    AlertCard,
    acknowledge,
    alert_card,
    duty_staff,
    raise_alert,
    resolve,
    set_duty,
)
from services.checkins.board import (
    Board,
    BoardLine,
    CommitteeBoard,
    HistoryStep,
    board,
    count_open_alerts,
    open_alerts,
    round_history,
)
from services.checkins.common import REF_ALERT, REF_PLAN, REF_REPORT, REF_ROUND, CheckinError, room_of
from services.checkins.config import CheckinConfig
from services.checkins.family import (
    INVITE_PREFIX,
    ContactLine,
    create_family_invite,
    list_contacts,
    redeem_family_invite,
    remove_contact,
)
from services.checkins.plans import (
    DEFAULT_MINUTE,
    MAX_PAUSE_DAYS,
    PlanLine,
    SegmentEnrolment,
    check_days,
    check_minute,
    elder_account,
    enrol_resident,
    enrol_segment,
    format_minute,
    is_paused,
    list_plans,
    my_plan,
    parse_date,
    parse_days,
    parse_time,
    pause,
    pause_for_days,
    resume,
    set_time,
    unenrol,
)
from services.checkins.reports import (
    DayStats,
    WeeklyReport,
    claim_weekly_reports,
    last_week_end,
    queue_weekly_report,
    record_report_sent,
    report_recipients,
    weekly_report,
    weekly_reports_due,
    weekly_stats,
)
from services.checkins.rounds import ANSWERS, AnswerResult, TickReport, answer, on_round_unreachable, tick

__all__ = [
    "ALERT_LEVELS",
    "ANSWERS",
    "DEFAULT_MINUTE",
    "INVITE_PREFIX",
    "MAX_PAUSE_DAYS",
    "REF_ALERT",
    "REF_PLAN",
    "REF_REPORT",
    "REF_ROUND",
    "AlertCard",
    "AnswerResult",
    "Board",
    "BoardLine",
    "CheckinConfig",
    "CheckinError",
    "CommitteeBoard",
    "ContactLine",
    "DayStats",
    "HistoryStep",
    "PlanLine",
    "SegmentEnrolment",
    "TickReport",
    "WeeklyReport",
    "acknowledge",
    "alert_card",
    "answer",
    "board",
    "check_days",
    "check_minute",
    "claim_weekly_reports",
    "count_open_alerts",
    "create_family_invite",
    "duty_staff",
    "elder_account",
    "enrol_resident",
    "enrol_segment",
    "format_minute",
    "is_paused",
    "last_week_end",
    "list_contacts",
    "list_plans",
    "my_plan",
    "on_round_unreachable",
    "open_alerts",
    "parse_date",
    "parse_days",
    "parse_time",
    "pause",
    "pause_for_days",
    "queue_weekly_report",
    "raise_alert",
    "record_report_sent",
    "redeem_family_invite",
    "remove_contact",
    "report_recipients",
    "resolve",
    "resume",
    "room_of",
    "round_history",
    "set_duty",
    "set_time",
    "tick",
    "unenrol",
    "weekly_report",
    "weekly_reports_due",
    "weekly_stats",
]
