"""The local Bot API sandbox, driven by a real aiogram Bot and Dispatcher."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNotFound, TelegramRetryAfter
from aiogram.methods import TelegramMethod
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    MenuButtonCommands,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.backoff import BackoffConfig
from aiohttp import web

from bot.sandbox import SANDBOX_KEY, Sandbox, create_sandbox_app
from bot.sandbox.client import SandboxClient, SandboxError, SandboxUser
from bot.sandbox.formatting import EmptyTextError, format_text, to_html
from bot.sandbox.state import SandboxApiError


@dataclass
class Server:
    sandbox: Sandbox
    base_url: str


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    sandbox = Sandbox()
    app = create_sandbox_app(sandbox)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Server(sandbox=app[SANDBOX_KEY], base_url=f"http://{host}:{port}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def bot(server: Server) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
    bot = Bot(token="42:sandbox", session=session)
    try:
        yield bot
    finally:
        await bot.session.close()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[SandboxClient]:
    """A control client for tests that drive the Bot API by hand (no bot confirms updates)."""
    async with SandboxClient(server.base_url, wait_for_bot=False) as client:
        yield client


@pytest.fixture
async def alice(client: SandboxClient) -> SandboxUser:
    return await client.create_user("Alice", language_code="en", last_name="Liddell")


# ---------------------------------------------------------------- Bot API basics


async def test_get_me_returns_the_community_cloud_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.first_name, me.is_bot) == (42, "community_cloud_bot", "Community Cloud", True)


async def test_users_get_increasing_ids_and_a_default_phone(client: SandboxClient) -> None:
    first = await client.create_user("张伟")
    second = await client.create_user("Bob", language_code="en", phone_number="+8613912345678")
    assert (first.id, second.id) == (100001, 100002)
    assert first.data["language_code"] == "zh-hans"
    assert first.phone_number.startswith("+86138000")
    assert second.phone_number == "+8613912345678"
    assert [u["id"] for u in await client.users()] == [100001, 100002]


async def test_send_message_with_inline_keyboard_shows_up_in_the_chat(bot: Bot, alice: SandboxUser) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]])
    sent = await bot.send_message(alice.id, "<b>Hello</b>, Alice", parse_mode="HTML", reply_markup=markup)

    assert sent.chat.id == alice.id
    assert sent.from_user is not None and sent.from_user.id == 42
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "yes"
    last = await alice.last_message()
    assert last is not None
    assert last["message_id"] == sent.message_id
    assert (last["text"], last["entities"]) == ("Hello, Alice", [{"type": "bold", "offset": 0, "length": 5}])
    assert last["html"] == "<b>Hello</b>, Alice"
    assert last["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"


async def test_message_ids_are_shared_between_user_and_bot(bot: Bot, alice: SandboxUser) -> None:
    said = await alice.send("hi")
    sent = await bot.send_message(alice.id, "hello")
    assert (said["message_id"], sent.message_id) == (1, 2)


async def test_sending_to_an_unknown_chat_is_chat_not_found(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "anyone?")


async def test_unknown_method_is_404(bot: Bot) -> None:
    class Teleport(TelegramMethod[bool]):
        __returning__ = bool
        __api_method__ = "teleportUser"

    with pytest.raises(TelegramNotFound, match="method not found"):
        await bot(Teleport())


async def test_method_names_are_case_insensitive_and_json_bodies_work(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/bot42:x/GETME") as resp:
            assert (await resp.json())["result"]["id"] == 42
        user = server.sandbox.create_user("Json")
        async with http.post(
            f"{server.base_url}/bot42:x/sendMessage", json={"chat_id": user.id, "text": "typed"}
        ) as resp:
            assert (await resp.json())["result"]["text"] == "typed"


# ---------------------------------------------------------------- editing and deleting


async def test_edit_message_text_changes_the_message_in_place(bot: Bot, alice: SandboxUser) -> None:
    sent = await bot.send_message(alice.id, "draft")
    edited = await bot.edit_message_text(text="final", chat_id=alice.id, message_id=sent.message_id)

    assert isinstance(edited, Message)
    assert edited.text == "final"
    [message] = await alice.messages()
    assert (message["text"], message["edited"]) == ("final", True)


async def test_edit_with_identical_content_is_not_modified(bot: Bot, alice: SandboxUser) -> None:
    sent = await bot.send_message(alice.id, "same")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="same", chat_id=alice.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=alice.id, message_id=sent.message_id + 10)


async def test_edit_reply_markup_and_caption(bot: Bot, alice: SandboxUser) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="a")]])
    sent = await bot.send_message(alice.id, "pick", reply_markup=markup)
    await bot.edit_message_reply_markup(chat_id=alice.id, message_id=sent.message_id, reply_markup=None)
    assert (await alice.last_message())["reply_markup"] is None  # type: ignore[index]

    photo = await bot.send_photo(alice.id, BufferedInputFile(tiny_png(), "p.png"), caption="before")
    changed = await bot.edit_message_caption(chat_id=alice.id, message_id=photo.message_id, caption="after")
    assert isinstance(changed, Message) and changed.caption == "after"


async def test_deleted_messages_are_marked_deleted(bot: Bot, alice: SandboxUser) -> None:
    sent = await bot.send_message(alice.id, "oops")
    assert await bot.delete_message(alice.id, sent.message_id) is True
    [message] = await alice.messages()
    assert message["deleted"] is True
    assert await alice.last_message() is None
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.id, sent.message_id)


# ---------------------------------------------------------------- formatting, as Telegram does it


async def test_html_becomes_plain_text_and_entities_in_utf16_code_units(bot: Bot, alice: SandboxUser) -> None:
    sent = await bot.send_message(
        alice.id,
        "😀 <b>bold <i>both</i></b> <u>u</u> <s>s</s> <tg-spoiler>sp</tg-spoiler> <code>c</code>\n"
        '<pre><code class="language-python">print(1)</code></pre>'
        '<a href="https://example.org/?a=1&amp;b=2">link</a> <a href="tg://user?id=42">bot</a>\n'
        "<blockquote>quote</blockquote><blockquote expandable>more</blockquote>"
        "&lt;b&gt; &amp; &quot;q&quot;",
        parse_mode="HTML",
    )
    text = "😀 bold both u s sp c\nprint(1)link bot\nquotemore<b> & \"q\""
    assert sent.text == text
    bot_user = {"id": 42, "is_bot": True, "first_name": "Community Cloud", "username": "community_cloud_bot"}
    expected = [
        # The emoji is two UTF-16 code units, so "bold" starts at 3. Styles are cut where another
        # style starts, as Telegram cuts them.
        {"type": "bold", "offset": 3, "length": 5},
        {"type": "bold", "offset": 8, "length": 4},
        {"type": "italic", "offset": 8, "length": 4},
        {"type": "underline", "offset": 13, "length": 1},
        {"type": "strikethrough", "offset": 15, "length": 1},
        {"type": "spoiler", "offset": 17, "length": 2},
        {"type": "code", "offset": 20, "length": 1},
        {"type": "pre", "offset": 22, "length": 8, "language": "python"},
        {"type": "text_link", "offset": 30, "length": 4, "url": "https://example.org/?a=1&b=2"},
        {"type": "text_mention", "offset": 35, "length": 3, "user": bot_user},
        {"type": "blockquote", "offset": 39, "length": 5},
        {"type": "expandable_blockquote", "offset": 44, "length": 4},
    ]
    assert [e.model_dump(exclude_none=True) for e in sent.entities or []] == expected
    [stored] = await alice.messages()
    assert (stored["text"], stored["entities"]) == (text, expected)
    # html is what aiogram's Message.html_text rebuilds from text and entities.
    assert stored["html"] == sent.html_text
    assert stored["html"].startswith("😀 <b>bold </b><b><i>both</i></b> <u>u</u>")
    assert stored["html"].endswith("&lt;b&gt; &amp; \"q\"")


async def test_links_commands_and_mentions_in_the_text_become_entities(bot: Bot, alice: SandboxUser) -> None:
    link = "https://t.me/community_cloud_bot?start=fam_ABC"
    sent = await bot.send_message(alice.id, f"Open {link}, or send /start. Ask @somebody #help")
    assert [(e.type, e.extract_from(sent.text or "")) for e in sent.entities or []] == [
        ("url", link), ("bot_command", "/start"), ("mention", "@somebody"), ("hashtag", "#help")
    ]
    await alice.send("/start hello https://example.org")
    [update] = await bot.get_updates()
    assert update.message is not None
    assert [(e.type, e.offset, e.length) for e in update.message.entities or []] == [
        ("bot_command", 0, 6), ("url", 13, 19)
    ]


async def test_a_link_without_href_links_its_own_text_like_telegram(bot: Bot, alice: SandboxUser) -> None:
    # Telegram does not refuse <a> without href: it takes the text as the link, or drops the link.
    sent = await bot.send_message(alice.id, "<a>https://example.org</a> <a>no link</a>", parse_mode="HTML")
    assert sent.text == "https://example.org no link"
    assert [e.model_dump(exclude_none=True) for e in sent.entities or []] == [
        {"type": "text_link", "offset": 0, "length": 19, "url": "https://example.org/"}
    ]


@pytest.mark.parametrize(
    ("markup", "reason"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("张 <p>x</p>", 'Unsupported start tag "p" at byte offset 4'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_broken_markup_is_refused_with_telegrams_error(
    bot: Bot, alice: SandboxUser, markup: str, reason: str
) -> None:
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(alice.id, markup, parse_mode="HTML")
    assert refused.value.message == f"Bad Request: can't parse entities: {reason}"
    assert await alice.messages() == []


async def test_captions_and_edits_are_parsed_too(bot: Bot, alice: SandboxUser) -> None:
    photo = await bot.send_photo(
        alice.id, BufferedInputFile(tiny_png(), "p.png"), caption="<i>Chart</i> &amp; notes", parse_mode="HTML"
    )
    assert (photo.caption, photo.caption_entities[0].type if photo.caption_entities else None) == (
        "Chart & notes", "italic"
    )
    changed = await bot.edit_message_caption(
        chat_id=alice.id, message_id=photo.message_id, caption="<b>New</b>", parse_mode="HTML"
    )
    assert isinstance(changed, Message)
    assert (changed.caption, changed.html_text) == ("New", "<b>New</b>")
    with pytest.raises(TelegramBadRequest, match="Unsupported start tag"):
        await bot.edit_message_caption(chat_id=alice.id, message_id=photo.message_id, caption="<x>", parse_mode="HTML")

    sent = await bot.send_message(alice.id, "draft")
    edited = await bot.edit_message_text(
        text="<b>final</b> &lt;3", chat_id=alice.id, message_id=sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and (edited.text, edited.html_text) == ("final <3", "<b>final</b> &lt;3")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="<strong>final</strong> &#60;3", chat_id=alice.id, message_id=sent.message_id, parse_mode="HTML"
        )
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.edit_message_text(text="<b>x", chat_id=alice.id, message_id=sent.message_id, parse_mode="HTML")
    assert refused.value.message == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    )
    assert (await alice.messages())[-1]["html"] == "<b>final</b> &lt;3"  # the refusal changed nothing


async def test_text_length_counts_characters_after_parsing(bot: Bot, alice: SandboxUser) -> None:
    await bot.send_message(alice.id, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")  # tags do not count
    await bot.send_message(alice.id, "😀" * 4096)  # characters, not UTF-16 code units
    with pytest.raises(TelegramBadRequest) as too_long:
        await bot.send_message(alice.id, "x" * 4097)
    assert too_long.value.message == "Bad Request: message is too long"
    sent = await bot.send_message(alice.id, "short")
    with pytest.raises(TelegramBadRequest) as edit_too_long:
        await bot.edit_message_text(text="y" * 4097, chat_id=alice.id, message_id=sent.message_id)
    assert edit_too_long.value.message == "Bad Request: MESSAGE_TOO_LONG"
    with pytest.raises(TelegramBadRequest) as caption_too_long:
        await bot.send_photo(alice.id, BufferedInputFile(tiny_png(), "p.png"), caption="c" * 1025)
    assert caption_too_long.value.message == "Bad Request: message caption is too long"
    assert [m["text"] and len(m["text"]) for m in await alice.messages()] == [4096, 4096, 5]


@pytest.mark.parametrize("text", ["", "   \n ", "<b> </b>", "<i></i>"])
async def test_empty_text_is_refused(bot: Bot, alice: SandboxUser, text: str) -> None:
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(alice.id, text, parse_mode="HTML")
    assert refused.value.message == "Bad Request: message text is empty"
    assert await alice.messages() == []


async def test_text_is_trimmed_like_telegram_trims_it(bot: Bot, alice: SandboxUser) -> None:
    sent = await bot.send_message(alice.id, "\n  <b>hi</b> there \r\n\n", parse_mode="HTML")
    assert (sent.text, sent.html_text) == ("hi there", "<b>hi</b> there")


async def test_callback_data_over_64_bytes_is_refused(bot: Bot, alice: SandboxUser) -> None:
    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="B", callback_data=data)]])

    await bot.send_message(alice.id, "fits", reply_markup=keyboard("数" * 21 + "x"))  # 64 bytes
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(alice.id, "too much", reply_markup=keyboard("数" * 22))  # 66 bytes
    assert refused.value.message == "Bad Request: BUTTON_DATA_INVALID"
    sent = await bot.send_message(alice.id, "edit me")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.edit_message_reply_markup(
            chat_id=alice.id, message_id=sent.message_id, reply_markup=keyboard("y" * 65)
        )
    assert [m["text"] for m in await alice.messages()] == ["fits", "edit me"]
    assert (await alice.last_message())["reply_markup"] is None  # type: ignore[index]


def test_html_text_of_any_formatting_parses_back_to_the_same_message() -> None:
    """What an edit from ``message.html_text`` relies on: parse → rebuild → parse changes nothing."""
    tags = [
        ("<b>", "</b>"), ("<i>", "</i>"), ("<u>", "</u>"), ("<s>", "</s>"), ("<code>", "</code>"),
        ("<pre>", "</pre>"), ("<tg-spoiler>", "</tg-spoiler>"), ('<a href="https://e.org/x?a=1&amp;b">', "</a>"),
        ('<a href="tg://user?id=42">', "</a>"), ("<blockquote>", "</blockquote>"),
        ("<blockquote expandable>", "</blockquote>"), ("<strong>", "</strong>"), ("<em>", "</em>"),
    ]
    leaves = ["x", "张", "😀", " ", "\n", "&lt;", "&amp;", "&quot;", "https://t.me/b?start=q", " /start ",
              "@somebody", "#tag", " a.com ", "$USD", "q@e.org"]
    rng = random.Random(2)

    def markup(depth: int) -> str:
        parts = []
        for _ in range(rng.randint(1, 4)):
            if depth < 4 and rng.random() < 0.5:
                start, end = rng.choice(tags)
                parts.append(start + markup(depth + 1) + end)
            else:
                parts.append(rng.choice(leaves))
        return "".join(parts)

    sandbox = Sandbox()
    parsed = 0
    for _ in range(1500):
        try:
            text, entities = format_text(markup(0), "HTML", None, find_user=sandbox.mentioned_user)
        except EmptyTextError:
            continue
        parsed += 1
        again = format_text(to_html(text, entities), "HTML", None, find_user=sandbox.mentioned_user)
        assert again == (text, entities)
    assert parsed > 1000


# ---------------------------------------------------------------- users across restarts


def test_user_ids_are_never_reused_after_a_restart(tmp_path: Path) -> None:
    first_run = Sandbox(data_dir=tmp_path)
    resident = first_run.create_user("张玉", language_code="zh-hans", phone_number="+8613900000001")
    first_run.set_blocked(resident.id, True)

    second_run = Sandbox(data_dir=tmp_path)  # the demo restarted with the same data directory
    newcomer = second_run.create_user("Visitor", language_code="en")
    assert newcomer.id != resident.id and newcomer.id > resident.id
    kept = second_run.get_user(resident.id)
    assert (kept.first_name, kept.phone_number, kept.blocked) == ("张玉", "+8613900000001", True)
    # Two sandboxes on one data directory do not hand out the same id either.
    assert first_run.create_user("Late").id == newcomer.id + 1
    assert Sandbox().create_user("No data dir").id == resident.id  # without one, ids start over


def test_message_ids_are_not_reused_after_a_restart(tmp_path: Path) -> None:
    first_run = Sandbox(data_dir=tmp_path)
    user = first_run.create_user("Alice")
    old = first_run.send_message(user.id, "an alert the bot may edit later")

    second_run = Sandbox(data_dir=tmp_path)
    new = second_run.send_message(user.id, "after the restart")
    assert new.message_id > old.message_id
    with pytest.raises(SandboxApiError, match="message to edit not found"):
        second_run.edit_text(user.id, old.message_id, "edited")


def test_update_ids_are_not_reused_after_a_restart(tmp_path: Path) -> None:
    """The bot acknowledges an update id it has handled before without handling it (exactly once):
    a restarted demo whose sandbox counted from 1 again had its visitors' first messages ignored."""
    first_run = Sandbox(data_dir=tmp_path)
    user = first_run.create_user("Alice")
    before = [first_run.user_text(user.id, f"/help {n}")["update_id"] for n in range(3)]

    second_run = Sandbox(data_dir=tmp_path)
    after = second_run.user_text(user.id, "/help")["update_id"]
    assert after > max(before)
    assert second_run.pending_update_count() == 1  # and the ids before it are not waiting for the bot

