"""What finding a message's handler costs in the bot's dispatcher, with and without the message gates.

    python -m bench routing [--quick]

``bot.routing.message_gates_first`` gives a router whose message handlers each need a command or a
state one first filter on those; a message then skips the routers that cannot take it. Side by side in
one run, per kind of message, on the bot's own routers: the filter checks aiogram makes until a
handler's filters pass, and the time that takes. The handler itself is not run (it would need the
database); only the routing is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from datetime import datetime
from typing import Any

from aiogram import Bot, Router
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.types import Chat, Message, User

from bot.app import build_dispatcher
from bot.routing import MessageGate
from bot.settings import Settings

# (label, text, the chat's state)
MESSAGES = (("/topics", "/topics", None), ("/menu", "/menu", None), ("/help", "/help", None),
            ("a comment being written", "第1号：同意在三号楼旁加装充电桩。", "Writing:comment"),
            ("text in no state", "你好", None))


class _Found(Exception):
    """Raised in place of running the handler whose filters passed."""


def _private_router(gates: bool) -> Router:
    with tempfile.TemporaryDirectory() as tmp:
        dp = build_dispatcher(Settings(_env_file=None, bot_token="42:BENCH", data_dir=tmp, secret_key="bench"), None)
    if not gates:
        for each in dp.chain_tail:
            root = each.message._handler
            root.filters = [f for f in root.filters or () if not isinstance(f.callback, MessageGate)]
    return dp.sub_routers[0]  # private_chats: every handler is below it


async def _route(router: Router, bot: Bot, message: Message, state: str | None) -> None:
    with contextlib.suppress(_Found):
        await router.propagate_event("message", message, bot=bot, raw_state=state,
                                     event_from_user=message.from_user, event_chat=message.chat)


async def measure(n: int) -> dict[str, dict[str, Any]]:
    checks = 0
    check, call = HandlerObject.check, HandlerObject.call

    async def counted(self: HandlerObject, *args: Any, **kwargs: Any) -> Any:
        nonlocal checks
        checks += 1
        return await check(self, *args, **kwargs)

    async def found(self: HandlerObject, *args: Any, **kwargs: Any) -> Any:
        raise _Found

    bot = Bot("42:BENCH")
    routers = {"without": _private_router(False), "with": _private_router(True)}
    figures: dict[str, dict[str, Any]] = {}
    HandlerObject.check, HandlerObject.call = counted, found  # type: ignore[method-assign]
    try:
        for label, text, state in MESSAGES:
            message = Message(message_id=1, date=datetime(2026, 1, 1), chat=Chat(id=5, type="private"),
                              from_user=User(id=5, is_bot=False, first_name="A"), text=text)
            row: dict[str, Any] = {}
            for name, router in routers.items():
                checks = 0
                await _route(router, bot, message, state)
                row[f"checks_{name}"] = checks
                runs = []
                for _ in range(5):
                    start = time.perf_counter()
                    for _ in range(n):
                        await _route(router, bot, message, state)
                    runs.append((time.perf_counter() - start) / n * 1e6)
                row[f"us_{name}"] = round(statistics.median(runs), 1)
            figures[label] = row
    finally:
        HandlerObject.check, HandlerObject.call = check, call  # type: ignore[method-assign]
        await bot.session.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench routing")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(100 if args.quick else 1_000))
    print(f"{'message':<26} {'checks without':>15} {'checks with':>12} {'µs without':>11} {'µs with':>9}")
    for label, row in figures.items():
        print(f"{label:<26} {row['checks_without']:>15} {row['checks_with']:>12} {row['us_without']:>11.1f} "
              f"{row['us_with']:>9.1f}")
    print("checks: aiogram's filter checks until a handler's filters pass (routers' first filters included)")
    print(json.dumps({"bench": "routing", "quick": args.quick, "figures": figures}, ensure_ascii=False))
    return 0
