"""10,000 generated updates (hypothesis) through the sandbox into the real dispatcher, as it runs in
production (every update in its own task, the events isolation of ``run``), with the real sender.

Three accounts fuzz: a verified resident of DXYC, a DXYC committee staff member and a newcomer with
no account. Around them a world they must not be able to touch: another street's committee (FLSQ)
with its staff, residents, poll, topic, alert, notice and pending request, and in DXYC a poll the
resident is not eligible for, other residents' comments and an alert. The updates: random unicode of
every size, commands with junk arguments, buttons pressed long after (stale), buttons of other
people's chats (other polls, alerts, requests, committees), callback data forged from every prefix of
``notifications.callbacks`` with other objects' ids and junk, contacts of other users, random files.

After every batch:
- no unhandled exception: nothing logged at ERROR (the error handler logs every failed update there,
  the sender every message it could not render or record);
- no call Telegram would refuse (the sandbox records every refused call), but for an edit of what the
  message already is, which the bot then does otherwise (bot.edits: a second tap's edit, "message is
  not modified", is done; a forged press's new text for a photo or file goes as a new message);
- no change of state an honest user of those accounts could not have made: every row of every table
  that changed belongs to a fuzzing account or lies in DXYC (the staff member's area), nobody's staff
  grant changed or appeared, staff-only columns were set only by the staff member and only in DXYC,
  the newcomer is verified only by the staff member's approval, the resident votes only where
  eligible.

Half of the updates on SQLite (one committee's deployment), half on PostgreSQL with Redis (a district's),
each from a fixed seed (reproducible; no example database). FUZZ_UPDATES (default 10,000) raises the
count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.checkin_jobs import checkin_tick
from bot.poll_jobs import polls_tick
from handlers.commands import COMMANDS
from notifications import callbacks as cb
from services import checkins as cs
from services import discussions as ds
from services import notices as ns
from services import polls
from services import verification as vs
from services.accounts import resolve_actor
from services.models import Account, OutboxMessage, OutboxStatus, Resident
from services.regions import get_region
from tests.harness import running_stack
from tests.helpers import (
    ErrorLog,
    PacedClock,
    TableSnapshot,
    fresh_pg_database,
    fresh_redis,
    make_staff,
    table_snapshot,
    verify,
)
from tests.seed import ID_FENG, ID_WANG, ID_ZHAO, seed_registry

UPDATES = int(os.environ.get("FUZZ_UPDATES", "10000"))
BATCH = 50  # updates queued at once (the three chats handled in parallel, each in order)
PINNED = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Saturday
SKIPPED_TABLES = {"processed_updates", "job_runs"}  # bookkeeping of the updates themselves
# Columns only staff can set (a resident resolving their own alert by "I'm fine" is not among them).
STAFF_COLUMNS = {"decided_by_account_id", "hidden_by_account_id", "by_account_id", "set_by_account_id",
                 "acknowledged_by_account_id", "updated_by_account_id"}
OWNER_COLUMNS = ("account_id", "author_account_id", "actor_account_id", "used_by_account_id")


# --- the world -------------------------------------------------------------------------------------


@dataclass
class World:
    resident: Any  # the fuzzing users (sandbox users)
    staff: Any
    newcomer: Any
    others: list  # users of the world around them (their chats hold buttons to forge with)
    eligible_polls: set[int]
    ids: list[int]  # every id of the world's rows, for forged buttons
    fuzz_tids: set[int] = field(default_factory=set)


async def _member(stack, name: str, region: str, *, resident: str | None = None, on_duty: bool = False,
                  staff: bool = False, lang: str = "zh-hans"):
    """A Telegram user of the world around the fuzzers (an account linked behind the bot's back)."""
    from services.models import Staff, StaffRole

    user = await stack.client.create_user(name, language_code=lang)
    now = stack.clock()
    async with stack.session() as s:
        resident_id = await s.scalar(select(Resident.id).where(Resident.name == resident)) if resident else None
        account = Account(telegram_id=user.id, chat_id=user.id, first_name=name, language_code=lang,
                          resident_id=resident_id, consent_at=now, verified_at=now if resident_id else None,
                          created_at=now)
        s.add(account)
        await s.flush()
        if staff:
            s.add(Staff(account_id=account.id, region_id=(await get_region(s, region)).id, role=StaffRole.committee,
                        on_duty=on_duty, created_at=now))
        await s.commit()
    return user


async def _actor(stack, user):
    async with stack.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == user.id))
        return await resolve_actor(s, account, language_code=account.language_code, default_locale="zh_Hans")


