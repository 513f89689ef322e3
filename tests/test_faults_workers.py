"""Two webhook workers — real ``communitybot run --webhook`` processes — on one PostgreSQL database and
one Redis, behind a router of the test (nginx's role in the README's setup: each chat's next update
goes to the other worker, and to the live one when a worker is dead), behind the sandbox's webhook
delivery. Everything is seeded through the services' public functions (registry import, verification).

- a conversation alternating workers completes (its state is in Redis);
- 1,000 check-in plans due at once give exactly 1,000 prompts (both workers tick every second);
- a notice to 2,000 residents, sent by a double tap on "Send now" that lands on both workers, is
  delivered once to each;
- the same update delivered twice (to the same worker, and to the other one) and a double tap (two
  updates at the two workers): one effect each for a vote, a comment, a verification attempt and a
  check-in enrolment;
- a worker killed with SIGKILL in the middle of a broadcast: nothing lost; a second copy only of what the
  dead worker had sent and not yet marked (at most its sender's messages in flight), every other message
  once. The killed worker's claimed messages go again when their lease (60 s) ends.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.app import discussion_config, poll_config
from bot.checkin_jobs import checkin_config
from bot.settings import Settings
from services import checkins as cs
from services import discussions as ds
from services import notices as ns
from services import polls
from services.models import (
    Account,
    AuditLog,
    CheckinPlan,
    CheckinRound,
    Comment,
    Notice,
    NoticeStatus,
    OutboxMessage,
    OutboxStatus,
    PollVote,
    VerificationAttempt,
)
from services.regions import get_region
from services.scope import Actor, load_staff_grants
from tests.helpers import Cluster, bot_reply, seed_residents, tr, two_workers
from tests.seed import staff_code

SETTINGS = Settings(_env_file=None, secret_key="test-secret-key")  # the workers' defaults: their configs
CHECKINS, POLLS, DISCUSSIONS = checkin_config(SETTINGS), poll_config(SETTINGS), discussion_config(SETTINGS)
OUTBOX_RATE = 200  # messages a second, both workers together (one schedule in Redis)
IN_FLIGHT = -(-OUTBOX_RATE // 4)  # a sender's messages in flight: sent, not yet marked (notifications.sender)


def text_of(message: dict) -> str:
    return (message["text"] if message["text"] is not None else message["caption"]) or ""


def buttons(message: dict) -> dict[str, str]:
    return {b["text"]: b["callback_data"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row if "callback_data" in b}


class World:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.sandbox = cluster.sandbox
        self.router = cluster.router

    def user(self, person):
        """The SandboxClient user of a seeded person (actions over HTTP, as a person acts)."""
        from bot.sandbox.client import SandboxUser

        return SandboxUser(self.cluster.client, {"id": person.user.id, "first_name": person.name,
                                                 "phone_number": person.phone})

    async def count(self, model, *where) -> int:
        async with self.cluster.sessions() as s:
            return await s.scalar(select(func.count()).select_from(model).where(*where)) or 0

    async def delivered(self, seconds: float = 120) -> None:
        """Until the sandbox has handed every update to a worker (which handles it after its 200)."""
        assert await self.sandbox.wait_until(lambda: self.sandbox.pending_update_count() == 0, seconds)

    async def answered(self, *taps: dict, seconds: float = 120) -> None:
        """Until every one of these button presses has been answered (each was handled to its end)."""
        assert await self.sandbox.wait_until(
            lambda: all(self.sandbox.callbacks[t["callback_query_id"]].answered for t in taps), seconds)

    async def acknowledged_again(self, update_id: int, worker: int, seconds: float = 120) -> None:
        """Until ``worker`` has logged that update ``update_id`` came again and was not handled again."""
        line = f"update {update_id} was handled before"
        async with asyncio.timeout(seconds):
            while line not in self.cluster.workers[worker].log():  # noqa: ASYNC110 - a log file announces nothing
                await asyncio.sleep(0.1)

    async def until(self, predicate, seconds: float = 120) -> None:
        """Until ``await predicate()`` holds: what the workers write to the database, read every 0.2 s."""
        async with asyncio.timeout(seconds):
            while not await predicate():  # noqa: ASYNC110 - another process's commits announce nothing here
                await asyncio.sleep(0.2)

    async def outbox_done(self, *where, seconds: float = 300) -> None:
        """Until no message of the outbox matching ``where`` is still to be sent."""
        async def done() -> bool:
            return not await self.count(OutboxMessage, OutboxMessage.status.in_(
                [OutboxStatus.pending, OutboxStatus.sending]), *where)

        await self.until(done, seconds)

    async def staff(self, region: str, name: str):
        user = await self.cluster.client.create_user(name, language_code="en")
        code = await staff_code(self.cluster.sessions, region)
        await user.send(f"/start staff_{code}")
        await bot_reply(user, lambda m: "/help" in text_of(m))
        return user

    async def actor(self, user) -> Actor:
        async with self.cluster.sessions() as s:
            account = await s.scalar(select(Account).where(Account.telegram_id == user.id))
            return Actor(account=account, staff=await load_staff_grants(s, account.id), locale="en")


@pytest.fixture(scope="module")
async def world(tmp_path_factory):
    async with two_workers(tmp_path_factory.mktemp("workers"), "faults", env={"OUTBOX_RATE": str(OUTBOX_RATE)},
                           start=False) as cluster:
        w = World(cluster)
        started = time.monotonic()
        # RJXC: 2,000 residents on the bot, 1,000 of them in building 1 (check-ins), all of them for
        # notices. DXYC: 20 on the bot (polls, discussions) and two in the registry only (joining).
        w.rjxc = await seed_residents(cluster.sessions, cluster.sandbox, 2000, committee="RJXC", prefix="日晖",
                                      first_phone=13610000000, building=lambda i: "1" if i < 1000 else "2")
        w.dxyc = await seed_residents(cluster.sessions, cluster.sandbox, 22, committee="DXYC", prefix="丁香",
                                      first_phone=13600000000, join=20)
        seeded = time.monotonic()
        await cluster.start_workers()
        w.dxyc_staff = await w.staff("DXYC", "Zhang")
        w.rjxc_staff = await w.staff("RJXC", "Li")
        print(f"\nseeded 2,022 residents and 2,020 accounts in {seeded - started:.0f} s, "
              f"workers up in {time.monotonic() - seeded:.0f} s")
        yield w


async def test_a_conversation_alternating_workers_completes(world):
    """Joining by phone — consent, contact, name, the last four of the ID number — each step at the
    other worker than the one before (the conversation's state is in Redis)."""
    person = world.dxyc[20]
    user = world.user(person)
    steps = [await user.send("/start")]
    await bot_reply(user, lambda m: tr("en", "I agree") in buttons(m))
    steps.append(await user.press(tr("en", "I agree")))
    await bot_reply(user, lambda m: text_of(m).startswith(tr("en", "Other ways to join:")))
    steps.append(await user.share_contact())
    await bot_reply(user, lambda m: "full name" in text_of(m))
    steps.append(await user.send(person.name))
    await bot_reply(user, lambda m: "last 4" in text_of(m))
    steps.append(await user.send(person.id_number[-4:]))
    await bot_reply(user, lambda m: tr("en", "You are verified. Welcome to your community!") in text_of(m))
    at = [world.router.workers_of(step["update_id"]) for step in steps]
    assert all(len(w) == 1 for w in at), at
    assert all(a != b for (a,), (b,) in itertools.pairwise(at)), at  # every step at the other worker
    async with world.cluster.sessions() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == person.user.id))
        assert account.resident_id is not None


