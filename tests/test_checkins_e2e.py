"""Daily check-ins end to end: the real dispatcher over the sandbox, the outbox sender delivering,
ticks driven with a moving ``now``; and a real bot process killed with SIGKILL and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.checkin_jobs import register_sender_listeners
from notifications.sender import OutboxSender
from services import checkins as cs
from services.models import (
    Account,
    Alert,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    CheckinPlan,
    CheckinRound,
    OutboxMessage,
    OutboxStatus,
    Resident,
    RoundStatus,
    Staff,
    StaffRole,
)
from services.regions import get_region
from tests.seed import seed_registry

WORKER = Path(__file__).with_name("checkin_worker.py")
ROOT = Path(__file__).resolve().parent.parent


def text_of(m) -> str:
    return m["text"] or m["caption"] or ""


def has(fragment: str):
    return lambda m: fragment in text_of(m)


class World:
    def __init__(self, stack) -> None:
        self.stack = stack
        self.sessions = stack.sessions
        self.cfg = cs.CheckinConfig.of(stack.settings)

    async def user(self, name: str, *, resident: str | None = None, lang: str = "en",
                   staff: tuple[str, StaffRole] | None = None, on_duty: bool = False):
        """A sandbox user whose account is linked to a registry row and/or holds a staff grant."""
        user = await self.stack.client.create_user(name, language_code=lang)
        now = datetime.now(UTC)
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

    async def tick(self, now: datetime) -> cs.TickReport:
        """A tick at ``now``, then deliver what became due by then (the looping sender goes by the
        wall clock, so messages of a tick in the future are drained here with the same ``now``)."""
        report = await cs.tick(self.sessions, self.stack.settings, now)
        while await self.drainer.drain_once(now):
            pass
        return report

    async def round(self) -> CheckinRound:
        async with self.sessions() as s:
            return (await s.scalars(select(CheckinRound).order_by(CheckinRound.id.desc()))).first()

    async def alert(self) -> Alert | None:
        async with self.sessions() as s:
            return (await s.scalars(select(Alert).order_by(Alert.id.desc()))).first()


@pytest.fixture
async def world(stack):
    """Seeded registry, an elder (赵桂兰, lives alone), duty staff, street staff, and the outbox sender."""
    await seed_registry(stack.sessions)
    w = World(stack)
    w.elder = await w.user("桂兰", resident="赵桂兰")
    w.duty = await w.user("Zhang", staff=("DXYC", StaffRole.committee), on_duty=True)
    w.street = await w.user("Wang", staff=("310104003", StaffRole.street))
    w.drainer = OutboxSender(stack.bot, stack.sessions, rate=200, per_chat_rate=50)
    register_sender_listeners(w.drainer, stack.settings)
    if getattr(stack, "sender", None) is not None:  # the harness runs the real sender
        yield w
        return
    sender = OutboxSender(stack.bot, stack.sessions, rate=200, per_chat_rate=50, poll_interval=0.05)
    register_sender_listeners(sender, stack.settings)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    yield w
    stop.set()
    await asyncio.wait_for(task, 10)


async def enrol_now(w: World) -> datetime:
    """Staff enrol the elder through the bot at the current local minute; returns the tick base."""
    if datetime.now(UTC).second >= 55:  # the minute must not turn between here and the command
        await asyncio.sleep(6)
    base = datetime.now(UTC)
    local = base.astimezone(w.cfg.tz)
    await w.duty.send(f"/checkin_enrol 5-1-102 {local:%H:%M}")
    reply = text_of(await w.duty.last_message())
    assert "Enrolled 赵桂兰" in reply and f"{local:%H:%M}" in reply
    return base


async def open_round(w: World) -> datetime:
    base = await enrol_now(w)
    assert (await w.tick(base)).opened == 1
    await w.elder.wait_for_message(has("How are you today?"))
    return base


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
    msg = await neighbour.last_message()
    result = await neighbour.callback(msg["message_id"], f"ci:{rnd.id}:help")
    assert "no longer valid" in w.stack.sandbox.callbacks[result["callback_query_id"]].answer["text"]
    assert (await w.round()).status == RoundStatus.ok and await w.alert() is None


async def test_silent_elder_is_reminded_then_staff_alerted_acknowledge_and_resolve(world):
    w = world
    base = await open_round(w)
    await w.tick(base + timedelta(minutes=30))
    await w.elder.wait_for_message(has("Reminder"))
    await w.tick(base + timedelta(minutes=90))
    alert_msg = await w.duty.wait_for_message(has("has not answered"))
    assert "赵桂兰" in text_of(alert_msg) and "+8613800138003" in text_of(alert_msg)
    await w.duty.press("🙋 I'm on it")
    assert "You are on it." in text_of(await w.duty.last_message())
    assert (await w.alert()).status == AlertStatus.acknowledged
    await w.tick(base + timedelta(minutes=150))  # acknowledged: no escalation to street staff
    await w.duty.press("✅ Safe")
    assert "Closed: safe." in text_of(await w.duty.last_message())
    alert = await w.alert()
    assert alert.status == AlertStatus.resolved and alert.outcome == AlertOutcome.safe
    assert not [m for m in await w.street.bot_messages() if "赵桂兰" in text_of(m)]
    # the staff views
    await w.duty.send("/checkins")
    assert "Alerted" in text_of(await w.duty.last_message())
    await w.duty.send("/checkins_week")
    sent = await w.duty.bot_messages_since_last_action()
    assert len(sent) == 3 and sent[1]["photo"] and sent[2]["document"]


async def test_i_need_help_alerts_at_once(world):
    w = world
    await open_round(w)
    await w.elder.press("🆘 I need help")
    assert "Help is on the way" in text_of(await w.elder.last_message())
    msg = await w.duty.wait_for_message(has("I need help"))
    assert "赵桂兰" in text_of(msg)
    assert (await w.alert()).reason == AlertReason.help
    await w.duty.send("/alerts")
    assert "赵桂兰" in text_of(await w.duty.last_message())
    await w.duty.press("🚑 Needed help")
    assert (await w.alert()).outcome == AlertOutcome.needed_help


async def test_unacknowledged_alert_reaches_street_staff_then_family(world):
    w = world
    # the elder invites a daughter with /family; she joins through the deep link
    await w.elder.send("/family")
    link = re.search(r"start=(fam_[\w-]+)", text_of(await w.elder.last_message()))[1]
    daughter = await w.stack.client.create_user("Daughter", language_code="en")
    await daughter.send(f"/start {link}")
    assert "emergency contact of 赵桂兰" in text_of(await daughter.last_message())
    await w.elder.wait_for_message(has("is now one of your emergency contacts"))
    base = await open_round(w)
    await w.tick(base + timedelta(minutes=90))
    await w.duty.wait_for_message(has("has not answered"))
    await w.tick(base + timedelta(minutes=120))
    street_msg = await w.street.wait_for_message(has("has not answered"))
    assert "Escalated to street staff" in text_of(street_msg)
    await w.tick(base + timedelta(minutes=150))
    family_msg = await daughter.wait_for_message(has("has not answered"))
    assert "Daughter" in text_of(family_msg) and "emergency contact" in text_of(family_msg)
    # the daughter may act on her mother's alert; a late "I'm fine" then tells everyone
    await daughter.press("🙋 I'm on it")
    await w.elder.press("😊 I'm fine")
    for user in (w.duty, w.street):
        await user.wait_for_message(has("All clear"))
    assert (await w.alert()).outcome == AlertOutcome.all_clear


async def test_elder_who_blocked_the_bot_is_an_alert(world):
    w = world
    base = await enrol_now(w)
    await w.elder.block()
    await w.tick(base)
    msg = await w.duty.wait_for_message(has("cannot be reached"), timeout=10)
    assert "赵桂兰" in text_of(msg)
    assert (await w.alert()).reason == AlertReason.unreachable


async def test_elder_changes_time_and_pauses_from_the_menu(world):
    w = world
    await enrol_now(w)
    await w.elder.send("/checkin")
    await w.elder.press("🕘 Change time")
    await w.elder.press("08:00")
    assert "08:00" in text_of(await w.elder.last_message())
    await w.elder.press("⏸ Pause (travel, hospital)")
    await w.elder.press("3 days")
    assert "paused until" in text_of(await w.elder.last_message())
    async with w.sessions() as s:
        plan = await s.scalar(select(CheckinPlan))
    today = w.cfg.today(datetime.now(UTC))
    assert plan.minute_of_day == 480 and plan.paused_until == today + timedelta(days=3)
    await w.duty.wait_for_message(has("paused daily check-ins"))
    await w.duty.send("/checkins")
    assert "Paused" in text_of(await w.duty.last_message())
    await w.elder.send("/checkin")
    await w.elder.press("▶️ Resume check-ins")
    async with w.sessions() as s:
        assert (await s.scalar(select(CheckinPlan))).paused_until is None


# --- restart: a real bot process killed with SIGKILL -------------------------------------------

async def wait_sent(w: World, key_suffix: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with w.sessions() as s:
            status = await s.scalar(select(OutboxMessage.status).where(
                OutboxMessage.idempotency_key.like(f"ci:%{key_suffix}")))
        if status == OutboxStatus.sent:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{key_suffix} not marked sent ({status})"
        await asyncio.sleep(0.05)


def _log(path: Path):
    return path.open("ab")


async def _spawn(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start a worker (imported, waiting for "go" on stdin); its log goes to ``log``."""
    with _log(log) as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), *args, "--wait-for-go", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=err, env=env)
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready"
    return proc