async def _outbox_idle(stack, seconds: float = 30.0) -> None:
    """Until the sender has finished every message due now."""
    async with asyncio.timeout(seconds):
        while True:
            async with stack.session() as s:
                due = await s.scalar(select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.status.in_([OutboxStatus.pending, OutboxStatus.sending]),
                    OutboxMessage.not_before <= stack.clock()))
            if not due:
                return
            await asyncio.sleep(0.05)


async def build_world(stack) -> World:
    clock = stack.clock
    await seed_registry(stack.sessions, now=PINNED - timedelta(days=3))
    resident = await stack.client.create_user("秀英", language_code="zh-hans", phone_number="+8613800138001")
    await verify(resident, "王秀英", ID_WANG)
    staff = await make_staff(stack, "张书记")
    await staff.send("/duty on")
    newcomer = await stack.client.create_user("新来的", language_code="en", phone_number="+8613912345678")
    # The world around them.
    zhao = await stack.client.create_user("桂兰", language_code="zh-hans", phone_number="+8613800138003")
    await verify(zhao, "赵桂兰", ID_ZHAO)
    feng = await stack.client.create_user("志强", language_code="zh-hans", phone_number="+8613800138100")
    await verify(feng, "冯志强", ID_FENG)
    fl_staff = await make_staff(stack, "枫林书记", region="FLSQ")
    await fl_staff.send("/duty on")
    asker = await _member(stack, "求证者", "FLSQ")  # no resident: files a review request with FLSQ
    dx_asker = await _member(stack, "求证者二", "DXYC")
    cfg = stack.dp
    now = clock()
    async with stack.session() as s:
        dxyc, flsq = await get_region(s, "DXYC"), await get_region(s, "FLSQ")
        dx_actor = await resolve_actor(s, await s.scalar(select(Account).where(Account.telegram_id == staff.id)),
                                       language_code="zh-hans", default_locale="zh_Hans")
        fl_actor = await resolve_actor(s, await s.scalar(select(Account).where(Account.telegram_id == fl_staff.id)),
                                       language_code="zh-hans", default_locale="zh_Hans")
        pcfg: polls.PollConfig = cfg["poll_config"]
        b3 = await polls.create_poll(s, dx_actor, dxyc, polls.PollDraft(
            question="3号楼加装电梯？", options=["同意", "反对"], eligible='building == "3"',
            closes_at=now + timedelta(days=7)), now=now, cfg=pcfg)
        b5 = await polls.create_poll(s, dx_actor, dxyc, polls.PollDraft(
            question="5号楼换门禁？", options=["同意", "反对"], eligible='building == "5"',
            closes_at=now + timedelta(days=7)), now=now, cfg=pcfg)
        await polls.create_poll(s, fl_actor, flsq, polls.PollDraft(
            question="枫林小区停车费？", options=["涨", "不涨", "弃权"], multiple=1,
            closes_at=now + timedelta(days=7)), now=now, cfg=pcfg)
        dcfg: ds.DiscussionConfig = cfg["discussion_config"]
        for actor, title in ((dx_actor, "垃圾分类"), (fl_actor, "枫林绿化")):
            await ds.create_topic(s, actor, ds.TopicDraft(title=title, body="大家说说看"), now=now, cfg=dcfg)
        for account_name, request_name, committee in ((asker, "赵六", flsq), (dx_asker, "钱七", dxyc)):
            account = await s.scalar(select(Account).where(Account.telegram_id == account_name.id))
            await vs.request_review(s, account, committee_id=committee.id, name=request_name, address="1-1-101",
                                    now=now)
        aud = await ns.audience(s, fl_actor, "committee", None)
        await ns.create_notice(s, fl_actor, text="枫林小区周二停水", aud=aud, now=now)
        ccfg: cs.CheckinConfig = cfg["checkin_config"]
        for name in ("赵桂兰", "冯志强"):
            r = await s.scalar(select(Resident).where(Resident.name == name))
            await cs.enrol_resident(s, r, now=now, cfg=ccfg, minute=9 * 60 + 1)
        await s.commit()
        eligible = {b3.id}
        assert b5.id not in eligible
    # Comments by the world's residents, through the services as the bot calls them.
    async with stack.session() as s:
        from services.models import Topic

        topics = {t.title: t.id for t in await s.scalars(select(Topic))}
    for user, title in ((zhao, "垃圾分类"), (feng, "枫林绿化")):
        actor = await _actor(stack, user)
        async with stack.session() as s:
            await ds.add_comment(s, actor, topics[title], "我同意，早就该这样了", now=clock(), cfg=dcfg)
            await s.commit()
    # Polls announced, rounds opened, the silent elders alerted (tick by tick on the test's clock).
    assert (await polls_tick(stack.runtime, clock.advance(timedelta(minutes=1)))).announced == 3
    assert (await checkin_tick(stack.runtime, clock.advance(timedelta(minutes=2)))).opened == 2
    assert (await checkin_tick(stack.runtime, clock.advance(timedelta(minutes=91)))).alerted == 2
    # The resident's own check-in round, open (its buttons are theirs to press).
    async with stack.session() as s:
        r = await s.scalar(select(Resident).where(Resident.name == "王秀英"))
        local = ccfg.local(clock())
        await cs.enrol_resident(s, r, now=clock(), cfg=ccfg, minute=local.hour * 60 + local.minute + 1)
        await s.commit()
    assert (await checkin_tick(stack.runtime, clock.advance(timedelta(minutes=2)))).opened == 1
    await _outbox_idle(stack)
    ids: set[int] = set()
    snap = await table_snapshot(stack.engine)
    for rows in snap.tables.values():
        for row in rows.values():
            ids.update(v for k, v in row.items() if (k == "id" or k.endswith("_id")) and isinstance(v, int))
    world = World(resident, staff, newcomer, [zhao, feng, fl_staff, asker, dx_asker], eligible, sorted(ids))
    world.fuzz_tids = {resident.id, staff.id, newcomer.id}
    return world


