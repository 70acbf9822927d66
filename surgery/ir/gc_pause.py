"""The cyclic garbage collector paused while millions of long-lived objects are made (a graph
loaded, indexed, rewritten or saved), and those objects frozen out of its later scans."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_BIG = 100_000  # nodes from which a graph's objects are worth freezing out of the cyclic GC
_FREEZE_AFTER = 1_000_000  # tracked objects made during a pause that are worth freezing


@contextlib.contextmanager
def gc_paused(nodes: int) -> Iterator[None]:
    """Bulk construction of millions of objects: pause the cyclic GC (it would rescan them all).

    For a graph of `_BIG` nodes or more, when the pause made more than `_FREEZE_AFTER` tracked
    objects they are moved to the permanent generation (`gc.freeze`) before the GC resumes:
    the graph's objects hold no reference cycles but those a Graph breaks when it is freed (see
    `Graph.__del__`), so scanning them could free nothing, and at a million nodes the scans of
    the young generations would otherwise cost 7 s each. They are still freed by reference
    counting. (`gc.unfreeze` is never called: handing them back to the
    oldest generation crashes TensorRT's plugin registration later in the process.)

    Freezing takes every object the GC tracks, garbage not yet collected included, and frozen
    cyclic garbage is never freed: an exception caught before (a parser backtracking, say)
    keeps its frames, and through them the caller's locals, the graph among them. So such a
    pause starts with a full collection, which scans only what is not frozen yet: little, next
    to the graph's millions of objects.
    """
    was_enabled = gc.isenabled()
    big = was_enabled and nodes >= _BIG
    if big:
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if big and gc.get_count()[0] > _FREEZE_AFTER:
                gc.freeze()
            gc.enable()
