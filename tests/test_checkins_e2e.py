"""Daily check-ins end to end: the real dispatcher over the sandbox, the real outbox sender, and the
production tick (``bot.checkin_jobs.checkin_tick``) driven by moving the bot's one clock; and a real
worker process (the production scheduler, on the test's clock) killed with SIGKILL and replaced.

The clock of the bot under test starts at a pinned instant (09:59 in Shanghai on a Saturday) and
runs at the wall clock's pace; tests jump it forward instead of sleeping, and no test depends on
the time of day it runs at.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.checkin_jobs import checkin_tick
from services import checkins as cs
from services.models import (
    Account,
    Alert,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    EmergencyContact,
    FamilyInvite,
    HelperHandover,
    OutboxMessage,
    OutboxStatus,
    Resident,
    RoundStatus,
    Staff,
    StaffRole,
)
from services.regions import get_region
from tests.checkin_worker import worker_settings, working
from tests.harness import running_stack
from tests.helpers import PacedClock, outbox_message, outbox_sent, texts
from tests.seed import seed_registry

WORKER = Path(__file__).with_name("checkin_worker.py")
ROOT = Path(__file__).resolve().parent.parent
PINNED = datetime(2026, 11, 28, 1, 59, tzinfo=UTC)  # 09:59 in Shanghai, Saturday 2026-11-28
TODAY = date(2026, 11, 28)
# A value Telegram would turn into a link if it reached the HTML parser unescaped.
HOSTILE = '<a href="tg://user?id=1">Call 110</a> & <b>'


def text_of(m) -> str:
    """What the person sees of a message (the sandbox parses HTML as Telegram does)."""
    return (m["text"] if m["text"] is not None else m["caption"]) or ""


def has(fragment: str):
    return lambda m: fragment in text_of(m)


def shown_as_text(m, value: str = HOSTILE) -> None:
    """``value`` arrived as the characters typed: visible as such, and no link or mention made of it."""
    assert value in text_of(m), text_of(m)
    for entity in m.get("entities") or m.get("caption_entities") or []:
        assert entity["type"] not in ("text_link", "text_mention"), (entity, text_of(m))


class World:
    def __init__(self, stack) -> None:
        self.stack = stack
        self.sessions = stack.sessions
        self.clock = stack.clock
        self.cfg: cs.CheckinConfig = stack.dp["checkin_config"]

    def now(self) -> datetime:
        return self.clock()

    async def user(self, name: str, *, resident: str | None = None, lang: str = "en",
                   staff: tuple[str, StaffRole] | None = None, on_duty: bool = False):
        """A sandbox user whose account is linked to a registry row and/or holds a staff grant."""
        user = await self.stack.client.create_user(name, language_code=lang)
        now = self.now()
        async with self.sessions() as s:
            resident_id = None
            if resident:
                resident_id = await s.scalar(select(Resident.id).where(Resident.name == resident))
            account = Account(telegram_id=user.id, chat_id=user.id, first_name=name, language_code=lang,
                              resident_id=resident_id, consent_at=now, verified_at=now if resident_id else None,
                              created_at=now)
            s.add(account)
            await s.flush()
            if staff:
                region = await get_region(s, staff[0])
                s.add(Staff(account_id=account.id, region_id=region.id, role=staff[1], active=True, on_duty=on_duty,
                            created_at=now))
            await s.commit()
        return user

    async def tick(self, after: timedelta = timedelta(0)) -> cs.TickReport:
        """Move the clock forward and run the scheduler's check-in tick at the new ``now``; the
        harness's sender (same clock) delivers what became due."""
        self.clock.advance(after)
        return await checkin_tick(self.stack.runtime, self.now())

    async def answer_of(self, user, data: str, message=None) -> str | None:
        """Press forged callback data on a message of ``user``; the text the bot answered it with."""
        message = message or await user.last_message()
        result = await user.callback(message["message_id"], data)
        record = self.stack.sandbox.callbacks[result["callback_query_id"]]
        return record.answer["text"] if record.answer else None

    async def round(self) -> CheckinRound | None:
        async with self.sessions() as s:
            return (await s.scalars(select(CheckinRound).order_by(CheckinRound.id.desc()))).first()

    async def alert(self) -> Alert | None:
        async with self.sessions() as s:
            return (await s.scalars(select(Alert).order_by(Alert.id.desc()))).first()

    async def plan(self) -> CheckinPlan | None:
        async with self.sessions() as s:
            return await s.scalar(select(CheckinPlan))

    async def count(self, model, *where) -> int:
        async with self.sessions() as s:
            return await s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
async def world(tmp_path):
    """Seeded registry, an elder (赵桂兰, lives alone), duty staff and street staff, on a pinned clock."""
    async with running_stack(tmp_path, clock=PacedClock(PINNED)) as stack:
        await seed_registry(stack.sessions, now=PINNED - timedelta(days=3))
        w = World(stack)
        w.elder = await w.user("桂兰", resident="赵桂兰")
        w.duty = await w.user("Zhang", staff=("DXYC", StaffRole.committee), on_duty=True)
        w.street = await w.user("Wang", staff=("310104003", StaffRole.street))
        yield w


async def enrol(w: World) -> None:
    """Staff enrol the elder through the bot for 10:00 (the clock says 09:59: today's round is due);
    the elder's enrolment notice has arrived when this returns."""
    await w.duty.send("/checkin_enrol 5-1-102 10:00")
    reply = text_of(await w.duty.last_message())
    assert "Enrolled 赵桂兰 (迎春小区 5-1-102): daily check-in at 10:00, every day, from 2026-11-28." in reply
    await w.elder.wait_for_message(has("enrolled you in daily check-ins"))


async def open_round(w: World) -> None:
    await enrol(w)
    assert (await w.tick(timedelta(minutes=1))).opened == 1
    await w.elder.wait_for_message(has("How are you today?"))


# --- the day's round -----------------------------------------------------------------------------

async def test_enrolled_elder_is_told_when_and_how_to_change_or_pause(world):
    w = world
    await w.duty.send("/checkin_enrol 5-1-102 10:00")
    told = await w.elder.wait_for_message(has("enrolled you in daily check-ins"))
    assert ("Your committee has enrolled you in daily check-ins: every day at 10:00, from 2026-11-28."
            in text_of(told))
    assert "To change the time or to pause (travel, hospital), send /checkin." in text_of(told)
    assert "They have been told when they will be asked" in text_of(await w.duty.last_message())
    # and their "/" list offers /checkin at once, before they send anything
    listed = [c["commands"] for c in w.stack.sandbox.commands_dict() if c["scope"] == f"chat:{w.elder.id}"]
    assert listed and {"checkin", "family"} <= {c["command"] for c in listed[0]}
    # enrolling again with the same time tells nobody twice
    await w.duty.send("/checkin_enrol 5-1-102 10:00")
    assert await w.count(OutboxMessage, OutboxMessage.idempotency_key.like("cienrol:%")) == 1


