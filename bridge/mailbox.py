"""A one-slot mailbox for a worker thread: the newest item wins.

The generation worker and the model loader both work on one thing at a time and only ever want the latest
request: a request that is still waiting when a newer one arrives is replaced (and handed back to the sender,
who counts or answers it). `take()` blocks until there is an item or the mailbox is closed.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class NewestWins(Generic[Item]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: Item | None = None
        self._open = True

    def put(self, item: Item) -> Item | None:
        """Leave `item` for the worker; returns the waiting item it replaced, if any."""
        with self._cond:
            replaced, self._pending = self._pending, item
            self._cond.notify()
        return replaced

    def take(self) -> Item | None:
        """The next item, waiting for one; None once the mailbox is closed."""
        with self._cond:
            while self._open and self._pending is None:
                self._cond.wait()
            if not self._open:
                return None
            item, self._pending = self._pending, None
            return item

    @property
    def waiting(self) -> bool:
        """An item is left and the worker has not taken it yet."""
        with self._cond:
            return self._pending is not None

    def close(self) -> None:
        """Wake the worker for good; a waiting item is dropped."""
        with self._cond:
            self._open = False
            self._pending = None
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._open = True
