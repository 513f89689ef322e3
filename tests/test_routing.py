"""Magic filters and state filters run on the event loop (bot.routing) and decide as before; a button
skips the routers that cannot take it, and so does a message."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import CallbackQuery, Chat, Contact, Message, Update, User

from bot.app import build_dispatcher
from bot.routing import ButtonPrefix, MessageGate, button_prefixes_first, magic_filters_inline, message_gates_first
from bot.settings import Settings


class Form(StatesGroup):
    name = State()


class Other(StatesGroup):
    first = State()
    second = State()


class Deep(StatesGroup):
    inside = State()


def message(text: str | None, caption: str | None = None, contact: Contact | None = None) -> Message:
    return Message(message_id=1, date=datetime(2026, 1, 1), chat=Chat(id=5, type="private"),
                   from_user=User(id=5, is_bot=False, first_name="A"), text=text, caption=caption, contact=contact)


CONTACT = Contact(phone_number="+8613800000000", first_name="A", user_id=5)


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


def gated_tree(taken: list[str]) -> Router:
    """Routers as the bot's are: commands, states, both, a group of states, a content, nested, and a router
    with a handler for any text and one for any message last (it gets no gate, nor does the router above
    it)."""

    def took(name: str):
        async def handler(event: Message) -> None:
            taken.append(name)
        return handler

    commands, states, contents, nested, inner, anything = (
        Router(name=n) for n in ("commands", "states", "contents", "nested", "inner", "any"))
    commands.message.register(took("start"), CommandStart())
    commands.message.register(took("topics"), Command("topics", "Talk", ignore_case=True), F.chat.id > 0)
    commands.message.register(took("bang"), Command("now", prefix="!"))
    states.message.register(took("name"), Form.name, F.text)
    states.message.register(took("other"), StateFilter(Other), F.text)
    states.message.register(took("cancel"), Command("cancel"), StateFilter(Form.name, None))
    contents.message.register(took("contact"), F.contact)
    contents.message.register(took("document"), F.document, F.caption.startswith("/import"))
    inner.message.register(took("inner"), F.text, Deep.inside)
    nested.include_router(inner)
    anything.message.register(took("any text"), F.text)
    anything.message.register(took("any message"))
    top = Router(name="top")
    top.include_routers(commands, states, contents, nested, anything)
    return top


def gate(router: Router) -> MessageGate | None:
    return next((f.callback for f in router.message._handler.filters or () if isinstance(f.callback, MessageGate)),
                None)


async def test_a_message_skips_the_routers_that_take_neither_its_command_nor_its_state():
    top = gated_tree([])
    magic_filters_inline(top)  # as the bot does first: the gate still reads the states behind it
    assert message_gates_first(top) == 5  # commands, states, contents, nested, inner; not any, nor top above it
    assert message_gates_first(top) == 0  # once is enough
    assert gate(top) is None and gate(top.sub_routers[4]) is None
    commands, states, contents, nested = (gate(r) for r in top.sub_routers[:4])
    assert commands.commands == {"start", "topics", "talk", "now"} and commands.prefixes == {"/", "!"}
    assert states.states == {Form.name.state, Other.first.state, Other.second.state}
    assert nested.states == {Deep.inside.state} and not nested.commands
    assert contents.contents == {"contact", "document"} and not contents.commands and not contents.states
    assert await contents(message(None, contact=CONTACT)) and await contents(message("/x", contact=CONTACT))
    assert not await contents(message("+8613800000000")) and not await contents(message(None, caption="/import"))
    cases = [(message("/topics"), None, True), (message("/TOPICS@bot x"), None, True), (message("!now"), None, True),
             (message("/now"), None, True),  # over-inclusive: the handler itself refuses it
             (message("/help"), None, False), (message("topics"), None, False), (message(" /topics"), None, False),
             (message(None, caption="/talk"), None, True), (message(None), None, False), (message(""), None, False)]
    for msg, state, expected in cases:
        assert await commands(msg, raw_state=state) is expected, (msg.text, msg.caption)
    assert await states(message("Wang"), raw_state=Form.name.state)
    assert await states(message("/cancel"), raw_state=None)
    assert not await states(message("Wang"), raw_state=None)
    assert not await nested(message("Wang"), raw_state=Other.first.state)
    assert await nested(message("Wang"), raw_state=Deep.inside.state)


async def test_the_gates_change_no_handler_a_message_reaches():
    """The same messages in the same states, through the routers with and without gates: each is taken by
    the same handler (or by none)."""
    texts = [None, "", "Wang", "/start", "/start fam_x", "/topics", "/Talk@bot now", "/TOPICS", "!now", "/now",
             "/cancel",
             "/help", "topics", "  ", "/", "!"]
    states = [None, Form.name.state, Other.first.state, Other.second.state, Deep.inside.state, "Elsewhere:x"]
    bot = Bot("42:TEST")
    bot._me = User(id=42, is_bot=True, first_name="B", username="bot")  # a mention is checked against it
    outcomes: list[list[str]] = []
    for with_gates in (False, True):
        taken: list[str] = []
        dp = Dispatcher()
        dp.include_router(gated_tree(taken))
        magic_filters_inline(dp)
        if with_gates:
            assert message_gates_first(dp) == 5
        cases = [(t, c, s) for t in texts for c in (None, CONTACT) for s in states]
        for update_id, (text, contact, state) in enumerate(cases):
            await dp.storage.set_state(StorageKey(bot_id=42, chat_id=5, user_id=5), state)
            before = len(taken)
            await dp.feed_update(bot, Update(update_id=update_id, message=message(text, contact=contact)))
            taken[before:] = [taken[before] if len(taken) > before else "-"]
        outcomes.append(taken)
    await bot.session.close()
    assert outcomes[0] == outcomes[1]
    assert {"start", "topics", "bang", "name", "other", "cancel", "contact", "inner", "any text",
            "any message"} == set(outcomes[0])


def test_the_bots_message_routers_are_gated(tmp_path):
    dp = build_dispatcher(Settings(_env_file=None, bot_token="42:TEST", data_dir=tmp_path, secret_key="k"), None)
    ungated = [each.name for each in dp.chain_tail if each.message.handlers and gate(each) is None]
    gated = [each.name for each in dp.chain_tail if gate(each) is not None]
    assert "discussions.residents" in gated and "common" in gated, gated
    assert "verification" in gated and "policies.staff" in gated, gated  # a contact; a file
    assert ungated == ["fallback"], ungated  # any text
