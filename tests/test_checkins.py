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
