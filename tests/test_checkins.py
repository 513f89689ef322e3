"""Daily check-ins: the state machine with a moving ``now``, on SQLite and PostgreSQL.

Local time is Asia/Shanghai (UTC+8): T0 = 2026-11-28 01:00 UTC is 09:00 local on Saturday.
"""

from __future__ import annotations

import asyncio
import html
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.db import session_factory
from notifications.messages import checkins as views
from notifications.render import resolve_payload
from notifications.reports import weekly_chart, weekly_sheet
from services import checkins as cs
from services import outbox
from services.accounts import resolve_actor
from services.i18n import translate, use_locale
from services.models import (
    Account,
    Alert,
    AlertLevel,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    CheckinPlan,
    CheckinRound,
    EmergencyContact,
    HelperHandover,
    OutboxMessage,
    Resident,
    RoundEvent,
    RoundStatus,
    Staff,
    StaffRole,
)
from services.outbox import Priority
from services.regions import get_region
from tests.seed import seed_registry

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, Saturday 2026-11-28
SECRET = "test-secret-key"
CFG = cs.CheckinConfig(secret_key=SECRET)
TODAY = date(2026, 11, 28)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class World:
    sessions: object
    elder: int  # account ids …
    neighbour: int
    duty: int
    colleague: int
    street: int
    foreign: int
    family: int
    stranger_family: int
    zhao: int  # resident ids …
    wang: int


def _account(session, tid: int, name: str, *, resident_id: int | None = None, lang: str = "zh-hans") -> Account:
    account = Account(telegram_id=tid, chat_id=tid, first_name=name, language_code=lang, resident_id=resident_id,
                      created_at=T0 - timedelta(days=3))
    session.add(account)
    return account


def _staff(session, account: Account, region_id: int, role: StaffRole, on_duty: bool = False) -> None:
    session.add(Staff(account_id=account.id, region_id=region_id, role=role, active=True, on_duty=on_duty,
                      created_at=T0 - timedelta(days=3)))


async def make_world(engine, *, enrol: bool = True, elder_lang: str = "zh-hans") -> World:
    sessions = session_factory(engine)
    await seed_registry(sessions, now=T0 - timedelta(days=3))
    async with sessions() as s:
        dx, street, fl = [await get_region(s, c) for c in ("DXYC", "310104003", "FLSQ")]
        zhao = await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))
        wang = await s.scalar(select(Resident).where(Resident.name == "王秀英"))
        elder = _account(s, 1001, "桂兰", resident_id=zhao.id, lang=elder_lang)
        neighbour = _account(s, 1002, "秀英", resident_id=wang.id)
        duty = _account(s, 2001, "张书记", lang="en")
        colleague = _account(s, 2002, "李干事")
        street_staff = _account(s, 3001, "街道王")
        foreign = _account(s, 4001, "冯书记")
        family = _account(s, 5001, "女儿")
        stranger_family = _account(s, 5002, "别人家的儿子")
        await s.flush()
        _staff(s, duty, dx.id, StaffRole.committee, on_duty=True)
        _staff(s, colleague, dx.id, StaffRole.committee)
        _staff(s, street_staff, street.id, StaffRole.street)
        _staff(s, foreign, fl.id, StaffRole.committee)
        s.add(EmergencyContact(resident_id=zhao.id, account_id=family.id, added_via="elder", created_at=T0))
        s.add(EmergencyContact(resident_id=wang.id, account_id=stranger_family.id, added_via="elder", created_at=T0))
        await s.commit()
        if enrol:
            await cs.enrol_resident(s, zhao, now=T0 - timedelta(days=1), cfg=CFG)
            await s.commit()
        return World(sessions, elder.id, neighbour.id, duty.id, colleague.id, street_staff.id, foreign.id, family.id,
                     stranger_family.id, zhao.id, wang.id)


async def tick(w: World, minutes: float) -> cs.TickReport:
    return await cs.tick(w.sessions, CFG, at(minutes))


async def messages(w: World, key_like: str = "%") -> list[OutboxMessage]:
    async with w.sessions() as s:
        return list((await s.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key.like(key_like))
                                     .order_by(OutboxMessage.id))).all())


async def only_round(w: World) -> CheckinRound:
    async with w.sessions() as s:
        (rnd,) = (await s.scalars(select(CheckinRound))).all()
        return rnd


async def only_alert(w: World) -> Alert:
    async with w.sessions() as s:
        (alert,) = (await s.scalars(select(Alert))).all()
        return alert


async def actor_of(s, account_id: int):
    return await resolve_actor(s, await s.get(Account, account_id), language_code=None, default_locale="zh_Hans")


async def press_answer(w: World, account_id: int, round_id: int, *, need_help: bool, minutes: float):
    async with w.sessions() as s:
        result = await cs.answer(s, await s.get(Account, account_id), round_id, need_help=need_help, now=at(minutes),
                                 cfg=CFG)
        await s.commit()
        return result


async def ack(w: World, account_id: int, alert_id: int, minutes: float) -> Alert:
    async with w.sessions() as s:
        alert = await cs.acknowledge(s, await actor_of(s, account_id), alert_id, now=at(minutes))
        await s.commit()
        return alert


async def resolve(w: World, account_id: int, alert_id: int, outcome: AlertOutcome, minutes: float) -> Alert:
    async with w.sessions() as s:
        alert = await cs.resolve(s, await actor_of(s, account_id), alert_id, outcome, now=at(minutes), cfg=CFG)
        await s.commit()
        return alert


def recipients(rows: list[OutboxMessage]) -> set[int]:
    return {r.account_id for r in rows}


def sent(row: OutboxMessage) -> dict:
    """The message as the sender will send it: rendered in the recipient's language."""
    return resolve_payload(row.payload)


def text_of(row: OutboxMessage) -> str:
    """The rendered HTML."""
    return sent(row)["text"]