async def test_1000_checkin_plans_due_at_once_give_exactly_1000_prompts(world):
    cfg = CHECKINS
    local = cfg.local(datetime.now(UTC))
    if (local.hour, local.minute) == (23, 59):  # a plan due at 23:59 would be tomorrow's by the time it opens
        await asyncio.sleep(61 - local.second)
    now = datetime.now(UTC)
    local = cfg.local(now)
    async with world.cluster.sessions() as s:
        rjxc = await get_region(s, "RJXC")
        # Everyone in building 1 of RJXC, their check-in at this very minute: all due at once.
        enrolled = await cs.enrol_segment(s, rjxc, 'building == "1"', now=now, cfg=cfg,
                                          minute=local.hour * 60 + local.minute)
        await s.commit()
    assert enrolled.enrolled == 1000
    elders = world.rjxc[:1000]

    async def all_prompted() -> bool:
        return await world.count(OutboxMessage, OutboxMessage.ref_type == cs.REF_ROUND,
                                 OutboxMessage.status == OutboxStatus.sent) >= 1000

    await world.until(all_prompted, 300)
    await world.outbox_done(OutboxMessage.ref_type == cs.REF_ROUND)
    prompts = Counter()
    for p in elders:
        prompts[sum(1 for m in world.sandbox.messages(p.user.id) if any(
            data.startswith("ci:") for data in buttons(m).values()))] += 1
    assert prompts == {1: 1000}, prompts
    assert await world.count(CheckinRound) == 1000
    assert await world.count(OutboxMessage, OutboxMessage.ref_type == cs.REF_ROUND) == 1000
    print(f"\n1,000 plans due at once: {dict(prompts)} (prompts per elder: elders)")


