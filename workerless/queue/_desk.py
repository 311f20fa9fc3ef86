"""One queue's held takes in this process, oldest first, and the hand-over of a job to one."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from ._job import Job

__all__ = ["Desk"]


class _Waiter:
    __slots__ = ("done", "gone", "job")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.gone = False  # its take returned or was cancelled: hand it nothing
        self.done = trio.Event()


class Desk:
    """The held takes of one queue, served oldest first by the queue's watcher.

    A job is handed over inside trio's single thread, so a take either gets the job (and
    must answer or release it) or is marked gone first and is skipped: a job never goes to
    a take that can no longer return it.
    """

    def __init__(self, queue: str, seen: tuple[list[str], float]) -> None:
        self.queue = queue
        self.seen = seen  # the streams' last ids and the next due time, from the last take
        self.waiters: deque[_Waiter] = deque()

    def waiting(self) -> bool:
        """Whether a live take is held here (one that `hand` would serve)."""
        return any(not waiter.gone for waiter in self.waiters)

    def hand(self, job: Job) -> bool:
        """Give ``job`` to the oldest live take; False if none is left (release the job)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.gone:
                waiter.job = job
                waiter.gone = True
                waiter.done.set()
                return True
        return False

    def close(self) -> None:
        """Send every held take away empty-handed (the watcher stopped)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            waiter.gone = True
            waiter.done.set()

    async def wait(self, hold: float, release: Callable[[Job], Awaitable[None]]) -> Job | None:
        """Hold until a job is handed over (it is returned) or ``hold`` s pass (None).

        Cancelled after a job was handed over, the job is released (shielded) before the
        cancellation goes on.
        """
        waiter = _Waiter()
        self.waiters.append(waiter)
        try:
            with trio.move_on_after(hold):
                await waiter.done.wait()
        except BaseException:
            self._leave(waiter)
            if waiter.job is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await release(waiter.job)
            raise
        self._leave(waiter)
        return waiter.job

    def _leave(self, waiter: _Waiter) -> None:
        if not waiter.gone:
            waiter.gone = True
            self.waiters.remove(waiter)
