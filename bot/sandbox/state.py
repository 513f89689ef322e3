"""In-memory state of the local Bot API sandbox.

Nothing here knows about HTTP: the aiohttp handlers in ``api.py`` and ``control.py`` parse
requests and call methods of :class:`Sandbox`, which build answers from aiogram's own models so
that aiogram's strict response validation accepts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import os
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram import types

from bot.sandbox.formatting import (
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    EmptyTextError,
    FormattingError,
    format_text,
    found_entities,
    to_html,
)

BOT_ID = 42
BOT_USERNAME = "community_cloud_bot"
BOT_FIRST_NAME = "Community Cloud"
FIRST_USER_ID = 100001
# Where a sandbox with a data directory keeps its users, so that ids are never handed out twice.
USERS_FILE = "sandbox_users.json"
# Message ids are reserved in blocks (persisted with the users), so a restarted sandbox never
# gives a new message the id of one the bot may still remember (and edit).
MESSAGE_ID_BLOCK = 1000
# Update ids likewise: Telegram never sends an update id twice, and the bot remembers those it has
# handled (processed_updates): a restarted sandbox starting again at 1 had its first updates ignored.
UPDATE_ID_BLOCK = 1000
MAX_CALLBACK_DATA_BYTES = 64

# aiogram retries a batch it cannot parse forever; after this many deliveries a raw update is
# dropped so that one malformed test update cannot wedge the bot's polling loop.
MAX_RAW_DELIVERIES = 3
# How many of the latest updates can be delivered again (Sandbox.redeliver).
MAX_REDELIVERABLE = 10_000

# Methods that Telegram throttles as "sending a message" and that the sandbox rate-limits.
SEND_METHODS = frozenset({"sendmessage", "sendphoto", "senddocument"})

# setWebhook's max_connections: Telegram's default and range.
WEBHOOK_DEFAULT_CONNECTIONS = 40
WEBHOOK_MAX_CONNECTIONS = 100
WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


class SandboxApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, error_code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class SandboxLookupError(LookupError):
    """Raised by control operations for an unknown user, message or button (→ HTTP 404)."""


def dump(obj: types.TelegramObject) -> dict[str, Any]:
    return obj.model_dump(mode="json", exclude_none=True, by_alias=True)


@dataclass
class SimUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str = "zh-hans"
    phone_number: str = ""
    blocked: bool = False

    def api_user(self) -> types.User:
        return types.User(
            id=self.id,
            is_bot=False,
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            language_code=self.language_code,
        )

    def api_chat(self) -> types.Chat:
        return types.Chat(
            id=self.id,
            type="private",
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "username": self.username,
            "language_code": self.language_code,
            "phone_number": self.phone_number,
            "blocked": self.blocked,
            "full_name": " ".join(p for p in (self.first_name, self.last_name) if p),
        }


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    filename: str | None
    mime_type: str | None
    kind: str  # "photo" or "document"
    file_path: str
    width: int = 0
    height: int = 0


@dataclass
class StoredMessage:
    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    changed_seq: int
    text: str | None = None
    caption: str | None = None
    entities: list[dict[str, Any]] | None = None  # of the text, or of the caption
    reply_markup: dict[str, Any] | None = None
    photo_file_id: str | None = None
    document_file_id: str | None = None
    contact: dict[str, Any] | None = None
    edited: bool = False
    edit_date: int | None = None
    deleted: bool = False
    callback_answers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChatState:
    user_id: int
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    last_message_id: int = 0
    reserved_message_id: int = 0  # ids up to this one may have been used before a restart
    # The reply keyboard the user currently sees: the last ReplyKeyboardMarkup not removed since.
    reply_keyboard: dict[str, Any] | None = None
    menu_button: dict[str, Any] | None = None
    chat_actions: list[str] = field(default_factory=list)


@dataclass
class QueuedUpdate:
    update_id: int
    payload: dict[str, Any]
    raw: bool  # came from raw_update, so aiogram may be unable to parse it
    deliveries: int = 0
    # Webhook delivery (bot/sandbox/webhook.py): a POST under way, failed POSTs, when to try again.
    in_flight: bool = False
    webhook_attempts: int = 0
    retry_at: float = 0.0


@dataclass
class Webhook:
    """What setWebhook said: where to POST updates and with which secret header."""

    url: str
    secret_token: str | None = None
    max_connections: int = WEBHOOK_DEFAULT_CONNECTIONS
    allowed_updates: list[str] | None = None


@dataclass
class CallbackRecord:
    id: str
    user_id: int
    message_id: int
    data: str | None
    answered: bool = False
    answer: dict[str, Any] | None = None


class RateLimiter:
    """Sliding-window limiter for the "send" methods, shaped like Telegram's flood control."""

    def __init__(self, clock: Callable[[], float], global_rate: float | None, per_chat_rate: float | None):
        self._clock = clock
        self.global_rate = global_rate
        self.per_chat_rate = per_chat_rate
        self._global: deque[float] = deque()
        self._per_chat: dict[int, deque[float]] = {}
        self.too_many_requests = 0
        self.max_per_chat_rate = 0
        self.max_global_rate = 0

    @staticmethod
    def _window(rate: float) -> tuple[float, int]:
        # Rates below 1/s need a longer window, otherwise one message per second would pass.
        seconds = max(1.0, 1.0 / rate)
        return seconds, max(1, math.floor(rate * seconds + 1e-9))

    @staticmethod
    def _prune(stamps: deque[float], now: float, seconds: float) -> None:
        while stamps and stamps[0] <= now - seconds:
            stamps.popleft()

    def _check(self, stamps: deque[float], rate: float | None, now: float) -> int | None:
        if rate is None or rate <= 0:
            return None
        seconds, capacity = self._window(rate)
        self._prune(stamps, now, seconds)
        if len(stamps) < capacity:
            return None
        return max(1, math.ceil(stamps[len(stamps) - capacity] + seconds - now))

    def hit(self, chat_id: int) -> None:
        """Record one send to ``chat_id`` or raise a 429 :class:`SandboxApiError`."""
        now = self._clock()
        chat_stamps = self._per_chat.setdefault(chat_id, deque())
        waits = [
            w
            for w in (
                self._check(self._global, self.global_rate, now),
                self._check(chat_stamps, self.per_chat_rate, now),
            )
            if w is not None
        ]
        if waits:
            self.too_many_requests += 1
            retry_after = max(waits)
            raise SandboxApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        self._global.append(now)
        chat_stamps.append(now)
        # Observed rates are counted over the last second regardless of the configured window.
        self._prune(self._global, now, max(1.0, self._longest_window()))
        self._prune(chat_stamps, now, max(1.0, self._longest_window()))
        self.max_global_rate = max(self.max_global_rate, sum(1 for s in self._global if s > now - 1))
        self.max_per_chat_rate = max(self.max_per_chat_rate, sum(1 for s in chat_stamps if s > now - 1))

    def _longest_window(self) -> float:
        return max(
            (self._window(r)[0] for r in (self.global_rate, self.per_chat_rate) if r and r > 0),
            default=1.0,
        )


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG/GIF/JPEG, or a plausible default for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            i += 2 + length
    return 640, 480


