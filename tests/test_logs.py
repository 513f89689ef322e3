"""Structured logs: the update id on every record of an update, JSON lines, and no phone or ID number
in the output whatever the message, its arguments or an exception say."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date

import pytest
from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.logs import JsonFormatter, RedactFilter, TextFormatter, UpdateIdFilter, current_update_id, install, redact
from services.identity import make_id_number
from tests.harness import running_stack
from tests.helpers import ROOT, texts

DIGIT = re.compile("[0-9\uff10-\uff19]")
ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")  # repr()'s, from the noise
OPEN, CLOSE = "<<<", ">>>"  # around everything the test controls, to find it in the output

# --- what people write -----------------------------------------------------------------------------

def n_digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


separator = st.sampled_from(["", " ", "-", "\u00a0", "\u3000"])


@st.composite
def mobile(draw) -> str:
    number = "1" + draw(st.sampled_from("3456789")) + draw(n_digits(9))
    grouping = draw(st.sampled_from(["plain", "3-4-4", "3-8", "every"]))
    sep = draw(separator)
    if grouping == "3-4-4":
        number = sep.join((number[:3], number[3:7], number[7:]))
    elif grouping == "3-8":
        number = number[:3] + sep + number[3:]
    elif grouping == "every":
        number = "".join(c + draw(st.sampled_from(["", " ", "-"])) for c in number[:-1]) + number[-1]
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "+86-", "86", "0086", "0086 ", "(+86)", "(+86) ", "（+86）"]))
    if draw(st.booleans()) and prefix == "" and grouping == "plain":
        number = number.translate(str.maketrans("0123456789", "０１２３４５６７８９"))  # full-width, as typed
    return prefix + number


@st.composite
def fixed_line(draw) -> str:
    if draw(st.booleans()):  # a local number written as one: 6437 1234
        return draw(st.sampled_from("23456789")) + draw(n_digits(3)) + draw(st.sampled_from([" ", "-"])) + draw(
            n_digits(4))
    area = draw(st.sampled_from(["10", "21", "20", "755", "571", "25"]) | st.builds(
        lambda first, rest: first + rest, st.sampled_from("123456789"), n_digits(1) | n_digits(2)))
    local = draw(st.sampled_from("23456789")) + draw(n_digits(6) | n_digits(7))
    split = draw(st.sampled_from([None, 3, 4]))
    if split is not None:
        local = local[:split] + draw(st.sampled_from([" ", "-", ""])) + local[split:]
    sep = draw(separator)
    style = draw(st.sampled_from(["0{a}", "(0{a})", "+86 {a}", "+86-{a}", "0086 {a}"]))
    return style.format(a=area) + sep + local


@st.composite
def id_number(draw) -> str:
    kind = draw(st.sampled_from(["valid", "any18", "old15", "spaced"]))
    if kind == "old15":
        return draw(n_digits(15))
    if kind == "any18":
        return draw(n_digits(17)) + draw(st.sampled_from("0123456789Xx"))
    number = make_id_number(draw(n_digits(6)), draw(st.dates(date(1900, 1, 1), date(2025, 12, 31))),
                            draw(st.integers(0, 999)), draw(st.sampled_from("MF")))
    if kind == "spaced":
        sep = draw(st.sampled_from([" ", "-"]))
        return number[:6] + sep + number[6:14] + sep + number[14:]
    return number


secret = mobile() | fixed_line() | id_number()
# Random text with no digit of its own (so a digit in the output can only be a secret's) and no marker.
noise = st.text(st.characters(blacklist_characters="0123456789０１２３４５６７８９<>", blacklist_categories=["Cs"]),
                max_size=30)
joiner = noise.filter(lambda s: s != "")


@st.composite
def sentence(draw) -> tuple[str, list[str]]:
    """Noise with one to three secrets in it: (text, secrets)."""
    found = draw(st.lists(secret, min_size=1, max_size=3))
    parts = [draw(noise)]
    for i, value in enumerate(found):
        parts.append(value)
        parts.append(draw(joiner) if i < len(found) - 1 else draw(noise))
    return "".join(parts), found


def controlled(output: str) -> list[str]:
    """The parts of ``output`` that came from the test (between the markers)."""
    return re.findall(re.escape(OPEN) + "(.*?)" + re.escape(CLOSE), output, flags=re.S)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, dict[str, io.StringIO]]]:
    """A logger writing through a text and a JSON handler, each set up as configure_logging sets up
    the root handlers."""
    logger = logging.getLogger("tests.logs.property")
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [install(logging.StreamHandler(stream), fmt) for fmt, stream in streams.items()]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, streams
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True


def outputs(streams: dict[str, io.StringIO]) -> list[str]:
    """Everything the handlers wrote, the JSON decoded (its escapes would hide or invent digits)."""
    found = [streams["text"].getvalue()]
    for line in streams["json"].getvalue().splitlines():
        entry = json.loads(line)
        found += [entry["message"], entry.get("exc", "")]
    for stream in streams.values():
        stream.seek(0)
        stream.truncate()
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(said=sentence(), where=st.sampled_from(["message", "args", "repr", "exception", "int"]),
       number=st.integers(13_000_000_000, 19_999_999_999))
def test_no_phone_or_id_number_survives_into_the_log_output(capture, said, where, number):
    logger, streams = capture
    text, found = said
    wrapped = OPEN + text + CLOSE
    if where == "message":
        logger.warning(wrapped.replace("%", "%%"))
    elif where == "args":
        logger.info("resident typed %s (then %s)", wrapped, OPEN + found[0] + CLOSE)
    elif where == "repr":
        logger.info("payload %r", {"text": wrapped})
    elif where == "int":  # a mobile number held as an int
        logger.info("number " + OPEN + "%d" + CLOSE, number)
    else:
        try:
            raise ValueError(wrapped)
        except ValueError:
            logger.exception("could not parse")
    written = outputs(streams)
    parts = [part for out in written for part in controlled(out)]
    assert parts, written  # the markers made it (the test looks where the secrets are)
    for part in parts:
        assert not DIGIT.search(ESCAPE.sub("", part)), (found, part)


@pytest.mark.parametrize("value, masked", [
    ("13800138001", "[phone]"), ("+86 138 0013 8001", "[phone]"), ("138-0013-8001", "[phone]"),
    ("(+86)13800138001", "[phone]"), ("１３８００１３８００１", "[phone]"), ("021-6437 1234", "[phone]"),
    ("(0755) 8123 4567", "[phone]"), ("0571-872 1234", "[phone]"), ("+86 21 6437 1234", "[phone]"),
    ("6437 1234", "[phone]"),
    ("310104194503021124", "[id]"), ("31010419450302112X", "[id]"), ("310104450302112", "[id]"),
])
def test_known_forms_are_masked_and_other_numbers_kept(value, masked):
    assert redact(f"电话{value}，谢谢") == f"电话{masked}，谢谢"
    # What the logs need stays: update and chat ids, dates, times, counts, durations.
    kept = "update 812345678 chat 7123456789 at 2026-11-28 09:00:00, 1234 rows in 12.5 ms, 64371234"
    assert redact(kept) == kept


def test_a_record_outside_an_update_has_no_update_id_and_inside_one_has_it():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("13800138001",), None)
    UpdateIdFilter().filter(record)
    RedactFilter().filter(record)
    assert record.update_id is None and TextFormatter().format(record).endswith("INFO x: hello [phone]")
    token = current_update_id.set(812345678)
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
        UpdateIdFilter().filter(record)
    finally:
        current_update_id.reset(token)
    assert TextFormatter().format(record).endswith("INFO x [update 812345678]: hello")
    assert json.loads(JsonFormatter().format(record))["update_id"] == 812345678


def logging_router() -> Router:
    router = Router(name="tests.logs")
    log = logging.getLogger("tests.logs.e2e")

    @router.message(Command("logtest"), F.text)
    async def logtest(message: Message) -> None:
        log.info("resident typed %s", message.text)
        try:
            raise ValueError(f"cannot use {message.text}")
        except ValueError:
            log.exception("handler failed")
        await message.answer("ok")

    return router


async def test_every_record_of_an_update_carries_its_id_in_json_lines(tmp_path):
    stream = io.StringIO()
    handler = install(logging.StreamHandler(stream), "json")
    logger = logging.getLogger("tests.logs.e2e")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with running_stack(tmp_path, extra_routers=[logging_router()]) as stack:
            user = await stack.client.create_user("秀英", language_code="en")
            first = await user.send("/logtest 138 0013 8001")
            assert await texts(user) == "ok"
            second = await user.send("/logtest 310104194503021124")
        logger.info("after the updates")
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["message"], e.get("update_id")) for e in entries] == [
        ("resident typed /logtest [phone]", first["update_id"]),
        ("handler failed", first["update_id"]),
        ("resident typed /logtest [id]", second["update_id"]),
        ("handler failed", second["update_id"]),
        ("after the updates", None),
    ]
    assert "ValueError: cannot use /logtest [phone]" in entries[1]["exc"]
    assert all(e["level"] in ("INFO", "ERROR") and e["logger"] == "tests.logs.e2e" for e in entries)
    assert "0013" not in stream.getvalue() and "19450302" not in stream.getvalue()


def test_log_format_json_makes_the_command_line_log_json_lines():
    code = ("from bot.logs import configure_logging; import logging; configure_logging(False, 'json'); "
            "logging.getLogger('bot.x').info('call %s', '13800138001')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    [line] = result.stderr.splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "bot.x", "call [phone]")