# ---------------------------------------------------------------- files


async def test_photo_and_document_uploads_can_be_downloaded_again(bot: Bot, alice: SandboxUser, server: Server) -> None:
    photo_msg = await bot.send_photo(alice.id, BufferedInputFile(tiny_png(3, 2), "chart.png"), caption="Chart")
    assert photo_msg.photo is not None
    size = photo_msg.photo[-1]
    assert (size.width, size.height) == (3, 2)

    doc_msg = await bot.send_document(alice.id, BufferedInputFile(b"a,b\n1,2\n", "report.csv"))
    document = doc_msg.document
    assert document is not None
    assert (document.file_name, document.mime_type, document.file_size) == ("report.csv", "text/csv", 8)

    again = await bot.send_document(alice.id, document.file_id)
    assert again.document is not None and again.document.file_id == document.file_id

    file = await bot.get_file(document.file_id)
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == b"a,b\n1,2\n"

    messages = await alice.messages()
    assert messages[0]["photo"]["file_id"] == size.file_id
    assert messages[1]["document"]["file_name"] == "report.csv"
    url = f"{server.base_url}/sandbox/files/{size.file_id}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert await resp.read() == tiny_png(3, 2)


async def test_user_can_send_a_document(bot: Bot, alice: SandboxUser) -> None:
    result = await alice.send_document("list.txt", b"milk\neggs\n")
    [update] = await bot.get_updates()
    assert update.update_id == result["update_id"]
    assert update.message is not None and update.message.document is not None
    assert update.message.document.file_name == "list.txt"
    downloaded = await bot.download(update.message.document.file_id)
    assert downloaded is not None and downloaded.read() == b"milk\neggs\n"


