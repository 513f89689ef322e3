"""Typed callback data of every button, one module so prefixes cannot collide.

Callback data carries ids, never authority: handlers re-check the actor, services validate values.
Keyboards are built from these in handlers and in ``notifications.messages``, never from strings.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData

from services.ids import DbId  # an id beyond 64 bits does not unpack: the button is "no longer valid"


class LangCb(CallbackData, prefix="lang"):
    code: str


class MenuCb(CallbackData, prefix="menu"):
    item: str


class VerifyCb(CallbackData, prefix="vf"):
    action: str  # consent, decline, code, review, member, newmember, committee
    id: DbId = 0


class ReviewCb(CallbackData, prefix="vr"):
    id: DbId
    decision: str  # a / r


class ConfirmCb(CallbackData, prefix="rc"):
    id: DbId


class ForgetCb(CallbackData, prefix="forget"):
    confirm: bool


class TagCb(CallbackData, prefix="tg"):
    add: bool
    resident: DbId
    code: str


class NoticeCb(CallbackData, prefix="nt"):
    action: str  # skip, aud, tag, seg, now, later, send, abort, refresh, remind, calls
    ref: str = ""


class ReceivedCb(CallbackData, prefix="nr"):
    id: DbId


# --- daily check-ins ---------------------------------------------------------------------------


class CheckinCb(CallbackData, prefix="ci"):
    """The elder's answer to one round: ``a`` is ``ok`` or ``help``."""

    id: DbId
    a: str


class AlertCb(CallbackData, prefix="al"):
    """A button on a check-in alert: ``a`` is ``ack``, ``safe``, ``help``, ``unr`` or ``hist``."""

    id: DbId
    a: str


class CheckinMenuCb(CallbackData, prefix="cim"):
    """The elder's /checkin menu: ``a`` is time, t (set ``v`` minutes), tt (type a time), pause,
    p (pause ``v`` days), pd (type a date), resume or family."""

    a: str
    v: int = 0


class EnrolCb(CallbackData, prefix="cie"):
    """Staff pick one of several residents to enrol: ``m`` minute of day (-1: default or keep),
    ``d`` weekday mask (0: default or keep)."""

    rid: DbId
    m: int
    d: int


class ContactCb(CallbackData, prefix="cic"):
    """The elder removes one of their emergency contacts."""

    id: DbId


class HelperCb(CallbackData, prefix="ch"):
    """A helper answers for one elder on their list: round ``r``; ``a`` is ok (seen / spoke — all
    well), noreach (could not reach) or help (needs help)."""

    r: DbId
    a: str


class HelperPickCb(CallbackData, prefix="chp"):
    """Staff choose who answers for elder ``rid`` (a resident id): account ``acc``, then the mode
    ``m``: "" (ask which), p (proxy), s (self, then helper); or ``m`` link (invite by link, then lp /
    ls) or alone (the elder answers alone again)."""

    rid: DbId
    acc: DbId = 0
    m: str = ""


class HandoverCb(CallbackData, prefix="cho"):
    """A hand-over, step by step: ``a`` is h (helper ``h``'s elders of committee ``c``), d (for ``d``
    days), s (to substitute ``s``; 0: the committee's on-duty staff), or end (hand-over ``e`` is over)."""

    a: str
    h: DbId = 0
    c: DbId = 0
    d: int = 0
    s: DbId = 0
    e: DbId = 0


# --- policy matching (政策找人) ------------------------------------------------------------------


class BenefitCb(CallbackData, prefix="pb"):
    """/benefits: ``a`` is ans (answer ``f`` with choice ``v``), skip (``f``), stop, keep / once (keep
    answers or not), or applied (policy ``p``)."""

    a: str
    f: str = ""
    v: int = -1
    p: DbId = 0


class PolicyCaseCb(CallbackData, prefix="pk"):
    """A button on a pushed notice: ``a`` is applied or no (not interested), for case ``id``."""

    a: str
    id: DbId


class PolicyPushCb(CallbackData, prefix="pp"):
    """/policy_match: ``a`` is push or cancel, for policy ``code``."""

    a: str
    code: str


class PolicyEnrolCb(CallbackData, prefix="pe"):
    """Staff pick one of several residents to record an outcome for: ``s`` enrolled / declined."""

    code: str
    rid: DbId
    s: str


# --- polls and discussions (议事厅) ---------------------------------------------------------------


class PollVoteCb(CallbackData, prefix="pv"):
    """A ballot button: choose (``on``) or unchoose option ``o`` of poll ``p`` (checked in the service)."""

    p: DbId
    o: int
    on: bool = True


class PollNewCb(CallbackData, prefix="pn"):
    """/poll_new, the guided flow: ``a`` is unit, rule, all (whole committee), days (closing in ``v``
    days), secret (toggle), publish or cancel; ``v`` the value chosen."""

    a: str
    v: str = ""


class PollViewCb(CallbackData, prefix="pr"):
    """Show poll ``p`` again (``a`` = vote) or its results (``a`` = res)."""

    p: DbId
    a: str = "vote"


class TopicsCb(CallbackData, prefix="dl"):
    """/topics, page ``pg`` (checked in the service)."""

    pg: int = 0


class TopicCb(CallbackData, prefix="dt"):
    """Topic ``t``: ``a`` is view (comments page ``pg``), say (write a comment), sub, unsub, approve or
    reject (staff)."""

    a: str
    t: DbId
    pg: int = 0


class CommentCb(CallbackData, prefix="dc"):
    """Comment ``c`` of topic ``t``: ``a`` is reply or report."""

    a: str
    t: DbId
    c: DbId


class TopicNewCb(CallbackData, prefix="dn"):
    """/topic_new: ``a`` is scope (``v`` committee / compound / building) or cancel."""

    a: str
    v: str = ""
