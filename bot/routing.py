"""Routing an update without a thread hop per filter.

aiogram calls a callback that is not a coroutine function through ``asyncio.to_thread``, because a
plain function might block. Magic filters (``F.text``, ``~F.text.startswith("/")``, ``F.contact``:
``MagicFilter.resolve``) and states given as filters (``Writing.comment``: ``State.__call__``) are such
callbacks, so every one aiogram checked on the way to a handler cost a trip to the default thread pool
and back, ten on the way to /help; under load they queue behind each other in that pool's few threads. Both only
compare attributes of the event or the state's name: they never block, and aiogram's own filter classes
(``Command``, ``StateFilter``, callback data) already run on the loop. :func:`magic_filters_inline`
runs these two kinds on the loop too; what they decide is unchanged. Handlers and any other plain
function are left as aiogram runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject, HandlerObject
from aiogram.fsm.state import State


def _on_the_loop(resolve: Callable[..., Any]) -> Callable[..., Any]:
    async def resolved(*args: Any, **kwargs: Any) -> Any:
        return resolve(*args, **kwargs)

    return resolved


def magic_filters_inline(router: Router) -> int:
    """Run the magic filters and state filters of ``router`` and every router below it on the event loop;
    returns how many filters that concerned. Call it once the routers are included (filters added later are not
    seen); calling it again changes nothing more."""
    changed = 0
    for each in router.chain_tail:
        for observer in each.observers.values():
            handlers: list[HandlerObject] = [*observer.handlers, observer._handler]  # _handler: router-wide filters
            for handler in handlers:
                for found in handler.filters or ():
                    if _magic(found):
                        found.callback = _on_the_loop(found.callback)
                        found.awaitable = True
                        changed += 1
    return changed


def _magic(found: FilterObject) -> bool:
    return not found.awaitable and (found.magic is not None or isinstance(found.callback, State))