async def _go(proc: asyncio.subprocess.Process) -> None:
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()


async def test_restart_after_sigkill_loses_no_round_and_alerts_on_time(stack, tmp_path):
    await seed_registry(stack.sessions)
    w = World(stack)
    elder = await w.user("桂兰", resident="赵桂兰")
    duty = await w.user("Zhang", staff=("DXYC", StaffRole.committee), on_duty=True)
    escalate, tick_interval = 8.0, 1.0
    async with w.sessions() as s:
        zhao = await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))
        local = datetime.now(UTC).astimezone(w.cfg.tz)
        await cs.enrol_resident(s, zhao, now=datetime.now(UTC), cfg=w.cfg, minute=local.hour * 60 + local.minute)
        await s.commit()
    args = ["--db", stack.settings.db_url, "--api", stack.base_url, "--data-dir", str(tmp_path),
            "--tick", f"{tick_interval}s", "--reminder", "3s", "--escalate", f"{escalate}s"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Both imported up front (that takes seconds); the second starts only after the first is killed.
    first, second = await asyncio.gather(_spawn(args, env, tmp_path / "worker-1.log"),
                                         _spawn(args, env, tmp_path / "worker-2.log"))
    try:
        await _go(first)
        await elder.wait_for_message(has("How are you today?"), timeout=15)
        await elder.wait_for_message(has("Reminder"), timeout=15)
        # Kill once the reminder is recorded as sent: killing between Telegram's "ok" and that mark
        # would re-send it (the outbox's documented in-flight window), which is not what this tests.
        await wait_sent(w, ":remind")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        rnd = await w.round()
        assert rnd.status == RoundStatus.reminded
        await _go(second)
        await duty.wait_for_message(has("has not answered"), timeout=30)
        alert = await w.alert()
        due = rnd.opened_at + timedelta(seconds=escalate)
        # within one tick of its due time (plus a little for the tick's own work)
        late = (alert.opened_at - due).total_seconds()
        assert 0 <= late <= tick_interval + 0.5, f"alert {late:.2f}s after its due time"
        # nothing lost, nothing doubled
        texts = [text_of(m) for m in await elder.bot_messages()]
        assert sum("How are you today?" in t for t in texts) == 1 and sum("Reminder" in t for t in texts) == 1
        assert sum("has not answered" in text_of(m) for m in await duty.bot_messages()) == 1
    finally:
        for proc in (first, second):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_staff_enrol_a_segment_from_the_bot(world):
    w = world
    await w.duty.send("/checkin_enrol --segment living_alone == true and age >= 70 --time 08:00")
    assert "1 residents match; 1 newly enrolled, 0 already enrolled." in text_of(await w.duty.last_message())
    await w.duty.send("/checkin_enrol --segment age >= ")
    assert "That expression has an error" in text_of(await w.duty.last_message())
    await w.elder.send("/checkin_enrol 5-1-102")  # residents may not
    assert any("for committee staff only" in text_of(m) for m in await w.elder.bot_messages_since_last_action())
    async with w.sessions() as s:
        assert (await s.scalar(select(CheckinPlan))).minute_of_day == 480
