"""Test doubles that stand in for time, never for our own code."""

import threading


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it; sleeps are recorded, never waited."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
