import datetime as dt
import socket
import time

import pytest

from engagement_site.curl import Answer, CurlPool, HttpRequest
from notifications.backends.base import CircuitBreaker, Message, Result
from notifications.backends.http import (
    BatchError,
    HttpDelivery,
    HttpOptions,
    RateLimiter,
    SendAgain,
    parse_retry_after,
    raise_for_transient_status,
)
from tests.notifications.fakes import FakeClock
from tests.notifications.scripted_server import CLOSE, HANG, RESET, Reply, ScriptedServer, closed_port_url


def messages(count: int) -> list[Message]:
    return [Message(log_id=n, recipient=f"r{n}", header="Hi", body="Come back") for n in range(count)]


def take(limiter: RateLimiter, clock: FakeClock) -> float:
    """One slot, waited for on the fake clock, as the scheduler does."""
    wait = limiter.reserve()
    if wait:
        clock.sleep(wait)
    return wait


class FakeProvider:
    """A minimal provider built on the shared machinery, the way Twilio and FCM use it."""

    def __init__(
        self, url: str, *, clock: FakeClock | None = None, rate: float = 0, http2: bool = False, **options
    ) -> None:
        self.url = url
        self.http2 = http2
        self.options = HttpOptions(**{"backoff_base": 1.0, "backoff_max": 8.0, "timeout": 5.0, **options})
        timing = {"clock": clock, "sleep": clock.sleep} if clock else {}
        self.delivery = HttpDelivery(
            provider="fake",
            options=self.options,
            limiter=RateLimiter(rate=rate, **({"clock": clock} if clock else {})),
            random=lambda: 1.0,
            **timing,
        )

    def request(self, message: Message) -> HttpRequest:
        return HttpRequest.json("POST", self.url, {"to": message.recipient})

    @staticmethod
    def classify(message: Message, answer: Answer, request: HttpRequest) -> Result:
        raise_for_transient_status(answer, provider="fake")
        if answer.status_code == 401:
            raise BatchError("credentials rejected")
        if answer.is_success:
            return Result(log_id=message.log_id, status="sent", provider_message_id=answer.json()["id"])
        return Result(log_id=message.log_id, status="failed", error=f"HTTP {answer.status_code}")

    def run(self, batch: list[Message]) -> list[Result]:
        pool = CurlPool(http2=self.http2, max_connections=self.options.concurrency, timeout=self.options.timeout)
        try:
            return self.delivery.deliver(batch, pool=pool, build=self.request, classify=self.classify)
        finally:
            pool.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_success_returns_the_provider_id(clock):
    with ScriptedServer(Reply(201, {"id": "m-1"})) as server:
        [result] = FakeProvider(server.url, clock=clock).run(messages(1))
    assert result == Result(log_id=0, status="sent", provider_message_id="m-1")
    assert server.requests[0].json() == {"to": "r0"}
    assert clock.sleeps == []


def test_too_many_requests_is_retried_then_sent(clock):
    with ScriptedServer(Reply(429), Reply(201, {"id": "m-1"})) as server:
        [result] = FakeProvider(server.url, clock=clock).run(messages(1))
    assert result.status == "sent"
    assert len(server.requests) == 2
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_may_have_sent_so_it_is_unknown_and_never_retried(clock, status):
    with ScriptedServer(Reply(status), Reply(201, {"id": "m-1"})) as server:
        [result] = FakeProvider(server.url, clock=clock).run(messages(1))
    assert (result.status, result.retryable) == ("unknown", False)
    assert result.error == f"fake answered HTTP {status}; the message may have been sent"
    assert len(server.requests) == 1


def test_backoff_doubles_up_to_the_cap_then_gives_up_as_retryable(clock):
    with ScriptedServer(Reply(429)) as server:
        [result] = FakeProvider(server.url, clock=clock, max_attempts=6).run(messages(1))
    assert len(server.requests) == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert result.status == "failed"
    assert result.retryable is True
    assert result.error == "fake answered HTTP 429 (after 6 attempts)"


def test_backoff_jitter_stays_between_half_and_the_full_delay():
    options = HttpOptions(backoff_base=2.0, backoff_max=100.0)
    low = HttpDelivery(provider="p", options=options, limiter=RateLimiter(rate=0), random=lambda: 0.0)
    high = HttpDelivery(provider="p", options=options, limiter=RateLimiter(rate=0), random=lambda: 0.999)
    assert low.backoff(attempt=3, retry_after=None) == 4.0
    assert 7.9 < high.backoff(attempt=3, retry_after=None) < 8.0


def test_429_waits_for_retry_after_before_the_next_request(clock):
    with ScriptedServer(Reply(429, headers={"Retry-After": "7"}), Reply(201, {"id": "m-1"}), clock=clock) as server:
        [result] = FakeProvider(server.url, clock=clock).run(messages(1))
    assert result.status == "sent"
    assert server.times[1] - server.times[0] >= 7