async def _compose(staff, text: str) -> dict:
    """/notice → text → no media → everyone: the preview with its Send now button."""
    await staff.send("/notice")
    await bot_reply(staff, seconds=60)  # what to write
    await staff.send(text)
    await bot_reply(staff, lambda m: tr("en", "Skip") in buttons(m))
    await staff.press(tr("en", "Skip"))
    await bot_reply(staff, lambda m: tr("en", "Everyone in my area") in buttons(m))
    await staff.press(tr("en", "Everyone in my area"))
    return await bot_reply(staff, lambda m: "Audience:" in text_of(m))


async def test_a_notice_to_2000_residents_sent_by_a_double_tap_at_both_workers_arrives_once_each(world):
    staff = world.rjxc_staff
    preview = await _compose(staff, "Water off on Tuesday 9:00-12:00")
    send_now = buttons(preview)[tr("en", "Send now")]
    # Two taps at once, one to each worker.
    first = world.sandbox.user_callback(staff.id, preview["message_id"], send_now)
    second = world.sandbox.user_callback(staff.id, preview["message_id"], send_now)
    world.router.pin(first["update_id"], [0, 0])
    world.router.pin(second["update_id"], [1])
    await world.answered(first, second)
    await bot_reply(staff, lambda m: "already been sent" in text_of(m), seconds=60)
    # And the first tap delivered again, to the other worker: acknowledged, nothing more.
    await _redeliver(world, first["update_id"], [1])
    assert world.router.workers_of(first["update_id"]) == [0, 1]
    assert world.router.workers_of(second["update_id"]) == [1]
    async with world.cluster.sessions() as s:
        [notice] = (await s.scalars(select(Notice).where(Notice.text.startswith("Water off")))).all()
    assert (notice.status, notice.recipients) == (NoticeStatus.sent, 2000)
    await world.outbox_done(OutboxMessage.ref_id == notice.id, OutboxMessage.ref_type == ns.REF)
    copies = Counter(sum("Water off on Tuesday" in text_of(m) for m in world.sandbox.messages(p.user.id))
                     for p in world.rjxc)
    assert copies == {1: 2000}, copies
    said = [text_of(m) for m in world.sandbox.messages(staff.id)]
    assert sum("is on its way to 2000 people" in t or "is on its way to 2,000 people" in t for t in said) == 1
    print(f"\nnotice to 2,000 by a double tap at both workers: {dict(copies)} (copies: residents)")


# --- the same update twice, and double taps, across workers ----------------------------------------


async def _redeliver(world, update_id: int, to: list[int]) -> None:
    """Deliver update ``update_id`` again, to worker ``to[0]``; return once it has said it was not
    handled again."""
    world.router.pin(update_id, to)
    world.sandbox.redeliver(update_id)
    await world.acknowledged_again(update_id, to[0])


