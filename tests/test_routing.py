"""Magic filters and state filters run on the event loop (bot.routing), and decide as before."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from aiogram import Dispatcher, F, Router
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Chat, Message, User

from bot.app import build_dispatcher
from bot.routing import magic_filters_inline
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
