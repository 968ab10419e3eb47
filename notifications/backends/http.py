"""Shared machinery for channel backends that call an HTTP provider (Twilio, FCM, and any later one).

A provider module supplies two callables: `send(message) -> requests.Response`, which makes one request, and
`classify(message, response) -> Result`, which turns the answer into a result. This module adds what every
provider needs around them: timeouts, bounded retries with exponential backoff and jitter (honouring
Retry-After), a rate limit per provider, and a bounded thread pool so a batch of thousands is not sent one
request at a time. Results come back in input order, one per message; a single bad message never raises.

Errors are classified by raising: `TransientError` when the provider provably did not act (the connection was
refused or its TLS handshake failed before the request was written, a 429, a 503): retried with backoff;
`UnknownOutcome` when it may have acted (a timeout or a reset after the request was written, any other 5xx): never
retried; `BatchError` when nothing more can be sent (e.g. rejected credentials): the batch stops. The backend's
circuit breaker, when the run sets one, sees every attempt and stops the calls once the provider keeps failing.
Clock, sleep and randomness are injectable so tests run on a fake clock without waiting.
"""

import datetime as dt
import email.utils
import logging
import random as random_module
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from engagement_site.logging import carry_context
from engagement_site.transport import request_not_written
from notifications.backends.base import ChannelBackend, CircuitBreaker, Message, Result, not_attempted
from notifications.backends.quota import SharedRateLimiter, shared_budget_available

logger = logging.getLogger(__name__)

USER_AGENT = "auto-engagement/1.0"

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Send = Callable[[Message], requests.Response]
Classify = Callable[[Message, requests.Response], Result]