async def test_a_vote_counts_once_redelivered_to_either_worker_or_tapped_twice(world):
    staff_actor = await world.actor(world.dxyc_staff)
    async with world.cluster.sessions() as s:
        dxyc = await get_region(s, "DXYC")
        poll = await polls.create_poll(s, staff_actor, dxyc, polls.PollDraft(
            question="Paint the railings green?", options=["Yes", "No"], eligible='building == "1"',
            closes_at=datetime.now(UTC) + timedelta(days=3)), now=datetime.now(UTC), cfg=POLLS)
        await s.commit()
    voters = world.dxyc[:3]
    ballots = {}
    for p in voters:
        ballots[p.name] = await bot_reply(world.user(p), lambda m: "Paint the railings" in text_of(m), seconds=120)

    def yes(p) -> str:
        return next(d for t, d in buttons(ballots[p.name]).items() if t.endswith("Yes"))

    first, second, third = voters
    # One press, delivered again to the same worker and then to the other one.
    tap = world.sandbox.user_callback(first.user.id, ballots[first.name]["message_id"], yes(first))
    world.router.pin(tap["update_id"], [0])
    await world.answered(tap)
    await _redeliver(world, tap["update_id"], [0])
    await _redeliver(world, tap["update_id"], [1])
    assert world.router.workers_of(tap["update_id"]) == [0, 0, 1]
    # A double tap: two presses at once, one at each worker.
    taps = []
    for p in (second, third):
        for worker in (0, 1):
            taps.append(world.sandbox.user_callback(p.user.id, ballots[p.name]["message_id"], yes(p)))
            world.router.pin(taps[-1]["update_id"], [worker])
    await world.answered(*taps)
    async with world.cluster.sessions() as s:
        votes = (await s.execute(select(PollVote.unit_key, PollVote.choices).where(PollVote.poll_id == poll.id))).all()
    assert len(votes) == 3 and all(list(c) == [0] for _k, c in votes), votes


async def test_a_comment_posts_once_redelivered_to_the_other_worker_or_its_button_tapped_twice(world):
    staff_actor = await world.actor(world.dxyc_staff)
    async with world.cluster.sessions() as s:
        result = await ds.create_topic(s, staff_actor, ds.TopicDraft(title="Bike shed", body="Where should it go?"),
                                       now=datetime.now(UTC), cfg=DISCUSSIONS)
        await s.commit()
    topic_id = result.topic.id
    person = world.dxyc[5]
    user = world.user(person)
    await user.send("/topics")
    listing = await bot_reply(user, lambda m: "Bike shed" in str(buttons(m)) or "Bike shed" in text_of(m))
    view = next(d for t, d in buttons(listing).items() if "Bike shed" in t)
    await user.callback(listing["message_id"], view)
    page = await bot_reply(user, lambda m: "💬 Comment" in buttons(m))
    say = buttons(page)["💬 Comment"]
    # The Comment button tapped twice at once (one tap at each worker), then the comment once.
    a = world.sandbox.user_callback(person.user.id, page["message_id"], say)
    b = world.sandbox.user_callback(person.user.id, page["message_id"], say)
    world.router.pin(a["update_id"], [0])
    world.router.pin(b["update_id"], [1])
    await world.answered(a, b)
    typed = await user.send("Next to the gate, please")
    await bot_reply(user, lambda m: text_of(m).startswith("Posted as comment"))
    # The comment's update delivered again at the other worker: the same comment, nothing new.
    done = world.router.workers_of(typed["update_id"])
    await _redeliver(world, typed["update_id"], [1 - done[0]])
    assert await world.count(Comment, Comment.topic_id == topic_id) == 1
    assert await world.count(AuditLog, AuditLog.action == "comment.create") == 1


async def test_a_wrong_knowledge_check_answer_counts_once_redelivered_to_either_worker(world):
    person = world.dxyc[21]  # in the registry, not yet joined
    user = world.user(person)
    await user.send("/start")
    await bot_reply(user, lambda m: tr("en", "I agree") in buttons(m))
    await user.press(tr("en", "I agree"))
    await bot_reply(user, lambda m: text_of(m).startswith(tr("en", "Other ways to join:")))
    await user.share_contact()
    await bot_reply(user, lambda m: "full name" in text_of(m))
    await user.send(person.name)
    await bot_reply(user, lambda m: "last 4" in text_of(m))
    wrong = await user.send("0000")
    await bot_reply(user, lambda m: "does not match" in text_of(m))
    first = world.router.workers_of(wrong["update_id"])
    await _redeliver(world, wrong["update_id"], first)
    await _redeliver(world, wrong["update_id"], [1 - first[0]])
    async with world.cluster.sessions() as s:
        account_id = await s.scalar(select(Account.id).where(Account.telegram_id == person.user.id))
    assert await world.count(VerificationAttempt, VerificationAttempt.account_id == account_id,
                             VerificationAttempt.success.is_(False)) == 1
    said = [text_of(m) for m in world.sandbox.messages(person.user.id)]
    assert sum("does not match" in t for t in said) == 1


