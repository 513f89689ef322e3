"""Magic filters and state filters run on the event loop (bot.routing) and decide as before; a button
skips the routers that cannot take it."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Chat, Message, Update, User

from bot.app import build_dispatcher
from bot.routing import ButtonPrefix, button_prefixes_first, magic_filters_inline
from bot.settings import Settings


class Form(StatesGroup):
    name = State()


def message(text: str) -> Message:
    return Message(message_id=1, date=datetime(2026, 1, 1), chat=Chat(id=5, type="private"),
                   from_user=User(id=5, is_bot=False, first_name="A"), text=text)


async def test_filters_decide_the_same_without_a_thread(monkeypatch):
    async def handler(event: Message) -> None:
        return None

    router = Router()
    router.message.register(handler, Form.name, F.text, ~F.text.startswith("/"))
    router.message.filter(F.chat.type == "private")
    dp = Dispatcher()
    dp.include_router(router)
    assert magic_filters_inline(dp) == 4
    assert magic_filters_inline(dp) == 0  # once is enough

    async def no_thread(*args, **kwargs):
        raise AssertionError("a filter went to a thread")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    registered = router.message.handlers[0]
    for text, state, expected in (("Wang", Form.name.state, True), ("/help", Form.name.state, False),
                                  ("Wang", None, False)):
        passed, _ = await registered.check(message(text), raw_state=state)
        assert passed is expected, (text, state)
    passed, _ = await router.message._handler.check(message("x"))
    assert passed


def test_the_bots_dispatcher_has_no_magic_or_state_filter_left_for_a_thread(tmp_path):
    dp = build_dispatcher(Settings(_env_file=None, bot_token="42:TEST", data_dir=tmp_path, secret_key="k"), None)
    left = [(each.name, observer.event_name) for each in dp.chain_tail for observer in each.observers.values()
            for handler in [*observer.handlers, observer._handler] for f in handler.filters or ()
            if not f.awaitable and (f.magic is not None or isinstance(f.callback, State))]
    assert left == []


@pytest.mark.parametrize("text", ["hello", "/start"])
async def test_a_plain_function_filter_still_runs_as_aiogram_runs_it(text):
    seen = []

    def plain(event: Message) -> bool:  # might block: aiogram keeps it off the loop
        seen.append(event.text)
        return True

    router = Router()
    router.message.register(lambda event: None, plain)
    magic_filters_inline(router)
    assert router.message.handlers[0].filters[0].awaitable is False
    passed, _ = await router.message.handlers[0].check(message(text))
    assert passed and seen == [text]


def button(data: str | None) -> CallbackQuery:
    return CallbackQuery(id="1", from_user=User(id=5, is_bot=False, first_name="A"), chat_instance="c", data=data,
                         message=message("buttons"))


async def test_a_button_skips_the_routers_that_cannot_take_it():
    """Every router whose button handlers all filter on callback data (its own and those below it) gets
    one first filter on the prefix; a router with a handler for any data gets none, its children do."""

    class Vote(CallbackData, prefix="pv"):
        poll: int

    class Odd(CallbackData, prefix="od", sep="|"):
        n: int

    taken: list[str] = []

    async def took(query: CallbackQuery) -> None:
        taken.append(query.data or "")

    polls, votes, odd, anything = Router(name="polls"), Router(name="votes"), Router(name="odd"), Router(name="any")
    votes.callback_query.register(took, Vote.filter())
    odd.callback_query.register(took, Odd.filter())
    anything.callback_query.register(took)  # takes any button: no prefix filter for it or above it
    polls.include_routers(votes, odd)
    top = Router(name="top")
    top.include_routers(polls, anything)
    assert button_prefixes_first(top) == 3  # polls, votes, odd
    assert button_prefixes_first(top) == 0  # once is enough

    def first(router: Router) -> ButtonPrefix | None:
        return next((f.callback for f in router.callback_query._handler.filters or ()
                     if isinstance(f.callback, ButtonPrefix)), None)

    assert first(top) is None and first(anything) is None
    assert first(polls).prefixes == {(":", "pv"), ("|", "od")}
    for data, passes in (("pv:3", True), ("od|4", True), ("od:4", False), ("pvx:3", False), ("", False),
                         (None, False)):
        assert await first(polls)(button(data)) is passes, data
    dp = Dispatcher()
    dp.include_router(top)
    bot = Bot("42:TEST")
    for data in ("pv:3", "od|4", "zz:1"):
        await dp.feed_update(bot, Update(update_id=1, callback_query=button(data)))
    assert taken == ["pv:3", "od|4", "zz:1"]  # the last by the handler of any data, past the filtered routers
    await bot.session.close()


def test_the_bots_routers_filter_buttons_on_their_prefixes(tmp_path):
    dp = build_dispatcher(Settings(_env_file=None, bot_token="42:TEST", data_dir=tmp_path, secret_key="k"), None)
    unfiltered = [each.name for each in dp.chain_tail if each.callback_query.handlers and not any(
        isinstance(f.callback, ButtonPrefix) for f in each.callback_query._handler.filters or ())]
    assert unfiltered == ["fallback"]  # the stale-button answer, for any data
