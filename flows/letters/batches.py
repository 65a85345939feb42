"""Letter batches: how many letters at a time, and which process renders which batch.

Batches bound memory (a rendered letter is ~12 KB: 1.2 GB for 100,000 at once) and let
delivery start while later batches are still being rendered by the second process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows.letters.render import with_bodies
from residency_rules.records import StudentRecord

if TYPE_CHECKING:
    from prefect.futures import PrefectConcurrentFuture

    from flows.letters.model import Letter

def batch_bounds(total: int, size: int, small_first: bool = False) -> list[tuple[int, int]]:
    """Split `total` students into batches of `size`; with small_first, a smaller first one.

    Delivery waits for the first batch, rendered here while the render process starts. When
    sending is the slow side (SMTP: ~0.8 ms a letter against ~0.35 to render), a smaller first
    batch lets it begin sooner and the process stays a batch ahead. To the outbox the two take
    about as long, and equal batches measured faster (20k: 25.5 s against 32.8 s, median of 3).
    """
    if total <= size:
        return [(0, total)] if total else []
    first = max(1, min(size, total // 10, 2000)) if small_first else size
    return [(0, first)] + [(i, min(i + size, total)) for i in range(first, total, size)]


def render_in_turn(
    count: int,
    here: Callable[[int], list[Letter]],
    there: Callable[[int], PrefectConcurrentFuture[list[Letter]]] | None,
    ahead: int = 2,
    share: bool = True,
) -> Iterator[list[Letter]]:
    """Yield every batch's letters, rendered here or by the render process, whichever is free.

    This process renders the first batch while the other one takes the last `ahead` and keeps
    that many queued, from the end. After each delivery this process takes the other's next
    batch if it is ready, else (with share) renders the next from the front itself: to the
    outbox, delivery is cheap and both processes render (a 20k run's letters and delivery
    8.6 -> 6.3 s). To a relay, sending is the slow side and this process's time is for it:
    without share, it waits for the other's batches, which then go in roster order.
    """
    todo = deque(range(count))
    away: deque[PrefectConcurrentFuture[list[Letter]]] = deque()

    def feed() -> None:
        while there is not None and todo and len(away) < ahead:
            away.append(there(todo.pop() if share else todo.popleft()))

    first = todo.popleft() if todo else None
    feed()
    if first is not None:
        yield here(first)
    while todo or away:
        if away and (not todo or not share or away[0].wrapped_future.done()):
            taken = away.popleft()
            feed()  # now, not after this batch is delivered: the other process must not idle
            yield taken.result()
        else:
            yield here(todo.popleft())


Batch = Sequence[StudentRecord]


def letters_in_batches(
    records: Batch,
    staging: Path,
    here: Callable[[Batch], list[Letter]],
    there: Callable[[Batch], PrefectConcurrentFuture[list[Letter]]] | None,
    *,
    size: int,
    relay: bool,
) -> Iterator[list[Letter]]:
    """Yield the roster's letters, a batch at a time, with their HTML and text in memory.

    here renders a batch in this process; there hands one to the render process (None: a
    roster of one batch, no second process); size: students per batch (ADVISING_LETTER_BATCH).
    To a relay the first batch is smaller and this process only delivers once it has rendered
    it (batch_bounds, render_in_turn).
    """
    bounds = batch_bounds(len(records), size, small_first=relay)
    batches = [records[a:b] for a, b in bounds]
    rendered = render_in_turn(
        len(batches),
        here=lambda k: here(batches[k]),
        there=(lambda k: there(batches[k])) if there is not None else None,
        share=not relay,
    )
    for letters in rendered:
        # Read here: in a worker thread, each read would wait for the GIL afresh.
        yield with_bodies(letters, staging)