async def test_a_checkin_enrolment_is_made_once_redelivered_or_its_choice_tapped_twice(world):
    staff = world.rjxc_staff
    one, several = world.rjxc[1007], world.rjxc[1900:1910]  # building 2: not enrolled yet
    typed = await staff.send(f"/checkin_enrol {one.name} 10:00")
    await bot_reply(staff, lambda m: text_of(m).startswith(f"Enrolled {one.name}"))
    done = world.router.workers_of(typed["update_id"])
    await _redeliver(world, typed["update_id"], [1 - done[0]])
    # Several residents match: the choice tapped twice, at both workers.
    await staff.send("/checkin_enrol 日晖0190 09:30")
    choices = await bot_reply(staff, lambda m: text_of(m).startswith("Several residents match"))
    pick = next(d for t, d in buttons(choices).items() if several[3].name in t)
    a = world.sandbox.user_callback(staff.id, choices["message_id"], pick)
    b = world.sandbox.user_callback(staff.id, choices["message_id"], pick)
    world.router.pin(a["update_id"], [0])
    world.router.pin(b["update_id"], [1])
    await world.answered(a, b)
    for person in (one, several[3]):
        async with world.cluster.sessions() as s:
            resident_id = await s.scalar(select(Account.resident_id).where(Account.telegram_id == person.user.id))
        assert await world.count(CheckinPlan, CheckinPlan.resident_id == resident_id) == 1
        assert await world.count(AuditLog, AuditLog.action == "checkin.enrol", AuditLog.target_id == resident_id) == 1
        elder = world.user(person)
        await bot_reply(elder, lambda m: "enrolled you in daily check-ins" in text_of(m), seconds=120)
        await world.outbox_done(OutboxMessage.chat_id == person.user.id)
        told = [m for m in world.sandbox.messages(person.user.id) if "enrolled you in daily check-ins" in text_of(m)]
        assert len(told) == 1, told


# --- kill -9 --------------------------------------------------------------------------------------


async def test_a_worker_killed_mid_broadcast_loses_nothing_and_doubles_only_what_it_had_in_flight(world):
    staff_actor = await world.actor(world.rjxc_staff)
    text = "Lift maintenance on Friday"
    async with world.cluster.sessions() as s:
        aud = await ns.audience(s, staff_actor, "committee", None)
        notice = await ns.create_notice(s, staff_actor, text=text, aud=aud, now=datetime.now(UTC))
        await s.commit()
    received = lambda: sum(1 for p in world.rjxc if any(  # noqa: E731
        text in text_of(m) for m in world.sandbox.messages(p.user.id)))
    assert await world.sandbox.wait_until(lambda: received() >= 400, 300)
    victim = world.cluster.workers[0]
    victim.kill(signal.SIGKILL)
    assert await victim.wait() == -signal.SIGKILL
    at_kill = received()
    async with world.cluster.sessions() as s:
        stranded = await s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.ref_id == notice.id, OutboxMessage.status == OutboxStatus.sending))
    await victim.start()  # as the supervisor does; its lease-expired rows go again after 60 s
    await world.outbox_done(OutboxMessage.ref_id == notice.id, OutboxMessage.ref_type == ns.REF, seconds=300)
    copies = Counter(sum(text in text_of(m) for m in world.sandbox.messages(p.user.id)) for p in world.rjxc)
    assert 0 not in copies and set(copies) <= {1, 2}, copies
    assert copies.get(2, 0) <= IN_FLIGHT, copies
    async with world.cluster.sessions() as s:
        statuses = Counter((await s.scalars(select(OutboxMessage.status).where(
            OutboxMessage.ref_id == notice.id, OutboxMessage.ref_type == ns.REF))).all())
    assert statuses == {OutboxStatus.sent: 2000}, statuses
    print(f"\nkill -9 mid-broadcast: {at_kill} of 2,000 delivered at the kill, {stranded} rows in 'sending' then; "
          f"after: {dict(copies)} (copies: residents), at most {IN_FLIGHT} doubles allowed")