# ---------------------------------------------------------------- updates


async def test_get_updates_long_polls_until_a_user_writes(bot: Bot, alice: SandboxUser) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await alice.send("/start hello")

    [update] = await asyncio.wait_for(poll, 3)
    assert update.message is not None
    assert update.message.text == "/start hello"
    assert update.message.from_user is not None and update.message.from_user.language_code == "en"
    [entity] = update.message.entities or []
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 6)

    # Asking for the next offset confirms the update; it is not delivered again.
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []


async def test_pressing_an_inline_button_delivers_a_callback_and_records_the_answer(
    bot: Bot, alice: SandboxUser
) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Join", callback_data="join:7")]])
    sent = await bot.send_message(alice.id, "Event", reply_markup=markup)

    pressed = await alice.press("Join")
    assert pressed["kind"] == "callback"
    [update] = await bot.get_updates()
    query = update.callback_query
    assert isinstance(query, CallbackQuery)
    assert query.data == "join:7"
    assert query.message is not None and query.message.message_id == sent.message_id

    assert await bot.answer_callback_query(query.id, text="Joined!", show_alert=True) is True
    [answer] = (await alice.last_message())["callback_answers"]  # type: ignore[index]
    assert (answer["text"], answer["show_alert"]) == ("Joined!", True)
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query(query.id)