# --- actions ---------------------------------------------------------------------------------------

COMMAND_NAMES = [c.name for c in COMMANDS] + ["start", "topics", "topic_new", "poll", "vote", "admin", "sql"]
WORDS = ["ok", "help", "ack", "safe", "unr", "hist", "a", "r", "send", "now", "later", "abort", "aud", "tag", "seg",
         "skip", "refresh", "remind", "calls", "view", "say", "sub", "unsub", "approve", "reject", "reply", "report",
         "publish", "cancel", "unit", "rule", "all", "days", "secret", "time", "t", "tt", "pause", "p", "pd",
         "resume", "family", "consent", "decline", "code", "review", "member", "newmember", "committee", "push",
         "applied", "no", "ans", "stop", "keep", "once", "enrolled", "declined", "h", "d", "s", "end", "lp", "ls",
         "alone", "link", "noreach", "res", "vote", "scope", "building", "compound", "1", "0", "true", "-1", "zh_Hans",
         "en", "DXYC", "FLSQ", "RJXC", "volunteer", "elderly", ""]
SPECIAL_IDS = [0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64 + 1]
CALLBACK_CLASSES = [obj for obj in vars(cb).values()
                    if isinstance(obj, type) and issubclass(obj, cb.CallbackData) and obj is not cb.CallbackData]

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
long_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=300, max_size=4096)
junk = st.one_of(unicode_text, st.text(string.printable, max_size=80), st.sampled_from(WORDS),
                 st.integers(-(2**70), 2**70).map(str))