async def test_elder_answers_fine(world):
    w = world
    await open_round(w)
    await w.elder.press("😊 I'm fine")
    assert "Thank you! Have a good day." in text_of(await w.elder.last_message())
    assert (await w.round()).status == RoundStatus.ok
    # a neighbour pressing the same callback data changes nothing
    neighbour = await w.user("秀英", resident="王秀英")
    await neighbour.send("/help")
    rnd = await w.round()
    assert "no longer valid" in await w.answer_of(neighbour, f"ci:{rnd.id}:help")
    assert (await w.round()).status == RoundStatus.ok and await w.alert() is None
    # garbled answer data is a stale button, nothing more
    assert "no longer valid" in await w.answer_of(w.elder, f"ci:{rnd.id}:maybe")
    assert "no longer valid" in await w.answer_of(w.elder, "ci:x:ok")
    assert (await w.round()).status == RoundStatus.ok


async def test_silent_elder_is_reminded_then_staff_alerted_acknowledge_and_resolve(world):
    w = world
    await open_round(w)
    await w.tick(timedelta(minutes=30))
    await w.elder.wait_for_message(has("Reminder"))
    await w.tick(timedelta(minutes=60))
    alert_msg = await w.duty.wait_for_message(has("has not answered"))
    text = text_of(alert_msg)
    assert "赵桂兰" in text and "Phone: +8613800138003" in text
    assert "Level 1 of 3 — sent to the committee's staff on duty." in text
    await w.duty.press("🙋 I'm on it")
    assert "You are on it." in text_of(await w.duty.last_message())
    assert (await w.alert()).status == AlertStatus.acknowledged
    await w.tick(timedelta(minutes=60))  # acknowledged: no escalation to street staff
    await w.duty.press("✅ Safe")
    assert "Closed: safe." in text_of(await w.duty.last_message())
    alert = await w.alert()
    assert alert.status == AlertStatus.resolved and alert.outcome == AlertOutcome.safe
    assert not [m for m in await w.street.bot_messages() if "赵桂兰" in text_of(m)]
    # the elder hears that someone checked on them
    told = await w.elder.wait_for_message(has("Zhang"))
    assert text_of(told) == ("🤝 You did not answer today's check-in, so Zhang from your committee checked on "
                             "you. All is well, thank you! Take care.")
    # the board lists the elder as checked, not as alerted or in need
    await w.duty.send("/checkins")
    board = text_of(await w.duty.last_message())
    assert "✅ Checked by staff (1)\n• 赵桂兰 (迎春小区 5-1-102) — safe (Zhang)" in board
    assert "Alerted" not in board and "Need help" not in board


async def test_i_need_help_alerts_at_once_and_the_board_follows_the_outcome(world):
    w = world
    await open_round(w)
    await w.elder.press("🆘 I need help")
    assert "Help is on the way" in text_of(await w.elder.last_message())
    msg = await w.duty.wait_for_message(has("I need help"))
    assert "赵桂兰" in text_of(msg)
    assert (await w.alert()).reason == AlertReason.help
    await w.duty.send("/checkins")
    assert "🆘 Need help (1)" in text_of(await w.duty.last_message())
    await w.duty.send("/alerts")
    listed = text_of(await w.duty.last_message())
    assert "赵桂兰" in listed and "Level 1 of 3 — sent to the committee's staff on duty." in listed
    assert "Since 11-28 10:00." in listed
    await w.duty.press("🚑 Needed help")
    assert (await w.alert()).outcome == AlertOutcome.needed_help
    await w.elder.wait_for_message(has("has dealt with today's alert"))
    await w.duty.send("/checkins")
    board = text_of(await w.duty.last_message())
    assert "Need help" not in board and "— needed help (Zhang)" in board
    await w.duty.send("/alerts")
    assert "No open alerts in your area." in text_of(await w.duty.last_message())


async def test_unacknowledged_alert_reaches_street_staff_then_family(world):
    w = world
    # the elder invites a daughter with /family; she joins through the deep link
    await w.elder.send("/family")
    link = text_of(await w.elder.last_message()).split("start=")[1].split()[0]
    daughter = await w.stack.client.create_user("Daughter", language_code="en")
    await daughter.send(f"/start {link}")
    assert "emergency contact of 赵桂兰" in text_of(await daughter.last_message())
    await w.elder.wait_for_message(has("Daughter is now one of your emergency contacts"))
    await open_round(w)
    await w.tick(timedelta(minutes=90))
    await w.duty.wait_for_message(has("has not answered"))
    await w.tick(timedelta(minutes=30))
    street_msg = await w.street.wait_for_message(has("has not answered"))
    assert "Level 2 of 3 — sent to street staff (the committee did not respond in time)." in text_of(street_msg)
    await w.street.send("/alerts")
    assert "Level 2 of 3 — sent to street staff" in text_of(await w.street.last_message())
    await w.tick(timedelta(minutes=30))
    family_msg = await daughter.wait_for_message(has("has not answered"))
    assert "Level 3 of 3 — sent to the elder's family (emergency contacts)." in text_of(family_msg)
    assert "You are an emergency contact of 赵桂兰. Please check on them." in text_of(family_msg)
    # the daughter may act on her mother's alert; a late "I'm fine" then tells everyone
    await daughter.press("🙋 I'm on it")
    await w.elder.press("😊 I'm fine")
    for user in (w.duty, w.street):
        await user.wait_for_message(has("All clear"))
    assert (await w.alert()).outcome == AlertOutcome.all_clear


async def test_elder_who_blocked_the_bot_is_an_alert(world):
    w = world
    await enrol(w)
    await w.elder.block()
    await w.tick(timedelta(minutes=1))
    msg = await w.duty.wait_for_message(has("cannot be reached"), timeout=10)
    assert "赵桂兰" in text_of(msg)
    assert (await w.alert()).reason == AlertReason.unreachable


async def test_elder_changes_time_and_pauses_from_the_menu(world):
    w = world
    await enrol(w)
    await w.elder.send("/checkin")
    await w.elder.press("🕘 Change time")
    await w.elder.press("08:00")
    assert "Your daily check-in: 08:00, every day." in text_of(await w.elder.last_message())
    await w.elder.press("⏸ Pause (travel, hospital)")
    await w.elder.press("3 days")
    assert "paused until 2026-12-01" in text_of(await w.elder.last_message())
    plan = await w.plan()
    assert plan.minute_of_day == 480 and plan.paused_until == TODAY + timedelta(days=3)
    await w.duty.wait_for_message(has("paused daily check-ins"))
    await w.duty.send("/checkins")
    assert "Paused" in text_of(await w.duty.last_message())
    await w.elder.send("/checkin")
    await w.elder.press("▶️ Resume check-ins")
    assert (await w.plan()).paused_until is None


async def test_pause_until_a_typed_date(world):
    w = world
    await enrol(w)
    await w.elder.send("/checkin")
    await w.elder.press("⏸ Pause (travel, hospital)")
    await w.elder.press("📅 Until a date")
    await w.elder.send("next week")
    assert "Please type a date like 2026-12-05 or 12-05." in text_of(await w.elder.last_message())
    await w.elder.send("11-27")  # without a year: the next 27 November, too far away
    assert "Please choose a date within 180 days." in text_of(await w.elder.last_message())
    assert (await w.plan()).paused_until is None
    await w.elder.send("12月5日")
    assert "paused until 2026-12-05" in text_of(await w.elder.last_message())


