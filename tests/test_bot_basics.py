"""The foundation end to end: /start, /lang, /help, buttons, unknown input, failures."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from aiogram import Router
from aiogram.filters import Command

from handlers.common import welcome_text
from services.i18n import translate, use_locale
from services.scope import Actor
from tests.helpers import HOSTILE, assert_shown_as_text, body, tr


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


async def test_names_with_markup_arrive_as_text(stack):
    user = await stack.client.create_user("<b>Evil & Co</b>", last_name=HOSTILE, language_code="en")
    await user.send("/start")
    welcome = (await user.bot_messages_since_last_action())[0]
    assert_shown_as_text(welcome, f"<b>Evil & Co</b> {HOSTILE}")
    # no bold, no link: nothing the name typed became formatting (Telegram itself finds the URL and /help)
    assert {e["type"] for e in welcome["entities"]} == {"url", "bot_command"}


@pytest.mark.parametrize(("first", "last", "lang", "shown"), [
    ("四", "张", "zh-hans", "张四"),  # Chinese: family name first, no space
    ("秀英", "王", "en", "王秀英"),  # a Chinese name stays whole and in its order in English too
    ("Anna", "Schmidt", "zh-hans", "Anna Schmidt"),
    ("Anna", None, "en", "Anna"),
])
async def test_greetings_use_the_whole_name(stack, first, last, lang, shown):
    user = await stack.client.create_user(first, last_name=last, language_code=lang)
    await user.send("/start")
    welcome = (await user.bot_messages_since_last_action())[0]["text"]
    assert welcome.startswith(tr(lang, "Welcome to Community Cloud, {name}!\n"
                                       "I connect residents with their neighbourhood committee: notices from the "
                                       "committee, and daily check-ins for elderly neighbours who live alone.\n"
                                       "Send /help to see what I can do.").format(name=shown))


async def test_welcome_and_help_promise_only_what_exists(stack):
    """The welcome names no feature that has no command (discussions, polls, benefits: only once they
    exist); every command /help lists is answered."""
    from handlers.commands import COMMANDS

    names = " ".join(c.name for c in COMMANDS)
    features = {"topic": ("discussion", "讨论", "议事"), "poll": ("poll", "投票"), "benefit": ("benefit", "福利")}
    for lang in ("en", "zh-hans"):
        user = await stack.client.create_user("Ann", language_code=lang)
        await user.send("/start")
        welcome = body((await user.bot_messages_since_last_action())[0]).lower()
        for command, words in features.items():
            if command not in names:
                assert not any(w in welcome for w in words), (lang, command, welcome)
    await user.send("/help")
    listed = [line.split(" — ")[0] for line in body(await user.last_message()).splitlines() if " — " in line]
    assert listed and set(listed) <= {f"/{c.name}" for c in COMMANDS}
    unknown = tr("zh-hans", "Sorry, I don't know that command. Send /help to see what I can do.")
    for command in listed:
        await user.send(command)
        assert unknown not in "\n".join(body(m) for m in await user.bot_messages_since_last_action()), command
        await user.send("/cancel")


async def test_command_list_is_published_per_chat_by_role(stack):
    """Telegram's "/" list: everyone gets the basic commands; a staff member's chat gets the staff ones
    as soon as the role is known (here: the staff invite), in their language."""
    from tests.helpers import make_staff
    from tests.seed import seed_registry

    await seed_registry(stack.sessions)
    staff = await make_staff(stack, lang="en")
    resident = await stack.client.create_user("Ann", language_code="en")
    await resident.send("/start")

    def names(scope: str) -> set[str]:
        found = [c["commands"] for c in stack.sandbox.commands_dict() if c["scope"] == scope]
        return {c["command"] for c in found[0]} if found else set()

    assert {"notice", "whois", "tags", "segments", "checkin_enrol"} <= names(f"chat:{staff.id}")
    assert "checkin" not in names(f"chat:{staff.id}")  # not enrolled in check-ins themselves
    assert "notice" not in names("default") and "help" in names("default")
    assert names(f"chat:{resident.id}") == set()  # nobody known yet: the default list applies
    await staff.send("/lang zh")
    [staff_list] = [c for c in stack.sandbox.commands_dict() if c["scope"] == f"chat:{staff.id}"]
    assert {"command": "notice", "description": translate("zh_Hans", "Write a notice to residents")} in \
        staff_list["commands"]


async def test_staff_menu_offers_lookups_tags_segments_and_enrolment(stack):
    from tests.helpers import make_staff, texts
    from tests.seed import seed_registry

    await seed_registry(stack.sessions)
    staff = await make_staff(stack, lang="en")
    await staff.send("/menu")
    labels = {b["text"] for row in (await staff.last_message())["reply_markup"]["inline_keyboard"] for b in row}
    assert {"🔎 Find a resident", "🏷 Tag dictionary", "👥 Saved segments", "➕ Enrol in check-ins",
            "🗞 Recent notices"} <= labels
    assert "☀️ My daily check-in" not in labels  # only for elders enrolled in check-ins
    await staff.press("🔎 Find a resident")
    assert "Send a name or a room" in await texts(staff)
    await staff.send("王秀英")
    assert "王秀英 · 3-2-201" in await texts(staff)
    await staff.send("王秀英")  # the lookup was answered: this is ordinary text again
    assert "王秀英 ·" not in await texts(staff)
    await staff.send("/menu")
    await staff.press("🏷 Tag dictionary")
    assert "Tag dictionary" in await texts(staff)
    await staff.send("/menu")
    await staff.press("👥 Saved segments")
    assert "No saved segments yet" in await texts(staff)
    await staff.send("/menu")
    await staff.press("➕ Enrol in check-ins")
    assert "/checkin_enrol" in await texts(staff)
    # a resident forging the staff lookup button gets nothing
    resident = await stack.client.create_user("Res", language_code="en")
    await resident.send("/menu")
    forged = await resident.callback((await resident.last_message())["message_id"], "menu:whois")
    assert "no longer valid" in stack.sandbox.callbacks[forged["callback_query_id"]].answer["text"]


async def test_residents_and_elders_get_their_own_command_lists(stack):
    from sqlalchemy import select

    from services import checkins as cs
    from services.models import Resident
    from tests.helpers import verify
    from tests.seed import ID_ZHAO, seed_registry

    await seed_registry(stack.sessions)
    user = await stack.client.create_user("桂兰", language_code="en", phone_number="+8613800138003")
    await verify(user, "赵桂兰", ID_ZHAO, "en")

    def names() -> set[str]:
        found = [c["commands"] for c in stack.sandbox.commands_dict() if c["scope"] == f"chat:{user.id}"]
        return {c["command"] for c in found[0]} if found else set()

    assert {"mydata", "forget", "help"} <= names() and not names() & {"checkin", "family", "notice", "pending"}
    async with stack.session() as s:  # the committee enrols her in daily check-ins
        zhao = await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))
        await cs.enrol_resident(s, zhao, now=datetime.now(UTC), cfg=stack.dp["checkin_config"])
        await s.commit()
    await user.send("/start")
    assert {"checkin", "family"} <= names() and "notice" not in names()
    await user.send("/menu")
    # The enrolment's notice to her goes through the outbox and may come in after the menu.
    menu = [m for m in await user.bot_messages_since_last_action() if m.get("reply_markup")]
    labels = {b["text"] for row in menu[-1]["reply_markup"]["inline_keyboard"] for b in row}
    assert {"☀️ My daily check-in", "👪 Family contacts"} <= labels