@st.composite
def actions(draw) -> tuple:
    user = draw(st.sampled_from(["resident", "staff", "newcomer"]))
    kind = draw(st.sampled_from(["text", "text", "long", "command", "command", "press", "press", "press", "stale",
                                 "foreign", "forge", "forge", "random_cb", "contact", "document", "raw"]))
    if kind == "text":
        return user, kind, draw(st.one_of(unicode_text, st.sampled_from(WORDS),
                                          st.from_regex(r"\d{1,6}", fullmatch=True)))
    if kind == "long":
        return user, kind, draw(long_text)
    if kind == "command":
        name = draw(st.one_of(st.sampled_from(COMMAND_NAMES), st.from_regex(r"[a-z_]{1,20}", fullmatch=True)))
        args = draw(st.lists(junk, max_size=4))
        return user, kind, (name, args)
    if kind in ("press", "stale", "foreign"):
        return user, kind, (draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6)))
    if kind == "forge":
        klass = draw(st.sampled_from(CALLBACK_CLASSES))
        values = []
        for name, info in klass.model_fields.items():
            annotation = str(info.annotation)
            if "int" in annotation or "DbId" in annotation:
                values.append(draw(st.one_of(st.integers(0, 10**6).map(lambda i: ("id", i)),
                                             st.sampled_from(SPECIAL_IDS).map(str), junk)))
            elif "bool" in annotation:
                values.append(draw(st.sampled_from(["1", "0", "true", "", "2", "yes"])))
            else:
                values.append(draw(junk))
            del name
        return user, kind, (klass.__prefix__, values, draw(st.integers(0, 10**6)))
    if kind == "random_cb":
        data = draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64))
        return user, kind, (data, draw(st.integers(0, 10**6)))
    if kind == "contact":
        return user, kind, (draw(st.sampled_from(["own", "other", "other_phone", "no_user", "junk"])),
                            draw(st.integers(0, 10**6)), draw(junk))
    if kind == "document":
        name = draw(st.one_of(st.sampled_from(["registry.xlsx", "名单.csv", "a.txt", "x"]), unicode_text))
        return user, kind, (name, draw(st.binary(min_size=1, max_size=2000)), draw(st.one_of(st.none(), junk)))
    return user, kind, (draw(st.sampled_from(["edited", "location", "sticker", "empty"])), draw(unicode_text))