async def test_forged_time_and_pause_buttons_get_one_precise_answer_and_change_nothing(world):
    w = world
    await enrol(w)
    await w.elder.send("/checkin")
    for data in ("cim:t:5000", "cim:t:-5", "cim:t:1440"):
        answer = await w.answer_of(w.elder, data)
        assert answer == "That is not a time of day. Please give a time between 00:00 and 23:59, like 08:30.", data
    for data, expected in (("cim:p:-3", "That date has already passed."),
                           ("cim:p:99999999999", "Please choose a date within 180 days.")):
        assert await w.answer_of(w.elder, data) == expected
    assert "no longer valid" in await w.answer_of(w.elder, "cim:nonsense:1")
    plan = await w.plan()
    assert (plan.minute_of_day, plan.paused_until) == (600, None)
    # nobody was told of a pause that did not happen, and no "something went wrong"
    assert await w.count(OutboxMessage, OutboxMessage.idempotency_key.like("cipause:%")) == 0
    assert not [m for m in await w.elder.bot_messages() if "went wrong" in text_of(m)]


# --- staff commands ----------------------------------------------------------------------------------

async def test_staff_enrol_a_segment_from_the_bot(world):
    w = world
    await w.duty.send("/checkin_enrol --segment living_alone == true and age >= 70 --time 08:00")
    assert "1 residents match; 1 newly enrolled, 0 already enrolled." in text_of(await w.duty.last_message())
    await w.elder.wait_for_message(has("every day at 08:00"))  # told, through the set-based path too
    await w.duty.send("/checkin_enrol --segment age >= ")
    assert "That expression has an error" in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_enrol --segment age >= 70 --time 25:00")
    assert "25:00 is not a time. Please give a time like 08:30." in text_of(await w.duty.last_message())
    await w.elder.send("/checkin_enrol 5-1-102")  # residents may not
    assert any("for committee staff only" in text_of(m) for m in await w.elder.bot_messages_since_last_action())
    assert (await w.plan()).minute_of_day == 480


async def test_enrol_options_are_read_and_checked(world):
    w = world
    await w.duty.send("/checkin_enrol 5-1-102 --time 07:30 --days 1-5")
    assert "daily check-in at 07:30, Mon, Tue, Wed, Thu, Fri" in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_enrol 5-1-102 days=9")
    assert "9 are not days." in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_enrol")
    assert "Usage: /checkin_enrol <room or name>" in text_of(await w.duty.last_message())
    plan = await w.plan()
    assert (plan.minute_of_day, plan.days) == (450, 0b11111)


async def test_long_junk_is_clipped_in_every_echo(world):
    w = world
    junk = "x" * 4050
    for command in ("/checkin_enrol", "/checkin_stop", "/checkin_family"):
        await w.duty.send(f"{command} {junk}")
        (reply,) = await w.duty.bot_messages_since_last_action()
        assert len(text_of(reply)) <= 300 and "…" in text_of(reply), command
        assert "went wrong" not in text_of(reply)
    await w.duty.send(f"/checkin_enrol 5-1-102 --time {junk}")
    assert "is not a time" in text_of(await w.duty.last_message())
    await w.duty.send(f"/checkin_enrol --segment {junk} and")
    assert len(text_of(await w.duty.last_message())) < 1000
    assert await w.count(CheckinPlan) == 0


async def test_forged_enrol_buttons_are_refused_and_change_nothing(world):
    w = world
    # two residents in 3-2-201: the choice buttons
    await w.duty.send("/checkin_enrol 3-2-201 08:00")
    assert "Several residents match" in text_of(await w.duty.last_message())
    async with w.sessions() as s:
        wang = await s.scalar(select(Resident).where(Resident.name == "王秀英"))
        feng = await s.scalar(select(Resident).where(Resident.name == "冯志强"))  # another committee's
    choices = await w.duty.last_message()
    for data, expected in ((f"cie:{wang.id}:99999:1024", "That is not a time of day."),
                           (f"cie:{wang.id}:-7:0", "That is not a time of day."),
                           (f"cie:{wang.id}:540:1024", "Those are not days of the week."),
                           (f"cie:{wang.id}:540:-1", "Those are not days of the week."),
                           (f"cie:{feng.id}:540:127", "This button is no longer valid."),
                           ("cie:abc:540:127", "This button is no longer valid."),
                           (f"cie:{wang.id}:x:0", "This button is no longer valid."),
                           (f"cie:{wang.id}:540:0:9", "This button is no longer valid.")):
        answer = await w.answer_of(w.duty, data, choices)
        assert answer is not None and answer.startswith(expected), (data, answer)
    assert await w.count(CheckinPlan) == 0
    # the real button works
    await w.duty.press("王秀英 · 丁香苑 3-2-201")
    assert "Enrolled 王秀英" in text_of(await w.duty.last_message())
    assert (await w.plan()).minute_of_day == 480


async def test_checkin_stop(world):
    w = world
    await open_round(w)
    await w.duty.send("/checkin_stop")
    assert "Usage: /checkin_stop <room or name>" in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_stop 3-2-201")
    assert "Please name exactly one resident (2 match 3-2-201)." in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_stop 冯志强")  # another committee's resident: not found in scope
    assert "Please name exactly one resident (0 match 冯志强)." in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_stop 5-1-102")
    assert "Daily check-ins stopped for 赵桂兰." in text_of(await w.duty.last_message())
    assert (await w.plan()).active is False
    await w.elder.wait_for_message(has("has stopped your daily check-ins"))
    await w.duty.send("/checkin_stop 5-1-102")
    assert "赵桂兰 is not enrolled." in text_of(await w.duty.last_message())
    # today's open round closes quietly: no reminder, no alert; and no round the next day
    assert (await w.tick(timedelta(minutes=30))).reminded == 0
    assert (await w.tick(timedelta(minutes=90))).alerted == 0
    await w.tick(timedelta(days=1))
    assert await w.count(CheckinRound) == 1 and await w.alert() is None


async def test_checkin_family_gives_a_link_for_one_resident_in_scope(world):
    w = world
    await w.duty.send("/checkin_family")
    assert "Usage: /checkin_family <room or name>" in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_family 冯志强")
    assert "(0 match 冯志强)" in text_of(await w.duty.last_message())
    assert await w.count(FamilyInvite) == 0
    await w.duty.send("/checkin_family 5-1-102")
    reply = text_of(await w.duty.last_message())
    assert "Family link for 赵桂兰 (works once, for 7 days):" in reply
    son = await w.stack.client.create_user("Son", language_code="en")
    await son.send("/start " + reply.split("start=")[1].split()[0])
    assert "You are now an emergency contact of 赵桂兰." in text_of(await son.last_message())
    async with w.sessions() as s:
        assert (await s.scalar(select(EmergencyContact))).added_via == "staff"