async def test_reply_keyboard_buttons_send_text_or_share_the_contact(bot: Bot, alice: SandboxUser) -> None:
    keyboard = ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text="Help")], [KeyboardButton(text="Share phone", request_contact=True)]],
        resize_keyboard=True,
    )
    await bot.send_message(alice.id, "Menu", reply_markup=keyboard)

    assert (await alice.press("Help"))["kind"] == "text"
    assert (await alice.press("Share phone"))["kind"] == "contact"
    text_update, contact_update = await bot.get_updates()
    assert text_update.message is not None and text_update.message.text == "Help"
    contact = contact_update.message.contact if contact_update.message else None
    assert contact is not None
    assert (contact.phone_number, contact.user_id) == (alice.phone_number, alice.id)

    await bot.send_message(alice.id, "Bye", reply_markup=ReplyKeyboardRemove())
    with pytest.raises(SandboxError) as missing:
        await alice.press("Help")
    assert missing.value.status == 404


async def test_share_contact_can_claim_another_phone(bot: Bot, alice: SandboxUser) -> None:
    await alice.share_contact(phone_number="+8613700000000", user_id=5)
    [update] = await bot.get_updates()
    assert update.message is not None and update.message.contact is not None
    assert (update.message.contact.phone_number, update.message.contact.user_id) == ("+8613700000000", 5)