def test_a_retry_after_longer_than_allowed_is_not_waited_for(clock):
    with ScriptedServer(Reply(429, headers={"Retry-After": "3600"})) as server:
        [result] = FakeProvider(server.url, clock=clock, retry_after_max=60).run(messages(1))
    assert len(server.requests) == 1
    assert clock.sleeps == []
    assert result.status == "failed"
    assert result.retryable is True
    assert "Retry-After 3600s" in result.error


def test_permanent_client_error_is_not_retried(clock):
    with ScriptedServer(Reply(400)) as server:
        [result] = FakeProvider(server.url, clock=clock).run(messages(1))
    assert len(server.requests) == 1
    assert result == Result(log_id=0, status="failed", error="HTTP 400", retryable=False)


def test_a_refused_connection_is_retried_and_sent_once_the_provider_is_back(clock):
    """Nothing listens at first (the request was never written): the provider comes back during the backoff."""
    url = closed_port_url()
    port = int(url.split(":")[2].split("/")[0])
    servers: list[ScriptedServer] = []

    def provider_back(seconds: float) -> None:
        clock.sleep(seconds)
        server = ScriptedServer(Reply(201, {"id": "m-1"}))
        server.server.server_close()
        server.server = type(server.server)(("127.0.0.1", port), server.server.RequestHandlerClass)
        servers.append(server.__enter__())

    provider = FakeProvider(url, clock=clock)
    provider.delivery._sleep = provider_back
    try:
        [result] = provider.run(messages(1))
    finally:
        for server in servers:
            server.__exit__()
    assert result.status == "sent"
    assert clock.sleeps == [1.0]
    assert len(servers[0].requests) == 1


def test_connection_errors_give_up_after_the_attempts(clock):
    [result] = FakeProvider(closed_port_url(), clock=clock, max_attempts=3).run(messages(1))
    assert clock.sleeps == [1.0, 2.0]
    assert result.status == "failed"
    assert result.retryable is True
    assert result.error == "could not connect to fake (connect error) (after 3 attempts)"


