"""Provider rate limits shared by every process on every host: one budget per provider, however many command
copies run (CronJob parallelism, several cron hosts).

The budget is a GCRA schedule kept in one place: PostgreSQL by default (a row per provider in `ProviderQuota`), or
Redis when REDIS_URL is set. A process takes a block of tokens at once, a tenth of a second's worth, with one
statement that moves the provider's next free instant on by the block and returns the slots it got; the process then
hands those slots out to its senders, each waiting until its own. So the shared store sees a few statements a
second per process, whatever the rate, and the sum over every process never exceeds the rate. The database's clock
(or Redis's) is the reference: the slots are translated to this process's monotonic clock when they are taken.

SQLite (the embedded default, one machine) keeps the per-process limiter: there is no second host to share with.
"""

import logging
import threading
import time
from collections import deque

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

BLOCK_SECONDS = 0.1
# GCRA in Redis: the next free instant (seconds, Redis TIME) moves on by n * interval from max(itself, now).
REDIS_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(next_free, now) + tonumber(ARGV[2])
local finish = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(finish), 'EX', 3600)
return {tostring(start), tostring(now)}
"""
POSTGRES_TAKE = """
INSERT INTO notifications_providerquota (provider, next_free)
VALUES (%(provider)s, clock_timestamp() + make_interval(secs => %(pause)s) + make_interval(secs => %(span)s))
ON CONFLICT (provider) DO UPDATE SET next_free =
    GREATEST(notifications_providerquota.next_free, clock_timestamp()) + make_interval(secs => %(pause)s)
    + make_interval(secs => %(span)s)
RETURNING extract(epoch FROM next_free) - %(span)s, extract(epoch FROM clock_timestamp())
"""


class SharedRateLimiter:
    """Same interface as notifications.backends.http.RateLimiter (reserve, pause), one budget for all processes."""

    def __init__(self, *, provider: str, rate: float) -> None:
        self.provider = provider
        self.rate = rate
        self._interval = 1.0 / rate
        self._block = max(1, round(rate * BLOCK_SECONDS))
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()
        self._pause = 0.0
        self._offset: float | None = None
        self._store = _RedisStore(provider) if settings.REDIS_URL else _PostgresStore(provider)

    @property
    def interval(self) -> float:
        """Seconds between two slots."""
        return self._interval

    def reserve(self) -> float:
        """Book this process's next slot in the shared schedule (taking a block from the store when none is left);
        return how long to wait for it. A slot this process let pass (busy opening connections, say) is dropped,
        never used late: late slots would crowd the slots other processes use on time, and the provider would see
        more than the rate."""
        with self._lock:
            missed = time.monotonic() - self._interval
            while self._slots and self._slots[0] < missed:
                self._slots.popleft()
            if not self._slots:
                self._take_block()
            wait = self._slots.popleft() - time.monotonic()
        return wait if wait > 0 else 0.0

    def pause(self, seconds: float) -> None:
        """Hold every sender of every process back for `seconds` (a 429's Retry-After): the next block starts later."""
        with self._lock:
            self._pause = max(self._pause, seconds)
            self._slots.clear()

    def close(self) -> None:
        """Release the store's connection; the next block reopens it."""
        with self._lock:
            self._store.close()

    def _take_block(self) -> None:
        span = self._block * self._interval
        start, store_now = self._store.take(span=span, pause=self._pause)
        self._pause = 0.0
        # The store's clock read as this process's: the smallest offset seen so far (the reading least delayed on
        # its way back), kept from block to block, so a statement answered late never shifts one block against
        # the next and crowds their slots together.
        offset = time.monotonic() - store_now
        self._offset = offset if self._offset is None else min(self._offset, offset)
        local_start = start + self._offset
        self._slots.extend(local_start + index * self._interval for index in range(self._block))


class _PostgresStore:
    """The schedule in PostgreSQL, through a connection of its own (threads taking blocks share it under the lock)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.connection = connections.create_connection("default")
        self.connection.inc_thread_sharing()

    def take(self, *, span: float, pause: float) -> tuple[float, float]:
        with self.connection.cursor() as cursor:
            cursor.execute(POSTGRES_TAKE, {"provider": self.provider, "span": span, "pause": pause})
            start, now = cursor.fetchone()
        return float(start), float(now)

    def close(self) -> None:
        self.connection.close()


class _RedisStore:
    def __init__(self, provider: str) -> None:
        import redis

        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.key = f"auto-engagement:quota:{provider}"
        self.script = self.client.register_script(REDIS_SCRIPT)

    def take(self, *, span: float, pause: float) -> tuple[float, float]:
        start, now = self.script(keys=[self.key], args=[span, pause])
        return float(start), float(now)

    def close(self) -> None:
        self.client.close()


def shared_budget_available() -> bool:
    """Redis, or PostgreSQL: a store every process reaches. SQLite is one machine's file."""
    return bool(settings.REDIS_URL) or connections["default"].vendor == "postgresql"
