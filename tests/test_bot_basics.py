"""The foundation end to end: /start, /lang, /help, buttons, unknown input, failures."""

from __future__ import annotations

import logging

import pytest
from aiogram import Router
from aiogram.filters import Command

from handlers.common import welcome_text
from services.i18n import translate, use_locale
from services.scope import Actor


async def test_start_welcomes_in_chinese_then_lang_switches_to_english(stack):
    user = await stack.client.create_user("小明", language_code="zh-hans")
    await user.send("/start")
    welcome, _privacy = await user.bot_messages_since_last_action()
    with use_locale("zh_Hans"):
        assert welcome["text"] == welcome_text(Actor(), "小明")

    await user.send("/lang")
    await user.press("English")
    texts = [m["text"] for m in await user.bot_messages_since_last_action()]
    assert any("Language set to English." in t for t in texts)

    await user.send("/help")
    help_text = (await user.last_message())["text"]
    assert "/help — What I can do" in help_text
    assert "/lang — Switch language" in help_text

    # remembered: a later update still gets English
    await user.send("/start")
    assert (await user.bot_messages_since_last_action())[0]["text"].startswith("Welcome to Community Cloud")


async def test_help_is_chinese_by_default(stack):
    user = await stack.client.create_user("李阿姨")
    await user.send("/help")
    text = (await user.last_message())["text"]
    assert translate("zh_Hans", "What I can do") in text
    assert "What I can do" not in text


async def test_lang_with_argument_and_bad_argument(stack):
    user = await stack.client.create_user("Tom", language_code="en")
    await user.send("/lang klingon")
    assert "/lang zh" in (await user.last_message())["text"]
    await user.send("/lang zh")
    await user.send("/help")
    assert translate("zh_Hans", "What I can do") in (await user.last_message())["text"]


async def test_unknown_command_and_free_text_get_polite_answers(stack):
    user = await stack.client.create_user("Ann", language_code="en")
    await user.send("/frobnicate")
    assert "don't know that command" in (await user.last_message())["text"]
    await user.send("hello there")
    assert "/help" in (await user.last_message())["text"]


async def test_menu_buttons_run_their_commands_for_those_allowed(stack):
    user = await stack.client.create_user("Ann", language_code="en")
    await user.send("/menu")
    labels = str((await user.last_message())["reply_markup"])
    assert "Help" in labels and "My data" in labels and "New notice" not in labels
    await user.press("❓ Help")
    assert "/help — What I can do" in (await user.last_message())["text"]
    await user.press("📄 My data")
    assert any("What we hold about you" in (m["text"] or "") for m in await user.bot_messages_since_last_action())
    # a staff-only menu item forged by a resident is refused and does nothing
    menu = await user.bot_messages()
    result = await user.callback(menu[-1]["message_id"], "menu:notice")
    assert "no longer valid" in stack.sandbox.callbacks[result["callback_query_id"]].answer["text"]


async def test_forged_callback_data_answers_politely(stack):
    user = await stack.client.create_user("Eve", language_code="en")
    await user.send("/menu")
    msg = await user.last_message()
    for forged in ("lang:xx", "garbage-data", "vr:1:a"):
        result = await user.callback(msg["message_id"], forged)
        answer = stack.sandbox.callbacks[result["callback_query_id"]].answer
        assert answer["text"] == "This button is no longer valid." and answer["show_alert"]
    await user.send("/help")
    assert "What I can do" in (await user.last_message())["text"]
    async with stack.session() as s:
        from sqlalchemy import select

        from services.models import Account

        assert (await s.scalar(select(Account).where(Account.telegram_id == user.id))).locale is None


def _boom_router() -> Router:
    r = Router(name="boom")

    async def boom(message) -> None:
        raise RuntimeError("handler failure with " + message.text.split()[-1])

    r.message.register(boom, Command("boom"))
    return r


@pytest.mark.parametrize("stack", [{"extra_routers": [_boom_router()]}], indirect=True)
async def test_handler_exception_is_answered_and_bot_keeps_serving(stack, caplog):
    user = await stack.client.create_user("Bob", language_code="en")
    with caplog.at_level(logging.ERROR):
        await user.send("/boom 13800138000")
    assert "something went wrong" in (await user.last_message())["text"]
    assert "13800138000" not in caplog.text
    assert "RuntimeError" in caplog.text
    await user.send("/help")
    assert "What I can do" in (await user.last_message())["text"]


async def test_malformed_updates_leave_the_bot_serving(stack):
    user = await stack.client.create_user("Cat", language_code="en")
    await stack.client.raw_update({"message": {"message_id": 999, "date": 0,
                                               "chat": {"id": user.id, "type": "private"}}}, wait=True)
    await stack.client.raw_update({"future_update_kind": {"x": 1}}, wait=True)
    await stack.client.raw_update({"message": {"message_id": 1000, "date": 0, "text": "/start",
                                               "chat": {"id": -5, "type": "group", "title": "g"}}}, wait=True)
    await user.send("/help")
    assert "What I can do" in (await user.last_message())["text"]


async def test_oversized_message_gets_polite_answer(stack):
    user = await stack.client.create_user("Dan", language_code="en")
    await user.send("x" * 4096)
    assert "/help" in (await user.last_message())["text"]


async def test_commands_registered_per_language(stack):
    user = await stack.client.create_user("Zed", language_code="en")
    await user.send("/help")  # polling has started, so startup (set_my_commands) has run
    commands = await stack.client.commands()
    flat = str(commands)
    assert "What I can do" in flat
    assert translate("zh_Hans", "What I can do") in flat


async def test_names_with_markup_are_escaped(stack):
    user = await stack.client.create_user("<b>Evil & Co</b>", language_code="en")
    await user.send("/start")
    welcome = (await user.bot_messages_since_last_action())[0]["text"]
    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in welcome
