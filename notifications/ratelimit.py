"""Telegram's rate shared by every sender of one bot token, in Redis.

Telegram counts per bot: about 30 messages a second overall and one a second per chat, however
many processes send. Each worker's sender asks :class:`RedisRate` for a *slot* before each
message; one Lua script (atomic in Redis) books the next free slot on the bot's schedule and on the
chat's at once (GCRA: each key holds the theoretical arrival time of the next message, in
microseconds of Redis's own clock, so the machines' clocks need not agree):

- the bot's slots are ``1 / rate`` apart, whoever books them, so over any window of W seconds at
  most ``rate × W + 1`` slots are handed out (two workers at 25 msg/s share 25, not 50);
- a chat's slots are ``1.05 / per_chat_rate`` apart; when the chat is not free by the bot's next
  slot nothing is booked and the caller is told how long the chat stays busy (the sender hands the
  row back for that long instead of holding a global slot);
- a slot further ahead than ``horizon`` is not booked (everyone is waiting, e.g. after a flood
  wait): the caller asks again later, so sleeping workers do not pile up bookings;
- :meth:`RedisRate.pause` (Telegram answered 429 ``retry_after``) moves the bot's schedule past
  the pause for every worker.

A slot is a promise to send *at* that time; the sender sends when it arrives and books a new one
if it woke up more than one slot late, so its sends follow the booked spacing (see
``notifications.sender``). A key lives a minute past its last booking (a broadcast to 100,000
chats holds about 1,500 chat keys at a time). Keys carry the bot id in a hash tag (``{42}``): two bots on one Redis
never share a rate, and both keys of a call live in one Redis Cluster slot. Without Redis a sender
keeps its own per-process bucket (``OutboxSender`` with ``rate / OUTBOX_SENDERS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

# KEYS[1]: the bot's next free slot, KEYS[2]: the chat's next free slot (microseconds)
# ARGV: now (µs, "" = Redis TIME), slot interval, chat interval, horizon (µs)
# Returns {granted 0/1, wait µs, chat busy 0/1, slot µs}.
RESERVE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval, chat_interval, horizon = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if slot - now > horizon then
  return {0, slot - now - horizon, 0, slot}
end
local chat_free = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_free > slot then
  return {0, chat_free - now, 1, slot}
end
local next_slot, next_chat = slot + interval, slot + chat_interval
redis.call('SET', KEYS[1], string.format('%d', next_slot), 'PX', math.floor((next_slot - now) / 1000) + 60000)
redis.call('SET', KEYS[2], string.format('%d', next_chat), 'PX', math.floor((next_chat - now) / 1000) + 60000)
return {1, slot - now, 0, slot}
"""

# KEYS[1]: the bot's next free slot; ARGV: now (µs, "" = Redis TIME), pause (µs)
PAUSE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local until_ = now + tonumber(ARGV[2])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.floor(tonumber(ARGV[2]) / 1000) + 60000)
end
return until_
"""

# A little over 1/per_chat_rate: requests leave in order but may arrive a few ms apart.
CHAT_SPACING = 1.05


@dataclass(frozen=True, slots=True)
class Slot:
    """The answer to one booking: ``granted`` (send in ``wait`` seconds), or not: the chat is busy
    for ``wait`` seconds (``chat_busy``), or every slot within the horizon is taken (ask again in
    ``wait`` seconds). ``at``: the limiter's time of the (next) slot, in seconds."""

    granted: bool
    wait: float
    chat_busy: bool
    at: float


class RedisRate:
    """One bot token's send schedule in Redis, shared by every sender that uses the same keys."""

    def __init__(self, redis: Redis, *, bot_id: int, rate: float, per_chat_rate: float, horizon: float = 1.0,
                 prefix: str = "communitybot:outbox", owns_client: bool = False) -> None:
        if rate <= 0 or per_chat_rate <= 0:
            raise ValueError("rates must be positive")
        self.redis = redis
        self.rate = rate
        self.per_chat_rate = per_chat_rate
        self.interval = 1.0 / rate
        self._interval_us = max(1, round(1_000_000 / rate))
        self._chat_interval_us = max(1, round(1_000_000 * CHAT_SPACING / per_chat_rate))
        self._horizon_us = max(0, round(horizon * 1_000_000))
        self._key = f"{prefix}:{{{bot_id}}}"
        self._reserve = redis.register_script(RESERVE)
        self._pause = redis.register_script(PAUSE)
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisRate:
        """A limiter with its own client (closed by :meth:`close`)."""
        return cls(Redis.from_url(url), owns_client=True, **kwargs)

    def _chat_key(self, chat_id: int) -> str:
        return f"{self._key}:chat:{chat_id}"

    async def reserve(self, chat_id: int, now: float | None = None) -> Slot:
        """Book the bot's next slot for a message to ``chat_id`` (``now``: a test's clock, in seconds;
        production leaves it to Redis's clock)."""
        granted, wait, busy, at = await self._reserve(
            keys=[f"{self._key}:rate", self._chat_key(chat_id)],
            args=["" if now is None else str(round(now * 1_000_000)), self._interval_us, self._chat_interval_us,
                  self._horizon_us])
        return Slot(bool(granted), max(0, int(wait)) / 1_000_000, bool(busy), int(at) / 1_000_000)

    async def pause(self, seconds: float, now: float | None = None) -> None:
        """Telegram asked this bot to wait: no worker gets a slot before ``seconds`` from now."""
        await self._pause(keys=[f"{self._key}:rate"],
                          args=["" if now is None else str(round(now * 1_000_000)), round(seconds * 1_000_000)])

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