# ---------------------------------------------------------------- limits and blocking


async def test_rate_limit_answers_429_with_retry_after(bot: Bot, alice: SandboxUser, client: SandboxClient) -> None:
    await client.set_rate_limits(per_chat=2)
    await bot.send_message(alice.id, "1")
    await bot.send_message(alice.id, "2")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(alice.id, "3")
    assert exc.value.retry_after >= 1

    stats = await client.stats()
    assert stats["too_many_requests"] == 1
    assert stats["max_per_chat_rate"] == 2
    assert stats["sent_by_method"] == {"sendmessage": 2}
    await client.set_rate_limits()
    await bot.send_message(alice.id, "fine again")


def test_global_rate_limit_uses_a_sliding_one_second_window() -> None:
    now = [100.0]
    sandbox = Sandbox(rate_limit_global=3, clock=lambda: now[0])
    users = [sandbox.create_user(f"U{i}") for i in range(4)]
    for user in users[:3]:
        sandbox.send_message(user.id, "hi")
        now[0] += 0.3
    with pytest.raises(SandboxApiError) as exc:
        sandbox.send_message(users[3].id, "hi")
    assert (exc.value.error_code, exc.value.description) == (429, "Too Many Requests: retry after 1")
    assert exc.value.retry_after == 1
    now[0] = 101.01  # the first send left the window
    sandbox.send_message(users[3].id, "hi")


async def test_blocked_user_makes_sends_forbidden(bot: Bot, alice: SandboxUser) -> None:
    await alice.block()
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(alice.id, "are you there?")
    [update] = await bot.get_updates()
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"

    await alice.unblock()
    await bot.send_message(alice.id, "welcome back")


# ---------------------------------------------------------------- other methods