@pytest.mark.parametrize("http2", [False, True])
def test_a_timeout_before_the_request_was_written_is_retryable(clock, http2):
    """A peer that accepts the connection but never completes the TLS handshake: no byte of the request left (an
    HTTP/2 pool's request waits for the connection the same way)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/send"
        [result] = FakeProvider(url, clock=clock, max_attempts=2, timeout=0.3, http2=http2).run(messages(1))
    assert result.status == "failed"
    assert result.retryable is True
    assert result.error == "could not connect to fake (timeout) (after 2 attempts)"


@pytest.mark.parametrize(("answer", "kind"), [(RESET, "connection error"), (HANG, "timeout")])
def test_no_answer_after_the_request_was_written_is_unknown_and_never_retried(clock, answer, kind):
    with ScriptedServer(answer, Reply(201, {"id": "m-1"})) as server:
        [result] = FakeProvider(server.url, clock=clock, timeout=0.5).run(messages(1))
    assert result.status == "unknown"
    assert result.error == f"fake: no answer after the request was sent ({kind}); it may have been sent"
    assert len(server.requests) == 1


@pytest.mark.parametrize("answer", [RESET, CLOSE])
def test_a_kept_connection_lost_after_the_request_was_written_is_unknown_and_the_request_never_sent_again(
    clock, answer
):
    """libcurl would send the request again on a fresh connection when a kept one ends before any answer; the
    provider may have acted on it, so the message is unknown and the provider received it once."""
    with ScriptedServer(Reply(201, {"id": "m-0"}), answer, Reply(201, {"id": "m-again"})) as server:
        results = FakeProvider(server.url, clock=clock, concurrency=1).run(messages(2))
    assert [result.status for result in results] == ["sent", "unknown"]
    assert results[1].error == "fake: no answer after the request was sent (connection error); it may have been sent"
    assert [request.json()["to"] for request in server.requests] == ["r0", "r1"]
    assert server.connections == 1


class RefreshingProvider(FakeProvider):
    """A 401 asks for the message to be sent again (a token refreshed), as FCM's backend does; a 403 stops the
    batch (credentials rejected for good)."""

    @staticmethod
    def classify(message: Message, answer: Answer, request: HttpRequest) -> Result:
        if answer.status_code == 401:
            raise SendAgain("token refreshed")
        if answer.status_code == 403:
            raise BatchError("credentials rejected")
        return FakeProvider.classify(message, answer, request)


def test_a_message_to_send_again_is_not_sent_once_the_batch_stopped():
    """r0's 401 comes back after r1's 403 stopped the batch: r0 is not sent again."""

    def answer(request):
        if request.json()["to"] != "r0":
            return Reply(403, {})
        # r0's first request is refused whichever of the two requests the server received first.
        if [seen.json()["to"] for seen in server.requests].count("r0") == 1:
            time.sleep(0.3)
            return Reply(401, {})
        return Reply(201, {"id": "m-0"})

    with ScriptedServer(answer) as server:
        results = RefreshingProvider(server.url, concurrency=2).run(messages(2))
    assert [request.json()["to"] for request in server.requests].count("r0") == 1
    assert [(result.status, result.error) for result in results] == [("failed", "credentials rejected")] * 2


def test_a_message_to_send_again_waits_for_the_breaker(clock):
    with ScriptedServer(Reply(401, {}), Reply(201, {"id": "m-1"})) as server:
        provider = RefreshingProvider(server.url, clock=clock, concurrency=1)
        provider.delivery.breaker = CircuitBreaker(threshold=1)
        provider.delivery.breaker.record(ok=False, error="earlier failure")
        provider.delivery.breaker.allow = iter([True, False]).__next__
        [result] = provider.run(messages(1))
    assert len(server.requests) == 1
    assert (result.status, result.retryable) == ("failed", True)


def test_a_message_sent_again_goes_out_once_more_and_is_not_another_attempt(clock):
    with ScriptedServer(Reply(401, {}), Reply(201, {"id": "m-1"})) as server:
        [result] = RefreshingProvider(server.url, clock=clock, max_attempts=1).run(messages(1))
    assert (result.status, result.provider_message_id) == ("sent", "m-1")
    assert len(server.requests) == 2


def test_the_breaker_stops_calling_a_provider_that_keeps_failing(clock):
    provider = FakeProvider(closed_port_url(), clock=clock, max_attempts=2, concurrency=1)
    provider.delivery.breaker = CircuitBreaker(threshold=5)
    results = provider.run(messages(10))
    assert provider.delivery.breaker.consecutive_failures == 5
    assert [(r.status, r.retryable) for r in results] == [("failed", True)] * 10
    assert results[-1].error.startswith("not attempted: provider unavailable: 5 consecutive failures")
    assert sum(result.attempted for result in results) < 10


def test_batch_error_stops_the_batch_and_fails_every_message(clock):
    with ScriptedServer(Reply(401)) as server:
        results = FakeProvider(server.url, clock=clock, concurrency=1).run(messages(5))
    assert len(server.requests) == 1
    assert [result.log_id for result in results] == [0, 1, 2, 3, 4]
    assert {(result.status, result.error) for result in results} == {("failed", "credentials rejected")}


def test_a_malformed_url_stops_the_batch_before_anything_is_sent(clock):
    results = FakeProvider("htp:/nowhere", clock=clock, concurrency=1).run(messages(3))
    assert {result.status for result in results} == {"failed"}
    assert results[0].error.startswith("cannot send to fake:")
    assert {result.error for result in results[1:]} == {results[0].error}


def test_an_unreadable_answer_is_unknown_for_that_message_not_the_batch(clock):
    with ScriptedServer(Reply(201, {"id": "m-1"}), Reply(201, b"not json")) as server:
        first, second = FakeProvider(server.url, clock=clock, concurrency=1).run(messages(2))
    assert first.status == "sent"
    assert second.status == "unknown"
    assert second.error.startswith("unexpected answer from fake")


@pytest.mark.parametrize("concurrency", [1, 4, 20])
def test_requests_in_flight_reach_the_concurrency_and_results_keep_input_order(concurrency):
    def slow(request):
        recipient = request.json()["to"]
        # Earlier messages answer last, so results arrive in the reverse of the input order.
        time.sleep(0.001 * (40 - int(recipient[1:])) + 0.05)
        return Reply(201, {"id": f"id-{recipient}"})

    with ScriptedServer(slow) as server:
        results = FakeProvider(server.url, concurrency=concurrency).run(messages(40))
    assert server.most_in_flight == concurrency
    assert server.connections <= concurrency
    assert [result.log_id for result in results] == list(range(40))
    assert [result.provider_message_id for result in results] == [f"id-r{n}" for n in range(40)]


def test_many_requests_in_flight_still_respect_the_rate_on_the_real_clock():
    """Each sender waits for its own slot: however many are in flight, no window holds more than the rate allows
    (a slow machine only spreads requests out further)."""
    with ScriptedServer(Reply(201, {"id": "x"}), clock=time.monotonic) as server:
        results = FakeProvider(server.url, rate=100, concurrency=200).run(messages(150))
    assert [result.status for result in results] == ["sent"] * 150
    # Arrival times jitter by a few milliseconds on a busy machine: a window may catch a request or two early.
    assert max_in_any_window(server.times, 0.5) <= 50 * 1.1
    assert server.times[-1] - server.times[0] >= 149 / 100 * 0.95


def test_requests_through_the_delivery_respect_the_rate(clock):
    with ScriptedServer(Reply(201, {"id": "x"}), clock=clock) as server:
        results = FakeProvider(server.url, clock=clock, rate=20, concurrency=1).run(messages(100))
    assert all(result.status == "sent" for result in results)
    assert max_in_any_window(server.times, 1.0) <= 20
    assert max_in_any_window(server.times, 0.5) <= 10


class RecordingLimiter(RateLimiter):
    """The real limiter, noting the (fake) time of each slot it books."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.booked_at: list[float] = []

    def reserve(self) -> float:
        self.booked_at.append(self._clock())
        return super().reserve()


