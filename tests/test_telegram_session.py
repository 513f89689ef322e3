"""The bot's Bot API session (bot.telegram_session): it keeps the answer models aiogram checks every
answer with, and sends a call without a file as JSON."""

from __future__ import annotations

import gc
import json

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import AnswerCallbackQuery, GetMyName, GetMyShortDescription, SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from aiohttp import web
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


async def test_a_call_without_a_file_goes_as_json_and_one_with_a_file_as_multipart():
    seen: list[tuple[str, str, object]] = []

    async def api(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            seen.append((method, request.content_type, await request.json()))
        else:
            seen.append((method, request.content_type, dict(await request.post())))
        message = MESSAGE | ({"document": {"file_id": "f", "file_unique_id": "u"}} if method == "sendDocument" else {})
        return web.json_response({"ok": True, "result": message})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    bot = Bot("42:TEST", session=BotSession(api=TelegramAPIServer.from_base(f"http://{host}:{port}")))
    try:
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="好", callback_data="ok:1")]])
        sent = await bot.send_message(5, "居委会通知：周二停水", reply_markup=keyboard, disable_notification=False)
        await bot.send_document(5, BufferedInputFile(b"a,b\n", filename="list.csv"), caption="名单")
    finally:
        await bot.session.close()
        await runner.cleanup()
    assert sent.message_id == 7
    (m1, type1, body1), (m2, type2, body2) = seen
    assert (m1, type1) == ("sendMessage", "application/json")
    assert body1 == {"chat_id": 5, "text": "居委会通知：周二停水", "disable_notification": False,
                     "reply_markup": {"inline_keyboard": [[{"text": "好", "callback_data": "ok:1"}]]}}
    assert (m2, type2) == ("sendDocument", "multipart/form-data")
    assert body2["caption"] == "名单" and body2["chat_id"] == "5"