async def test_commands_are_stored_per_scope_and_language(bot: Bot, client: SandboxClient) -> None:
    zh = [BotCommand(command="start", description="开始")]
    en = [BotCommand(command="start", description="Start"), BotCommand(command="help", description="Help")]
    await bot.set_my_commands(zh, scope=BotCommandScopeAllPrivateChats(), language_code="zh-hans")
    await bot.set_my_commands(en, scope=BotCommandScopeAllPrivateChats(), language_code="en")

    stored_en = await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="en")
    assert [(c.command, c.description) for c in stored_en] == [("start", "Start"), ("help", "Help")]
    assert await bot.get_my_commands(scope=BotCommandScopeDefault()) == []
    stored = {(c["scope"], c["language_code"]): c["commands"] for c in await client.commands()}
    assert stored[("all_private_chats", "zh-hans")] == [{"command": "start", "description": "开始"}]

    await bot.delete_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="en")
    assert await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="en") == []


async def test_webhook_menu_button_chat_action_and_get_chat(bot: Bot, alice: SandboxUser, server: Server) -> None:
    assert await bot.set_webhook("https://example.invalid/hook") is True
    assert (await bot.get_webhook_info()).url == "https://example.invalid/hook"
    assert await bot.delete_webhook() is True
    assert (await bot.get_webhook_info()).url == ""

    assert await bot.set_chat_menu_button(menu_button=MenuButtonCommands()) is True
    assert await bot.send_chat_action(alice.id, "typing") is True
    chat = await bot.get_chat(alice.id)
    assert (chat.id, chat.type, chat.first_name) == (alice.id, "private", "Alice")
    assert server.sandbox.stats()["calls_by_method"]["sendchataction"] == 1


# ---------------------------------------------------------------- pages


async def test_index_and_chat_pages_render(server: Server, alice: SandboxUser) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/") as resp:
            assert resp.status == 200
            page = await resp.text()
            assert "Alice Liddell" in page
            assert f"/chat/{alice.id}" in page
        async with http.get(f"{server.base_url}/chat/{alice.id}") as resp:
            assert resp.status == 200
            page = await resp.text()
            assert "Alice Liddell" in page
            assert "never reaches the real Telegram" in page
        async with http.get(f"{server.base_url}/chat/1") as resp:
            assert resp.status == 404
        async with http.post(
            f"{server.base_url}/users",
            data={"first_name": "Wang", "language_code": "en"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/chat/100002"


async def test_pages_use_the_given_translations(server: Server) -> None:
    class Shouting:
        def gettext(self, message: str) -> str:
            return message.upper()

        def ngettext(self, singular: str, plural: str, n: int) -> str:
            return (singular if n == 1 else plural).upper()

    runner = web.AppRunner(create_sandbox_app(translate=Shouting()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/") as resp:
            assert "SIMULATED USERS" in await resp.text()
    finally:
        await runner.cleanup()


async def test_user_document_upload_via_multipart(server: Server, alice: SandboxUser) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"%PDF-1.4", filename="notice.pdf")
    url = f"{server.base_url}/sandbox/api/users/{alice.id}/document"
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        assert resp.status == 200
    [message] = await alice.messages()
    assert message["document"]["mime_type"] == "application/pdf"
    assert base64.b64encode(server.sandbox.files[message["document"]["file_id"]].data) == b"JVBERi0xLjQ="


# ---------------------------------------------------------------- end to end with a Dispatcher


def echo_router() -> Router:
    router = Router(name="echo")
    background: set[asyncio.Task[None]] = set()

    @router.message(F.text == "/later")
    async def later(message: Message, bot: Bot) -> None:
        async def send_later() -> None:
            await asyncio.sleep(0.3)
            await bot.send_message(message.chat.id, "reminder")

        # Simulates the scheduler: a message the bot sends on its own, after the update was handled.
        task = asyncio.create_task(send_later())
        background.add(task)
        task.add_done_callback(background.discard)

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    @router.callback_query(F.data == "again")
    async def again(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("pressed")
        await query.answer("done")

    @router.callback_query(F.data == "ack")
    async def ack(query: CallbackQuery) -> None:
        # What an alert button does (handlers/checkins.py): add a line to the text the user saw.
        assert isinstance(query.message, Message)
        await query.message.edit_text(
            query.message.html_text + "\n— on it", parse_mode="HTML", reply_markup=query.message.reply_markup
        )
        await query.answer()

    return router


@pytest.fixture
async def polling(bot: Bot) -> AsyncIterator[Dispatcher]:
    dp = Dispatcher()
    dp.include_router(echo_router())
    task = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_as_tasks=False,
            polling_timeout=1,
            handle_signals=False,
            close_bot_session=False,
            # Short retry delays: the malformed-update test makes aiogram fail and retry.
            backoff_config=BackoffConfig(min_delay=0.1, max_delay=0.3, factor=1.2, jitter=0.05),
        )
    )
    try:
        yield dp
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(task, 5)


@pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")
async def test_dispatcher_echo_survives_malformed_updates(polling: Dispatcher, server: Server) -> None:
    async with SandboxClient(server.base_url) as sb:
        bob = await sb.create_user("Bob", language_code="en")
        await bob.send("hello")
        assert [m["text"] for m in await bob.bot_messages_since_last_action()] == ["echo: hello"]

        # An update type aiogram does not know, one from a chat the sandbox does not know (the
        # handler's reply fails), and one aiogram cannot even parse.
        assert await sb.raw_update({"future_kind": {"x": 1}}, wait=True)
        ghost = {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "boo"}
        assert await sb.raw_update({"message": ghost}, wait=True)
        broken = await sb.raw_update({"message": {"message_id": "not a number"}})
        assert await sb.wait_confirmed(broken) is False

        await bob.send("still there?")
        assert (await bob.last_message())["text"] == "echo: still there?"  # type: ignore[index]
        assert (await sb.stats())["dropped_raw_updates"] == 1


async def test_dispatcher_callback_edit_and_outbox(polling: Dispatcher, server: Server, bot: Bot) -> None:
    async with SandboxClient(server.base_url) as sb:
        carol = await sb.create_user("Carol")
        markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Again", callback_data="again")]])
        await bot.send_message(carol.id, "press me", reply_markup=markup)

        await carol.press("Again")
        [edited] = await carol.bot_messages_since_last_action()
        assert (edited["text"], edited["edited"]) == ("pressed", True)
        assert edited["callback_answers"][0]["text"] == "done"

        await carol.send("/later")
        assert await carol.bot_messages_since_last_action() == []
        reminder = await carol.wait_for_message(lambda m: m["text"] == "reminder", timeout=5)
        assert reminder["from_bot"] is True
        # Nothing else was sent: the chat holds exactly these bot messages.
        assert [m["text"] for m in await carol.bot_messages()] == ["pressed", "reminder"]
        assert (await sb.stats())["sent_by_method"] == {"sendmessage": 2}


async def test_editing_a_message_from_its_html_text_keeps_the_text_intact(
    polling: Dispatcher, server: Server, bot: Bot
) -> None:
    async with SandboxClient(server.base_url) as sb:
        duty = await sb.create_user("Duty")
        markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="On it", callback_data="ack")]])
        await bot.send_message(
            duty.id, "🆘 <b>张玉</b> needs help &amp; is &lt;alone&gt;", parse_mode="HTML", reply_markup=markup
        )

        await duty.press("On it")
        await duty.press("On it")
        [alert] = await duty.bot_messages()
        assert alert["text"] == "🆘 张玉 needs help & is <alone>\n— on it\n— on it"
        assert alert["entities"] == [{"type": "bold", "offset": 3, "length": 2}]
        assert alert["html"] == "🆘 <b>张玉</b> needs help &amp; is &lt;alone&gt;\n— on it\n— on it"