class TransientError(Exception):
    """The provider may accept this message later (429, 5xx, timeout); retried with backoff."""

    def __init__(self, error: str, *, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after


class UnknownOutcome(Exception):
    """The provider may have acted on the request (it was written, and no answer says it was not processed)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class BatchError(Exception):
    """Nothing more can be sent in this batch (credentials rejected, no permission); the rest is not tried."""

    def __init__(self, error: str, *, retryable: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


@dataclass(frozen=True)
class HttpOptions:
    """Timeouts, retries and concurrency shared by every HTTP provider (CHANNEL_HTTP_* settings)."""

    timeout: float = 10.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    concurrency: int = 8

    @classmethod
    def from_settings(cls) -> "HttpOptions":
        return cls(
            timeout=float(settings.CHANNEL_HTTP_TIMEOUT),
            max_attempts=max(1, int(settings.CHANNEL_HTTP_MAX_ATTEMPTS)),
            backoff_base=float(settings.CHANNEL_HTTP_BACKOFF_BASE),
            backoff_max=float(settings.CHANNEL_HTTP_BACKOFF_MAX),
            retry_after_max=float(settings.CHANNEL_HTTP_RETRY_AFTER_MAX),
            concurrency=max(1, int(settings.CHANNEL_HTTP_CONCURRENCY)),
        )


class RateLimiter:
    """A token bucket (as GCRA): at most `rate` requests a second on average, bursts of at most `burst`.

    Thread-safe. `acquire()` reserves the next free slot under a lock and sleeps outside it, so waiting
    threads do not block each other's bookkeeping. A rate of 0 or less means no limit.
    """

    def __init__(self, *, rate: float, burst: int = 1, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        self.rate = rate
        self.burst = max(1, burst)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = float("-inf")

    def acquire(self) -> float:
        """Wait for a slot; return how long we waited."""
        if self._interval == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            theoretical = max(self._next_free, now)
            wait = theoretical - (self.burst - 1) * self._interval - now
            wait = wait if wait > 1e-9 else 0.0
            self._next_free = theoretical + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every sender back for `seconds` (the provider answered 429 with Retry-After)."""
        if self._interval == 0 or seconds <= 0:
            return
        with self._lock:
            self._next_free = max(self._next_free, self._clock() + seconds)


_shared_limiters: dict[tuple[str, float], RateLimiter] = {}
_shared_limiters_lock = threading.Lock()


def shared_rate_limiter(*, provider: str, rate: float) -> "RateLimiter | SharedRateLimiter":
    """One limiter per provider and rate for the whole process, so every backend instance shares the budget; on
    PostgreSQL or with REDIS_URL it is also shared with every other process (notifications.backends.quota)."""
    with _shared_limiters_lock:
        key = (provider, rate)
        if key not in _shared_limiters:
            shared = rate > 0 and shared_budget_available()
            _shared_limiters[key] = (
                SharedRateLimiter(provider=provider, rate=rate) if shared else RateLimiter(rate=rate)
            )
        return _shared_limiters[key]


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


# HTTP 429 is documented as "not processed" by every provider here; a provider module adds what its own
# documentation says (FCM: 503 UNAVAILABLE). See docs/provider-failures.md.
NOT_PROCESSED = frozenset({429})


def raise_for_transient_status(
    response: requests.Response, *, provider: str, not_processed: frozenset[int] = NOT_PROCESSED
) -> None:
    """Answers the provider documents as not processed: TransientError (carrying Retry-After). Any other 5xx
    leaves it open whether the message went out: UnknownOutcome."""
    status = response.status_code
    if status in not_processed:
        raise TransientError(
            f"{provider} answered HTTP {status}", retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500:
        raise UnknownOutcome(f"{provider} answered HTTP {status}; the message may have been sent")


def make_session(*, concurrency: int, auth: tuple[str, str] | None = None) -> requests.Session:
    """A Session whose connection pool fits the thread pool; requests' own retries stay off (we retry)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, concurrency), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if auth:
        session.auth = auth
    return session


class HttpDelivery:
    """Sends a batch through one provider: rate-limited, retried, concurrent, one Result per Message."""

    def __init__(
        self,
        *,
        provider: str,
        options: HttpOptions,
        limiter: RateLimiter,
        breaker: CircuitBreaker | None = None,
        sleep: Sleep = time.sleep,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        self.provider = provider
        self.options = options
        self.limiter = limiter
        self.breaker = breaker
        self._sleep = sleep
        self._random = random

    def backoff(self, *, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a Retry-After from the provider is a floor."""
        ceiling = min(self.options.backoff_max, self.options.backoff_base * 2 ** (attempt - 1))
        delay = ceiling / 2 + ceiling / 2 * self._random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def deliver(self, messages: Sequence[Message], *, send: Send, classify: Classify) -> list[Result]:
        aborted: list[BatchError] = []
        abort_lock = threading.Lock()

        def one(message: Message) -> Result:
            if aborted:
                if aborted[0].retryable and self.breaker is not None and not self.breaker.allow():
                    return not_attempted(message, self.breaker)
                return self._failed_by_abort(message, aborted[0])
            try:
                return self._deliver_one(message, send=send, classify=classify)
            except BatchError as exc:
                with abort_lock:
                    if not aborted:
                        aborted.append(exc)
                        logger.error(
                            "batch stopped",
                            extra={"provider": self.provider, "log_id": message.log_id, "error": exc.error},
                        )
                return self._failed_by_abort(message, exc)

        if self.options.concurrency == 1 or len(messages) <= 1:
            results = [one(message) for message in messages]
        else:
            workers = min(self.options.concurrency, len(messages))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"send-{self.provider}") as pool:
                results = list(pool.map(carry_context(one), messages))
        logger.info(
            "batch delivered",
            extra={
                "provider": self.provider,
                "messages": len(messages),
                "sent": sum(result.status == "sent" for result in results),
                "failed": sum(result.status == "failed" for result in results),
                "unknown": sum(result.status == "unknown" for result in results),
            },
        )
        return results

    def _failed_by_abort(self, message: Message, exc: BatchError) -> Result:
        """A retryable abort (the token endpoint unreachable, say) never reached the provider: each message it
        stops counts as a failed call for the breaker, and not as an attempt."""
        if exc.retryable:
            self._record(ok=False, error=exc.error)
        return Result(
            log_id=message.log_id,
            status="failed",
            error=exc.error,
            retryable=exc.retryable,
            attempted=not exc.retryable,
        )

    def _deliver_one(self, message: Message, *, send: Send, classify: Classify) -> Result:
        attempt, error = 0, ""
        while True:
            attempt += 1
            if self.breaker is not None and not self.breaker.allow():
                if attempt == 1:
                    return not_attempted(message, self.breaker)
                return self._gave_up(message, f"{error}; {self.breaker.reason}", attempt - 1)
            self.limiter.acquire()
            try:
                result = self._attempt(message, send=send, classify=classify)
            except TransientError as exc:
                error, retry_after = exc.error, exc.retry_after
                self._record(ok=False, error=error)
            except UnknownOutcome as exc:
                self._record(ok=False, error=exc.error)
                logger.warning("outcome unknown", extra={"provider": self.provider, "log_id": message.log_id})
                return Result(log_id=message.log_id, status="unknown", error=exc.error)
            else:
                self._record(ok=True)
                return result
            if retry_after is not None and retry_after > self.options.retry_after_max:
                return self._gave_up(message, f"{error}; Retry-After {retry_after:.0f}s is too long", attempt)
            if attempt >= self.options.max_attempts:
                return self._gave_up(message, error, attempt)
            if retry_after is not None:
                self.limiter.pause(retry_after)
            delay = self.backoff(attempt=attempt, retry_after=retry_after)
            logger.info(
                "retrying",
                extra={"provider": self.provider, "log_id": message.log_id, "attempt": attempt, "delay": delay},
            )
            self._sleep(delay)

    def _attempt(self, message: Message, *, send: Send, classify: Classify) -> Result:
        """One request and its classification; TransientError / UnknownOutcome / BatchError say what failed."""
        try:
            response = send(message)
        except requests.RequestException as exc:
            if isinstance(exc, requests.ConnectionError | requests.Timeout):
                if request_not_written(exc):
                    raise TransientError(f"could not connect to {self.provider} ({type(exc).__name__})") from exc
                raise UnknownOutcome(
                    f"{self.provider}: no answer after the request was sent ({type(exc).__name__}); "
                    "it may have been sent"
                ) from exc
            # A malformed URL or the like: every other message would fail the same way.
            raise BatchError(f"cannot send to {self.provider}: {type(exc).__name__}") from exc
        try:
            return classify(message, response)
        except (TransientError, UnknownOutcome, BatchError):
            raise
        except Exception as exc:
            logger.exception("unexpected answer", extra={"provider": self.provider, "log_id": message.log_id})
            raise UnknownOutcome(f"unexpected answer from {self.provider}: {type(exc).__name__}") from exc

    def _record(self, *, ok: bool, error: str = "") -> None:
        if self.breaker is not None:
            self.breaker.record(ok=ok, error=error)

    def _gave_up(self, message: Message, error: str, attempts: int) -> Result:
        logger.warning(
            "gave up", extra={"provider": self.provider, "log_id": message.log_id, "attempts": attempts, "error": error}
        )
        suffix = "attempt" if attempts == 1 else "attempts"
        return Result(
            log_id=message.log_id, status="failed", error=f"{error} (after {attempts} {suffix})", retryable=True
        )


class HttpChannelBackend(ChannelBackend):
    """A backend over one pooled requests session: `open()` sets `session` and `delivery`; subclasses give
    `_send` (one request) and `_classify` (its response as a Result). A batch sent without open() opens and
    closes around itself, like Django's email backends."""

    session: requests.Session | None = None
    delivery: HttpDelivery

    def __init__(
        self,
        channel: str,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.channel = channel
        self._clock = clock
        self._sleep = sleep
        self.session = None

    def _start(self, *, provider: str, rate: float, auth: tuple[str, str] | None = None) -> None:
        """Options, rate limiter, retrying delivery and pooled session for a provider. Tests inject a fake clock
        (and get a limiter of their own); otherwise every backend of the provider in this process shares one."""
        self.options = HttpOptions.from_settings()
        sleep = self._sleep or time.sleep
        limiter = (
            RateLimiter(rate=rate, clock=self._clock, sleep=sleep)
            if self._clock
            else shared_rate_limiter(provider=provider, rate=rate)
        )
        self.delivery = HttpDelivery(
            provider=provider, options=self.options, limiter=limiter, breaker=self.breaker, sleep=sleep
        )
        self.session = make_session(concurrency=self.options.concurrency, auth=auth)

    def _send(self, message: Message) -> requests.Response:
        raise NotImplementedError

    def _classify(self, message: Message, response: requests.Response) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
            # The shared budget's own database connection is not kept open between runs (it reopens when needed).
            if isinstance(self.delivery.limiter, SharedRateLimiter):
                self.delivery.limiter.close()

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        if self.session is not None:
            return self.delivery.deliver(messages, send=self._send, classify=self._classify)
        self.open()
        try:
            return self.delivery.deliver(messages, send=self._send, classify=self._classify)
        finally:
            self.close()