class Fuzzer:
    """Turns abstract actions into updates queued on the sandbox, with the world's current buttons."""

    def __init__(self, stack, world: World) -> None:
        self.stack, self.world = stack, world
        self.sent = 0

    def user(self, key: str):
        return {"resident": self.world.resident, "staff": self.world.staff, "newcomer": self.world.newcomer}[key]

    def _bot_messages(self, uid: int) -> list:
        chat = self.stack.sandbox.chats.get(uid)
        return [m for m in chat.messages.values() if m.from_bot and not m.deleted] if chat else []

    def _buttons(self, uid: int) -> list[tuple[int, str]]:
        found = []
        for m in sorted(self._bot_messages(uid), key=lambda m: -m.message_id):
            for row in (m.reply_markup or {}).get("inline_keyboard", []):
                found += [(m.message_id, b["callback_data"]) for b in row if "callback_data" in b]
        return found

    def _press_on_own(self, uid: int, data: str, k: int) -> bool:
        own = self._bot_messages(uid)
        if not own:
            return False
        message = sorted(own, key=lambda m: m.message_id)[k % len(own)]
        self.stack.sandbox.user_callback(uid, message.message_id, data)
        return True

    def _text(self, uid: int, text: str) -> None:
        text = text.strip()  # Telegram's clients trim what is typed, and send nothing empty
        if text:
            self.stack.sandbox.user_text(uid, text)

    def perform(self, action: tuple) -> None:
        key, kind, params = action
        sb = self.stack.sandbox
        uid = self.user(key).id
        self.sent += 1
        if kind in ("text", "long"):
            self._text(uid, params)
        elif kind == "command":
            name, args = params
            self._text(uid, " ".join([f"/{name}", *args]))
        elif kind == "press":
            buttons = self._buttons(uid)[:12]  # the latest ones: what a person presses next
            keyboard = sb.chats[uid].reply_keyboard if uid in sb.chats else None
            texts = [b.get("text") for row in (keyboard or {}).get("keyboard", []) for b in row]
            choice = params[0] % (len(buttons) + len(texts)) if buttons or texts else None
            if choice is None:
                self._text(uid, "/start")
            elif choice < len(buttons):
                sb.user_callback(uid, *buttons[choice])
            else:
                sb.press(uid, texts[choice - len(buttons)])
        elif kind == "stale":
            buttons = self._buttons(uid)
            if buttons:
                sb.user_callback(uid, *buttons[params[0] % len(buttons)])
            else:
                self._text(uid, "/menu")
        elif kind == "foreign":
            pool = [data for other in [*self.world.others, self.world.resident, self.world.staff, self.world.newcomer]
                    if other.id != uid for _m, data in self._buttons(other.id)]
            if not pool or not self._press_on_own(uid, pool[params[0] % len(pool)], params[1]):
                self._text(uid, "/help")
        elif kind == "forge":
            prefix, values, k = params
            parts = [prefix]
            for value in values:
                if isinstance(value, tuple):
                    parts.append(str(self.world.ids[value[1] % len(self.world.ids)]))
                else:
                    parts.append(str(value))
            data = ":".join(parts)
            while len(data.encode()) > 64:  # Telegram never carries more than 64 bytes of callback data
                data = data[:-1]
            if not data or not self._press_on_own(uid, data, k):
                self._text(uid, "/menu")
        elif kind == "random_cb":
            data, k = params
            while len(data.encode()) > 64:
                data = data[:-1]
            if not data or not self._press_on_own(uid, data, k):
                self._text(uid, "/help")
        elif kind == "contact":
            whose, k, phone = params
            others = [*self.world.others, self.world.resident, self.world.staff, self.world.newcomer]
            other = others[k % len(others)]
            other_phone = sb.users[other.id].phone_number or "+8613800138002"
            if whose == "own":
                sb.user_contact(uid)
            elif whose == "other":
                sb.user_contact(uid, phone_number=other_phone, user_id=other.id, first_name=other.first_name)
            elif whose == "other_phone":
                sb.user_contact(uid, phone_number=other_phone, user_id=0, first_name="某人")
            elif whose == "no_user":
                sb.user_contact(uid, phone_number="+8613800138002", first_name="李建国")
            else:
                sb.user_contact(uid, phone_number=(phone.strip() or "0")[:30], first_name="x")
        elif kind == "document":
            name, data, caption = params
            name = name.strip().replace("/", "_") or "file"
            sb.user_document(uid, data, name[:60], None, caption=(caption.strip() or None) if caption else None)
        else:
            what, text = params
            user = sb.users[uid].api_user().model_dump(exclude_none=True)
            chat = {"id": uid, "type": "private"}
            base = {"message_id": 10**6 + self.sent, "date": sb.now(), "chat": chat, "from": user}
            if what == "edited":
                sb.enqueue_raw({"edited_message": {**base, "text": text, "edit_date": sb.now()}})
            elif what == "location":
                sb.enqueue_raw({"message": {**base, "location": {"latitude": 31.19, "longitude": 121.44}}})
            elif what == "sticker":
                sb.enqueue_raw({"message": {**base, "sticker": {
                    "file_id": "s1", "file_unique_id": "s1", "type": "regular", "width": 512, "height": 512,
                    "is_animated": False, "is_video": False}}})
            else:
                sb.enqueue_raw({"message": base})


# --- what must hold after every batch --------------------------------------------------------------


