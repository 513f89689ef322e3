"""A webhook worker killed with SIGKILL in the middle of the check-in escalation ladder, with a second
worker running (two ``communitybot run --webhook`` processes on PostgreSQL and Redis, as in
tests/test_faults_workers.py), on short but production-shaped timings: reminder after 20 s, alert after
40 s, the next level after 30 s without "I'm on it".

What the design guarantees (services.checkins: every step claims its rows in the database, under
unique keys, in its own transaction; notifications.sender: a row is sent, then marked):
- no round, reminder, alert or escalation is lost or made twice: one prompt and one reminder per elder,
  one alert per silent elder, each escalated once from the committee's duty staff to the street's;
- a message is never lost; one the dead worker had sent to Telegram and not yet marked goes again when
  its lease ends, so a second copy is possible for at most its sender's messages in flight.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select

from bot.checkin_jobs import checkin_config
from bot.settings import Settings
from services import checkins as cs
from services.models import Alert, AlertLevel, CheckinRound, OutboxMessage, OutboxStatus, RoundEvent, StaffRole
from services.regions import get_region
from tests.helpers import bot_reply, seed_residents, two_workers
from tests.seed import staff_code

ELDERS = 100
OUTBOX_RATE = 200
IN_FLIGHT = -(-OUTBOX_RATE // 4)  # a sender's messages in flight: sent, not yet marked (notifications.sender)
TIMINGS = {"CHECKIN_REMINDER_AFTER": "20s", "CHECKIN_ESCALATE_AFTER": "40s", "ALERT_ACK_TIMEOUT": "30s"}
CFG = checkin_config(Settings(_env_file=None, secret_key="test-secret-key"))  # the workers' zone and locale
ALERT_BUTTON = re.compile(r"^al:(\d+):")


def text_of(message: dict) -> str:
    return (message["text"] if message["text"] is not None else message["caption"]) or ""


def alert_ids(sandbox, chat: int) -> Counter:
    """Alert cards in a chat, by alert id (a card carries the alert's buttons)."""
    found = Counter()
    for m in sandbox.messages(chat):
        ids = {int(match[1]) for row in (m.get("reply_markup") or {}).get("inline_keyboard", []) for b in row
               if (match := ALERT_BUTTON.match(b.get("callback_data") or ""))}
        found.update(ids)
    return found


async def test_a_worker_killed_mid_escalation_loses_no_step_and_doubles_only_what_it_had_in_flight(tmp_path):
    env = {"OUTBOX_RATE": str(OUTBOX_RATE), "OUTBOX_PER_CHAT_RATE": "50", **TIMINGS}
    async with two_workers(tmp_path, "escalation", env=env, start=False) as cluster:
        sandbox = cluster.sandbox
        elders = await seed_residents(cluster.sessions, sandbox, ELDERS, committee="DXYC", prefix="老人",
                                      first_phone=13620000000)
        await cluster.start_workers()
        duty = await cluster.client.create_user("Duty", language_code="en")
        await duty.send(f"/start staff_{await staff_code(cluster.sessions, 'DXYC')}")
        await bot_reply(duty, lambda m: "/help" in text_of(m))
        await duty.send("/duty on")
        await bot_reply(duty, lambda m: "duty" in text_of(m).lower())
        street = await cluster.client.create_user("Street", language_code="en")
        await street.send(f"/start staff_{await staff_code(cluster.sessions, '310104003', StaffRole.street)}")
        await bot_reply(street, lambda m: "/help" in text_of(m))

        local = CFG.local(datetime.now(UTC))
        if (local.hour, local.minute) == (23, 59):  # a plan due at 23:59 would be tomorrow's when it opens
            await asyncio.sleep(61 - local.second)
        now = datetime.now(UTC)
        local = CFG.local(now)
        async with cluster.sessions() as s:
            enrolled = await cs.enrol_segment(s, await get_region(s, "DXYC"), 'building == "1"', now=now, cfg=CFG,
                                              minute=local.hour * 60 + local.minute)
            await s.commit()
        assert enrolled.enrolled == ELDERS
        # Nobody answers. When a third of the alerts have reached the duty staff, worker 0 dies.
        assert await sandbox.wait_until(lambda: len(alert_ids(sandbox, duty.id)) >= ELDERS // 3, 600)
        victim = cluster.workers[0]
        victim.kill(signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        at_kill = len(alert_ids(sandbox, duty.id))
        await victim.start()  # as the supervisor does
        # The ladder goes on: every alert reaches the street's staff (30 s without "I'm on it").
        assert await sandbox.wait_until(lambda: len(alert_ids(sandbox, street.id)) >= ELDERS, 600)

        async def outbox_idle() -> bool:
            async with cluster.sessions() as s:
                return not await s.scalar(select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.status.in_([OutboxStatus.pending, OutboxStatus.sending])))

        async with asyncio.timeout(300):
            while not await outbox_idle():  # noqa: ASYNC110 - the workers' commits announce nothing here
                await asyncio.sleep(0.5)

        async with cluster.sessions() as s:
            rounds = (await s.execute(select(CheckinRound.status, CheckinRound.reminded_at.is_not(None)))).all()
            alerts = (await s.scalars(select(Alert))).all()
            escalated = Counter(alert_id for alert_id, detail in (await s.execute(select(
                RoundEvent.alert_id, RoundEvent.detail).where(RoundEvent.kind == "escalated"))).all()
                if detail["from"] == AlertLevel.committee)
            keys = Counter(k.rsplit(":", 1)[-1] for k in (await s.scalars(select(OutboxMessage.idempotency_key).where(
                OutboxMessage.ref_type == cs.REF_ROUND))).all())
        assert len(rounds) == ELDERS and all(reminded for _status, reminded in rounds)
        assert len(alerts) == ELDERS and len({a.round_id for a in alerts}) == ELDERS
        assert all(a.level >= AlertLevel.street for a in alerts)
        assert escalated == Counter({a.id: 1 for a in alerts}), escalated  # each escalated once, by one worker
        assert keys == {"prompt": ELDERS, "remind": ELDERS}
        asked = Counter()
        for elder in elders:
            asked[sum(1 for m in sandbox.messages(elder.user.id)
                      if any((b.get("callback_data") or "").startswith("ci:")
                             for row in (m.get("reply_markup") or {}).get("inline_keyboard", []) for b in row))] += 1
        to_duty, to_street = alert_ids(sandbox, duty.id), alert_ids(sandbox, street.id)
        ids = {a.id for a in alerts}
        assert set(to_duty) == ids and set(to_street) == ids
        doubles = (sum(to_duty.values()) - ELDERS) + (sum(to_street.values()) - ELDERS) + sum(
            (n - 2) * k for n, k in asked.items())
        assert set(asked) <= {2, 3, 4} and 0 <= doubles <= IN_FLIGHT, (asked, to_duty, to_street)
        print(f"\nkill -9 mid-escalation: {at_kill} of {ELDERS} alerts at the duty staff at the kill; after: "
              f"{len(alerts)} alerts, each escalated once; prompt+reminder per elder {dict(asked)}; "
              f"cards to duty {sum(to_duty.values())}, to street {sum(to_street.values())}; "
              f"second copies {doubles} (at most {IN_FLIGHT})")
