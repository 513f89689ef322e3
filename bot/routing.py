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

A button's update otherwise visits every router in turn, and each checks its handlers' filters one by
one (unpacking the callback data once per ``CallbackData`` filter) until one matches.
:func:`button_prefixes_first` gives each router whose buttons are all ``CallbackData`` (its own and
those of the routers below it) one first filter on the data's prefix, so a button skips the routers
that cannot take it; what is handled, and by whom, is unchanged. :func:`message_gates_first` does the
same for messages: a router whose message handlers each need a command, a state or a kind of content
(``F.contact``, ``F.document``; its own handlers and those below it) gets one first filter on the
commands, states and contents they take, so /topics or a comment being written skips the sixty-odd
handlers of the routers before the one that takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject, HandlerObject
from aiogram.filters import Command, Filter, StateFilter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from magic_filter import MagicFilter
from magic_filter.operations import GetAttributeOperation


def _on_the_loop(resolve: Callable[..., Any]) -> Callable[..., Any]:
    async def resolved(*args: Any, **kwargs: Any) -> Any:
        return resolve(*args, **kwargs)

    resolved.__wrapped__ = resolve  # type: ignore[attr-defined]  # what message_gates_first reads
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


class ButtonPrefix(Filter):
    """A router's first filter: the button's data starts with one of the prefixes its handlers take
    (``(separator, prefix)`` pairs, as ``CallbackData.unpack`` splits them). An aiogram ``Filter``, so
    it is awaited on the loop."""

    def __init__(self, prefixes: frozenset[tuple[str, str]]) -> None:
        self.prefixes = prefixes
        self.separators = frozenset(sep for sep, _ in prefixes)

    async def __call__(self, query: CallbackQuery) -> bool:
        data = query.data or ""
        return any((sep, data.split(sep, 1)[0]) in self.prefixes for sep in self.separators)


def button_prefixes_first(router: Router) -> int:
    """Give ``router`` and every router below it whose button handlers all filter on ``CallbackData`` a
    :class:`ButtonPrefix` first filter; returns how many routers got one. Call it once the routers are
    included."""
    added = 0

    def prefixes(each: Router) -> frozenset[tuple[str, str]] | None:
        """The prefixes of every button handler at and below ``each``; None if one takes any data."""
        nonlocal added
        found: set[tuple[str, str]] = set()
        below = [prefixes(sub) for sub in each.sub_routers]  # every router below gets its own filter
        for handler in each.callback_query.handlers:
            data = [f.callback.callback_data for f in handler.filters or ()
                    if isinstance(f.callback, CallbackQueryFilter)]
            if not data:
                return None
            found |= {(cls.__separator__, cls.__prefix__) for cls in data}
        if any(p is None for p in below):
            return None
        found = found.union(*(p for p in below if p is not None))
        if not any(isinstance(f.callback, ButtonPrefix) for f in each.callback_query._handler.filters or ()):
            each.callback_query.filter(ButtonPrefix(frozenset(found)))
            added += 1
        return frozenset(found)

    prefixes(router)
    return added


class MessageGate(Filter):
    """A router's first filter for messages: a command one of its handlers takes (``/name`` or
    ``/name@bot`` in the text or caption, any case), a state one of them waits in, or a content one of
    them needs (the message's ``contact``, ``document`` … is set). It lets through all that any of
    those handlers could take, and more: the handlers still decide."""

    def __init__(self, commands: frozenset[str], prefixes: frozenset[str], states: frozenset[str | None],
                 contents: frozenset[str] = frozenset()) -> None:
        self.commands = commands
        self.prefixes = prefixes
        self.states = states
        self.contents = contents

    async def __call__(self, message: Message, raw_state: str | None = None) -> bool:
        if raw_state in self.states or any(getattr(message, name, None) is not None for name in self.contents):
            return True
        text = message.text or message.caption
        if not text or text[0] not in self.prefixes:
            return False
        return text.split(maxsplit=1)[0][1:].partition("@")[0].casefold() in self.commands


_Gate = tuple[frozenset[str], frozenset[str], frozenset[str | None], frozenset[str]]


def _state_names(found: Any) -> frozenset[str | None] | None:
    """The states a state filter admits; None for any state, or for what is not a state filter."""
    if isinstance(found, StateFilter):
        names: set[str | None] = set()
        for each in found.states:
            admitted = _state_names(each)
            if admitted is None:
                return None
            names |= admitted
        return frozenset(names)
    if found is None or isinstance(found, str):
        return None if found == "*" else frozenset({found})
    if isinstance(found, State):
        return None if found.state == "*" else frozenset({found.state})
    group = type(found) if isinstance(found, StatesGroup) else found
    if isinstance(group, type) and issubclass(group, StatesGroup):
        return frozenset(group.__all_states_names__)
    return None


def _content(found: Any) -> str | None:
    """The attribute a magic filter of one attribute checks (``F.contact``: "contact"), else None."""
    magic = getattr(found, "__self__", None)  # a magic filter's callback is its bound ``resolve``
    if isinstance(magic, MagicFilter) and len(magic._operations) == 1:
        operation = magic._operations[0]
        if isinstance(operation, GetAttributeOperation):
            return operation.name
    return None


def _needs(handler: HandlerObject) -> _Gate | None:
    """What a message must be for ``handler`` to take it (one of its filters: a command of plain names,
    else a state, else a content); None if it has none of them."""
    filters = [getattr(f.callback, "__wrapped__", f.callback) for f in handler.filters or ()]
    none: frozenset[Any] = frozenset()
    for found in filters:
        if isinstance(found, Command) and all(isinstance(c, str) for c in found.commands):
            return frozenset(c.casefold() for c in found.commands), frozenset(found.prefix), none, none
    for found in filters:
        if isinstance(found, StateFilter | State):
            states = _state_names(found)
            if states is not None:
                return none, none, states, none
    for found in filters:
        if (content := _content(found)) is not None:
            return none, none, none, frozenset({content})
    return None


def message_gates_first(router: Router) -> int:
    """Give ``router`` and every router below it whose message handlers each need a command, a state or a
    content (:func:`_needs`) a :class:`MessageGate` first filter; returns how many routers got one. Call it
    once the routers are included."""
    added = 0

    def gate(each: Router) -> _Gate | None:
        nonlocal added
        below = [gate(sub) for sub in each.sub_routers]  # every router below gets its own filter
        needs = [_needs(handler) for handler in each.message.handlers]
        if any(n is None for n in [*needs, *below]):
            return None
        parts = [n for n in [*needs, *below] if n is not None]
        found = (frozenset().union(*(p[0] for p in parts)), frozenset().union(*(p[1] for p in parts)),
                 frozenset().union(*(p[2] for p in parts)), frozenset().union(*(p[3] for p in parts)))
        if not any(isinstance(f.callback, MessageGate) for f in each.message._handler.filters or ()):
            each.message.filter(MessageGate(*found))
            added += 1
        return found

    gate(router)
    return added