# ---------------------------------------------------------------- the chat page in a browser-like run

# A tiny DOM for the chat page's script, enough to render messages and click on them in Node.
PAGE_DOM_JS = r"""
const [base] = process.argv.slice(1);
const config = process.env.PAGE_CONFIG;
const script = require("fs").readFileSync(0, "utf8");
class Text { constructor(data) { this.data = data; this.parent = null; } get textContent() { return this.data; } }
class Element {
  constructor(tag) {
    this.tagName = tag; this.children = []; this.listeners = {}; this.dataset = {}; this.style = {};
    this.className = ""; this.parent = null;
    const self = this;
    this.classList = {
      add(c) { if (!self.className.split(" ").includes(c)) self.className = (self.className + " " + c).trim(); },
      remove(c) { self.className = self.className.split(" ").filter((x) => x !== c).join(" "); },
      toggle(c, on) { const has = self.className.split(" ").includes(c); if (on === undefined) on = !has;
                      if (on) this.add(c); else this.remove(c); },
    };
  }
  appendChild(child) { if (child.parent) child.parent.removeChild(child); child.parent = this;
                       this.children.push(child); return child; }
  removeChild(child) { this.children = this.children.filter((c) => c !== child); child.parent = null; }
  replaceChild(fresh, old) { this.children[this.children.indexOf(old)] = fresh; fresh.parent = this;
                             old.parent = null; }
  remove() { if (this.parent) this.parent.removeChild(this); }
  set textContent(value) { this.children = [];
                           if (value !== "" && value != null) this.appendChild(new Text(String(value))); }
  get textContent() { return this.children.map((c) => c.textContent).join(""); }
  addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
  click() { const event = { defaultPrevented: false, preventDefault() { this.defaultPrevented = true; } };
            (this.listeners.click || []).forEach((f) => f(event)); return event; }
  focus() {}
}
const ids = {};
for (const id of ["config", "log", "status", "reply-kb", "composer", "text", "file", "attach", "toast"]) {
  ids[id] = new Element("div");
}
ids.config.textContent = config;
global.document = { getElementById: (id) => ids[id], createElement: (tag) => new Element(tag),
                    createTextNode: (data) => new Text(data) };
const posts = [];
const realFetch = fetch;
global.fetch = (url, init) => {
  const response = realFetch(base + url, init);
  if (init && init.method === "POST") posts.push(response);
  return response;
};
global.setInterval = () => 0;
function serialise(node) {
  if (node instanceof Text) return node.data.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const attrs = (node.className ? ` class="${node.className}"` : "") + (node.href ? ` href="${node.href}"` : "");
  return `<${node.tagName}${attrs}>${node.children.map(serialise).join("")}</${node.tagName}>`;
}
function find(node, test) {
  if (node instanceof Text) return null;
  if (test(node)) return node;
  for (const child of node.children) { const found = find(child, test); if (found) return found; }
  return null;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  new Function(script)();
  for (let i = 0; i < 100 && ids.log.children.length === 0; i++) await sleep(50);
  const rendered = serialise(ids.log);
  const deepLink = find(ids.log, (n) => n.tagName === "a" && /start=/.test(n.href || ""));
  const clicked = deepLink ? deepLink.click().defaultPrevented : null;
  await Promise.all(posts);
  console.log(JSON.stringify({ rendered, clicked }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's script")
async def test_chat_page_renders_entities_as_text_and_opens_bot_deep_links(server: Server) -> None:
    sandbox = server.sandbox
    user = sandbox.create_user("Wang")
    link = "https://t.me/community_cloud_bot?start=fam_ABC"
    sandbox.send_message(
        user.id, f'<b>Family link</b>: <a href="{link}">open</a> &lt;script&gt;alert(1)&lt;/script&gt;',
        parse_mode="HTML",
    )
    async with aiohttp.ClientSession() as http, http.get(f"{server.base_url}/chat/{user.id}") as resp:
        page = await resp.text()
    config = page.split('<script type="application/json" id="config">', 1)[1].split("</script>", 1)[0]
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    node = await asyncio.create_subprocess_exec(
        "node", "-e", PAGE_DOM_JS, server.base_url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PAGE_CONFIG": config, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    out, err = await asyncio.wait_for(node.communicate(script.encode()), 30)
    assert node.returncode == 0, err.decode()
    result = json.loads(out)
    # Text is text: the escaped <script> stays characters, formatting comes from the entities.
    assert '<div class="body"><b>Family link</b>: <a href="' + link + '">open</a> &lt;script&gt;' in result["rendered"]
    assert "<script>" not in result["rendered"]
    # A t.me deep link to this bot is not opened: the user "starts" the bot with its parameter.
    assert result["clicked"] is True
    said = [m for m in sandbox.messages(user.id) if not m["from_bot"]]
    assert [(m["text"], m["entities"]) for m in said] == [
        ("/start fam_ABC", [{"type": "bot_command", "offset": 0, "length": 6}])
    ]


async def test_chat_page_has_one_contact_button_and_speaks_the_users_language() -> None:
    class Words:
        def __init__(self, transform):
            self.transform = transform

        def gettext(self, message: str) -> str:
            return self.transform(message)

        def ngettext(self, singular: str, plural: str, n: int) -> str:
            return self.transform(singular if n == 1 else plural)

    english, chinese = Words(str.upper), Words(lambda m: "中文:" + m)
    sandbox = Sandbox()
    app = create_sandbox_app(
        sandbox, translate=chinese, translations_for=lambda code: english if code.startswith("en") else chinese
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    en_user, zh_user = sandbox.create_user("Ann", language_code="en"), sandbox.create_user("王")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/chat/{en_user.id}") as resp:
                en_page = await resp.text()
            async with http.get(f"http://{host}:{port}/chat/{zh_user.id}") as resp:
                zh_page = await resp.text()
            async with http.get(f"http://{host}:{port}/", headers={"Accept-Language": "en-GB,en;q=0.8"}) as resp:
                index = await resp.text()
    finally:
        await runner.cleanup()
    assert '<html lang="en">' in en_page and "LOCAL SANDBOX: THIS CHAT IS SIMULATED" in en_page
    assert '<html lang="zh-hans">' in zh_page and "中文:Local sandbox" in zh_page
    assert "SIMULATED USERS" in index  # the list of users follows the browser's language
    # The only way to share a contact is the bot's own request_contact keyboard button.
    assert "contact" not in en_page.split("<form", 1)[1].split("</form>", 1)[0].lower()
    assert "innerHTML" not in en_page
