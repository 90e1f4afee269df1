"""A worker thread over a bounded queue that never blocks its producer: the base of the mapping
runtime, its semantics stage and the split semantics runtime. One bad item is counted and logged,
never the end of the worker."""

from __future__ import annotations

import collections
import logging
import threading
import traceback
from collections.abc import Callable, Sequence

__all__ = ["LatestQueue", "QueueWorker"]

_LOG = logging.getLogger("langgs_ros")


class LatestQueue:
    """Bounded FIFO whose ``put`` never blocks: when full, one item is dropped (counted): the
    oldest, or the one ``choose_drop(items)`` picks (an index into the waiting items followed by
    the new one; it runs under the queue's lock and must not wait on other locks)."""

    def __init__(self, maxsize: int, choose_drop: Callable[[Sequence[object]], int] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be >= 1")
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._choose_drop = choose_drop
        self._cond = threading.Condition()
        self._closed = False
        self._taken = 0  # items handed out by get() and not yet done()
        self.dropped = 0

    def put(self, item: object) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self.dropped += 1
                victim = 0 if self._choose_drop is None else self._choose_drop([*self._items, item])
                if victim >= len(self._items):
                    return  # the new item is the one to drop
                del self._items[victim]
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> object | None:
        """Oldest item, or None after ``timeout`` seconds or once closed. Call :meth:`done` when
        an item is handled."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            self._taken += 1
            return self._items.popleft()

    def done(self) -> None:
        """An item from :meth:`get` is handled."""
        with self._cond:
            self._taken = max(0, self._taken - 1)

    def backlog(self) -> int:
        """Items waiting or being handled."""
        with self._cond:
            return len(self._items) + self._taken

    def items(self) -> list[object]:
        """The waiting items, oldest first (a copy)."""
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        """Forget the waiting items (not counted as dropped)."""
        with self._cond:
            self._items.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._items.clear()
            self._taken = 0

    def __len__(self) -> int:
        return len(self._items)


class QueueWorker:
    """A worker thread over a :class:`LatestQueue`: :meth:`_handle` each item; :meth:`_idle` when
    the queue stays empty for :meth:`_idle_timeout` seconds. Subclasses keep a ``status`` with
    ``errors`` and ``last_error``, where an exception of one item is counted."""

    thread_name = "langgs-worker"

    def __init__(self, queue_size: int, choose_drop: Callable[[Sequence[object]], int] | None = None) -> None:
        self._logged: set[tuple[str, str, int]] = set()
        self._queue = LatestQueue(queue_size, choose_drop)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._queue.reopen()
        self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the worker after its current item (refinement stops at its next iteration);
        queued items are discarded. Returns False if the thread is still running after ``timeout`` s."""
        self._stop.set()
        self._queue.close()
        stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            stopped = not self._thread.is_alive()
        self._thread = None
        return stopped

    def process_pending(self) -> int:
        """Handle every queued item in this thread (tests and single-threaded use); returns how many."""
        n = 0
        while len(self._queue):
            item = self._queue.get(0)
            if item is not None:
                self._run(item)
                n += 1
        return n

    def _work(self) -> None:
        while not self._stop.is_set():
            self._run(self._queue.get(timeout=self._idle_timeout()))

    def _run(self, item: object | None) -> None:
        """Handle one item from the queue (or idle for None); any exception is counted, never raised."""
        try:
            if item is not None:
                self._handle(item)
            else:
                self._idle()
        except Exception as exc:  # noqa: BLE001 - one bad item must never stop the worker
            self._failed(exc)
        finally:
            if item is not None:
                self._queue.done()

    def _failed(self, exc: Exception) -> None:
        """Count an exception of one item and go on; its traceback is logged once per exception
        type and place (a frame that breaks the mapper every time must not flood the log)."""
        reason = f"{type(exc).__name__}: {exc}"
        self.status.errors += 1
        self.status.last_error = f"internal error while processing an item ({reason})"
        tb = traceback.extract_tb(exc.__traceback__)
        key = (type(exc).__name__, tb[-1].filename if tb else "", tb[-1].lineno if tb else 0)
        if key not in self._logged:
            self._logged.add(key)
            _LOG.error("%s: %s (logged once)\n%s", self.thread_name, reason,
                       "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def settled(self) -> bool:
        """No item waits and none is being handled."""
        return self._queue.backlog() == 0

    def backlog(self) -> int:
        """Items waiting or being handled."""
        return self._queue.backlog()

    def _handle(self, item: object) -> None:
        raise NotImplementedError

    def _idle_timeout(self) -> float:
        return 0.2

    def _idle(self) -> None:
        """Called when no item came within the idle timeout."""