async def test_duty_on_and_off(world):
    w = world
    colleague = await w.user("Li", staff=("DXYC", StaffRole.committee))
    await colleague.send("/duty")
    assert "Usage: /duty on or /duty off" in text_of(await colleague.last_message())
    await colleague.send("/duty maybe")
    assert "Usage: /duty on or /duty off" in text_of(await colleague.last_message())
    await colleague.send("/duty on")
    assert "You are on duty: check-in alerts come to you first." in text_of(await colleague.last_message())
    await w.duty.send("/duty off")
    assert "You are off duty." in text_of(await w.duty.last_message())
    await w.street.send("/duty on")
    assert "Only committee staff take duty." in text_of(await w.street.last_message())
    await w.elder.send("/duty on")
    assert "for committee staff only" in text_of(await w.elder.last_message())
    assert await w.count(Staff, Staff.on_duty.is_(True)) == 1  # the colleague only
    # the alert goes to whoever is on duty now
    await open_round(w)
    await w.tick(timedelta(minutes=90))
    await colleague.wait_for_message(has("has not answered"))
    assert not [m for m in await w.duty.bot_messages() if "has not answered" in text_of(m)]


async def test_weekly_report_includes_today_and_titles_the_chart(world):
    w = world
    await open_round(w)
    await w.elder.press("😊 I'm fine")
    await w.duty.send("/checkins_week")
    sent = await w.duty.bot_messages_since_last_action()
    assert len(sent) == 3 and sent[1]["photo"] and sent[2]["document"]
    text = text_of(sent[0])
    assert text.startswith("Check-ins of 丁香迎春居委会, 2026-11-22 – 2026-11-28")
    assert "11-28: 1/1 answered (100%), 0 asked for help, 0 alerts" in text
    assert "Week: 1/1 answered (100%)." in text
    await w.duty.send("/checkins_week NOPE")
    assert "Which committee?" in text_of(await w.duty.last_message())


# --- forged buttons of other features the check-ins touch --------------------------------------------

async def test_forged_contact_and_confirm_buttons(world):
    w = world
    neighbour = await w.user("秀英", resident="王秀英")
    await w.user("Son")
    async with w.sessions() as s:
        son_id = await s.scalar(select(Account.id).where(Account.first_name == "Son"))
        contact = EmergencyContact(resident_id=(await s.scalar(select(Resident.id).where(Resident.name == "王秀英"))),
                                   account_id=son_id, added_via="elder", created_at=w.now())
        s.add(contact)
        await s.commit()
        feng = await s.scalar(select(Resident).where(Resident.name == "冯志强"))
    await w.elder.send("/family")
    huge = "9" * 30  # beyond any 64-bit id
    # another elder's contact, garbled, out of range; an answer and an alert button with a huge id
    for data in (f"cic:{contact.id}", "cic:abc", "cic:-1", f"cic:{huge}", f"ci:{huge}:ok", f"al:{huge}:ack"):
        assert "no longer valid" in await w.answer_of(w.elder, data)
    assert await w.count(EmergencyContact) == 1
    await neighbour.send("/family")
    assert await w.answer_of(neighbour, f"cic:{contact.id}") == "Removed."
    assert await w.count(EmergencyContact) == 0
    # rc: staff confirm a resident flagged as moved out; another committee's resident is not theirs
    await w.duty.send("/help")
    async with w.sessions() as s:
        await s.execute(update(Resident).where(Resident.id == feng.id).values(status="moved_out"))
        await s.commit()
    answer = await w.answer_of(w.duty, f"rc:{feng.id}")
    assert "does not exist or is outside your area" in answer
    assert "no longer valid" in await w.answer_of(w.duty, "rc:xyz")
    async with w.sessions() as s:
        assert (await s.get(Resident, feng.id)).status.value == "moved_out"


# --- families ----------------------------------------------------------------------------------------

async def test_a_refused_family_redemption_leaves_the_link_usable(world):
    w = world
    await w.elder.send("/family")
    first = text_of(await w.elder.last_message()).split("start=")[1].split()[0]
    daughter = await w.stack.client.create_user("Daughter", language_code="en")
    await daughter.send(f"/start {first}")
    assert "You are now an emergency contact of 赵桂兰." in text_of(await daughter.last_message())
    # the elder hears it through the outbox, in its own time: before her next action, not as its reply
    await w.elder.wait_for_message(has("Daughter is now one of your emergency contacts"))
    await w.elder.send("/family")
    second = text_of(await w.elder.last_message()).split("start=")[1].split()[0]
    await daughter.send(f"/start {second}")  # already a contact: refused
    assert "You are already an emergency contact of 赵桂兰." in text_of(await daughter.last_message())
    await w.elder.send(f"/start {second}")  # the elder's own link: refused
    assert "This is your own family link" in text_of(await w.elder.last_message())
    async with w.sessions() as s:
        used = (await s.scalars(select(FamilyInvite.used_at).order_by(FamilyInvite.id))).all()
        assert used[0] is not None and used[1] is None  # the refusals used nothing up
    son = await w.stack.client.create_user("Son", language_code="en")
    await son.send(f"/start {second}")
    assert "You are now an emergency contact of 赵桂兰." in text_of(await son.last_message())
    await son.send(f"/start {second}")
    assert "has already been used" in text_of(await son.last_message())
    assert await w.count(EmergencyContact) == 2


# --- hostile text: registry names and Telegram names are shown as text, everywhere ----------------------

async def test_hostile_names_arrive_as_text_in_every_check_in_message(world):
    w = world
    async with w.sessions() as s:  # as a name typed in a review request becomes a registry name
        await s.execute(update(Resident).where(Resident.name == "赵桂兰").values(name=HOSTILE))
        await s.commit()
    staff = await w.user(HOSTILE, staff=("DXYC", StaffRole.committee), on_duty=True)
    await w.duty.send("/duty off")
    # staff enrol, hand out a family link, a relative joins with a hostile Telegram name
    await staff.send("/checkin_enrol 5-1-102 10:00")
    shown_as_text(await staff.last_message())
    await staff.send("/checkin_family 5-1-102")
    reply = await staff.last_message()
    shown_as_text(reply)
    relative = await w.stack.client.create_user(HOSTILE, language_code="en")
    await relative.send("/start " + text_of(reply).split("start=")[1].split()[0])
    shown_as_text(await relative.last_message())
    shown_as_text(await w.elder.wait_for_message(has("is now one of your emergency contacts")))
    await w.elder.send("/family")
    family = await w.elder.last_message()
    shown_as_text(family)
    buttons = [b["text"] for row in family["reply_markup"]["inline_keyboard"] for b in row]
    assert any(b.startswith("Remove <a href=") for b in buttons)
    # the round and its alert, to staff and to the relative
    assert (await w.tick(timedelta(minutes=1))).opened == 1
    await w.tick(timedelta(minutes=90))
    shown_as_text(await staff.wait_for_message(has("has not answered")))
    await staff.send("/checkins")
    shown_as_text(await staff.last_message())
    await staff.send("/alerts")
    listed = await staff.last_message()
    shown_as_text(listed)
    await staff.press("📜 History")
    shown_as_text(await staff.last_message())
    await w.tick(timedelta(minutes=30))
    await w.tick(timedelta(minutes=30))  # nobody at street level took it: the family is told
    shown_as_text(await relative.wait_for_message(has("has not answered")))
    await relative.press("🙋 I'm on it")
    shown_as_text(await staff.wait_for_message(has("is on it")))
    await w.tick(timedelta(hours=4))
    shown_as_text(await relative.wait_for_message(has("Still open")))
    await relative.press("📵 Not reachable")
    shown_as_text(await relative.last_message())
    shown_as_text(await staff.wait_for_message(has("closed by")))
    # the next day the elder answers late: the all clear names them
    await w.tick(timedelta(days=1))
    today = (await w.round()).id  # its prompt, not yesterday's, has the button she presses
    await w.tick(timedelta(minutes=90))
    await staff.wait_for_message(has("has not answered"))
    await w.elder.wait_for_message(lambda m: f"ci:{today}:ok" in str(m["reply_markup"]))
    await w.elder.press("😊 I'm fine")
    shown_as_text(await staff.wait_for_message(has("All clear")))
    # the day after, staff check and close it as safe: the elder hears who checked on them
    await w.tick(timedelta(days=1))
    await w.tick(timedelta(minutes=90))
    await staff.wait_for_message(has("has not answered"))
    await staff.press("✅ Safe")
    shown_as_text(await w.elder.wait_for_message(has("checked on you")))
    # the elder pauses: the duty staff are told; staff stop the check-ins
    await w.elder.send("/checkin")
    await w.elder.press("⏸ Pause (travel, hospital)")
    await w.elder.press("3 days")
    shown_as_text(await staff.wait_for_message(has("paused daily check-ins")))
    await staff.send("/checkin_stop 5-1-102")
    shown_as_text(await staff.last_message())
    await staff.send("/checkin_stop 5-1-102")
    shown_as_text(await staff.last_message())


