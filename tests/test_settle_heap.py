"""bot.cli.settle_heap: what the started bot made is left out of the collector's full passes."""

from __future__ import annotations

import gc
import weakref

from bot.cli import settle_heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_objects_alive_at_start_up_are_frozen_and_garbage_is_collected_first():
    gone = weakref.ref(Cycle())  # garbage in a cycle made before: collected, not frozen for ever
    kept = [Cycle() for _ in range(10)]
    try:
        settle_heap()
        assert gone() is None
        tracked = {id(o) for o in gc.get_objects()}  # the collector's generations; frozen ones are not in them
        assert not any(id(k) in tracked for k in kept) and gc.get_freeze_count() > len(kept)
    finally:
        gc.unfreeze()
    assert all(id(k) in {id(o) for o in gc.get_objects()} for k in kept)  # unfrozen: collectable again
