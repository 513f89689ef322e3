"""The bot's Bot API session keeps the answer models aiogram checks every answer with (bot.telegram_session)."""

from __future__ import annotations

import gc
import json

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import AnswerCallbackQuery, GetMyName, GetMyShortDescription, SendMessage
from pydantic._internal import _generics

from bot.telegram_session import BotSession

MESSAGE = {"message_id": 7, "date": 1700000000, "chat": {"id": 5, "type": "private"}, "text": "hi"}


class Garbage:
    """A reference cycle: only the cyclic collector frees it, as it frees pydantic's generic models."""

    def __init__(self) -> None:
        self.me = self


def models_made_over(session, calls, monkeypatch, rounds: int = 6) -> int:
    """How many pydantic models checking the answers to ``calls`` (method, result) ``rounds`` times, with
    a full garbage collection between rounds, made."""
    made = []
    build = _generics.create_generic_submodel

    def counting(*args, **kwargs):
        made.append(args[0])
        return build(*args, **kwargs)

    monkeypatch.setattr(_generics, "create_generic_submodel", counting)
    bot = Bot("42:TEST", session=session)
    for _ in range(rounds):
        for method, result in calls:
            checked = session.check_response(bot, method, 200, json.dumps({"ok": True, "result": result}))
            assert checked.ok and checked.result is not None
        garbage = [Garbage() for _ in range(100)]
        del garbage
        gc.collect()
    return len(made)


def test_answers_are_checked_without_rebuilding_their_models_after_a_collection(monkeypatch):
    calls = [(SendMessage(chat_id=5, text="hi"), MESSAGE), (AnswerCallbackQuery(callback_query_id="1"), True)]
    assert models_made_over(BotSession(), calls, monkeypatch) <= len(calls)  # once each at most: the first time


def test_a_plain_aiohttp_session_rebuilds_them_after_collections(monkeypatch):
    # Why BotSession exists (methods this bot never calls, so no BotSession in this process kept them):
    # should pydantic or aiogram keep these models one day, this fails and BotSession can go.
    calls = [(GetMyName(), {"name": "bot"}), (GetMyShortDescription(), {"short_description": "bot"})]
    assert models_made_over(AiohttpSession(), calls, monkeypatch) > 6