def visible(row: OutboxMessage) -> str:
    """What Telegram shows of the rendered HTML (tags gone, entities read)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text_of(row)))


def callbacks(row: OutboxMessage) -> list[str]:
    return [b["callback_data"] for r in sent(row)["buttons"] or [] for b in r]


# --- parsing ---------------------------------------------------------------------------------

def test_parse_time_and_days():
    assert cs.parse_time("9:00") == 540 and cs.parse_time("18：30") == 1110 and cs.parse_time("24:00") is None
    assert cs.parse_days("daily") == 127 and cs.parse_days("1-5") == 0b11111 and cs.parse_days("1,3,5") == 0b10101
    assert cs.parse_days("mon-fri") == 0b11111 and cs.parse_days("weekends") == 0b1100000
    assert cs.parse_days("5-1") is None and cs.parse_days("8") is None


def test_parse_date_with_and_without_a_year():
    today = date(2026, 11, 28)
    assert cs.parse_date("2026-12-05", today) == date(2026, 12, 5)
    assert cs.parse_date("12-05", today) == cs.parse_date("12/5", today) == date(2026, 12, 5)
    assert cs.parse_date("12月5日", today) == cs.parse_date("2026年12月5日", today) == date(2026, 12, 5)
    assert cs.parse_date(" 11.28 ", today) == today  # today is not "next year"
    assert cs.parse_date("11-27", today) == date(2027, 11, 27)  # without a year: the next one
    for bad in ("02-30", "2026-13-01", "next week", "", None, "12-05-2026", "1205"):
        assert cs.parse_date(bad, today) is None, bad


def test_minutes_and_day_masks_are_checked():
    assert cs.check_minute(0) == 0 and cs.check_minute(1439) == 1439 and cs.check_days(127) == 127
    for minute in (-1, 1440, 99999):
        with pytest.raises(cs.CheckinError) as err:
            cs.check_minute(minute)
        assert err.value.reason == "bad_time"
    for days in (0, 128, 1024, -1):
        with pytest.raises(cs.CheckinError) as err:
            cs.check_days(days)
        assert err.value.reason == "bad_days"


def test_the_enrol_command_has_one_option_parser():
    from handlers.checkins.staff import EnrolArgs, parse_enrol_args

    assert parse_enrol_args("5-1-102") == EnrolArgs(query="5-1-102")
    assert parse_enrol_args("5-1-102 08:30 days=1-5") == EnrolArgs(query="5-1-102", time="08:30", days="1-5")
    assert parse_enrol_args("赵桂兰 --time 7:00 --days weekdays") == EnrolArgs(query="赵桂兰", time="7:00",
                                                                            days="weekdays")
    assert parse_enrol_args("--days 1,3,5 王秀英") == EnrolArgs(query="王秀英", days="1,3,5")
    assert parse_enrol_args("9:00") == EnrolArgs(query="9:00")  # a lone word is the query
    assert parse_enrol_args("--segment has_tag(\"lives_alone\") and age >= 70 --time 08:00 --committee DXYC") == \
        EnrolArgs(segment='has_tag("lives_alone") and age >= 70', time="08:00", committee="DXYC")
    # a trailing time belongs to a resident query only; in a segment it stays in the expression
    assert parse_enrol_args("--segment age >= 70 08:00") == EnrolArgs(segment="age >= 70 08:00")
    assert parse_enrol_args("--segment") == EnrolArgs(segment="")
    assert parse_enrol_args("--segmentation 5") == EnrolArgs(query="--segmentation 5")
    assert parse_enrol_args("") == parse_enrol_args(None) == EnrolArgs()
    assert parse_enrol_args("5-1-102 --time 25:00") == EnrolArgs(query="5-1-102", time="25:00")  # read later


def test_durations_are_read_from_settings_into_one_config(tmp_path):
    from pydantic import ValidationError

    from bot.checkin_jobs import checkin_config
    from bot.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key=SECRET, checkin_reminder_after="45s",
                        checkin_escalate_after="2h", alert_ack_timeout="30m", alert_resolve_timeout="1d",
                        timezone="Asia/Shanghai", default_locale="en")
    cfg = checkin_config(settings)
    assert (cfg.reminder_after, cfg.escalate_after, cfg.ack_timeout, cfg.resolve_timeout) == (
        timedelta(seconds=45), timedelta(hours=2), timedelta(minutes=30), timedelta(days=1))
    assert cfg.tz.key == "Asia/Shanghai" and cfg.default_locale == "en" and cfg.secret_key == SECRET
    assert Settings(_env_file=None, checkin_reminder_after=90).checkin_reminder_after == timedelta(seconds=90)
    assert Settings(_env_file=None, checkin_reminder_after="1.5m").checkin_reminder_after == timedelta(seconds=90)
    for bad in ("ten minutes", "5 weeks", "-3m", ""):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, checkin_reminder_after=bad)
    # a reminder after the alert would never be sent: refused when the config is built
    with pytest.raises(ValueError, match="reminder"):
        checkin_config(Settings(_env_file=None, data_dir=tmp_path, secret_key=SECRET,
                                checkin_reminder_after="2h", checkin_escalate_after="1h"))


# --- opening rounds ----------------------------------------------------------------------------

async def test_tick_opens_one_round_and_one_prompt_even_when_run_twice(engine):
    w = await make_world(engine)
    assert (await tick(w, -1)).opened == 0  # 08:59 local: not yet
    first, second = await tick(w, 0), await tick(w, 0.5)
    assert (first.opened, second.opened) == (1, 0)
    rnd = await only_round(w)
    assert rnd.local_date == date(2026, 11, 28) and rnd.status == RoundStatus.pending
    (prompt,) = await messages(w, "ci:%")
    assert prompt.idempotency_key == f"ci:{rnd.id}:prompt" and prompt.priority == Priority.checkin
    assert prompt.account_id == w.elder and prompt.ref_type == cs.REF_ROUND and prompt.ref_id == rnd.id
    assert prompt.payload == {"message": "checkins.prompt", "data": {"round_id": rnd.id, "kind": "prompt"},
                              "locale": "zh_Hans"}  # what to say, not markup
    buttons = [b for row in sent(prompt)["buttons"] for b in row]
    assert [b["callback_data"] for b in buttons] == [f"ci:{rnd.id}:ok", f"ci:{rnd.id}:help"]
    assert [b["text"] for b in buttons] == ["😊 我很好", "🆘 我需要帮助"]  # the elder's language
    outbox.validate_payload(prompt.payload)
    async with w.sessions() as s:  # the prompt's history is the round's opened_at and the outbox row
        assert (await s.scalars(select(RoundEvent.kind).where(RoundEvent.round_id == rnd.id))).all() == []


async def test_prompt_is_in_english_for_an_english_elder(engine):
    w = await make_world(engine, elder_lang="en-US")
    await tick(w, 0)
    (prompt,) = await messages(w, "ci:%")
    assert prompt.payload["locale"] == "en"
    assert sent(prompt)["buttons"][0][0]["text"] == "😊 I'm fine"
    assert sent(prompt)["text"].startswith("☀️ Good day! How are you today?")


async def test_concurrent_ticks_open_one_round_and_send_one_prompt(engine):
    """Two processes ticking at once (two sessions, same and different ``now``): no double prompt."""
    w = await make_world(engine)
    other = session_factory(engine)
    reports = await asyncio.gather(cs.tick(w.sessions, CFG, at(1)), cs.tick(other, CFG, at(1)),
                                   cs.tick(other, CFG, at(1.001)))
    assert sum(r.opened for r in reports) == 1
    assert len(await messages(w, "ci:%:prompt")) == 1
    async with w.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(CheckinRound)) == 1
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.ref_type == cs.REF_ROUND)) == 1


async def test_enrolment_after_todays_time_starts_tomorrow(engine):
    w = await make_world(engine, enrol=False)
    async with w.sessions() as s:
        plan, created = await cs.enrol_resident(s, await s.get(Resident, w.zhao), now=at(60), cfg=CFG)  # 10:00
        await s.commit()
    assert created and plan.starts_on == date(2026, 11, 29)
    assert (await tick(w, 120)).opened == 0
    assert (await tick(w, 24 * 60)).opened == 1  # 09:00 the next day


async def test_days_mask_skips_other_weekdays(engine):
    w = await make_world(engine, enrol=False)
    async with w.sessions() as s:
        await cs.enrol_resident(s, await s.get(Resident, w.zhao), now=at(-2 * 24 * 60), cfg=CFG,
                                days=cs.parse_days("weekdays"))
        await s.commit()
    assert (await tick(w, 0)).opened == 0  # Saturday
    assert (await tick(w, 24 * 60)).opened == 0  # Sunday
    assert (await tick(w, 2 * 24 * 60)).opened == 1  # Monday


async def test_local_date_and_pause_across_midnight_in_shanghai(engine):
    """16:30 UTC on the 28th is 00:30 on the 29th in Shanghai: the round belongs to the 29th, and a
    pause "until the 28th" is over by then although it is still the 28th in UTC."""
    w = await make_world(engine)
    async with w.sessions() as s:
        elder = await s.get(Account, w.elder)
        await cs.set_time(s, elder, 15, now=at(0))  # 00:15 local
        await cs.pause(s, elder, date(2026, 11, 28), now=datetime(2026, 11, 28, 12, 0, tzinfo=UTC), cfg=CFG)
        await s.commit()
    before_midnight = datetime(2026, 11, 28, 15, 59, tzinfo=UTC)  # 23:59 local on the 28th
    assert (await cs.tick(w.sessions, CFG, before_midnight)).opened == 0
    after = datetime(2026, 11, 28, 16, 30, tzinfo=UTC)
    assert (await cs.tick(w.sessions, CFG, after)).opened == 1
    assert (await only_round(w)).local_date == date(2026, 11, 29)


async def test_pause_until_a_date_skips_those_days_and_resume_restarts(engine):
    w = await make_world(engine)
    async with w.sessions() as s:
        await cs.pause(s, await s.get(Account, w.elder), date(2026, 11, 30), now=at(-60), cfg=CFG, note="住院")
        await s.commit()
    for day in (0, 1, 2):
        assert (await tick(w, day * 24 * 60)).opened == 0
    # the duty staff heard about the pause
    (told,) = await messages(w, "cipause:%")
    assert told.account_id == w.duty and "2026-11-30" in text_of(told) and "Note: 住院" in text_of(told)
    assert (await tick(w, 3 * 24 * 60)).opened == 1  # December 1st
    async with w.sessions() as s:
        elder = await s.get(Account, w.elder)
        with pytest.raises(cs.CheckinError) as err:
            await cs.pause(s, elder, date(2026, 11, 1), now=at(3 * 24 * 60), cfg=CFG)
        assert err.value.reason == "past_date"


async def test_pausing_closes_todays_open_round_quietly(engine):
    w = await make_world(engine)
    await tick(w, 0)
    async with w.sessions() as s:
        elder = await s.get(Account, w.elder)
        await cs.pause(s, elder, date(2026, 12, 3), now=at(10), cfg=CFG)
        await s.commit()
    assert (await only_round(w)).status == RoundStatus.paused
    report = await tick(w, 200)
    assert (report.reminded, report.alerted) == (0, 0)
    async with w.sessions() as s:
        await cs.resume(s, await s.get(Account, w.elder), now=at(300))
        await s.commit()
    assert (await tick(w, 24 * 60)).opened == 1


# --- answers, reminders, alerts ----------------------------------------------------------------

async def test_answer_fine_closes_the_round(engine):
    w = await make_world(engine)
    await tick(w, 0)
    rnd = await only_round(w)
    result = await press_answer(w, w.elder, rnd.id, need_help=False, minutes=5)
    assert result.round.status == RoundStatus.ok and not result.already
    assert (await press_answer(w, w.elder, rnd.id, need_help=False, minutes=6)).already
    report = await tick(w, 120)
    assert (report.reminded, report.alerted) == (0, 0)
    assert await messages(w, "al:%") == []


async def test_silent_elder_gets_one_reminder_then_an_alert_to_duty_staff(engine):
    w = await make_world(engine)
    await tick(w, 0)
    rnd = await only_round(w)
    assert (await tick(w, 29)).reminded == 0
    assert (await tick(w, 30)).reminded == 1
    assert (await tick(w, 31)).reminded == 0  # one reminder only
    (reminder,) = await messages(w, "ci:%:remind")
    assert reminder.priority == Priority.checkin and callbacks(reminder)[0] == f"ci:{rnd.id}:ok"
    assert text_of(reminder).startswith(translate("zh_Hans", "⏰ Reminder: we have not heard from you today.\n"
                                                             "Please tap one button."))
    assert (await tick(w, 89)).alerted == 0
    assert (await tick(w, 90)).alerted == 1
    assert (await tick(w, 91)).alerted == 0
    alert = await only_alert(w)
    assert alert.reason == AlertReason.no_answer and alert.level == AlertLevel.committee
    sent = await messages(w, "al:%")
    assert recipients(sent) == {w.duty}  # on duty only, not the colleague
    (msg,) = sent
    assert msg.priority == Priority.alert and msg.ref_type == cs.REF_ALERT
    text = text_of(msg)  # the duty staff reads English
    assert "<b>赵桂兰</b> has not answered" in text
    for part in ("Room: 迎春小区 5-1-102", "Phone: +8613800138003", "Last answer: never", "Emergency contacts: 女儿",
                 "Level 1 of 3 — sent to the committee's staff on duty."):
        assert part in visible(msg)
    assert "emergency contact of" not in text  # the family line is for the family
    assert callbacks(msg) == [
        f"al:{alert.id}:ack", f"al:{alert.id}:safe", f"al:{alert.id}:help", f"al:{alert.id}:unr"]
    assert (await only_round(w)).status == RoundStatus.alerted


async def test_alert_shows_the_last_answer(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await press_answer(w, w.elder, (await only_round(w)).id, need_help=False, minutes=3)
    await tick(w, 24 * 60)
    await tick(w, 24 * 60 + 90)
    (msg,) = await messages(w, "al:%")
    assert "Last answer: I'm fine, 11-28 09:03" in visible(msg)


async def test_without_duty_staff_all_committee_staff_are_alerted(engine):
    w = await make_world(engine)
    async with w.sessions() as s:
        await cs.set_duty(s, await actor_of(s, w.duty), False)
        await s.commit()
    await tick(w, 0)
    await tick(w, 90)
    assert recipients(await messages(w, "al:%")) == {w.duty, w.colleague}


async def test_unacknowledged_alert_goes_to_street_staff_then_family(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    assert (await tick(w, 119)).escalated == 0
    assert (await tick(w, 120)).escalated == 1
    assert recipients(await messages(w, "al:%:L2:%")) == {w.street}
    assert (await only_alert(w)).level == AlertLevel.street
    assert (await tick(w, 149)).escalated == 0
    assert (await tick(w, 150)).escalated == 1
    (street_msg,) = await messages(w, "al:%:L2:%")
    with use_locale("en"):
        assert "Level 2 of 3 — sent to street staff" in views.alert_text(street_msg.payload["data"])
    family_msgs = await messages(w, "al:%:L3:%")
    assert recipients(family_msgs) == {w.family}  # this elder's family only
    # the daughter reads Chinese: the family line in exactly that language
    assert family_msgs[0].payload["locale"] == "zh_Hans"
    assert "您是 赵桂兰 的紧急联系人，请您关心一下。" in visible(family_msgs[0])
    assert translate("zh_Hans", "Level {level} of {levels} — sent to the elder's family (emergency contacts).") \
        .format(level=3, levels=3) in visible(family_msgs[0])
    assert (await tick(w, 300)).escalated == 0  # nothing above the family


async def test_acknowledged_alert_stops_escalating_and_reminds_the_acknowledger(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    alert = await only_alert(w)
    await ack(w, w.duty, alert.id, 100)
    with pytest.raises(cs.CheckinError) as err:
        await ack(w, w.colleague, alert.id, 101)
    assert err.value.reason == "taken"
    assert (await tick(w, 200)).escalated == 0
    assert (await tick(w, 100 + 239)).resolve_reminded == 0
    assert (await tick(w, 100 + 240)).resolve_reminded == 1
    assert (await tick(w, 100 + 241)).resolve_reminded == 0
    (reminder,) = await messages(w, "al:%:rr1:%")
    assert reminder.account_id == w.duty and reminder.priority == Priority.alert
    assert (await tick(w, 100 + 480)).resolve_reminded == 1  # again after another timeout
    done = await resolve(w, w.duty, alert.id, AlertOutcome.safe, 600)
    assert done.status == AlertStatus.resolved and done.outcome == AlertOutcome.safe
    assert (await tick(w, 2000)).resolve_reminded == 0
    with pytest.raises(cs.CheckinError) as err:
        await resolve(w, w.duty, alert.id, AlertOutcome.safe, 601)
    assert err.value.reason == "closed"
    async with w.sessions() as s:
        kinds = (await s.scalars(select(RoundEvent.kind).where(RoundEvent.round_id == alert.round_id)
                                 .order_by(RoundEvent.at, RoundEvent.id))).all()
    assert kinds == ["alert_opened", "alert_sent", "acknowledged", "resolve_reminder_sent",
                     "resolve_reminder_sent", "resolved", "elder_told"]


async def test_need_help_alerts_at_once_with_highest_priority(engine):
    w = await make_world(engine)
    await tick(w, 0)
    rnd = await only_round(w)
    result = await press_answer(w, w.elder, rnd.id, need_help=True, minutes=2)
    assert result.alert.reason == AlertReason.help and result.round.status == RoundStatus.help
    (msg,) = await messages(w, "al:%")
    assert msg.priority == Priority.alert and msg.account_id == w.duty
    assert 'pressed "I need help"!' in visible(msg)
    assert (await tick(w, 30)).reminded == 0  # answered: no reminder
    # pressing it again does not alert twice
    assert (await press_answer(w, w.elder, rnd.id, need_help=True, minutes=3)).already
    assert len(await messages(w, "al:%")) == 1


async def test_help_after_a_no_answer_alert_upgrades_it_for_everyone_told(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    await tick(w, 120)  # street staff told too
    await press_answer(w, w.elder, (await only_round(w)).id, need_help=True, minutes=125)
    assert (await only_alert(w)).reason == AlertReason.help
    assert recipients(await messages(w, "al:%:help:%")) == {w.duty, w.street}


async def test_late_fine_after_an_alert_is_an_all_clear_for_everyone_alerted(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    await tick(w, 120)
    result = await press_answer(w, w.elder, (await only_round(w)).id, need_help=False, minutes=130)
    assert result.all_clear
    alert = await only_alert(w)
    assert alert.status == AlertStatus.resolved and alert.outcome == AlertOutcome.all_clear
    clear = await messages(w, "al:%:clear:%")
    assert recipients(clear) == {w.duty, w.street} and all(m.priority == Priority.alert for m in clear)
    assert (await tick(w, 200)).escalated == 0


async def test_resolving_not_reachable_tells_the_family(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    alert = await only_alert(w)
    await resolve(w, w.duty, alert.id, AlertOutcome.not_reachable, 95)
    assert recipients(await messages(w, "al:%:family:%")) == {w.family}


async def test_blocked_elder_is_an_alert_through_the_sender_listener(engine):
    w = await make_world(engine)
    await tick(w, 0)
    (prompt,) = await messages(w, "ci:%")
    async with w.sessions() as s:  # what the sender does on a 403, then its listener
        row = await outbox.mark_unreachable(s, prompt.id, error="Forbidden: bot was blocked by the user", now=at(1))
        assert row is not None
        await cs.on_round_unreachable(s, await s.get(OutboxMessage, prompt.id), at(1), cfg=CFG)
        await s.commit()
    alert = await only_alert(w)
    assert alert.reason == AlertReason.unreachable
    assert recipients(await messages(w, "al:%")) == {w.duty}
    assert "cannot be reached" in text_of((await messages(w, "al:%"))[0])


async def test_blocked_elder_is_an_alert_at_the_next_tick_without_a_listener(engine):
    w = await make_world(engine)
    await tick(w, 0)
    (prompt,) = await messages(w, "ci:%")
    async with w.sessions() as s:
        await outbox.mark_unreachable(s, prompt.id, error="Forbidden", now=at(1))
        await s.commit()
    report = await tick(w, 2)
    assert report.unreachable == 1 and (await only_alert(w)).reason == AlertReason.unreachable
    assert (await tick(w, 3)).unreachable == 0


# --- who may press what ------------------------------------------------------------------------

async def test_buttons_carry_ids_not_authority(engine):
    w = await make_world(engine)
    await tick(w, 0)
    rnd = await only_round(w)
    for account in (w.neighbour, w.duty, w.family):  # nobody answers for the elder
        with pytest.raises(cs.CheckinError) as err:
            await press_answer(w, account, rnd.id, need_help=False, minutes=1)
        assert err.value.reason == "not_yours"
    await tick(w, 90)
    alert = await only_alert(w)
    for account in (w.foreign, w.stranger_family, w.neighbour):  # other committee, other elder's family
        with pytest.raises(cs.CheckinError) as err:
            await ack(w, account, alert.id, 91)
        assert err.value.reason == "not_found"
    assert (await ack(w, w.family, alert.id, 92)).acknowledged_by_account_id == w.family  # this elder's family
    assert (await resolve(w, w.street, alert.id, AlertOutcome.safe, 93)).resolved_by_account_id == w.street


# --- enrolment, family, views, report ---------------------------------------------------------

async def test_enrolment_refuses_a_bad_minute_or_mask_and_writes_nothing(engine):
    w = await make_world(engine, enrol=False)
    async with w.sessions() as s:
        zhao = await s.get(Resident, w.zhao)
        dx = await get_region(s, "DXYC")
        for minute, days, reason in ((99999, None, "bad_time"), (-5, None, "bad_time"), (None, 1024, "bad_days"),
                                     (540, 0, "bad_days")):
            with pytest.raises(cs.CheckinError) as err:
                await cs.enrol_resident(s, zhao, now=at(0), cfg=CFG, minute=minute, days=days)
            assert err.value.reason == reason
            with pytest.raises(cs.CheckinError):
                await cs.enrol_segment(s, dx, "age >= 70", now=at(0), cfg=CFG, minute=minute, days=days)
        await s.commit()
        assert await s.scalar(select(func.count()).select_from(CheckinPlan)) == 0
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        plan, _ = await cs.enrol_resident(s, zhao, now=at(0), cfg=CFG, minute=600, days=0b11111)
        with pytest.raises(cs.CheckinError):  # re-enrolling with a bad value leaves the plan as it was
            await cs.enrol_resident(s, zhao, now=at(1), cfg=CFG, minute=1440)
        assert (plan.minute_of_day, plan.days) == (600, 0b11111)
        with pytest.raises(cs.CheckinError) as err:
            await cs.set_time(s, await s.get(Account, w.elder), 5000, now=at(2))
        assert err.value.reason == "bad_time" and plan.minute_of_day == 600


async def test_enrol_a_segment_once(engine):
    w = await make_world(engine, enrol=False)
    async with w.sessions() as s:
        dx = await get_region(s, "DXYC")
        result = await cs.enrol_segment(s, dx, "living_alone == true and age >= 70", now=at(-60), cfg=CFG,
                                        minute=8 * 60 + 30)
        await s.commit()
        assert (result.matched, result.enrolled, result.already) == (1, 1, 0)
        again = await cs.enrol_segment(s, dx, "living_alone == true and age >= 70", now=at(-50), cfg=CFG)
        await s.commit()
        assert (again.matched, again.enrolled, again.already) == (1, 0, 1)
        (plan,) = (await s.scalars(select(CheckinPlan))).all()
        assert plan.resident_id == w.zhao and plan.minute_of_day == 510 and plan.starts_on == date(2026, 11, 28)
        from services.expressions import ExpressionError

        with pytest.raises(ExpressionError):
            await cs.enrol_segment(s, dx, "age >= ", now=at(0), cfg=CFG)


async def test_family_invite_works_once(engine):
    w = await make_world(engine)
    async with w.sessions() as s:
        code = await cs.create_family_invite(s, w.zhao, issued_by="elder", cfg=CFG, now=at(0))
        await s.commit()
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_family_invite(s, await s.get(Account, w.elder), code, cfg=CFG, now=at(1))
        assert err.value.reason == "own_code"
        resident = await cs.redeem_family_invite(s, await s.get(Account, w.colleague), code, cfg=CFG,
                                                 now=at(1))
        await s.commit()
        assert resident.id == w.zhao
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_family_invite(s, await s.get(Account, w.neighbour), code, cfg=CFG, now=at(2))
        assert err.value.reason == "used_code"
        old = await cs.create_family_invite(s, w.zhao, issued_by="staff", cfg=CFG, now=at(-8 * 24 * 60))
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_family_invite(s, await s.get(Account, w.neighbour), old, cfg=CFG, now=at(2))
        assert err.value.reason == "expired_code"
        names = [c.name for c in await cs.list_contacts(s, w.zhao)]
        assert names == ["女儿", "李干事"]
    assert recipients(await messages(w, "famjoin:%")) == {w.elder}


async def test_board_and_open_alerts_are_scoped(engine):
    w = await make_world(engine)
    await tick(w, 0)
    await tick(w, 90)
    alert = await only_alert(w)
    async with w.sessions() as s:
        own = await cs.board(s, await actor_of(s, w.duty), now=at(91), cfg=CFG)
        (c,) = own.committees
        assert own.day == date(2026, 11, 28) and [line.name for line in c.alerted] == ["赵桂兰"]
        assert (await cs.board(s, await actor_of(s, w.foreign), now=at(91), cfg=CFG)).committees == []
        assert len(await cs.open_alerts(s, await actor_of(s, w.street), cfg=CFG)) == 1
        assert await cs.open_alerts(s, await actor_of(s, w.foreign), cfg=CFG) == []
        steps = await cs.round_history(s, await actor_of(s, w.duty), alert.id, cfg=CFG)
        assert [step.kind for step in steps] == ["prompted", "alert_opened", "alert_sent"]
        assert views.when(steps[0].at) == "11-28 09:00" and steps[2].target == "张书记"
        with pytest.raises(cs.CheckinError):  # the history has the reach of the buttons
            await cs.round_history(s, await actor_of(s, w.foreign), alert.id, cfg=CFG)


async def test_weekly_report_counts_answer_rates(engine):
    from openpyxl import load_workbook

    w = await make_world(engine)
    for day in range(7):
        await tick(w, day * 24 * 60)
        rounds = await messages(w, "ci:%:prompt")
        if day % 2 == 0:
            await press_answer(w, w.elder, rounds[-1].ref_id, need_help=False, minutes=day * 24 * 60 + 5)
    async with w.sessions() as s:
        dx = await get_region(s, "DXYC")
        report = await cs.weekly_report(s, dx, date(2026, 12, 4))
    assert report.start == date(2026, 11, 28) and [d.rounds for d in report.days] == [1] * 7
    assert [d.ok for d in report.days] == [1, 0, 1, 0, 1, 0, 1]
    with use_locale("en"):
        assert "Week: 4/7 answered (57%)." in views.weekly_text(report.data())
        sheet = load_workbook(io.BytesIO(weekly_sheet(report))).active
    assert weekly_chart(report).startswith(b"\x89PNG")
    from notifications.reports import chart_title

    assert chart_title(report) == "DXYC · 2026-11-28 – 2026-12-04 · 4/7"
    assert sheet.cell(3, 1).value == "2026-11-28" and sheet.cell(3, 6).value == 100.0 and sheet.cell(4, 6).value == 0
    assert sheet.cell(10, 2).value == 7  # the total row


async def test_weekly_reports_go_out_once_per_committee_and_week(engine, tmp_path):
    from bot.checkin_jobs import send_weekly_reports

    w = await make_world(engine)
    await tick(w, 0)
    monday = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)  # 08:30 local
    assert cs.weekly_reports_due(monday, CFG) and not cs.weekly_reports_due(at(0), CFG)
    folder = tmp_path / "reports"
    assert await send_weekly_reports(w.sessions, CFG, folder, monday) == 1
    assert await send_weekly_reports(w.sessions, CFG, folder, monday + timedelta(minutes=1)) == 0
    rows = await messages(w, "ciweek:%")
    assert recipients(rows) == {w.duty, w.colleague} and len(rows) == 4
    assert all(("photo" in m.payload) != ("document" in m.payload) for m in rows)
    # one pair of files per language, named after the week; captions rendered per recipient
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkins-DXYC-2026-11-23-en.png", "checkins-DXYC-2026-11-23-en.xlsx",
        "checkins-DXYC-2026-11-23-zh_Hans.png", "checkins-DXYC-2026-11-23-zh_Hans.xlsx"]
    (chart,) = [m for m in rows if m.account_id == w.duty and "photo" in m.payload]
    assert chart.payload["photo"]["path"].endswith("-en.png")
    assert sent(chart)["text"].startswith("<b>Check-ins of 丁香迎春居委会, 2026-11-23 – 2026-11-29</b>")
    assert len(sent(chart)["text"]) <= outbox.MAX_CAPTION


async def test_cli_enrols_a_segment_and_lists_plans(sqlite_engine, tmp_path, monkeypatch, capsys):
    import argparse
    import contextlib

    import bot.cli
    from bot.cli_checkins import add_commands, cmd_checkins
    from bot.settings import Settings

    w = await make_world(sqlite_engine, enrol=False)
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key=SECRET)

    @contextlib.asynccontextmanager
    async def cli_session(_settings):
        async with w.sessions() as session:
            yield session
    monkeypatch.setattr(bot.cli, "cli_session", cli_session)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))

    def parse(*argv: str) -> argparse.Namespace:
        args = parser.parse_args(argv)
        args.settings = settings  # what bot.cli.main() sets
        return args

    args = parse("checkins", "enrol", "--committee", "DXYC", "--segment", "living_alone == true and age >= 70",
                 "--time", "08:15")
    assert await cmd_checkins(args) == 0
    assert "1 residents match; 1 newly enrolled" in capsys.readouterr().out
    assert await cmd_checkins(parse("checkins", "list", "--committee", "DXYC")) == 0
    out = capsys.readouterr().out
    assert "赵桂兰" in out and "08:15" in out and "every day" in out
    assert await cmd_checkins(parse("checkins", "enrol", "--committee", "DXYC", "--segment", "age >>= 3")) == 2
    # not a resident of that committee
    assert await cmd_checkins(parse("checkins", "enrol", "--committee", "FLSQ", "--resident", str(w.zhao))) == 2


# --- helpers who answer for elders (proxy check-in) ------------------------------------------------

@dataclass
class Helpers:
    w: World
    helper: int  # account ids: 李师傅 (resident 李建国, verified), who answers for 孙一 and 孙二 …
    other: int  # … and 秀英 (王秀英's account, verified), a second helper of the committee
    sun1: int  # resident ids: 孙一 (09:00) and 孙二 (10:00), not on Telegram
    sun2: int


async def helper_world(engine) -> Helpers:
    """The world, plus two elders without Telegram whose check-in 李师傅 answers (proxy), 孙一 at
    09:00 and 孙二 at 10:00, and 秀英 verified (a possible substitute once she helps someone)."""
    w = await make_world(engine, enrol=False)
    async with w.sessions() as s:
        li = await s.scalar(select(Resident).where(Resident.name == "李建国"))
        helper = _account(s, 6001, "李师傅", resident_id=li.id, lang="en")
        helper.verified_at = T0 - timedelta(days=3)
        other = await s.get(Account, w.neighbour)
        other.verified_at = T0 - timedelta(days=3)
        await s.flush()
        staff = await actor_of(s, w.duty)
        suns = []
        for name, minute in (("孙一", 540), ("孙二", 600)):
            r = await s.scalar(select(Resident).where(Resident.name == name))
            await cs.enrol_resident(s, r, now=T0 - timedelta(days=1), cfg=CFG, minute=minute)
            await cs.assign_helper(s, staff, r, helper.id, "proxy", now=T0 - timedelta(days=1), cfg=CFG)
            suns.append(r.id)
        await s.commit()
        return Helpers(w, helper.id, other.id, *suns)


async def helper_actor(h: Helpers, account_id: int):
    async with h.w.sessions() as s:
        return await actor_of(s, account_id)


async def helper_press(h: Helpers, account_id: int, round_id: int, answer: str, minutes: float,
                       message_id: int | None = None) -> cs.HelperAnswerResult:
    async with h.w.sessions() as s:
        result = await cs.helper_answer(s, await actor_of(s, account_id), round_id, answer, now=at(minutes), cfg=CFG,
                                        message_id=message_id)
        await s.commit()
        return result


async def rounds_by_resident(w: World, day: date = TODAY) -> dict[int, CheckinRound]:
    """The rounds of one local date, by resident."""
    async with w.sessions() as s:
        return {r.resident_id: r for r in await s.scalars(select(CheckinRound).where(CheckinRound.local_date == day))}


async def test_a_proxy_helper_gets_one_list_for_two_elders_and_answers_for_each(engine):
    h = await helper_world(engine)
    w = h.w
    report = await tick(w, 0)  # 09:00: 孙一's time; 孙二's (10:00) opens with it, on the same list
    assert (report.opened, report.helpers_asked) == (1, 2)
    (listed,) = await messages(w, "hl:%")
    assert listed.account_id == h.helper and listed.ref_type == "checkin_list"
    assert listed.idempotency_key == f"hl:a{h.helper}:2026-11-28:daily:{h.helper}"  # once a day, whoever opens
    assert listed.payload["message"] == "checkins.helper_list" and listed.payload["locale"] == "en"
    text = visible(listed)
    assert "Your check-ins for today, 11-28" in text
    assert "1. 孙一 · 迎春小区 6-1-101" in text and "2. 孙二 · 迎春小区 6-1-102" in text
    assert "📞 +8613800138009" in text  # plain text: Telegram makes a phone number tap-to-call
    rounds = await rounds_by_resident(w)
    r1, r2 = rounds[h.sun1], rounds[h.sun2]
    assert all(r.status == RoundStatus.helper and r.mode.value == "proxy" for r in (r1, r2))
    assert callbacks(listed) == [f"ch:{r1.id}:ok", f"ch:{r1.id}:noreach", f"ch:{r1.id}:help",
                                 f"ch:{r2.id}:ok", f"ch:{r2.id}:noreach", f"ch:{r2.id}:help"]
    assert not await messages(w, "ci:%")  # nobody prompts an elder without Telegram
    # "all well" for 孙一: the list not sent yet is rewritten, so it goes out as it is now
    result = await helper_press(h, h.helper, r1.id, "ok", 5)
    assert result.round.status == RoundStatus.ok and result.round.answer_via == "helper"
    assert result.round.answered_by_account_id == h.helper and [line.state for line in result.view.lines] == \
        ["ok", "waiting"]
    (listed,) = await messages(w, "hl:%")
    assert "✅ All well (09:05)" in visible(listed) and callbacks(listed)[0] == f"ch:{r2.id}:ok"
    assert (await helper_press(h, h.helper, r1.id, "ok", 6)).already
    # the list is sent; "could not reach" 孙二: the alert goes out at once and names the helper, the
    # list is edited in place through the outbox (the pressed message is left to the handler)
    async with w.sessions() as s:
        await outbox.mark_sent(s, listed.id, telegram_message_id=77, now=at(1))
        await s.commit()
    result = await helper_press(h, h.helper, r2.id, "noreach", 7)
    assert result.alert is not None and result.alert.reason == AlertReason.unreached
    (alert,) = await messages(w, "al:%")
    assert alert.account_id == w.duty and alert.priority == Priority.alert
    assert "Check-in alert: 李师傅 could not reach 孙二 today." in visible(alert)
    assert "Helper: 李师傅" in visible(alert)
    (edit,) = await messages(w, "hle:%")
    assert edit.payload["edit_message_id"] == 77 and edit.ref_type == "checkin_list_edit"
    assert "📵 Could not reach (09:07)" in visible(edit) and callbacks(edit) == [f"ch:{r2.id}:ok"]
    # the same press again changes nothing; a press on the message the handler edits queues no edit
    assert (await helper_press(h, h.helper, r2.id, "noreach", 8)).already
    await helper_press(h, h.helper, r2.id, "ok", 30, message_id=77)  # reached after all: an all clear
    assert len(await messages(w, "hle:%")) == 1
    assert (await only_alert(w)).outcome == AlertOutcome.all_clear
    (clear,) = await messages(w, "al:%:clear:%")
    assert "All clear: 李师傅 saw or spoke to 孙二 (迎春小区 6-1-102) at 11-28 09:30: all well." in visible(clear)
    report = await tick(w, 60)  # 10:00, 孙二's own time: nothing opens again, no second list
    assert (report.opened, report.helpers_asked) == (0, 0) and len(await messages(w, "hl:%")) == 1
    report = await tick(w, 300)
    assert (report.helpers_reminded, report.helpers_silent, report.alerted) == (0, 0, 0)


async def test_an_elder_added_after_the_days_list_comes_in_a_list_of_its_own(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    async with w.sessions() as s:  # 赵桂兰 gets him as her helper at 09:20, for 10:00 today
        zhao = await s.get(Resident, w.zhao)
        await cs.enrol_resident(s, zhao, now=at(20), cfg=CFG, minute=600)
        await cs.assign_helper(s, await actor_of(s, w.duty), zhao, h.helper, "proxy", now=at(20), cfg=CFG)
        await s.commit()
    assert (await tick(w, 40)).helpers_asked == 0  # her time has not come
    report = await tick(w, 60)
    assert (report.opened, report.helpers_asked) == (1, 1)
    first, added = await messages(w, "hl:%:daily:%")
    assert "赵桂兰" not in visible(first) and "1. 赵桂兰 · 迎春小区 5-1-102" in visible(added)
    assert added.idempotency_key.endswith(f":daily:{(await rounds_by_resident(w))[w.zhao].id}:{h.helper}")


async def test_forged_helper_buttons_change_nothing(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    r1 = (await rounds_by_resident(w))[h.sun1]
    async with w.sessions() as s:  # 赵桂兰 answers herself: a helper may not answer her round
        await cs.enrol_resident(s, await s.get(Resident, w.zhao), now=at(-60), cfg=CFG)
        await s.commit()
    await tick(w, 1)
    own = (await rounds_by_resident(w))[w.zhao]
    huge = 2**63
    for account, round_id, answer in ((w.neighbour, r1.id, "ok"), (w.duty, r1.id, "ok"), (w.foreign, r1.id, "help"),
                                      (h.helper, r1.id, "maybe"), (h.helper, own.id, "ok"), (h.helper, huge, "ok"),
                                      (h.helper, -1, "ok"), (w.elder, r1.id, "noreach")):
        with pytest.raises(cs.CheckinError) as err:
            await helper_press(h, account, round_id, answer, 2)
        assert err.value.reason == "not_yours", (account, round_id, answer)
    # and a day later, yesterday's buttons are no longer valid
    with pytest.raises(cs.CheckinError):
        await helper_press(h, h.helper, r1.id, "ok", 24 * 60)
    rounds = await rounds_by_resident(w)
    assert rounds[h.sun1].answer is None and rounds[w.zhao].answer is None
    assert await messages(w, "al:%") == [] and await messages(w, "hle:%") == []


async def test_self_then_helper_asks_the_helper_then_alerts_that_both_were_silent(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:
        await cs.assign_helper(s, await actor_of(s, w.duty), await s.get(Resident, w.zhao), h.helper,
                               "self_then_helper", now=at(-60), cfg=CFG)
        await s.commit()
    await tick(w, 0)
    assert len(await messages(w, "ci:%:prompt")) == 1  # the elder is asked first
    (daily,) = await messages(w, "hl:%")
    assert "赵桂兰" not in visible(daily)  # … and is not on her helper's list while she may answer
    rounds = await rounds_by_resident(w)
    for sun in (h.sun1, h.sun2):
        await helper_press(h, h.helper, rounds[sun].id, "ok", 5)
    assert (await tick(w, 30)).reminded == 1
    report = await tick(w, 89)
    assert (report.helpers_asked, report.alerted) == (0, 0)
    report = await tick(w, 90)  # her reminder went unanswered: her helper, not yet staff
    assert (report.helpers_asked, report.alerted, report.helpers_silent) == (1, 0, 0)
    assert await messages(w, "al:%") == []
    (fallback,) = [m for m in await messages(w, "hl:%") if m.payload["data"]["kind"] == "fallback"]
    assert fallback.account_id == h.helper
    assert "赵桂兰 did not answer today's check-in. Please look in on them or call" in visible(fallback)
    zhao = (await rounds_by_resident(w))[w.zhao]
    assert zhao.status == RoundStatus.helper and zhao.helper_asked_at == at(90)
    assert (await tick(w, 119)).helpers_reminded == 0
    assert (await tick(w, 120)).helpers_reminded == 1
    (reminder,) = [m for m in await messages(w, "hl:%") if m.payload["data"]["kind"] == "remind"]
    assert "Reminder: 1 elder is still waiting for your answer today (11-28)." in visible(reminder)
    assert (await tick(w, 179)).helpers_silent == 0
    assert (await tick(w, 180)).helpers_silent == 1
    (alert,) = await messages(w, "al:%")
    assert alert.account_id == w.duty
    assert ("Check-in alert: 赵桂兰 has not answered today's check-in, and their helper 李师傅 did not answer "
            "either.") in visible(alert)
    # the elder's late "I'm fine" still clears it, and the helper's lists show she answered herself
    await press_answer(w, w.elder, zhao.id, need_help=False, minutes=200)
    (line,) = [line for line in (await cs_list(h, h.helper, 201)).lines if line.round_id == zhao.id]
    assert (line.state, line.by) == ("ok", "self")
    assert (await only_alert(w)).outcome == AlertOutcome.all_clear


async def test_self_then_helper_elder_off_the_bot_or_blocking_it_goes_to_the_helper_before_any_alert(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:  # 孙一 (not on the bot) and 赵桂兰 (on it) both answer first
        staff = await actor_of(s, w.duty)
        for resident_id in (h.sun1, w.zhao):
            await cs.assign_helper(s, staff, await s.get(Resident, resident_id), h.helper, "self_then_helper",
                                   now=at(-60), cfg=CFG)
        await s.commit()
    await tick(w, 0)
    rounds = await rounds_by_resident(w)
    # 孙一 cannot be asked: her round goes to her helper at once, as a proxy elder's
    assert (rounds[h.sun1].status, rounds[h.sun1].mode.value) == (RoundStatus.helper, "proxy")
    (daily,) = await messages(w, "hl:%")
    assert {line["name"] for line in daily.payload["data"]["lines"]} == {"孙一", "孙二"}
    # 赵桂兰 is prompted; she blocked the bot: her helper is asked now, and nobody is alerted yet
    (prompt,) = await messages(w, "ci:%")
    async with w.sessions() as s:
        await outbox.mark_unreachable(s, prompt.id, error="Forbidden: bot was blocked by the user", now=at(1))
        await cs.on_round_unreachable(s, await s.get(OutboxMessage, prompt.id), at(1), cfg=CFG)
        await s.commit()
    zhao = (await rounds_by_resident(w))[w.zhao]
    assert (zhao.status, zhao.helper_account_id, zhao.helper_asked_at) == (RoundStatus.helper, h.helper, at(1))
    assert await messages(w, "al:%") == []
    (fallback,) = [m for m in await messages(w, "hl:%") if m.payload["data"]["kind"] == "fallback"]
    assert "赵桂兰 did not answer today's check-in." in visible(fallback)
    assert (await tick(w, 2)).unreachable == 0  # the safety net does not alert her either
    assert await messages(w, "al:%") == []


async def test_a_silent_proxy_helper_is_reminded_once_then_staff_are_alerted(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    assert (await tick(w, 29)).helpers_reminded == 0
    assert (await tick(w, 30)).helpers_reminded == 2
    assert (await tick(w, 31)).helpers_reminded == 0
    (reminder,) = [m for m in await messages(w, "hl:%") if m.payload["data"]["kind"] == "remind"]
    assert "Reminder: 2 elders are still waiting for your answer today (11-28)." in visible(reminder)
    assert (await tick(w, 89)).helpers_silent == 0
    assert (await tick(w, 90)).helpers_silent == 2
    assert (await tick(w, 91)).helpers_silent == 0
    alerts = {m.payload["data"]["name"]: m for m in await messages(w, "al:%")}
    assert set(alerts) == {"孙一", "孙二"}
    assert ("Check-in alert: nobody answered for 孙一 today — their helper 李师傅 did not answer."
            in visible(alerts["孙一"]))
    # the alert escalates as any other; the helper's late "all well" is an all clear
    assert (await tick(w, 120)).escalated == 2
    rounds = await rounds_by_resident(w)
    await helper_press(h, h.helper, rounds[h.sun1].id, "ok", 125)
    assert recipients(await messages(w, "al:%:clear:%")) == {w.duty, w.street}


async def test_a_list_answered_in_while_on_its_way_is_edited_once_it_is_sent(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    (listed,) = await messages(w, "hl:%")
    async with w.sessions() as s:  # the sender claims it: its message id is not known yet
        assert [r.id for r in await outbox.claim(s, worker_id="w1", limit=5, lease=timedelta(minutes=1),
                                                 now=at(1))] == [listed.id]
        await s.commit()
    rounds = await rounds_by_resident(w)
    await helper_press(h, h.helper, rounds[h.sun1].id, "ok", 2)  # before the list is marked sent
    assert await messages(w, "hle:%") == []  # nothing to edit yet
    async with w.sessions() as s:  # what the sender does on Telegram's answer, then its listener
        assert await outbox.mark_sent(s, listed.id, telegram_message_id=77, now=at(3)) is not None
        await cs.on_list_sent(s, await s.get(OutboxMessage, listed.id), at(3), cfg=CFG)
        await s.commit()
    (edit,) = await messages(w, "hle:%")
    assert edit.payload["edit_message_id"] == 77 and edit.chat_id == listed.chat_id
    assert {line["name"]: line["state"] for line in edit.payload["data"]["lines"]} == {"孙一": "ok", "孙二": "waiting"}
    # a list that went out as it is now is left alone
    async with w.sessions() as s:
        row = await s.get(OutboxMessage, listed.id)
        row.payload = {**row.payload, "data": edit.payload["data"]}
        await s.commit()
    async with w.sessions() as s:
        await cs.on_list_sent(s, await s.get(OutboxMessage, listed.id), at(4), cfg=CFG)
        await s.commit()
    assert len(await messages(w, "hle:%")) == 1


async def test_a_helper_who_blocked_the_bot_is_an_alert_at_once_naming_them(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    (listed,) = await messages(w, "hl:%")
    async with w.sessions() as s:  # what the sender does on a 403, then its listener
        assert await outbox.mark_unreachable(s, listed.id, error="Forbidden: bot was blocked by the user",
                                             now=at(1)) is not None
        await cs.on_list_unreachable(s, await s.get(OutboxMessage, listed.id), at(1), cfg=CFG)
        await s.commit()
    alerts = {m.payload["data"]["name"]: m for m in await messages(w, "al:%")}
    assert set(alerts) == {"孙一", "孙二"} and recipients(list(alerts.values())) == {w.duty}
    assert all(m.priority == Priority.alert for m in alerts.values())
    assert ("Check-in alert: nobody can answer for 孙一 today — their helper 李师傅 cannot be reached (the bot is "
            "blocked).") in visible(alerts["孙一"])
    assert "Helper: 李师傅" in visible(alerts["孙一"])
    async with w.sessions() as s:
        reasons = {a.reason for a in await s.scalars(select(Alert))}
        events = (await s.scalars(select(RoundEvent).where(RoundEvent.kind == "helper_unreachable"))).all()
    assert reasons == {AlertReason.helper_blocked} and {e.target_account_id for e in events} == {h.helper}
    assert all(r.status == RoundStatus.alerted for r in (await rounds_by_resident(w)).values())
    # once: the listener again and the tick's safety net find nothing; he is not reminded, nobody
    # is alerted again when his time runs out
    async with w.sessions() as s:
        await cs.on_list_unreachable(s, await s.get(OutboxMessage, listed.id), at(2), cfg=CFG)
        await s.commit()
    assert (await tick(w, 2)).helpers_unreachable == 0
    report = await tick(w, 30)
    assert (report.helpers_reminded, report.helpers_unreachable) == (0, 0)
    assert (await tick(w, 90)).helpers_silent == 0 and len(await messages(w, "al:%:L1:%")) == 2
    alert = await only_alert_of(w, "孙一")
    async with w.sessions() as s:  # the history says why
        steps = await cs.round_history(s, await actor_of(s, w.duty), alert.id, cfg=CFG)
    assert ("helper_unreachable", "李师傅") in {(step.kind, step.target) for step in steps}


async def only_alert_of(w: World, name: str) -> Alert:
    async with w.sessions() as s:
        return (await s.scalars(select(Alert).join(Resident, Resident.id == Alert.resident_id)
                                .where(Resident.name == name))).one()


async def test_a_helper_who_blocked_the_bot_is_an_alert_at_the_next_tick_without_a_listener(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:  # 赵桂兰 answers first; her helper is asked when she stays silent
        await cs.assign_helper(s, await actor_of(s, w.duty), await s.get(Resident, w.zhao), h.helper,
                               "self_then_helper", now=at(-60), cfg=CFG)
        await s.commit()
    await tick(w, 0)
    rounds = await rounds_by_resident(w)
    for sun in (h.sun1, h.sun2):
        await helper_press(h, h.helper, rounds[sun].id, "ok", 5)
    await tick(w, 30)
    assert (await tick(w, 90)).helpers_asked == 1
    (fallback,) = [m for m in await messages(w, "hl:%") if m.payload["data"]["kind"] == "fallback"]
    async with w.sessions() as s:
        await outbox.mark_unreachable(s, fallback.id, error="Forbidden", now=at(91))
        await s.commit()
    report = await tick(w, 92)
    assert (report.helpers_unreachable, report.alerted, report.helpers_silent) == (1, 0, 0)
    (alert,) = await messages(w, "al:%")
    assert alert.account_id == w.duty and alert.payload["data"]["name"] == "赵桂兰"
    assert ("Check-in alert: 赵桂兰 has not answered today's check-in, and their helper 李师傅 cannot be reached "
            "(the bot is blocked).") in visible(alert)
    assert (await tick(w, 93)).helpers_unreachable == 0
    # the next day's rounds are asked after that bounce: they wait for him as usual
    report = await tick(w, 24 * 60)
    assert report.helpers_asked == 2 and report.helpers_unreachable == 0
    assert all(r.status == RoundStatus.helper for r in (await rounds_by_resident(w, TODAY + timedelta(days=1)))
               .values() if r.mode.value == "proxy")


async def cs_list(h: Helpers, account_id: int, minutes: float) -> cs.HelperList:
    async with h.w.sessions() as s:
        return await cs.my_list(s, await actor_of(s, account_id), now=at(minutes), cfg=CFG)


async def test_a_handed_over_helpers_elders_go_to_the_substitute_and_staff_are_told(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:  # 秀英 helps 赵桂兰: she is one of the committee's helpers
        await cs.assign_helper(s, await actor_of(s, w.duty), await s.get(Resident, w.zhao), h.other, "proxy",
                               now=at(-120), cfg=CFG)
        dx = await get_region(s, "DXYC")
        helper = await actor_of(s, h.helper)
        assert [c.account_id for c in await cs.substitutes(s, helper, h.helper, dx.id)] == [h.other]
        with pytest.raises(cs.CheckinError) as err:  # a helper may pick only among the committee's helpers
            await cs.hand_over(s, helper, h.helper, dx.id, 2, w.duty, now=at(-60), cfg=CFG)
        assert err.value.reason == "not_a_helper"
        for days in (0, 91, -1):
            with pytest.raises(cs.CheckinError):
                await cs.hand_over(s, helper, h.helper, dx.id, days, h.other, now=at(-60), cfg=CFG)
        with pytest.raises(cs.CheckinError):  # someone else's elders
            await cs.hand_over(s, await actor_of(s, w.neighbour), h.helper, dx.id, 2, None, now=at(-60), cfg=CFG)
        result = await cs.hand_over(s, helper, h.helper, dx.id, 2, h.other, now=at(-60), cfg=CFG)
        await s.commit()
    assert (result.handover.starts_on, result.handover.ends_on) == (date(2026, 11, 28), date(2026, 11, 29))
    told = await messages(w, "cho:%")
    assert recipients(told) == {w.duty, h.other}  # the on-duty staff, and the substitute (not the helper herself)
    (staff,) = [m for m in told if m.account_id == w.duty]
    assert "李师傅 hands over 2 elders of 丁香迎春居委会 from 2026-11-28 to 2026-11-29." in visible(staff)
    assert "秀英 stands in." in visible(staff)
    # both days the substitute gets one list with her own elder and 李师傅's; he gets none
    for day in (0, 1):
        await tick(w, day * 24 * 60)
        lists = [m for m in await messages(w, "hl:%") if f":{TODAY + timedelta(days=day)}:" in m.idempotency_key]
        assert recipients(lists) == {h.other} and len(lists) == 1
        assert {"孙一", "孙二", "赵桂兰"} <= {line["name"] for line in lists[0].payload["data"]["lines"]}
        standing_in = translate("zh_Hans", "You stand in for {names}.").format(names="李师傅")  # 秀英 reads Chinese
        assert standing_in in visible(lists[0])
    rounds = await rounds_by_resident(w, TODAY + timedelta(days=1))
    with pytest.raises(cs.CheckinError):  # the helper away no longer answers
        await helper_press(h, h.helper, rounds[h.sun1].id, "ok", 24 * 60 + 5)
    done = await helper_press(h, h.other, rounds[h.sun1].id, "ok", 24 * 60 + 5)
    assert done.round.helper_role == "substitute" and done.round.answered_by_account_id == h.other
    await tick(w, 2 * 24 * 60)  # the period is over: his elders are his again
    third = [m for m in await messages(w, "hl:%") if f":{TODAY + timedelta(days=2)}:" in m.idempotency_key]
    assert recipients(third) == {h.helper, h.other}


async def test_staff_hand_a_helper_over_to_another_helper_or_to_themselves(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:
        await cs.assign_helper(s, await actor_of(s, w.duty), await s.get(Resident, w.zhao), h.other, "proxy",
                               now=at(-120), cfg=CFG)
        dx = await get_region(s, "DXYC")
        staff = await actor_of(s, w.colleague)  # committee staff, not on duty
        assert [c.account_id for c in await cs.substitutes(s, staff, h.helper, dx.id)] == [h.other, w.colleague]
        for actor, substitute, reason in ((staff, w.family, "not_a_helper"), (staff, w.duty, "not_a_helper"),
                                          (await actor_of(s, w.foreign), w.foreign, "not_yours")):
            with pytest.raises(cs.CheckinError) as err:
                await cs.hand_over(s, actor, h.helper, dx.id, 3, substitute, now=at(-60), cfg=CFG)
            assert err.value.reason == reason
        assert await s.scalar(select(func.count()).select_from(HelperHandover)) == 0
        result = await cs.hand_over(s, staff, h.helper, dx.id, 3, w.colleague, now=at(-60), cfg=CFG)
        await s.commit()
    assert result.substitute == "李干事"
    # the on-duty staff and the helper are told; the staff member standing in arranged it
    assert recipients(await messages(w, "cho:%")) == {w.duty, h.helper}
    await tick(w, 0)
    lists = {m.account_id: m for m in await messages(w, "hl:%")}
    assert set(lists) == {w.colleague, h.other}
    assert [line["name"] for line in lists[w.colleague].payload["data"]["lines"]] == ["孙一", "孙二"]
    assert lists[w.colleague].payload["data"]["covering"] == ["李师傅"]
    rounds = await rounds_by_resident(w)
    done = await helper_press(h, w.colleague, rounds[h.sun1].id, "ok", 5)
    assert (done.round.helper_role, done.round.answered_by_account_id) == ("substitute", w.colleague)


async def test_mydata_says_whom_a_helper_answers_for_and_forget_leaves_them_to_staff_who_are_told(engine):
    from services import privacy

    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:  # 秀英 helps 赵桂兰, and stands in for 李师傅 today and tomorrow
        await cs.assign_helper(s, await actor_of(s, w.duty), await s.get(Resident, w.zhao), h.other, "proxy",
                               now=at(-120), cfg=CFG)
        dx = await get_region(s, "DXYC")
        await cs.hand_over(s, await actor_of(s, h.helper), h.helper, dx.id, 2, h.other, now=at(-60), cfg=CFG)
        await s.commit()
    assert (await tick(w, 0)).helpers_asked == 3
    async with w.sessions() as s:
        hers = await privacy.my_data(s, await actor_of(s, h.other), today=TODAY)
        his = await privacy.my_data(s, await actor_of(s, h.helper), today=TODAY)
        duty = await privacy.my_data(s, await actor_of(s, w.duty), today=TODAY)
    assert hers["helping"] == [{"name": "赵桂兰", "room": "迎春小区 5-1-102", "committee": "丁香迎春居委会",
                                "mode": "proxy"}]
    assert hers["handovers"] == [{"committee": "丁香迎春居委会", "start": "2026-11-28", "end": "2026-11-29",
                                  "away": False, "helper": "李师傅", "substitute": "秀英"}]
    assert [e["name"] for e in his["helping"]] == ["孙一", "孙二"]
    assert [(x["away"], x["substitute"]) for x in his["handovers"]] == [(True, "秀英")]
    assert (duty["helping"], duty["handovers"]) == ([], [])
    summary = privacy.summary(hers)
    assert [e.name for e in summary.helping] == ["赵桂兰"] and summary.handovers[0].helper == "李师傅"
    async with w.sessions() as s:  # 秀英 deletes her data at 09:10, with three elders waiting for her
        await privacy.forget(s, await actor_of(s, h.other), at(10), today=TODAY)
        await s.commit()
    (left,) = await messages(w, "chleft:%")
    assert left.account_id == w.duty and left.payload["locale"] == "en"
    text = visible(left)
    assert "👋 秀英 no longer uses the bot (they deleted their data)." in text
    assert ("Until you choose a new helper (/checkin_helper), the staff on duty get the daily list and answer for "
            "these elders of 丁香迎春居委会:\n• 赵桂兰 (迎春小区 5-1-102)") in text
    assert ("They stood in for 李师傅 until 2026-11-29: the staff on duty answer for those elders meanwhile."
            in text)
    async with w.sessions() as s:
        plan = await s.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == w.zhao))
        handover = await s.scalar(select(HelperHandover))
        assert plan.helper_account_id is None and handover.substitute_account_id is None
    # her three waiting elders go to the staff on duty at once: their list comes with the next tick
    assert (await tick(w, 11)).helpers_asked == 3
    (duty_list,) = await messages(w, "hl:d%")
    assert duty_list.account_id == w.duty
    assert {line["name"] for line in duty_list.payload["data"]["lines"]} == {"孙一", "孙二", "赵桂兰"}
    # … and so do tomorrow's; nobody is asked who is not there
    await tick(w, 24 * 60)
    tomorrow = [m for m in await messages(w, "hl:%") if f":{TODAY + timedelta(days=1)}:" in m.idempotency_key]
    assert recipients(tomorrow) == {w.duty}


async def test_a_hand_over_without_a_substitute_goes_to_the_on_duty_staff_today(engine):
    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    rounds = await rounds_by_resident(w)
    async with w.sessions() as s:  # staff hand him over mid-morning: today's unanswered rounds move
        dx = await get_region(s, "DXYC")
        result = await cs.hand_over(s, await actor_of(s, w.duty), h.helper, dx.id, 1, None, now=at(10), cfg=CFG)
        await s.commit()
    assert result.moved == 2 and result.substitute is None
    (helper_list,) = await messages(w, "hl:a%")  # his list, not sent yet, now says there is nobody for him
    assert helper_list.payload["data"]["lines"] == [] and "Nobody to answer for today." in visible(helper_list)
    told = {m.account_id: m for m in await messages(w, "cho:%")}
    assert set(told) == {w.duty, h.helper}
    assert "the staff on duty get their daily list" in visible(told[w.duty])
    assert (await tick(w, 11)).helpers_asked == 2
    (duty_list,) = await messages(w, f"hl:d{rounds[h.sun1].committee_id}:%")
    assert duty_list.account_id == w.duty
    assert "You answer as the committee's staff on duty" in visible(duty_list)
    with pytest.raises(cs.CheckinError):  # staff of another committee do not cover these elders
        await helper_press(h, w.foreign, rounds[h.sun1].id, "ok", 12)
    assert (await helper_press(h, w.colleague, rounds[h.sun1].id, "ok", 12)).round.status == RoundStatus.ok
    # the moved round's ladder counts from when the staff were asked
    assert (await tick(w, 11 + 30)).helpers_reminded == 1


async def test_assigning_a_helper_checks_who_and_how_and_writes_nothing_when_refused(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:
        staff = await actor_of(s, w.duty)
        zhao = await s.get(Resident, w.zhao)
        feng = await _flsq_account(s)
        for account_id, mode, reason in ((w.elder, "proxy", "own_helper"), (feng, "proxy", "not_a_helper"),
                                         (w.foreign, "proxy", "not_a_helper"), (2**63, "proxy", "not_a_helper"),
                                         (h.helper, "self", "bad_mode"), (h.helper, "sometimes", "bad_mode")):
            with pytest.raises(cs.CheckinError) as err:
                await cs.assign_helper(s, staff, zhao, account_id, mode, now=at(0), cfg=CFG)
            assert err.value.reason == reason, (account_id, mode)
        await s.commit()
        assert await s.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == w.zhao)) is None
        # a family contact and committee staff may help; the helper hears it, the one replaced too
        family = await cs.assign_helper(s, staff, zhao, w.family, "self_then_helper", now=at(1), cfg=CFG)
        assert family.plan.mode.value == "self_then_helper" and family.plan.active
        await cs.assign_helper(s, staff, zhao, w.colleague, "proxy", now=at(2), cfg=CFG)
        await s.commit()
    assert recipients(await messages(w, "chas:%")) == {h.helper, w.family, w.colleague}
    (removed,) = await messages(w, "chrm:%")
    assert removed.account_id == w.family
    # the elder was told she is asked (she answers first); not again when a helper answers for her
    assert [m.account_id for m in await messages(w, "cienrol:%")] == [w.elder]


async def _flsq_account(s) -> int:
    feng = await s.scalar(select(Resident).where(Resident.name == "冯志强"))
    account = _account(s, 7001, "冯", resident_id=feng.id)
    account.verified_at = T0
    await s.flush()
    return account.id


async def test_a_helper_link_works_once_and_tells_who_made_it(engine):
    h = await helper_world(engine)
    w = h.w
    async with w.sessions() as s:
        zhao = await s.get(Resident, w.zhao)
        staff = await actor_of(s, w.duty)
        with pytest.raises(cs.CheckinError):
            await cs.create_helper_invite(s, staff, zhao, "self", now=at(0), cfg=CFG)
        code = await cs.create_helper_invite(s, staff, zhao, "proxy", now=at(0), cfg=CFG)
        await s.commit()
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_helper_invite(s, await s.get(Account, w.elder), code, now=at(1), cfg=CFG)
        assert err.value.reason == "own_helper"
        result = await cs.redeem_helper_invite(s, await s.get(Account, w.family), code, now=at(1), cfg=CFG)
        await s.commit()
        assert result.plan.helper_account_id == w.family and result.plan.mode.value == "proxy"
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_helper_invite(s, await s.get(Account, w.neighbour), code, now=at(2), cfg=CFG)
        assert err.value.reason == "used_helper_code"
        with pytest.raises(cs.CheckinError) as err:
            await cs.redeem_helper_invite(s, await s.get(Account, w.neighbour), "nope", now=at(2), cfg=CFG)
        assert err.value.reason == "unknown_helper_code"
    (joined,) = await messages(w, "chjoin:%")
    assert joined.account_id == w.duty and "女儿 opened your helper link" in visible(joined)


async def test_board_and_weekly_report_say_who_answered_for_whom(engine):
    from openpyxl import load_workbook

    h = await helper_world(engine)
    w = h.w
    await tick(w, 0)
    rounds = await rounds_by_resident(w)
    await helper_press(h, h.helper, rounds[h.sun1].id, "ok", 10)
    async with w.sessions() as s:
        staff = await actor_of(s, w.duty)
        (c,) = (await cs.board(s, staff, now=at(11), cfg=CFG)).committees
        assert [(line.name, line.via) for line in c.answered] == [("孙一", "李师傅")]
        assert [(line.name, line.helper, line.late) for line in c.helper_wait] == [("孙二", "李师傅", False)]
        assert [(x.name, x.asked, x.answered) for x in c.helpers] == [("李师傅", 2, 1)]
        with use_locale("en"):
            text = "\n".join(views.board_pages(await cs.board(s, staff, now=at(11), cfg=CFG)))
        assert "孙一 (迎春小区 6-1-101) 09:10 · by 李师傅" in text
        assert "Waiting for a helper</b> (1)\n• 孙二 (迎春小区 6-1-102) · 李师傅" in text
        assert "李师傅: 1/2 answered, 0 late" in text
    await tick(w, 30)  # 孙二's helper is reminded: late
    await helper_press(h, h.helper, rounds[h.sun2].id, "ok", 40)
    async with w.sessions() as s:
        report = await cs.weekly_report(s, await get_region(s, "DXYC"), TODAY)
    (stats,) = report.helpers
    assert (stats.name, stats.asked, stats.answered, stats.late, stats.silent) == ("李师傅", 2, 2, 1, 0)
    assert report.days[-1].by_helper == 2
    with use_locale("en"):
        text = views.weekly_text(report.data())
        sheet = load_workbook(io.BytesIO(weekly_sheet(report)))
    assert "11-28: 2/2 answered (100%), 0 asked for help, 0 alerts · 2 by a helper" in text
    assert "李师傅: 2/2 answered, 1 late" in text
    assert [c.value for c in sheet["helpers"][2]] == ["李师傅", 2, 2, 1, 0]


async def test_cli_enrols_an_elder_answered_by_a_helper(tmp_path):
    """``communitybot checkins enrol … --mode proxy --helper ID``, in this process (bot.cli.run_async)."""
    from bot.db import create_engine
    from bot.settings import Settings
    from tests.helpers import cli
    from tests.seed import DXYC_CSV

    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "SECRET_KEY": SECRET, "DEFAULT_LOCALE": "en"}
    assert (await cli("regions", "demo", env=env)).returncode == 0
    registry = tmp_path / "dxyc.csv"
    registry.write_text(DXYC_CSV, encoding="utf-8")
    assert (await cli("registry", "import", "--committee", "DXYC", str(registry), env=env)).returncode == 0
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key=SECRET)
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    async with session_factory(engine)() as s:
        sun, li = [await s.scalar(select(Resident).where(Resident.name == n)) for n in ("孙一", "李建国")]
        s.add(Account(telegram_id=6001, chat_id=6001, first_name="李师傅", resident_id=li.id, verified_at=T0,
                      created_at=T0))
        await s.commit()
    out = await cli("checkins", "enrol", "--committee", "DXYC", "--resident", str(sun.id), "--mode", "proxy",
                    "--helper", str(li.id), "--time", "08:30", "--note", "hard of hearing, knock loudly", env=env)
    assert out.returncode == 0, out.stderr
    assert "enrolled 孙一: 08:30, every day" in out.stdout and "answered by 李师傅 (every day)" in out.stdout
    listed = await cli("checkins", "list", "--committee", "DXYC", env=env)
    assert "孙一\t迎春小区 6-1-101\t08:30\tevery day\t-\tno\tproxy\t李师傅" in listed.stdout
    async with session_factory(engine)() as s:
        plan = await s.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == sun.id))
        assert (plan.mode.value, plan.note) == ("proxy", "hard of hearing, knock loudly")
    for argv, error in ((("--mode", "proxy"), "need --helper"),
                        (("--mode", "proxy", "--helper", str(sun.id)), "not on the bot"),
                        (("--helper", str(li.id)), "--helper needs --mode")):
        bad = await cli("checkins", "enrol", "--committee", "DXYC", "--resident", str(sun.id), *argv, env=env)
        assert bad.returncode == 2 and error in bad.stderr, (argv, bad.stderr)
    bad = await cli("checkins", "enrol", "--committee", "DXYC", "--segment", "age > 1", "--mode", "proxy", env=env)
    assert bad.returncode == 2 and "go with --resident" in bad.stderr
    await engine.dispose()