class Invariants:
    """Attributes each changed row of a snapshot diff to a fuzzing account or a region, and checks the
    rules an honest user of those accounts is bound by."""

    def __init__(self, world: World, before: TableSnapshot) -> None:
        self.world = world
        self.baseline = before

    def _maps(self, *snaps: TableSnapshot) -> dict[str, dict[int, dict]]:
        maps: dict[str, dict[int, dict]] = {}
        for snap in snaps:
            for table, rows in snap.tables.items():
                target = maps.setdefault(table, {})
                for row in rows.values():
                    if "id" in row:
                        target[row["id"]] = row
        return maps

    def check(self, before: TableSnapshot, after: TableSnapshot) -> list[str]:
        m = self._maps(before, after)
        regions = m["regions"]
        dxyc = next(r["id"] for r in regions.values() if r["code"] == "DXYC")

        def in_scope(region_id: int | None) -> bool:
            while region_id is not None:
                if region_id == dxyc:
                    return True
                region_id = regions[region_id]["parent_id"] if region_id in regions else None
            return False

        fuzz_accounts = {a["id"] for a in m["accounts"].values() if a["telegram_id"] in self.world.fuzz_tids}
        staff_account = {a["id"] for a in m["accounts"].values() if a["telegram_id"] == self.world.staff.id}
        fuzz_residents = {a["resident_id"] for a in m["accounts"].values()
                          if a["id"] in fuzz_accounts and a["resident_id"] is not None}
        fuzz_residents |= {a["resident_id"] for a in before.tables["accounts"].values()
                           if a["telegram_id"] in self.world.fuzz_tids and a["resident_id"] is not None}

        def account_region(account_id: int | None) -> int | None:
            account = m["accounts"].get(account_id) if account_id is not None else None
            if account is None:
                return None
            if account["resident_id"] in m["residents"]:
                return m["residents"][account["resident_id"]]["committee_id"]
            grants = [s["region_id"] for s in m["staff"].values() if s["account_id"] == account_id]
            return grants[0] if grants else None

        parents: dict[str, tuple[str, str]] = {
            "poll_id": ("polls", "committee_id"), "topic_id": ("topics", "committee_id"),
            "round_id": ("checkin_rounds", "committee_id"), "alert_id": ("checkin_alerts", "committee_id"),
            "notice_id": ("notices", "region_id"), "plan_id": ("checkin_plans", "committee_id"),
            "policy_id": ("policies", "region_id"), "household_id": ("households", "committee_id"),
            "tag_id": ("tags", "region_id"), "comment_id": ("comments", "topic_id"),
        }

        refs = {"notice": "notices", "checkin": "checkin_rounds", "checkin_alert": "checkin_alerts",
                "checkin_plan": "checkin_plans", "topic": "topics", "poll": "polls", "policy_case": "policy_cases",
                "vreq": "verification_requests", "comment": "comments", "mute": "discussion_mutes"}

        def region_of(table: str, row: dict) -> int | None:
            if table == "regions":
                return None
            if table == "outbox":
                # What a message is about says whose it is: its ref, or the first part of its key.
                kind, ref_id = row["ref_type"], row["ref_id"]
                if kind is None and row["idempotency_key"].count(":") >= 1:
                    kind, _, rest = row["idempotency_key"].partition(":")
                    ref_id = int(rest.split(":")[0]) if rest.split(":")[0].isdigit() else None
                if kind in refs and ref_id in m[refs[kind]]:
                    return region_of(refs[kind], m[refs[kind]][ref_id])
                return account_region(row["account_id"])
            if table == "accounts":
                return account_region(row["id"])
            for column in ("committee_id", "region_id"):
                if column in row and row[column] is not None:
                    return row[column]
            if row.get("resident_id") in m["residents"]:
                return m["residents"][row["resident_id"]]["committee_id"]
            for column, (parent, region_column) in parents.items():
                parent_row = m[parent].get(row.get(column)) if row.get(column) is not None else None
                if parent_row is not None:
                    if column == "comment_id":
                        parent_row = m["topics"].get(parent_row["topic_id"], {})
                        region_column = "committee_id"
                    return parent_row.get(region_column)
            for column in OWNER_COLUMNS:
                if row.get(column) is not None:
                    return account_region(row[column])
            return None

        def owned(table: str, row: dict) -> bool:
            if table == "accounts":
                return row["telegram_id"] in self.world.fuzz_tids
            if table == "conversations":  # fsm:<bot>:<chat>:<user>:<destiny>, the user's own conversation
                return int(row["key"].split(":")[3]) in self.world.fuzz_tids
            if table == "outbox" and row.get("chat_id") in self.world.fuzz_tids:
                return True
            if any(row.get(c) in fuzz_accounts for c in OWNER_COLUMNS if c in row):
                return True
            return row.get("resident_id") in fuzz_residents

        def forgotten_actor(table: str, old: dict, new: dict) -> bool:
            # A fuzzer's /forget: its audit lines stay, by nobody, and nothing else of them changes.
            return (table == "audit_log" and old.get("actor_account_id") in fuzz_accounts
                    and new.get("actor_account_id") is None
                    and {**old, "actor_account_id": None} == new)

        problems: list[str] = []
        for table, rows_after in after.tables.items():
            rows_before = before.tables.get(table, {})
            for key in rows_before.keys() | rows_after.keys():
                old, new = rows_before.get(key), rows_after.get(key)
                if old == new:
                    continue
                reachable = [owned(table, r) or in_scope(region_of(table, r)) for r in (old, new) if r is not None]
                if old is None and new is not None:
                    # The audit log only grows, each line about something checked here (a newcomer's
                    # /forget leaves one by nobody); the other tables' new rows must be theirs or DXYC's.
                    ok = table == "audit_log" or reachable[0]
                elif new is None:
                    ok = reachable[0]
                else:
                    # A fuzzer's row or DXYC's may change, but not move out of reach (a /forget makes the
                    # account's own lines nobody's, in the same region).
                    ok = reachable[0] and (reachable[1] or region_of(table, new) == region_of(table, old)
                                           or forgotten_actor(table, old, new))
                if not ok:
                    what = "added" if old is None else "removed" if new is None else "changed"
                    problems.append(f"{table} {key} {what} outside the fuzzers' reach: {_short(old)} -> "
                                    f"{_short(new)}")
                if new is not None:
                    for column in STAFF_COLUMNS & new.keys():
                        if new[column] is None or (old is not None and old.get(column) == new[column]):
                            continue
                        if new[column] in fuzz_accounts and (new[column] not in staff_account
                                                             or not in_scope(region_of(table, new))):
                            problems.append(f"{table} {key}: {column} set by a fuzzer without the right: "
                                            f"{_short(new)}")
        problems += self._roles(before, after, m, fuzz_accounts, staff_account)
        return problems

    def _roles(self, before: TableSnapshot, after: TableSnapshot, m, fuzz_accounts, staff_account) -> list[str]:
        problems = []
        by_tid = {a["telegram_id"]: a for a in after.tables["accounts"].values()}
        accounts_before = {a["id"]: a["telegram_id"] for a in self.baseline.tables["accounts"].values()}
        accounts_before |= {a["id"]: a["telegram_id"] for a in m["accounts"].values()}

        def grants(snap: TableSnapshot) -> set:
            return {(accounts_before.get(s["account_id"]), s["region_id"], str(s["role"]), s["active"])
                    for s in snap.tables["staff"].values()}

        new_grants = grants(after) - grants(self.baseline)
        if new_grants:
            problems.append(f"staff grants appeared or changed: {new_grants}")
        newcomer = by_tid.get(self.world.newcomer.id)
        if newcomer is not None and newcomer["resident_id"] is not None:
            approved = [r for r in after.tables["verification_requests"].values()
                        if r["account_id"] == newcomer["id"] and str(r["status"]).endswith("approved")
                        and r["decided_by_account_id"] in staff_account]
            if not approved:
                problems.append("the newcomer became a verified resident without a staff approval")
        resident = by_tid.get(self.world.resident.id)
        first = next(a for a in self.baseline.tables["accounts"].values() if a["telegram_id"] == self.world.resident.id)
        if resident is not None and resident["resident_id"] not in (None, first["resident_id"]):
            problems.append(f"the resident's account was linked to another resident: {resident['resident_id']}")
        for vote in after.tables["poll_votes"].values():
            if vote["resident_id"] == first["resident_id"] and vote["poll_id"] not in self.world.eligible_polls:
                problems.append(f"the resident voted in poll {vote['poll_id']}, where they are not eligible")
        for vote_key, vote in after.tables["poll_votes"].items():
            was = self.baseline.tables["poll_votes"].get(vote_key)
            if vote["resident_id"] != first["resident_id"] and was != vote:
                problems.append(f"someone else's ballot changed: {vote}")
        return problems


