"""An asyncio event loop in a thread of its own, for the sinks whose servers are asyncio libraries (asyncua,
pymodbus): the sink's thread hands a coroutine over and waits for its result with a deadline."""
from __future__ import annotations

import asyncio
import threading
from typing import Optional

from daemon.publish.sinks.base import SinkDown


class LoopThread:
    """Started on the first run(); close() runs the sink's shutdown coroutine, stops the loop and joins its thread.
    One sink's thread calls it; the loop's thread runs only the coroutines handed over."""

    def __init__(self, name: str, what: str):
        self._name = name        # the thread's name, e.g. "opcua-loop"
        self._what = what        # what a timeout says did not answer, e.g. "the OPC UA server"
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def run(self, coro, timeout_s: float):
        """The coroutine's result; SinkDown when it takes longer than timeout_s (the coroutine is cancelled)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise SinkDown(f"{self._what} did not answer within {timeout_s:.0f} s") from None

    def close(self, shutdown, timeout_s: float) -> None:
        """Runs shutdown() (a coroutine function) on the loop, then stops the loop and joins its thread."""
        if self._loop is None:
            return
        try:
            self.run(shutdown(), timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            self._loop.close()
            self._loop = None
