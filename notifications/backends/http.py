"""Shared machinery for channel backends that call an HTTP provider (Twilio, FCM, and any later one).

A provider module supplies two callables: `request(message) -> HttpRequest`, the request that sends it, and
`classify(message, answer, request) -> Result`, which turns the provider's answer into a result. This module adds
what every provider needs around them: timeouts, bounded retries with exponential backoff and jitter (honouring
Retry-After), a rate limit per provider, and many requests in flight at once (engagement_site.curl: HTTP/2 streams
over a few kept connections where the provider speaks HTTP/2, a pool of HTTP/1.1 connections otherwise), so a batch
of thousands is not sent one request at a time. Results come back in input order, one per message; a single bad
message never raises.

The batch runs on the calling thread (engagement_site.curl.run_transfers): messages start as soon as a request
slot, the rate limit and their backoff allow; between starts it waits on the transfers in flight.

Errors are classified by raising: `TransientError` when the provider provably did not act (the connection was
refused or its TLS handshake failed before the request was written, a 429, a 503): retried with backoff;
`UnknownOutcome` when it may have acted (a timeout or a reset after the request was written, any other 5xx): never
retried; `BatchError` when nothing more can be sent (e.g. rejected credentials): the batch stops; `SendAgain` when
the same request should go out again at once (a token the provider rejected has just been refreshed). The backend's
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
from dataclasses import dataclass

from django.conf import settings

from engagement_site.curl import (
    AT_ONCE,
    Answer,
    CurlPool,
    HttpRequest,
    RateSlots,
    TransferError,
    http2_connections,
    run_transfers,
)
from notifications.backends.base import ChannelBackend, CircuitBreaker, Message, Result, not_attempted
from notifications.backends.quota import SharedRateLimiter, shared_budget_available

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
BuildRequest = Callable[[Message], HttpRequest]
Classify = Callable[[Message, Answer, HttpRequest], Result]


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


class SendAgain(Exception):
    """Send the same message again at once, not counted as an attempt (a rejected token was just refreshed)."""


@dataclass(frozen=True)
class HttpOptions:
    """Timeouts, retries and concurrency shared by every HTTP provider (CHANNEL_HTTP_* settings)."""

    timeout: float = 10.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    concurrency: int = 200

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

    `reserve()` books the next free slot and says how long to wait for it: the batch's scheduler starts that
    message then and sends others meanwhile. Thread-safe. A rate of 0 or less means no limit.
    """

    def __init__(self, *, rate: float, burst: int = 1, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free = float("-inf")

    @property
    def interval(self) -> float:
        """Seconds between two slots (0: no limit)."""
        return self._interval

    def reserve(self) -> float:
        """Book a slot; return how long to wait for it."""
        if self._interval == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            theoretical = max(self._next_free, now)
            wait = theoretical - (self.burst - 1) * self._interval - now
            self._next_free = theoretical + self._interval
        return wait if wait > 1e-9 else 0.0

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
    response: Answer, *, provider: str, not_processed: frozenset[int] = NOT_PROCESSED
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


class HttpDelivery:
    """Sends a batch through one provider: rate-limited, retried, concurrent, one Result per Message."""

    def __init__(
        self,
        *,
        provider: str,
        options: HttpOptions,
        limiter: "RateLimiter | SharedRateLimiter",
        breaker: CircuitBreaker | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        self.provider = provider
        self.options = options
        self.limiter = limiter
        self.breaker = breaker
        self._clock = clock
        self._sleep = sleep
        self._random = random

    def backoff(self, *, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a Retry-After from the provider is a floor."""
        ceiling = min(self.options.backoff_max, self.options.backoff_base * 2 ** (attempt - 1))
        delay = ceiling / 2 + ceiling / 2 * self._random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def deliver(
        self, messages: Sequence[Message], *, pool: CurlPool, build: BuildRequest, classify: Classify
    ) -> list[Result]:
        batch = _Batch(self, messages, pool=pool, build=build, classify=classify)
        results = batch.run()
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

    def failed_by_abort(self, message: Message, exc: BatchError) -> Result:
        """A retryable abort (the token endpoint unreachable, say) never reached the provider: each message it
        stops counts as a failed call for the breaker, and not as an attempt."""
        if exc.retryable:
            self.record(ok=False, error=exc.error)
        return Result(
            log_id=message.log_id,
            status="failed",
            error=exc.error,
            retryable=exc.retryable,
            attempted=not exc.retryable,
        )

    def no_answer(self, exc: TransferError) -> Exception:
        """What a transfer without an answer means for the message."""
        if exc.configuration:
            # A malformed URL or an unreadable certificate: every other message would fail the same way.
            return BatchError(f"cannot send to {self.provider}: {exc}")
        if not exc.written:
            return TransientError(f"could not connect to {self.provider} ({exc.kind})")
        return UnknownOutcome(
            f"{self.provider}: no answer after the request was sent ({exc.kind}); it may have been sent"
        )

    def record(self, *, ok: bool, error: str = "") -> None:
        if self.breaker is not None:
            self.breaker.record(ok=ok, error=error)

    def gave_up(self, message: Message, error: str, attempts: int) -> Result:
        logger.warning(
            "gave up", extra={"provider": self.provider, "log_id": message.log_id, "attempts": attempts, "error": error}
        )
        suffix = "attempt" if attempts == 1 else "attempts"
        return Result(
            log_id=message.log_id, status="failed", error=f"{error} (after {attempts} {suffix})", retryable=True
        )


class _Batch:
    """One batch on engagement_site.curl.run_transfers: each message starts when the breaker, the rate limit and its
    backoff allow, and each answer becomes a result, a retry later, or the end of the batch."""

    def __init__(
        self,
        delivery: HttpDelivery,
        messages: Sequence[Message],
        *,
        pool: CurlPool,
        build: BuildRequest,
        classify: Classify,
    ) -> None:
        self.delivery = delivery
        self.messages = messages
        self.pool = pool
        self.build = build
        self.classify = classify
        count = len(messages)
        self.results: list[Result | None] = [None] * count
        self.attempts = [0] * count
        self.errors = [""] * count
        self.slots = RateSlots(
            delivery.limiter, pool=pool, concurrency=delivery.options.concurrency, clock=delivery._clock
        )
        self.send_again = [False] * count
        self.sent: dict[int, HttpRequest] = {}
        self.aborted: BatchError | None = None

    def run(self) -> list[Result]:
        run_transfers(
            self.pool,
            range(len(self.messages)),
            start=self._start,
            settle=self._settle,
            concurrency=self.delivery.options.concurrency,
            clock=self.delivery._clock,
            sleep=self.delivery._sleep,
        )
        return [result for result in self.results if result is not None]

    def _start(self, index: int) -> HttpRequest | float | None:
        delivery, message = self.delivery, self.messages[index]
        if self.aborted is not None:
            self.slots.drop(index)
            breaker = delivery.breaker
            if self.aborted.retryable and breaker is not None and not breaker.allow():
                self.results[index] = not_attempted(message, breaker)
            else:
                self.results[index] = delivery.failed_by_abort(message, self.aborted)
            return None
        # Sent again (its rejected token refreshed) is not another attempt, but it passes the same checks.
        attempt = self.attempts[index] + (0 if self.send_again[index] else 1)
        if delivery.breaker is not None and not delivery.breaker.allow():
            self.slots.drop(index)
            if attempt == 1:
                self.results[index] = not_attempted(message, delivery.breaker)
            else:
                error = f"{self.errors[index]}; {delivery.breaker.reason}"
                self.results[index] = delivery.gave_up(message, error, attempt - 1)
            return None
        if (wait := self.slots.wait(index)) > 0:
            return wait
        self.attempts[index], self.send_again[index] = attempt, False
        return self._request(index)

    def _request(self, index: int) -> HttpRequest | None:
        message = self.messages[index]
        try:
            request = self.build(message)
            if "://" not in request.url:
                # libcurl would take a URL without a scheme for plain HTTP, credentials and all.
                raise BatchError(f"cannot send to {self.delivery.provider}: the URL has no scheme (https://)")
        except BatchError as exc:
            self._abort(message, exc)
            self.results[index] = self.delivery.failed_by_abort(message, exc)
            return None
        self.sent[index] = request
        return request

    def _abort(self, message: Message, exc: BatchError) -> None:
        if self.aborted is None:
            self.aborted = exc
            logger.error(
                "batch stopped",
                extra={"provider": self.delivery.provider, "log_id": message.log_id, "error": exc.error},
            )

    def _settle(self, index: int, outcome: Answer | TransferError) -> float | None:
        delivery, message = self.delivery, self.messages[index]
        try:
            if isinstance(outcome, TransferError):
                raise delivery.no_answer(outcome)
            result = self._classified(message, outcome, self.sent[index])
        except SendAgain as exc:
            self.send_again[index], self.errors[index] = True, str(exc) or "sent again"
            return AT_ONCE
        except TransientError as exc:
            delivery.record(ok=False, error=exc.error)
            return self._retry(index, exc)
        except UnknownOutcome as exc:
            delivery.record(ok=False, error=exc.error)
            logger.warning("outcome unknown", extra={"provider": delivery.provider, "log_id": message.log_id})
            self.results[index] = Result(log_id=message.log_id, status="unknown", error=exc.error)
        except BatchError as exc:
            self._abort(message, exc)
            self.results[index] = delivery.failed_by_abort(message, exc)
        else:
            delivery.record(ok=True)
            self.results[index] = result
        return None

    def _classified(self, message: Message, answer: Answer, request: HttpRequest) -> Result:
        try:
            return self.classify(message, answer, request)
        except (TransientError, UnknownOutcome, BatchError, SendAgain):
            raise
        except Exception as exc:
            provider = self.delivery.provider
            logger.exception("unexpected answer", extra={"provider": provider, "log_id": message.log_id})
            raise UnknownOutcome(f"unexpected answer from {provider}: {type(exc).__name__}") from exc

    def _retry(self, index: int, exc: TransientError) -> float | None:
        """The backoff before the next attempt, or None when the message has had its attempts (a final result)."""
        delivery, message, attempt = self.delivery, self.messages[index], self.attempts[index]
        self.errors[index] = exc.error
        retry_after = exc.retry_after
        if retry_after is not None and retry_after > delivery.options.retry_after_max:
            error = f"{exc.error}; Retry-After {retry_after:.0f}s is too long"
            self.results[index] = delivery.gave_up(message, error, attempt)
            return None
        if attempt >= delivery.options.max_attempts:
            self.results[index] = delivery.gave_up(message, exc.error, attempt)
            return None
        if retry_after is not None:
            delivery.limiter.pause(retry_after)
        delay = delivery.backoff(attempt=attempt, retry_after=retry_after)
        logger.info(
            "retrying",
            extra={"provider": delivery.provider, "log_id": message.log_id, "attempt": attempt, "delay": delay},
        )
        return delay


class HttpChannelBackend(ChannelBackend):
    """A backend over a CurlPool opened once per invocation: `open()` calls `_start`, which sets `delivery` and
    `pool`; subclasses give `_request` (the request for a message) and `_classify` (the answer as a Result). `http2`
    says the provider speaks HTTP/2 (multiplexed over a few connections when the URL is https). `clock` and `sleep`
    are for tests (a fake clock, and a rate limiter of their own)."""

    http2 = False
    pool: CurlPool | None = None
    delivery: HttpDelivery

    def __init__(self, *, channel: str = "", clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        super().__init__(channel=channel)
        self._clock = clock
        self._sleep = sleep
        self.pool = None

    @property
    def is_open(self) -> bool:
        return self.pool is not None

    def _start(self, *, provider: str, url: str, rate: float, auth: tuple[str, str] | None = None) -> None:
        """Options, rate limiter, retrying delivery and connection pool for a provider. Tests inject a fake clock
        (and get a limiter of their own); otherwise every backend of the provider in this process shares one."""
        self.options = HttpOptions.from_settings()
        clock = self._clock or time.monotonic
        limiter = (
            RateLimiter(rate=rate, clock=clock) if self._clock else shared_rate_limiter(provider=provider, rate=rate)
        )
        self.delivery = HttpDelivery(
            provider=provider,
            options=self.options,
            limiter=limiter,
            breaker=self.breaker,
            clock=clock,
            sleep=self._sleep or time.sleep,
        )
        multiplexed = self.http2 and url.startswith("https://")
        concurrency = self.options.concurrency
        self.pool = CurlPool(
            http2=multiplexed,
            max_connections=http2_connections(concurrency) if multiplexed else concurrency,
            timeout=self.options.timeout,
            basic_auth=auth,
        )

    def _request(self, message: Message) -> HttpRequest:
        raise NotImplementedError

    def _classify(self, message: Message, answer: Answer, request: HttpRequest) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        if self.pool is None:
            return
        pool, self.pool = self.pool, None
        pool.close()
        # The shared budget's own database connection is not kept open between runs (it reopens when needed).
        if isinstance(self.delivery.limiter, SharedRateLimiter):
            self.delivery.limiter.close()

    def _send(self, messages: Sequence[Message]) -> list[Result]:
        return self.delivery.deliver(messages, pool=self.pool, build=self._request, classify=self._classify)