def _edit_to_what_it_is(method: str, description: str) -> bool:
    """Edits Telegram refuses for what the message already is, which the bot then does otherwise
    (bot.edits): a second tap's ("message is not modified": done, the message stays as the first tap
    left it) and a forged press's on a photo or file ("there is no text in the message to edit": the
    text goes as a new message)."""
    return method.startswith("editmessage") and (
        "message is not modified" in description or "there is no text in the message to edit" in description)


def _short(row: dict | None) -> str:
    text = json.dumps(row, default=str, ensure_ascii=False)
    return text if len(text) < 400 else text[:400] + "…"


# --- the test --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def production_stack(backend: str, tmp_path, clock):
    """The harness on SQLite (one committee's deployment), or on PostgreSQL and Redis (a district's:
    conversation state, the chat order and the send rate in Redis)."""
    if backend == "sqlite":
        async with running_stack(tmp_path, clock=clock) as stack:
            yield stack
        return
    redis = await fresh_redis()
    await redis.aclose()
    async with fresh_pg_database("fuzz") as url, running_stack(
            tmp_path, db_url=url, redis_url=os.environ["TEST_REDIS_URL"], clock=clock) as stack:
        yield stack


@pytest.mark.parametrize(("backend", "seed_value"), [("sqlite", 14_001), ("postgres", 14_002)])
async def test_generated_updates_raise_nothing_send_nothing_refused_and_change_only_what_the_user_may(
        tmp_path, backend, seed_value):
    clock = PacedClock(PINNED)
    async with production_stack(backend, tmp_path, clock) as stack:
        world = await build_world(stack)
        fuzzer = Fuzzer(stack, world)
        baseline = await table_snapshot(stack.engine, skip=SKIPPED_TABLES)
        invariants = Invariants(world, baseline)
        refused_before = len(stack.sandbox.refused_calls)
        loop = asyncio.get_running_loop()
        state = {"snapshot": baseline, "batches": 0}
        failures: list[str] = []

        async def run_batch(batch: list[tuple]) -> list[str]:
            with ErrorLog() as errors:
                for action in batch:
                    fuzzer.perform(action)
                await stack.settled()
                await _outbox_idle(stack)
            after = await table_snapshot(stack.engine, skip=SKIPPED_TABLES)
            problems = [f"logged at ERROR: {line}" for line in errors.lines]
            refused = list(stack.sandbox.refused_calls)[refused_before:]
            problems += [f"Telegram would refuse {method}: {code} {text}" for method, code, text in refused
                         if method != "getupdates" and not _edit_to_what_it_is(method, text)]
            problems += invariants.check(state["snapshot"], after)
            state["snapshot"] = after
            state["batches"] += 1
            return problems

        def call(batch: list[tuple]) -> list[str]:
            return asyncio.run_coroutine_threadsafe(run_batch(batch), loop).result(timeout=300)

        @seed(seed_value)
        @settings(max_examples=max(1, UPDATES // 2 // BATCH), database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
        @given(st.lists(actions(), min_size=BATCH, max_size=BATCH))
        def fuzz(batch: list[tuple]) -> None:
            if failures:
                return
            problems = call(batch)
            if problems:
                failures.append("\n".join([*problems[:20], "in the batch:", *map(repr, batch)]))

        await asyncio.to_thread(fuzz)
        assert not failures, failures[0]
        assert fuzzer.sent >= UPDATES // 2, fuzzer.sent
        # What the fuzz did (pytest -s shows it): rows by table, against the world it started from.
        grown = {table: len(rows) - len(baseline.tables[table].keys() & rows.keys())
                 for table, rows in state["snapshot"].tables.items()}
        print(f"\n{fuzzer.sent} updates in {state['batches']} batches; new rows:",
              {t: n for t, n in sorted(grown.items()) if n})
        assert grown["outbox"] > 0 and grown["audit_log"] > 0  # it reached the bot and the services