# --- restart: a real bot process killed with SIGKILL ----------------------------------------------------

async def wait_sent(sessions, key_like: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Until the outbox row whose key is ``LIKE key_like`` is marked sent."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with sessions() as s:
            status = await s.scalar(select(OutboxMessage.status).where(OutboxMessage.idempotency_key.like(key_like)))
        if status == OutboxStatus.sent:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{key_like} not marked sent ({status})"
        await asyncio.sleep(0.05)


async def _spawn(args: list[str], log: Path) -> asyncio.subprocess.Process:
    """Start a worker process (imported, waiting for the time on stdin); its log goes to ``log``."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready"
    return proc


async def _tell_time(proc: asyncio.subprocess.Process, now: datetime) -> None:
    """The worker's clock reads ``now`` (the first time: and it starts its background work)."""
    proc.stdin.write(now.isoformat().encode() + b"\n")
    await proc.stdin.drain()


async def test_restart_after_sigkill_loses_no_round_and_alerts_on_time(world, tmp_path):
    """A real worker process on the production scheduler prompts and reminds, and is killed with
    SIGKILL; a replacement (the same production path, started afresh in this process) raises the
    one alert once it is due. Every clock is the test's, moved, not waited for; nothing is lost,
    nothing doubled, and it all comes in order."""
    w = world
    cfg = w.cfg  # the settings' defaults, which the workers run with too
    async with w.sessions() as s:
        zhao = await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))
        s.add(CheckinPlan(resident_id=zhao.id, committee_id=zhao.committee_id, minute_of_day=10 * 60,
                          starts_on=TODAY, active=True, created_at=w.now(), updated_at=w.now()))
        await s.commit()
    settings = worker_settings(w.stack.settings.db_url, w.stack.base_url, tmp_path, tick="0.5s")
    first = await _spawn(["--db", settings.database_url, "--api", w.stack.base_url, "--data-dir", str(tmp_path),
                          "--tick", "0.5s"], tmp_path / "worker.log")
    try:
        await _tell_time(first, w.clock.advance(timedelta(minutes=1)))  # 10:00 in Shanghai: the round is due
        await w.elder.wait_for_message(has("How are you today?"), timeout=15)
        await _tell_time(first, w.clock.advance(cfg.reminder_after))
        await w.elder.wait_for_message(has("Reminder"), timeout=15)
        # Kill once the reminder is recorded as sent: killing between Telegram's "ok" and that mark
        # would re-send it (the outbox's documented in-flight window), which is not what this tests.
        await wait_sent(w.sessions, "ci:%:remind")
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    killed_at = w.now()
    rnd = await w.round()
    assert rnd.status == RoundStatus.reminded and await w.alert() is None
    assert killed_at < rnd.opened_at + cfg.escalate_after  # not due while the first one lived
    w.clock.advance(cfg.escalate_after - cfg.reminder_after)
    async with working(settings, w.clock):
        await w.duty.wait_for_message(has("has not answered"), timeout=30)
    alert = await w.alert()
    assert alert.round_id == rnd.id and alert.opened_at >= rnd.opened_at + cfg.escalate_after
    assert alert.opened_at > killed_at
    # nothing lost, nothing doubled, in order
    texts = [text_of(m) for m in await w.elder.bot_messages()]
    asked = [i for i, t in enumerate(texts) if "How are you today?" in t]
    reminded = [i for i, t in enumerate(texts) if "Reminder" in t]
    assert len(asked) == 1 and len(reminded) == 1 and asked[0] < reminded[0]
    assert sum("has not answered" in text_of(m) for m in await w.duty.bot_messages()) == 1
    assert await w.count(CheckinRound) == 1


async def test_restart_between_the_helpers_reminder_and_the_alert_loses_nothing(world, tmp_path):
    """The same with a helper answering for an elder without Telegram: a worker on the production
    scheduler sends the helper's list and the one reminder and is killed with SIGKILL; the
    replacement raises the alert saying the helper did not answer, once, when it is due."""
    w = world
    cfg = w.cfg
    helper = await w.user("Li", resident="李建国")
    async with w.sessions() as s:
        sun = await s.scalar(select(Resident).where(Resident.name == "孙一"))
        li = await s.scalar(select(Account.id).where(Account.first_name == "Li"))
        s.add(CheckinPlan(resident_id=sun.id, committee_id=sun.committee_id, minute_of_day=10 * 60, starts_on=TODAY,
                          active=True, mode=AnswerMode.proxy, helper_account_id=li, created_at=w.now(),
                          updated_at=w.now()))
        await s.commit()
    settings = worker_settings(w.stack.settings.db_url, w.stack.base_url, tmp_path, tick="0.5s")
    first = await _spawn(["--db", settings.database_url, "--api", w.stack.base_url, "--data-dir", str(tmp_path),
                          "--tick", "0.5s"], tmp_path / "worker.log")
    try:
        await _tell_time(first, w.clock.advance(timedelta(minutes=1)))  # 10:00: the helper's list
        await helper.wait_for_message(has("Your check-ins for today"), timeout=15)
        await _tell_time(first, w.clock.advance(cfg.reminder_after))
        await helper.wait_for_message(has("Reminder: 1 elder is still waiting"), timeout=15)
        await wait_sent(w.sessions, "hl:%:remind:%")
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    killed_at = w.now()
    rnd = await w.round()
    assert rnd.status == RoundStatus.helper_reminded and await w.alert() is None
    assert killed_at < rnd.helper_asked_at + cfg.escalate_after
    w.clock.advance(cfg.escalate_after - cfg.reminder_after)
    async with working(settings, w.clock):
        alert_msg = await w.duty.wait_for_message(has("nobody answered for 孙一"), timeout=30)
    assert "their helper Li did not answer." in text_of(alert_msg)
    alert = await w.alert()
    assert alert.round_id == rnd.id and alert.opened_at >= rnd.helper_asked_at + cfg.escalate_after
    assert alert.opened_at > killed_at
    texts = [text_of(m) for m in await helper.bot_messages()]
    assert sum("Your check-ins for today" in t for t in texts) == 1
    assert sum("Reminder: 1 elder is still waiting" in t for t in texts) == 1
    assert sum("nobody answered for 孙一" in text_of(m) for m in await w.duty.bot_messages()) == 1
    assert await w.count(CheckinRound) == 1