def test_slots_booked_ahead_and_requests_in_flight_stay_within_the_concurrency(clock):
    """The rate budget is shared with every other sender: at once, r0 goes out on the first slot and r1 books the
    next; r2 waits, since two places (one slot booked, one request in flight) are all the concurrency allows."""
    with ScriptedServer(Reply(201, {"id": "x"}), clock=clock) as server:
        provider = FakeProvider(server.url, clock=clock, concurrency=2)
        limiter = provider.delivery.limiter = RecordingLimiter(rate=20, clock=clock)
        results = provider.run(messages(10))
    assert [result.status for result in results] == ["sent"] * 10
    assert limiter.booked_at.count(limiter.booked_at[0]) == 2
    assert max_in_any_window(server.times, 0.5) <= 10


def max_in_any_window(times: list[float], window: float) -> int:
    """The most requests seen in any half-open window [t, t + window), to the microsecond."""
    times = [round(t, 6) for t in times]
    return max(sum(1 for t in times if start <= t < round(start + window, 6)) for start in times)


def test_rate_limiter_holds_on_a_fake_clock(clock):
    limiter = RateLimiter(rate=10, clock=clock)
    times = []
    for _ in range(50):
        take(limiter, clock)
        times.append(clock())
    assert max_in_any_window(times, 1.0) <= 10
    assert times[-1] - times[0] == pytest.approx(4.9)


def test_rate_limiter_allows_a_burst_then_the_rate(clock):
    limiter = RateLimiter(rate=5, burst=5, clock=clock)
    times = []
    for _ in range(10):
        take(limiter, clock)
        times.append(clock())
    assert times[:5] == pytest.approx([1000.0] * 5)
    assert times[5:] == pytest.approx([1000.2, 1000.4, 1000.6, 1000.8, 1001.0])


def test_rate_limiter_pause_holds_everyone_back(clock):
    limiter = RateLimiter(rate=100, clock=clock)
    limiter.pause(5)
    assert take(limiter, clock) == pytest.approx(5)


def test_no_rate_limit_never_waits(clock):
    limiter = RateLimiter(rate=0, clock=clock)
    for _ in range(100):
        take(limiter, clock)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Wed, 25 Nov 2026 09:00:30 GMT", 30.0),
        ("Wed, 25 Nov 2026 08:59:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_retry_after(header, expected):
    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    assert parse_retry_after(header, now=now) == expected


def test_options_come_from_settings(settings):
    settings.CHANNEL_HTTP_TIMEOUT = 3
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 2
    settings.CHANNEL_HTTP_CONCURRENCY = 16
    options = HttpOptions.from_settings()
    assert (options.timeout, options.max_attempts, options.concurrency) == (3.0, 2, 16)


def test_the_settings_default_to_many_requests_in_flight():
    assert HttpOptions.from_settings().concurrency == 200


def test_a_batch_that_stops_on_an_error_leaves_nothing_in_flight_for_the_next(clock):
    """An exception out of the scheduler (a rate-limit store that fails, say) drops the transfers still in flight,
    so a later batch on the same pool never receives their answers."""
    with ScriptedServer(lambda request: (time.sleep(0.2), Reply(201, {"id": request.json()["to"]}))[1]) as server:
        provider = FakeProvider(server.url, concurrency=10)
        pool = CurlPool(http2=False, max_connections=10, timeout=5)
        calls = 0

        def build(message: Message) -> HttpRequest:
            nonlocal calls
            calls += 1
            if calls == 5:
                raise RuntimeError("the quota store is down")
            return provider.request(message)

        try:
            with pytest.raises(RuntimeError):
                provider.delivery.deliver(messages(8), pool=pool, build=build, classify=provider.classify)
            assert pool.in_flight == 0
            results = provider.delivery.deliver(
                messages(3), pool=pool, build=provider.request, classify=provider.classify
            )
        finally:
            pool.close()
    assert [(result.log_id, result.provider_message_id) for result in results] == [(0, "r0"), (1, "r1"), (2, "r2")]