class Sandbox:
    """A single bot, its simulated private-chat users, and everything they said to each other."""

    def __init__(
        self,
        *,
        rate_limit_global: float | None = None,
        rate_limit_per_chat: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        data_dir: Path | str | None = None,
        webhook_retry_base: float = 0.1,
        webhook_retry_max: float = 5.0,
        webhook_max_attempts: int = 50,
    ) -> None:
        """``data_dir``: keep the users (and the next user id) in a file there across restarts.
        ``webhook_*``: a failed webhook POST is tried again after base, 2 × base, … at most max seconds,
        and the update dropped after that many attempts (Telegram "gives up after a reasonable number")."""
        self._wall_clock = wall_clock
        self._users_path = Path(data_dir) / USERS_FILE if data_dir is not None else None
        self.bot_user = types.User(
            id=BOT_ID,
            is_bot=True,
            first_name=BOT_FIRST_NAME,
            username=BOT_USERNAME,
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
        )
        # Telegram's "from" of a message carries only the basic fields, not getMe's extras.
        self.bot_sender = types.User(id=BOT_ID, is_bot=True, first_name=BOT_FIRST_NAME, username=BOT_USERNAME)
        self.users: dict[int, SimUser] = {}
        self.chats: dict[int, ChatState] = {}
        self.files: dict[str, StoredFile] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.limiter = RateLimiter(clock, rate_limit_global, rate_limit_per_chat)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: Webhook | None = None
        self.webhook_retry_base = webhook_retry_base
        self.webhook_retry_max = webhook_retry_max
        self.webhook_max_attempts = webhook_max_attempts
        self.webhook_last_error: tuple[int, str] | None = None  # (unix time, message)
        self.webhook_deliveries = 0  # POSTs answered 2xx
        self.default_menu_button: dict[str, Any] | None = None
        self.bot_texts: dict[str, dict[str, str]] = {}
        self.calls_by_method: dict[str, int] = {}
        self.sent_by_method: dict[str, int] = {}
        # Every call answered with an error, as (method, error_code, description), newest last (a bot
        # that never makes a call Telegram would refuse leaves only what it asked for on purpose).
        self.refused_calls: deque[tuple[str, int, str]] = deque(maxlen=MAX_REDELIVERABLE)
        self._updates: deque[QueuedUpdate] = deque()
        # What every recent update carried, so that one can be delivered again (redeliver()).
        self._sent_updates: dict[int, QueuedUpdate] = {}
        self._redelivered: set[int] = set()  # queued again although below the confirmed mark
        self.dropped_update_ids: set[int] = set()
        self._next_update_id = 1
        self._reserved_update_id = 0  # ids up to this one may have been used before a restart
        self._confirmed_before = 0  # every update_id below this was confirmed by getUpdates
        self._next_user_id = FIRST_USER_ID
        self._file_counter = itertools.count(1)
        self._seq = 0
        self._tick = asyncio.Event()
        self._closing = False
        self._load_users()

    # ------------------------------------------------------------------ waiting

    @property
    def seq(self) -> int:
        """A counter bumped on every change; messages carry the value of their last change."""
        return self._seq

    def _changed(self) -> None:
        self._seq += 1
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_until(self, predicate: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked after every change) or ``seconds`` pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, seconds)
        while True:
            if predicate():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return False
            tick = self._tick
            try:
                await asyncio.wait_for(tick.wait(), remaining)
            except TimeoutError:
                return predicate()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Release every long poll and wait so that the server can shut down promptly."""
        self._closing = True
        self._changed()

    def now(self) -> int:
        return int(self._wall_clock())

    # ------------------------------------------------------------------ users

    def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        phone_number: str | None = None,
    ) -> SimUser:
        if not first_name:
            raise ValueError("first_name is required")
        uid = max(self._next_user_id, self._stored_next_user_id())
        self._next_user_id = uid + 1
        user = SimUser(
            id=uid,
            first_name=first_name,
            last_name=last_name or None,
            username=username or None,
            language_code=language_code or "zh-hans",
            phone_number=phone_number or f"+86138000{uid % 100000:05d}",
        )
        self.users[uid] = user
        self.chats[uid] = ChatState(user_id=uid)
        self._save_users()
        self._changed()
        return user

    def _stored_next_user_id(self) -> int:
        """The next id recorded on disk (another sandbox on the same data may have moved it on)."""
        if self._users_path is None or not self._users_path.exists():
            return FIRST_USER_ID
        return int(json.loads(self._users_path.read_text("utf-8")).get("next_user_id", FIRST_USER_ID))

    def _load_users(self) -> None:
        if self._users_path is None or not self._users_path.exists():
            return
        data = json.loads(self._users_path.read_text("utf-8"))
        names = {f.name for f in dataclasses.fields(SimUser)}
        for item in data.get("users", []):
            user = SimUser(**{k: v for k, v in item.items() if k in names})
            self.users[user.id] = user
            reserved = int(item.get("reserved_message_id", 0))
            self.chats[user.id] = ChatState(
                user_id=user.id, last_message_id=reserved, reserved_message_id=reserved
            )
        self._next_user_id = max(
            [int(data.get("next_user_id", FIRST_USER_ID)), FIRST_USER_ID] + [uid + 1 for uid in self.users]
        )
        self._reserved_update_id = int(data.get("reserved_update_id", 0))
        self._next_update_id = self._reserved_update_id + 1

    def _save_users(self) -> None:
        if self._users_path is None:
            return
        users = [
            {**dataclasses.asdict(u), "reserved_message_id": self.chats[u.id].reserved_message_id}
            for u in self.users.values()
        ]
        body = json.dumps({"next_user_id": self._next_user_id, "reserved_update_id": self._reserved_update_id,
                           "users": users}, ensure_ascii=False, indent=1)
        self._users_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._users_path.with_name(self._users_path.name + ".tmp")
        tmp.write_text(body, "utf-8")
        os.replace(tmp, self._users_path)

    def mentioned_user(self, uid: int) -> dict[str, Any] | None:
        """The ``user`` of a text_mention: a sandbox user or the bot itself, else None."""
        if uid == BOT_ID:
            return dump(self.bot_sender)
        user = self.users.get(uid)
        return dump(user.api_user()) if user is not None else None

    def get_user(self, uid: int) -> SimUser:
        try:
            return self.users[uid]
        except KeyError:
            raise SandboxLookupError(f"user {uid} not found") from None

    def set_blocked(self, uid: int, blocked: bool) -> int | None:
        """Block or unblock the bot; enqueues the ``my_chat_member`` update Telegram would send."""
        user = self.get_user(uid)
        if user.blocked == blocked:
            return None
        user.blocked = blocked
        self._save_users()
        member = types.ChatMemberMember(user=self.bot_user)
        banned = types.ChatMemberBanned(user=self.bot_user, until_date=0)
        update = types.ChatMemberUpdated(
            chat=user.api_chat(),
            from_user=user.api_user(),
            date=self.now(),
            old_chat_member=member if blocked else banned,
            new_chat_member=banned if blocked else member,
        )
        return self._enqueue({"my_chat_member": dump(update)})

    # ------------------------------------------------------------------ updates

    def _enqueue(self, payload: dict[str, Any], *, raw: bool = False) -> int:
        update_id = payload.get("update_id")
        if not isinstance(update_id, int):
            update_id = self._next_update_id
            payload = {"update_id": update_id, **payload}
        self._next_update_id = max(self._next_update_id, update_id + 1)
        if self._users_path is not None and update_id > self._reserved_update_id:
            self._reserved_update_id = update_id + UPDATE_ID_BLOCK - 1
            self._save_users()
        queued = QueuedUpdate(update_id, payload, raw)
        self._updates.append(queued)
        self._sent_updates[update_id] = queued
        while len(self._sent_updates) > MAX_REDELIVERABLE:
            del self._sent_updates[next(iter(self._sent_updates))]
        self._changed()
        return update_id

    def redeliver(self, update_id: int) -> int:
        """Deliver update ``update_id`` once more, same id and content, as Telegram does when it got no
        answer in time (a webhook that timed out, a batch a crashed worker never confirmed)."""
        sent = self._sent_updates.get(update_id)
        if sent is None:
            raise SandboxLookupError(f"update {update_id} not found")
        if all(q.update_id != update_id for q in self._updates):
            again = QueuedUpdate(update_id, sent.payload, sent.raw)
            self._updates = deque(sorted([*self._updates, again], key=lambda q: q.update_id))
            if update_id < self._confirmed_before:
                self._redelivered.add(update_id)
            self._changed()
        return update_id

    def enqueue_raw(self, payload: dict[str, Any]) -> int:
        """Queue an arbitrary update dict as-is (an ``update_id`` is assigned if missing)."""
        return self._enqueue(dict(payload), raw=True)

    def confirm(self, offset: int) -> None:
        if offset <= self._confirmed_before and not self._redelivered:
            return
        self._confirmed_before = max(self._confirmed_before, offset)
        while self._updates and self._updates[0].update_id < offset:
            self._redelivered.discard(self._updates.popleft().update_id)
        self._changed()

    def is_confirmed(self, update_id: int) -> bool:
        return update_id < self._confirmed_before and update_id not in self._redelivered

    def _deliver(self, limit: int) -> list[dict[str, Any]]:
        """The batch getUpdates returns now.

        A raw (possibly malformed) update is returned alone, so that if aiogram fails to parse
        it the well-formed updates around it are not dragged down with it; after
        ``MAX_RAW_DELIVERIES`` unconfirmed deliveries it is dropped.
        """
        while self._updates and self._updates[0].raw and self._updates[0].deliveries >= MAX_RAW_DELIVERIES:
            dropped = self._updates.popleft().update_id
            self.dropped_update_ids.add(dropped)
            self._redelivered.discard(dropped)
            self._changed()
        batch: list[QueuedUpdate] = []
        for queued in itertools.islice(self._updates, max(1, min(limit, 100))):
            if queued.raw and batch:
                break
            batch.append(queued)
            if queued.raw:
                queued.deliveries += 1
                break
        return [q.payload for q in batch]

    async def get_updates(self, offset: int | None, limit: int, seconds: float) -> list[dict[str, Any]]:
        """getUpdates: confirm everything below ``offset``, then long-poll up to ``seconds``."""
        if self.webhook is not None:
            raise SandboxApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if offset is not None and offset > 0:
            self.confirm(offset)
        batch = self._deliver(limit)
        if not batch and seconds > 0:
            await self.wait_until(lambda: bool(self._updates) or self.webhook is not None, seconds)
            if self.webhook is not None:
                # A long poll waiting when the webhook is set ends at once, as at Telegram.
                raise SandboxApiError(409, "Conflict: terminated by setWebhook request")
            batch = self._deliver(limit)
        return batch

    def pending_update_count(self) -> int:
        return len(self._updates)

    # ------------------------------------------------------------------ messages

    def chat(self, chat_id: Any) -> ChatState:
        """The private chat with a known user, or 400 "chat not found" like Telegram."""
        try:
            cid = int(chat_id)
        except (TypeError, ValueError):
            raise SandboxApiError(400, "Bad Request: chat not found") from None
        chat = self.chats.get(cid)
        if chat is None:
            raise SandboxApiError(400, "Bad Request: chat not found")
        return chat

    def _new_message(self, chat: ChatState, *, from_bot: bool, **fields: Any) -> StoredMessage:
        chat.last_message_id += 1
        if chat.last_message_id > chat.reserved_message_id:
            chat.reserved_message_id = chat.last_message_id + MESSAGE_ID_BLOCK - 1
            self._save_users()
        self._seq += 1
        msg = StoredMessage(
            message_id=chat.last_message_id,
            chat_id=chat.user_id,
            from_bot=from_bot,
            date=self.now(),
            changed_seq=self._seq,
            **fields,
        )
        chat.messages[msg.message_id] = msg
        return msg

    def _touch(self, msg: StoredMessage) -> None:
        self._changed()
        msg.changed_seq = self._seq

    def message_model(self, msg: StoredMessage) -> types.Message:
        user = self.users[msg.chat_id]
        markup = None
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            markup = types.InlineKeyboardMarkup.model_validate(msg.reply_markup)
        photo = None
        if msg.photo_file_id:
            stored = self.files[msg.photo_file_id]
            photo = [
                types.PhotoSize(
                    file_id=stored.file_id,
                    file_unique_id=stored.file_unique_id,
                    width=stored.width,
                    height=stored.height,
                    file_size=len(stored.data),
                )
            ]
        document = None
        if msg.document_file_id:
            stored = self.files[msg.document_file_id]
            document = types.Document(
                file_id=stored.file_id,
                file_unique_id=stored.file_unique_id,
                file_name=stored.filename,
                mime_type=stored.mime_type,
                file_size=len(stored.data),
            )
        entities = None
        if msg.entities:
            entities = [types.MessageEntity.model_validate(e) for e in msg.entities]
        text_entities, caption_entities = (entities, None) if msg.text is not None else (None, entities)
        return types.Message(
            message_id=msg.message_id,
            date=msg.date,
            edit_date=msg.edit_date,
            chat=user.api_chat(),
            from_user=self.bot_sender if msg.from_bot else user.api_user(),
            text=msg.text,
            entities=text_entities,
            caption=msg.caption,
            caption_entities=caption_entities,
            reply_markup=markup,
            photo=photo,
            document=document,
            contact=types.Contact.model_validate(msg.contact) if msg.contact else None,
        )

    def message_dict(self, msg: StoredMessage) -> dict[str, Any]:
        """The control-API view of a message (what tests and the chat page read)."""
        photo = document = None
        if msg.photo_file_id:
            f = self.files[msg.photo_file_id]
            photo = {"file_id": f.file_id, "width": f.width, "height": f.height, "file_size": len(f.data)}
        if msg.document_file_id:
            f = self.files[msg.document_file_id]
            document = {
                "file_id": f.file_id,
                "file_name": f.filename,
                "mime_type": f.mime_type,
                "file_size": len(f.data),
            }
        body = msg.text if msg.text is not None else msg.caption
        return {
            "message_id": msg.message_id,
            "chat_id": msg.chat_id,
            "from_bot": msg.from_bot,
            "date": msg.date,
            # Plain text as Telegram keeps it, its entities (UTF-16 offsets), and the HTML that
            # aiogram's Message.html_text would rebuild from them.
            "text": msg.text,
            "caption": msg.caption,
            "entities": msg.entities,
            "html": to_html(body, msg.entities),
            "reply_markup": msg.reply_markup,
            "photo": photo,
            "document": document,
            "contact": msg.contact,
            "edited": msg.edited,
            "deleted": msg.deleted,
            "callback_answers": list(msg.callback_answers),
            "changed_seq": msg.changed_seq,
        }

    def messages(self, uid: int, after: int = 0, changed_since: int | None = None) -> list[dict[str, Any]]:
        """Messages of the chat with id > ``after`` (or changed after ``changed_since``), oldest first."""
        self.get_user(uid)
        chat = self.chats[uid]
        return [
            self.message_dict(m)
            for m in sorted(chat.messages.values(), key=lambda m: m.message_id)
            if m.message_id > after or (changed_since is not None and m.changed_seq > changed_since)
        ]

    async def wait_message(self, uid: int, after: int, seconds: float) -> list[dict[str, Any]]:
        """Wait for a bot message newer than ``after`` or a change to an older bot message."""
        self.get_user(uid)
        chat = self.chats[uid]
        start = self._seq

        def arrived() -> bool:
            return any(m.from_bot and (m.message_id > after or m.changed_seq > start) for m in chat.messages.values())

        await self.wait_until(arrived, seconds)
        return self.messages(uid, after, changed_since=start)

    def _check_can_send(self, chat: ChatState, method: str) -> None:
        if self.users[chat.user_id].blocked:
            raise SandboxApiError(403, "Forbidden: bot was blocked by the user")
        if method in SEND_METHODS:
            self.limiter.hit(chat.user_id)
            self.sent_by_method[method] = self.sent_by_method.get(method, 0) + 1

    def _apply_reply_markup(self, chat: ChatState, markup: dict[str, Any] | None) -> dict[str, Any] | None:
        """Track the user's reply keyboard; return the markup to keep on the message."""
        if not markup:
            return None
        if "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup.get("remove_keyboard"):
            chat.reply_keyboard = None
        return markup

    @staticmethod
    def _validate_markup(markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise SandboxApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        model: type[types.TelegramObject]
        if "inline_keyboard" in markup:
            model = types.InlineKeyboardMarkup
        elif "keyboard" in markup:
            model = types.ReplyKeyboardMarkup
        elif "remove_keyboard" in markup:
            model = types.ReplyKeyboardRemove
        elif "force_reply" in markup:
            model = types.ForceReply
        else:
            raise SandboxApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        try:
            parsed = dump(model.model_validate(markup))
        except ValueError:
            raise SandboxApiError(400, "Bad Request: can't parse reply keyboard markup JSON object") from None
        for row in parsed.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                    raise SandboxApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return parsed

    def _format(
        self, text: str | None, parse_mode: str | None, entities: Any, *, caption: bool, edit: bool
    ) -> tuple[str | None, list[dict[str, Any]] | None]:
        """Plain text and entities as Telegram keeps them, or Telegram's refusal."""
        try:
            plain, found = format_text(
                text, parse_mode, entities, find_user=self.mentioned_user, allow_empty=caption
            )
        except EmptyTextError:
            raise SandboxApiError(400, "Bad Request: message text is empty") from None
        except FormattingError as err:
            raise SandboxApiError(400, f"Bad Request: {err}") from None
        if caption and len(plain) > MAX_CAPTION_LENGTH:
            # Telegram words the same refusal differently for a new message and an edit.
            reason = "MEDIA_CAPTION_TOO_LONG" if edit else "message caption is too long"
            raise SandboxApiError(400, f"Bad Request: {reason}")
        if not caption and len(plain) > MAX_TEXT_LENGTH:
            raise SandboxApiError(400, f"Bad Request: {'MESSAGE_TOO_LONG' if edit else 'message is too long'}")
        return plain or None, found or None

    def send_message(
        self,
        chat_id: Any,
        text: str | None,
        *,
        parse_mode: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> types.Message:
        chat = self.chat(chat_id)
        plain, found = self._format(text, parse_mode, entities, caption=False, edit=False)
        markup = self._validate_markup(reply_markup)
        self._check_can_send(chat, "sendmessage")
        msg = self._new_message(
            chat,
            from_bot=True,
            text=plain,
            entities=found,
            reply_markup=self._apply_reply_markup(chat, markup),
        )
        self._changed()
        return self.message_model(msg)

    def store_file(self, data: bytes, filename: str | None, mime_type: str | None, kind: str) -> StoredFile:
        n = next(self._file_counter)
        file_id = f"{'AgAC' if kind == 'photo' else 'BQAC'}{n:06d}{secrets.token_hex(8)}"
        ext = ""
        if filename and "." in filename:
            ext = "." + filename.rsplit(".", 1)[1]
        elif kind == "photo":
            ext = ".jpg"
        width, height = _image_size(data) if kind == "photo" else (0, 0)
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=f"AQAD{n:06d}",
            data=data,
            filename=filename,
            mime_type=mime_type,
            kind=kind,
            file_path=f"{'photos' if kind == 'photo' else 'documents'}/file_{n}{ext}",
            width=width,
            height=height,
        )
        self.files[file_id] = stored
        return stored

    def get_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise SandboxApiError(400, "Bad Request: invalid file_id")
        return stored

    def file_by_path(self, file_path: str) -> StoredFile | None:
        return next((f for f in self.files.values() if f.file_path == file_path), None)

    def send_media(
        self,
        kind: str,
        chat_id: Any,
        *,
        upload: tuple[bytes, str | None, str | None] | None,
        file_id: str | None,
        caption: str | None = None,
        parse_mode: str | None = None,
        caption_entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> types.Message:
        """sendPhoto / sendDocument: ``upload`` is (bytes, filename, mime) or ``file_id`` is reused."""
        chat = self.chat(chat_id)
        plain, found = self._format(caption, parse_mode, caption_entities, caption=True, edit=False)
        markup = self._validate_markup(reply_markup)
        if upload is not None:
            if not upload[0]:
                raise SandboxApiError(400, "Bad Request: file must be non-empty")
            stored = None
        elif file_id:
            stored = self.files.get(file_id)
            if stored is None:
                raise SandboxApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        else:
            raise SandboxApiError(400, f"Bad Request: there is no {kind} in the request")
        self._check_can_send(chat, "sendphoto" if kind == "photo" else "senddocument")
        if stored is None:
            assert upload is not None
            stored = self.store_file(upload[0], upload[1], upload[2], kind)
        msg = self._new_message(
            chat,
            from_bot=True,
            caption=plain,
            entities=found,
            reply_markup=self._apply_reply_markup(chat, markup),
            photo_file_id=stored.file_id if kind == "photo" else None,
            document_file_id=stored.file_id if kind != "photo" else None,
        )
        self._changed()
        return self.message_model(msg)

    def _bot_message_to_edit(self, chat_id: Any, message_id: Any, inline_message_id: Any) -> StoredMessage:
        if inline_message_id:
            raise SandboxApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self.chat(chat_id)
        if self.users[chat.user_id].blocked:
            raise SandboxApiError(403, "Forbidden: bot was blocked by the user")
        try:
            msg = chat.messages.get(int(message_id))
        except (TypeError, ValueError):
            msg = None
        if msg is None or msg.deleted:
            raise SandboxApiError(400, "Bad Request: message to edit not found")
        if not msg.from_bot:
            raise SandboxApiError(400, "Bad Request: message can't be edited")
        return msg

    def _finish_edit(self, msg: StoredMessage, changes: dict[str, Any]) -> types.Message:
        if all(getattr(msg, k) == v for k, v in changes.items()):
            raise SandboxApiError(400, NOT_MODIFIED)
        for k, v in changes.items():
            setattr(msg, k, v)
        msg.edited = True
        msg.edit_date = self.now()
        self._touch(msg)
        return self.message_model(msg)

    def edit_text(
        self,
        chat_id: Any,
        message_id: Any,
        text: str | None,
        *,
        inline_message_id: Any = None,
        parse_mode: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> types.Message:
        msg = self._bot_message_to_edit(chat_id, message_id, inline_message_id)
        if msg.text is None:
            raise SandboxApiError(400, "Bad Request: there is no text in the message to edit")
        plain, found = self._format(text, parse_mode, entities, caption=False, edit=True)
        markup = self._inline_markup_for_edit(reply_markup)
        return self._finish_edit(msg, {"text": plain, "entities": found, "reply_markup": markup})

    def edit_caption(
        self,
        chat_id: Any,
        message_id: Any,
        caption: str | None,
        *,
        inline_message_id: Any = None,
        parse_mode: str | None = None,
        caption_entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> types.Message:
        msg = self._bot_message_to_edit(chat_id, message_id, inline_message_id)
        if msg.text is not None:
            raise SandboxApiError(400, "Bad Request: there is no caption in the message to edit")
        plain, found = self._format(caption, parse_mode, caption_entities, caption=True, edit=True)
        markup = self._inline_markup_for_edit(reply_markup)
        return self._finish_edit(msg, {"caption": plain, "entities": found, "reply_markup": markup})

    def edit_reply_markup(
        self, chat_id: Any, message_id: Any, *, inline_message_id: Any = None, reply_markup: Any = None
    ) -> types.Message:
        msg = self._bot_message_to_edit(chat_id, message_id, inline_message_id)
        return self._finish_edit(msg, {"reply_markup": self._inline_markup_for_edit(reply_markup)})

    def _inline_markup_for_edit(self, reply_markup: Any) -> dict[str, Any] | None:
        markup = self._validate_markup(reply_markup)
        if markup is not None and "inline_keyboard" not in markup:
            raise SandboxApiError(400, "Bad Request: inline keyboard expected")
        if markup is not None and not markup["inline_keyboard"]:
            return None
        return markup

    def delete_message(self, chat_id: Any, message_id: Any) -> bool:
        chat = self.chat(chat_id)
        try:
            msg = chat.messages.get(int(message_id))
        except (TypeError, ValueError):
            msg = None
        if msg is None or msg.deleted:
            raise SandboxApiError(400, "Bad Request: message to delete not found")
        msg.deleted = True
        self._touch(msg)
        return True

    def answer_callback(
        self, callback_query_id: str | None, *, text: str | None, show_alert: bool, url: str | None
    ) -> bool:
        record = self.callbacks.get(callback_query_id or "")
        if record is None or record.answered:
            raise SandboxApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        record.answered = True
        record.answer = {
            "callback_query_id": record.id,
            "data": record.data,
            "text": text,
            "show_alert": show_alert,
            "url": url,
        }
        msg = self.chats[record.user_id].messages.get(record.message_id)
        if msg is not None:
            msg.callback_answers.append(record.answer)
            self._touch(msg)
        else:
            self._changed()
        return True

    def chat_action(self, chat_id: Any, action: str | None) -> bool:
        chat = self.chat(chat_id)
        if self.users[chat.user_id].blocked:
            raise SandboxApiError(403, "Forbidden: bot was blocked by the user")
        chat.chat_actions.append(action or "")
        return True

    def chat_full_info(self, chat_id: Any) -> types.ChatFullInfo:
        chat = self.chat(chat_id)
        user = self.users[chat.user_id]
        return types.ChatFullInfo(
            id=user.id,
            type="private",
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
            accent_color_id=user.id % 7,
            max_reaction_count=11,
            accepted_gift_types=types.AcceptedGiftTypes(
                unlimited_gifts=True,
                limited_gifts=True,
                unique_gifts=True,
                premium_subscription=True,
                gifts_from_channels=True,
            ),
        )

    # ------------------------------------------------------------------ commands & settings

    @staticmethod
    def _scope_key(scope: Any, language_code: str | None) -> tuple[str, str]:
        if isinstance(scope, dict):
            scope_type = str(scope.get("type") or "default")
            if "chat_id" in scope:
                scope_type += f":{scope['chat_id']}"
            if "user_id" in scope:
                scope_type += f":{scope['user_id']}"
        else:
            scope_type = "default"
        return scope_type, language_code or ""

    def set_commands(self, commands: Any, scope: Any, language_code: str | None) -> bool:
        if not isinstance(commands, list):
            raise SandboxApiError(400, "Bad Request: can't parse commands JSON object")
        try:
            parsed = [dump(types.BotCommand.model_validate(c)) for c in commands]
        except ValueError:
            raise SandboxApiError(400, "Bad Request: can't parse BotCommand") from None
        key = self._scope_key(scope, language_code)
        if parsed:
            self.commands[key] = parsed
        else:
            self.commands.pop(key, None)
        self._changed()
        return True

    def get_commands(self, scope: Any, language_code: str | None) -> list[types.BotCommand]:
        return [
            types.BotCommand.model_validate(c) for c in self.commands.get(self._scope_key(scope, language_code), [])
        ]

    def delete_commands(self, scope: Any, language_code: str | None) -> bool:
        self.commands.pop(self._scope_key(scope, language_code), None)
        self._changed()
        return True

    def commands_dict(self) -> list[dict[str, Any]]:
        return [
            {"scope": scope, "language_code": lang, "commands": cmds}
            for (scope, lang), cmds in sorted(self.commands.items())
        ]

    def set_menu_button(self, chat_id: Any, menu_button: Any) -> bool:
        button = menu_button if isinstance(menu_button, dict) else {"type": "default"}
        if chat_id is None or chat_id == "":
            self.default_menu_button = button
        else:
            self.chat(chat_id).menu_button = button
        return True

    def get_menu_button(self, chat_id: Any) -> dict[str, Any]:
        if chat_id is None or chat_id == "":
            return self.default_menu_button or {"type": "commands"}
        return self.chat(chat_id).menu_button or self.default_menu_button or {"type": "commands"}

    def set_bot_text(self, kind: str, language_code: str | None, value: str | None) -> bool:
        self.bot_texts.setdefault(kind, {})[language_code or ""] = value or ""
        return True

    def get_bot_text(self, kind: str, language_code: str | None) -> str:
        return self.bot_texts.get(kind, {}).get(language_code or "", "")

    # ------------------------------------------------------------------ webhook

    @property
    def webhook_url(self) -> str:
        return self.webhook.url if self.webhook is not None else ""

    def set_webhook(
        self,
        url: str | None,
        *,
        secret_token: str | None = None,
        max_connections: int | None = None,
        allowed_updates: list[str] | None = None,
        drop_pending_updates: bool = False,
    ) -> bool:
        """setWebhook: updates are POSTed to ``url`` from now on (bot/sandbox/webhook.py). An empty
        ``url`` removes the webhook. Unlike Telegram, plain http:// is accepted: the bot is local."""
        if not url:
            return self.delete_webhook(drop_pending_updates)
        if not re.match(r"^https?://[^\s/]+", url):
            raise SandboxApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if secret_token is not None and not WEBHOOK_SECRET_RE.fullmatch(secret_token):
            raise SandboxApiError(400, "Bad Request: secret token contains unallowed characters")
        connections = WEBHOOK_DEFAULT_CONNECTIONS if max_connections is None else max_connections
        self.webhook = Webhook(url, secret_token or None, min(max(connections, 1), WEBHOOK_MAX_CONNECTIONS),
                               allowed_updates)
        self.webhook_last_error = None
        if drop_pending_updates:
            self._drop_pending()
        self._changed()
        return True

    def delete_webhook(self, drop_pending_updates: bool) -> bool:
        self.webhook = None
        if drop_pending_updates:
            self._drop_pending()
        self._changed()
        return True

    def _drop_pending(self) -> None:
        if self._updates:
            self.confirm(self._updates[-1].update_id + 1)

    def webhook_info(self) -> types.WebhookInfo:
        hook = self.webhook
        error_date, error = self.webhook_last_error or (None, None)
        return types.WebhookInfo(
            url=self.webhook_url,
            has_custom_certificate=False,
            pending_update_count=self.pending_update_count(),
            last_error_date=error_date,
            last_error_message=error,
            max_connections=hook.max_connections if hook else None,
            allowed_updates=hook.allowed_updates if hook else None,
        )

    def webhook_due(self, now: float) -> list[QueuedUpdate]:
        """The updates to POST now: the oldest first, at most max_connections in flight; with one
        connection strictly in order (the next waits until the one before was answered 2xx)."""
        hook = self.webhook
        if hook is None or self._closing:
            return []
        in_flight = sum(1 for q in self._updates if q.in_flight)
        if hook.max_connections == 1:
            head = self._updates[0] if self._updates else None
            return [head] if head is not None and not head.in_flight and head.retry_at <= now else []
        due: list[QueuedUpdate] = []
        for queued in self._updates:
            if in_flight + len(due) >= hook.max_connections:
                break
            if not queued.in_flight and queued.retry_at <= now:
                due.append(queued)
        return due

    def next_webhook_retry(self) -> float | None:
        """When the earliest failed update may be tried again (monotonic), if one waits."""
        waiting = [q.retry_at for q in self._updates if not q.in_flight and q.webhook_attempts]
        return min(waiting) if waiting else None

    def webhook_delivered(self, queued: QueuedUpdate) -> None:
        """The bot answered 2xx: the update is delivered, as confirmed as getUpdates would make it."""
        queued.in_flight = False
        self.webhook_deliveries += 1
        self._settle(queued)

    def webhook_failed(self, queued: QueuedUpdate, error: str, now: float) -> None:
        """The POST failed or was answered otherwise than 2xx: try again later, or give up."""
        queued.in_flight = False
        queued.webhook_attempts += 1
        self.webhook_last_error = (self.now(), error)
        if queued.webhook_attempts >= self.webhook_max_attempts:
            self.dropped_update_ids.add(queued.update_id)
            self._settle(queued)
            return
        delay = min(self.webhook_retry_max, self.webhook_retry_base * 2 ** (queued.webhook_attempts - 1))
        queued.retry_at = now + delay
        self._changed()

    def _settle(self, queued: QueuedUpdate) -> None:
        """Take a delivered (or dropped) update out of the queue. Every update before the first one
        still queued is then confirmed; one settled ahead of others counts once they are settled."""
        index = next((i for i, q in enumerate(self._updates) if q is queued), None)
        if index is None:
            return
        del self._updates[index]
        following = self._updates[0].update_id if self._updates else self._next_update_id
        if index == 0 and following > queued.update_id:
            self.confirm(following)
        self._changed()

    def record_call(self, method: str) -> None:
        self.calls_by_method[method] = self.calls_by_method.get(method, 0) + 1

    def record_refusal(self, method: str, err: SandboxApiError) -> None:
        self.refused_calls.append((method, err.error_code, err.description))

    def set_rate_limits(self, global_rate: float | None, per_chat_rate: float | None) -> None:
        self.limiter.global_rate = global_rate
        self.limiter.per_chat_rate = per_chat_rate

    def rate_limits(self) -> dict[str, float | None]:
        return {"global": self.limiter.global_rate, "per_chat": self.limiter.per_chat_rate}

    def stats(self) -> dict[str, Any]:
        return {
            "sent_total": sum(self.sent_by_method.values()),
            "sent_by_method": dict(self.sent_by_method),
            "calls_by_method": dict(self.calls_by_method),
            "too_many_requests": self.limiter.too_many_requests,
            "max_per_chat_rate": self.limiter.max_per_chat_rate,
            "max_global_rate": self.limiter.max_global_rate,
            "rate_limits": self.rate_limits(),
            "pending_updates": self.pending_update_count(),
            "dropped_raw_updates": len(self.dropped_update_ids),
            "users": len(self.users),
            "webhook_url": self.webhook_url,
            "webhook_deliveries": self.webhook_deliveries,
        }

    # ------------------------------------------------------------------ user actions

    def _user_message(self, uid: int, **fields: Any) -> tuple[int, StoredMessage]:
        self.get_user(uid)
        msg = self._new_message(self.chats[uid], from_bot=False, **fields)
        message = self.message_model(msg)
        update_id = self._enqueue({"message": dump(message)})
        return update_id, msg

    def user_text(self, uid: int, text: str) -> dict[str, int]:
        if not text:
            raise ValueError("text is required")
        self.get_user(uid)
        seq = self._seq
        update_id, msg = self._user_message(uid, text=text, entities=found_entities(text))
        return {"update_id": update_id, "message_id": msg.message_id, "seq": seq}

    def user_contact(
        self,
        uid: int,
        *,
        phone_number: str | None = None,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> dict[str, int]:
        user = self.get_user(uid)
        contact = types.Contact(
            phone_number=phone_number or user.phone_number,
            first_name=first_name or user.first_name,
            last_name=last_name if first_name else (last_name or user.last_name),
            user_id=user_id if user_id is not None else user.id,
        )
        seq = self._seq
        update_id, msg = self._user_message(uid, contact=dump(contact))
        return {"update_id": update_id, "message_id": msg.message_id, "seq": seq}

    def user_document(
        self, uid: int, data: bytes, filename: str, mime_type: str | None, caption: str | None = None
    ) -> dict[str, Any]:
        self.get_user(uid)
        if not data:
            raise ValueError("the file is empty")
        stored = self.store_file(data, filename, mime_type or "application/octet-stream", "document")
        seq = self._seq
        update_id, msg = self._user_message(
            uid,
            document_file_id=stored.file_id,
            caption=caption or None,
            entities=found_entities(caption) if caption else None,
        )
        return {"update_id": update_id, "message_id": msg.message_id, "file_id": stored.file_id, "seq": seq}

    def user_callback(self, uid: int, message_id: int, data: str | None) -> dict[str, Any]:
        user = self.get_user(uid)
        msg = self.chats[uid].messages.get(message_id)
        if msg is None or msg.deleted or not msg.from_bot:
            raise SandboxLookupError(f"bot message {message_id} not found in chat {uid}")
        seq = self._seq
        query_id = f"{uid}{secrets.randbelow(10**9):09d}"
        self.callbacks[query_id] = CallbackRecord(id=query_id, user_id=uid, message_id=message_id, data=data)
        query = types.CallbackQuery(
            id=query_id,
            from_user=user.api_user(),
            chat_instance=str(-(uid * 7 + 3)),
            message=self.message_model(msg),
            data=data,
        )
        update_id = self._enqueue({"callback_query": dump(query)})
        return {"update_id": update_id, "callback_query_id": query_id, "seq": seq}

    def press(self, uid: int, button_text: str) -> dict[str, Any]:
        """Press a button by its text: the newest inline keyboard first, then the reply keyboard."""
        self.get_user(uid)
        chat = self.chats[uid]
        for msg in sorted(chat.messages.values(), key=lambda m: m.message_id, reverse=True):
            if msg.deleted or not msg.from_bot or not msg.reply_markup:
                continue
            for row in msg.reply_markup.get("inline_keyboard", []):
                for button in row:
                    if button.get("text") != button_text:
                        continue
                    if "callback_data" in button:
                        result = self.user_callback(uid, msg.message_id, button["callback_data"])
                        return {"kind": "callback", **result}
                    if "url" in button:
                        return {"kind": "url", "url": button["url"], "seq": self._seq}
                    raise SandboxLookupError(f"button {button_text!r} is not supported by the sandbox")
        if chat.reply_keyboard:
            for row in chat.reply_keyboard.get("keyboard", []):
                for button in row:
                    if button.get("text") != button_text:
                        continue
                    if button.get("request_contact"):
                        return {"kind": "contact", **self.user_contact(uid)}
                    return {"kind": "text", **self.user_text(uid, button_text)}
        raise SandboxLookupError(f"no button {button_text!r} in chat {uid}")

    def reply_keyboard(self, uid: int) -> dict[str, Any] | None:
        self.get_user(uid)
        return self.chats[uid].reply_keyboard