# --- helpers who answer for elders (proxy check-in) ---------------------------------------------------

async def choose_helper(w: World, room: str, search: str, pick: str, mode: str) -> str:
    """Staff choose a helper for the elder in ``room`` with /checkin_helper: a search as /whois,
    one of the matches, and the answering mode; what the bot said to the last press. Looked for among
    what changed since each action: staff who pick themselves ("🙋 Me") are told through the outbox,
    in its own time, that they answer for the elder."""
    await w.duty.send(f"/checkin_helper {room}")
    assert "Who answers the daily check-in for" in await texts(w.duty)
    if search:
        await w.duty.send(search)
    await w.duty.press(pick)
    await w.duty.press(mode)
    return await texts(w.duty)


PROXY = "🤝 The helper answers every day"
FIRST = "👤 The elder first, the helper if they do not answer"


async def test_a_proxy_helper_gets_one_list_for_two_elders_and_answers_each(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    for line in ("6-1-101 10:00", "6-1-102 10:30"):  # 孙一 and 孙二 have no Telegram
        await w.duty.send(f"/checkin_enrol {line}")
        assert "They have not joined the bot yet" in text_of(await w.duty.last_message())
    reply = await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    assert "Li now answers the daily check-in for 孙一 (迎春小区 6-1-101)" in reply
    told = await helper.wait_for_message(has("asked you to answer the daily check-in for 孙一"))
    assert "Each day (every day) from 10:00 you get one message" in text_of(told)
    reply = await choose_helper(w, "6-1-102", "", "Li · helper", PROXY)  # he is a helper of the committee now
    assert "Li now answers the daily check-in for 孙二" in reply
    await w.duty.send("/checkin_enrol 6-1-102 10:30")  # enrolling again says who answers
    assert "Their helper answers for them (/checkin_helper)." in text_of(await w.duty.last_message())
    await helper.wait_for_message(has("for 孙二"))
    listed = [c["commands"] for c in w.stack.sandbox.commands_dict() if c["scope"] == f"chat:{helper.id}"]
    assert listed and "helping" in {c["command"] for c in listed[-1]}
    await w.duty.send("/checkin_helper 6-1-101 --note hard of hearing, knock loudly")  # for whoever looks in
    assert "Their note: hard of hearing, knock loudly" in text_of(await w.duty.last_message())
    # 10:00: one list with both (孙二's 10:30 opens with it); nothing for the elders themselves
    report = await w.tick(timedelta(minutes=1))
    assert (report.opened, report.helpers_asked) == (1, 2)
    first = await helper.wait_for_message(has("Your check-ins for today, 11-28"))
    text = text_of(first)
    assert "1. 孙一 · 迎春小区 6-1-101" in text and "2. 孙二 · 迎春小区 6-1-102" in text
    assert "📞 +8613800138009\n📝 hard of hearing, knock loudly\n⌛" in text  # 孙一's note, under her phone
    assert text.count("📝") == 1
    await helper.press("✅ 1. 孙一: seen / spoke — all well")
    edited = {m["message_id"]: m for m in await helper.bot_messages()}[first["message_id"]]
    assert "✅ All well (10:00)" in text_of(edited) and "⌛ Waiting for your answer" in text_of(edited)
    buttons = [b["text"] for row in edited["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["✅ 2. 孙二: seen / spoke — all well", "📵 2. Could not reach", "🆘 2. Needs help"]
    await helper.press("📵 2. Could not reach")
    alert = await w.duty.wait_for_message(has("could not reach 孙二"))
    assert "Check-in alert: Li could not reach 孙二 today." in text_of(alert)
    assert "Helper: Li" in text_of(alert) and "Phone: +8613800138009" in text_of(alert)
    edited = {m["message_id"]: m for m in await helper.bot_messages()}[first["message_id"]]
    assert "📵 Could not reach (10:00): staff have been alerted." in text_of(edited)
    await w.tick(timedelta(minutes=30))  # both answered: no reminder
    assert sum("Your check-ins for today" in text_of(m) for m in await helper.bot_messages()) == 1
    assert not [m for m in await helper.bot_messages() if "Reminder" in text_of(m)]
    # the board says who answered for whom
    await w.duty.send("/checkins")
    board = text_of(await w.duty.last_message())
    assert "孙一 (迎春小区 6-1-101) 10:00 · by Li" in board
    assert "孙二 (迎春小区 6-1-102) · reported by Li" in board and "Li: 2/2 answered, 0 late" in board
    # … and so does the week's report, with how often each helper was late
    await w.duty.send("/checkins_week")
    week = await w.duty.texts_since_last_action()
    assert "2 by a helper" in week and "Li: 2/2 answered, 0 late" in week


async def test_a_helper_who_blocked_the_bot_is_an_alert_at_once_naming_them(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    await w.duty.send("/checkin_enrol 6-1-101 10:00")
    await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    await helper.wait_for_message(has("asked you to answer the daily check-in for 孙一"))
    await helper.block()
    report = await w.tick(timedelta(minutes=1))  # 10:00: his list goes out and comes back 403
    assert report.helpers_asked == 1
    alert = await w.duty.wait_for_message(has("cannot be reached (the bot is blocked)"), timeout=10)
    assert ("Check-in alert: nobody can answer for 孙一 today — their helper Li cannot be reached (the bot is "
            "blocked).") in text_of(alert)
    assert "Phone: +8613800138009" in text_of(alert)
    assert (await w.alert()).reason == AlertReason.helper_blocked
    assert (await round_of(w, "孙一")).status == RoundStatus.alerted
    await w.duty.press("🙋 I'm on it")
    await w.duty.send("/alerts")
    await w.duty.press("📜 History")
    assert "the helper cannot be reached (blocked the bot): · Li" in text_of(await w.duty.last_message())
    # at once, not after his reminder; no reminder for him, and no second alert when his time is up
    before = len(await w.duty.bot_messages())
    assert (await w.tick(w.cfg.reminder_after)).helpers_reminded == 0
    assert (await w.tick(w.cfg.escalate_after)).helpers_silent == 0
    assert len(await w.duty.bot_messages()) == before


async def test_self_then_helper_elder_and_helper_silent_staff_alerted_saying_both(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    await w.duty.send("/checkin_enrol 5-1-102 10:00")
    await w.elder.wait_for_message(has("enrolled you in daily check-ins"))
    reply = await choose_helper(w, "5-1-102", "李", "李建国 · 丁香苑 3-2-201", FIRST)
    assert "赵桂兰 (迎春小区 5-1-102) answers the daily check-in themselves; when they do not, Li is asked." in reply
    await helper.wait_for_message(has("answers their check-in themselves; when they do not, I ask you"))
    await w.tick(timedelta(minutes=1))
    await w.elder.wait_for_message(has("How are you today?"))
    await w.tick(timedelta(minutes=30))
    await w.elder.wait_for_message(has("Reminder"))
    report = await w.tick(timedelta(minutes=60))
    assert (report.helpers_asked, report.alerted) == (1, 0)
    asked = await helper.wait_for_message(has("did not answer today's check-in"))
    assert "赵桂兰 did not answer today's check-in. Please look in on them or call, then tap a button." in \
        text_of(asked)
    assert "📞 +8613800138003" in text_of(asked)
    assert not [m for m in await w.duty.bot_messages() if "Check-in alert" in text_of(m)]  # staff not yet
    await w.tick(timedelta(minutes=30))
    reminder = await helper.wait_for_message(has("Reminder: 1 elder is still waiting"))
    await w.duty.send("/checkins")
    board = text_of(await w.duty.last_message())
    assert "🧑‍🤝‍🧑 Waiting for a helper (1)\n• 赵桂兰 (迎春小区 5-1-102) · Li ⏰" in board
    await w.tick(timedelta(minutes=60))
    alert = await w.duty.wait_for_message(has("did not answer either"))
    assert ("Check-in alert: 赵桂兰 has not answered today's check-in, and their helper Li did not answer either."
            in text_of(alert))
    assert (await w.alert()).reason == AlertReason.no_answer
    await w.duty.press("🙋 I'm on it")
    await w.duty.send("/alerts")
    await w.duty.press("📜 History")
    history = text_of(await w.duty.last_message())
    assert "helper asked: · Li" in history and "no answer from the helper: · Li" in history
    # she answers late after all: staff hear the all clear, and the lists her helper was sent are
    # edited in place through the outbox and the sender (nothing new arrives for him)
    before = len(await helper.bot_messages())
    await w.elder.press("😊 I'm fine")
    await w.duty.wait_for_message(has("All clear"))
    for sent in (asked, reminder):
        edited = await edited_to(helper, sent, "answered the check-in themselves")
        assert edited["reply_markup"] is None  # nothing left to answer
    assert len(await helper.bot_messages()) == before
    # an edit that changes nothing (two updates racing to the same state) is done, not an error
    from notifications.render import send_payload

    # (each row is marked sent after Telegram's answer, which the sandbox shows first)
    edits = await outbox_sent(w.sessions, OutboxMessage.idempotency_key.like("hle:%"))
    (last,) = [e for e in edits if e.payload["edit_message_id"] == asked["message_id"]][-1:]
    assert (await send_payload(w.stack.bot, helper.id, last.payload)).message_id == asked["message_id"]


async def edited_to(user, message: dict, fragment: str, timeout: float = 10.0) -> dict:  # noqa: ASYNC109
    """The message once its text shows ``fragment`` (edited in place by the bot)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = {m["message_id"]: m for m in await user.bot_messages()}[message["message_id"]]
        if fragment in text_of(current):
            return current
        assert asyncio.get_running_loop().time() < deadline, text_of(current)
        await asyncio.sleep(0.05)


async def test_a_handed_over_helpers_elders_go_to_the_substitute(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    other = await w.user("秀英", resident="王秀英")
    for line in ("6-1-101 10:00", "5-1-102 10:00"):
        await w.duty.send(f"/checkin_enrol {line}")
    await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    # 秀英 becomes 赵桂兰's helper through a one-time link
    await w.duty.send("/checkin_helper 5-1-102")
    await w.duty.press("🔗 Invite a helper by link")
    await w.duty.press(PROXY)
    link = text_of(await w.duty.last_message()).split("start=")[1].split()[0]
    # the helpers hear whom they answer for through the outbox, in its own time: replies to them are
    # looked for among what changed since each action
    await other.send(f"/start {link}")
    assert "You now answer the daily check-in for 赵桂兰" in await texts(other)
    await w.duty.wait_for_message(has("秀英 opened your helper link"))
    await other.send(f"/start {link}")
    assert "already been used" in await texts(other)
    # Li hands over for three days to 秀英 from /helping
    await helper.send("/helping")
    assert "Nobody to answer for today." in await texts(helper)
    await helper.press("🧳 Hand over (travel, illness)")
    await helper.press("3 days")
    await helper.press("秀英")
    assert "Handed over until 2026-11-30 (inclusive): Li's elders go to 秀英." in await texts(helper)
    staff_told = await w.duty.wait_for_message(has("hands over 1 elders"))
    assert "Li hands over 1 elders of 丁香迎春居委会 from 2026-11-28 to 2026-11-30." in text_of(staff_told)
    await other.wait_for_message(has("You stand in for Li from 2026-11-28 to 2026-11-30"))
    await other.send("/mydata")  # what she holds as a helper: her own elder, and whom she stands in for
    card = await texts(other)
    assert "• 赵桂兰 (迎春小区 5-1-102, 丁香迎春居委会): a helper answers every day" in card
    assert "🧳 You stand in for Li 2026-11-28 – 2026-11-30 (丁香迎春居委会)." in card
    # the day's list goes to 秀英 with both elders; Li gets none, and his forged press is refused
    await w.tick(timedelta(minutes=1))
    listed = await other.wait_for_message(has("Your check-ins for today"))
    assert "孙一" in text_of(listed) and "赵桂兰" in text_of(listed) and "You stand in for Li." in text_of(listed)
    assert not [m for m in await helper.bot_messages() if "孙一 · 迎春小区" in text_of(m)]
    rnd = await round_of(w, "孙一")
    assert "no longer valid" in await w.answer_of(helper, f"ch:{rnd.id}:ok")
    assert (await round_of(w, "孙一")).answer is None
    await other.press("✅ 1. 赵桂兰: seen / spoke — all well")
    await other.press("✅ 2. 孙一: seen / spoke — all well")
    assert (await round_of(w, "孙一")).answered_by_account_id == (await account_id_of(w, "秀英"))
    # back early: from tomorrow his elders are his again
    await helper.send("/helping")
    await helper.press("🏠 I'm back: end the hand-over")
    assert "From tomorrow your elders are yours again" in await texts(helper)
    await w.tick(timedelta(days=1))
    await helper.wait_for_message(has("Your check-ins for today, 11-29"))


async def test_a_helpers_mydata_names_their_elders_and_forget_leaves_them_to_staff_who_are_told(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    for line in ("6-1-101 10:00", "6-1-102 10:30"):
        await w.duty.send(f"/checkin_enrol {line}")
    await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    await choose_helper(w, "6-1-102", "", "Li · helper", PROXY)
    await w.tick(timedelta(minutes=1))  # 10:00: his list, both elders waiting for him
    await helper.wait_for_message(has("Your check-ins for today"))
    await helper.send("/mydata")  # his notices of 孙一 and 孙二 come through the outbox, maybe meanwhile
    card = await texts(helper)
    assert ("You answer the daily check-in for\n• 孙一 (迎春小区 6-1-101, 丁香迎春居委会): a helper answers every "
            "day\n• 孙二 (迎春小区 6-1-102, 丁香迎春居委会): a helper answers every day") in card
    await helper.send("/forget")
    await helper.press("Yes, delete my data")
    told = await w.duty.wait_for_message(has("no longer uses the bot"))
    assert "Li no longer uses the bot (they deleted their data)." in text_of(told)
    assert "• 孙一 (迎春小区 6-1-101)\n• 孙二 (迎春小区 6-1-102)" in text_of(told)
    async with w.sessions() as s:
        plans = (await s.scalars(select(CheckinPlan).where(CheckinPlan.mode == AnswerMode.proxy))).all()
    assert [p.helper_account_id for p in plans] == [None, None]
    # the two waiting for him go to the staff on duty at once: the list comes with the next tick
    assert (await w.tick(timedelta(minutes=1))).helpers_asked == 2
    listed = await w.duty.wait_for_message(has("Your check-ins for today"))
    assert "孙一" in text_of(listed) and "孙二" in text_of(listed)
    await w.duty.press("✅ 1. 孙一: seen / spoke — all well")
    assert (await round_of(w, "孙一")).answered_by_account_id == await account_id_of(w, "Zhang")
    # nobody is left waiting for the one who left: no reminder to him, no alert saying he was silent
    await w.tick(w.cfg.escalate_after)
    assert await w.count(Alert) == 1  # the tick's report is exact; the message comes through the outbox
    alert = text_of(await w.duty.wait_for_message(has("Check-in alert")))
    assert "nobody answered for 孙二 today" in alert
    assert "the committee's staff on duty were asked and did not answer." in alert


async def round_of(w: World, name: str) -> CheckinRound:
    async with w.sessions() as s:
        return (await s.scalars(select(CheckinRound).join(Resident, Resident.id == CheckinRound.resident_id)
                                .where(Resident.name == name).order_by(CheckinRound.id.desc()))).first()


async def account_id_of(w: World, first_name: str) -> int:
    async with w.sessions() as s:
        return await s.scalar(select(Account.id).where(Account.first_name == first_name))


async def test_forged_helper_buttons_change_nothing_and_names_arrive_as_text(world):
    w = world
    async with w.sessions() as s:  # as a name typed in a review request becomes a registry name
        await s.execute(update(Resident).where(Resident.name == "孙一").values(name=HOSTILE))
        await s.commit()
    helper = await w.user("Li", resident="李建国")
    neighbour = await w.user("秀英", resident="王秀英")
    await w.duty.send("/checkin_enrol 6-1-101 10:00")
    await w.duty.send("/checkin_enrol 5-1-102 10:00")  # 赵桂兰 answers herself
    await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    shown_as_text(await helper.wait_for_message(has("asked you to answer")))
    await w.tick(timedelta(minutes=1))
    shown_as_text(await helper.wait_for_message(has("Your check-ins for today")))
    mine, hers = await round_of(w, HOSTILE), await round_of(w, "赵桂兰")
    await neighbour.send("/help")
    huge = "9" * 30
    for user, data in ((neighbour, f"ch:{mine.id}:ok"), (w.duty, f"ch:{mine.id}:help"),
                       (helper, f"ch:{hers.id}:ok"), (helper, f"ch:{mine.id}:maybe"), (helper, "ch:abc:ok"),
                       (helper, f"ch:{huge}:ok"), (helper, f"ch:{mine.id}:ok:1"), (w.elder, f"ch:{mine.id}:noreach"),
                       (neighbour, f"cho:s:{await account_id_of(w, 'Li')}:{mine.committee_id}:3:0:0"),
                       (helper, f"cho:d:{await account_id_of(w, 'Li')}:{mine.committee_id}:999:0:0"),
                       (neighbour, f"chp:{mine.resident_id}:{await account_id_of(w, '秀英')}:p")):
        answer = await w.answer_of(user, data)
        assert answer is not None and ("no longer valid" in answer or "between 1 and 90 days" in answer), \
            (data, answer)
    assert (await round_of(w, HOSTILE)).answer is None and (await round_of(w, "赵桂兰")).answer is None
    assert await w.alert() is None and await w.count(HelperHandover) == 0
    li = await account_id_of(w, "Li")
    async with w.sessions() as s:
        plan = await s.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == mine.resident_id))
    assert plan.helper_account_id == li
    # the real button works; the alert shows the name as text
    await helper.press("🆘 1. Needs help")
    shown_as_text(await w.duty.wait_for_message(has("needs help")))


async def test_staff_hand_a_helper_over_to_the_duty_staff_and_take_an_elder_themselves(world):
    w = world
    helper = await w.user("Li", resident="李建国")
    await w.duty.send("/checkin_handover")
    assert "No helpers answer for elders in your area yet" in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_enrol 6-1-101 10:00")
    await choose_helper(w, "6-1-101", "李建国", "李建国 · 丁香苑 3-2-201", PROXY)
    await w.duty.send("/checkin_handover")
    await w.duty.press("Li · 丁香迎春居委会")
    await w.duty.press("7 days")
    await w.duty.press("🏢 The committee's staff on duty")
    # the staff member is one of the duty staff, told through the outbox: before or after the reply
    assert ("Handed over until 2026-12-04 (inclusive): Li's elders go to the committee's staff on duty."
            in await texts(w.duty))
    await outbox_message(w.duty, has("Nobody stands in: the staff on duty get their daily list"))
    told = await helper.wait_for_message(has("handed over your elders"))
    assert "Zhang handed over your elders from 2026-11-28 to 2026-12-04." in text_of(told)
    assert "The committee's staff on duty answer for them meanwhile." in text_of(told)
    await w.tick(timedelta(minutes=1))
    listed = await w.duty.wait_for_message(has("Your check-ins for today"))
    assert "You answer as the committee's staff on duty" in text_of(listed)
    await w.duty.press("✅ 1. 孙一: seen / spoke — all well")
    assert (await round_of(w, "孙一")).answer == "ok"
    # staff may answer for an elder themselves ("Me"), and give the elder back her own check-in
    await w.duty.send("/checkin_enrol 5-1-102 11:00")
    reply = await choose_helper(w, "5-1-102", "", "🙋 Me", FIRST)
    assert "when they do not, Zhang is asked." in reply
    # the outbox tells the new helper (here the staff member) in its own time, so the replies
    # below are looked for among what changed since each action, not as the newest message
    await w.duty.send("/checkin_helper 5-1-102 --note hard of hearing, knock loudly")
    assert "Their note: hard of hearing, knock loudly" in await texts(w.duty)
    await w.duty.press("👤 The elder answers alone")
    assert "赵桂兰 answers the daily check-in alone again." in await texts(w.duty)
    async with w.sessions() as s:
        plan = await s.scalar(select(CheckinPlan).join(Resident, Resident.id == CheckinPlan.resident_id)
                              .where(Resident.name == "赵桂兰"))
    assert (plan.mode, plan.helper_account_id, plan.note) == (AnswerMode.self, None, "hard of hearing, knock loudly")
