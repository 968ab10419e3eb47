import datetime as dt
import threading

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from notifications.backends.base import CircuitBreaker, Message, Result
from notifications.backends.http import (
    BatchError,
    HttpDelivery,
    HttpOptions,
    RateLimiter,
    make_session,
    parse_retry_after,
    raise_for_transient_status,
)
from tests.notifications.fakes import FakeClock

URL = "https://provider.test/send"


def messages(count: int) -> list[Message]:
    return [Message(log_id=n, recipient=f"r{n}", header="Hi", body="Come back") for n in range(count)]


class FakeProvider:
    """A minimal provider built on the shared machinery, the way Twilio and FCM use it."""

    def __init__(self, *, clock: FakeClock, rate: float = 0, **options) -> None:
        self.options = HttpOptions(**{"backoff_base": 1.0, "backoff_max": 8.0, **options})
        self.session = make_session(concurrency=self.options.concurrency)
        self.delivery = HttpDelivery(
            provider="fake",
            options=self.options,
            limiter=RateLimiter(rate=rate, clock=clock, sleep=clock.sleep),
            sleep=clock.sleep,
            random=lambda: 1.0,
        )

    def send(self, message: Message) -> requests.Response:
        return self.session.post(URL, json={"to": message.recipient}, timeout=self.options.timeout)

    def classify(self, message: Message, response: requests.Response) -> Result:
        raise_for_transient_status(response, provider="fake")
        if response.status_code == 401:
            raise BatchError("credentials rejected")
        if response.ok:
            return Result(log_id=message.log_id, status="sent", provider_message_id=response.json()["id"])
        return Result(log_id=message.log_id, status="failed", error=f"HTTP {response.status_code}")

    def run(self, batch: list[Message]) -> list[Result]:
        return self.delivery.deliver(batch, send=self.send, classify=self.classify)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@responses.activate
def test_success_returns_the_provider_id(clock):
    responses.post(URL, json={"id": "m-1"}, status=201)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert result == Result(log_id=0, status="sent", provider_message_id="m-1")
    assert clock.sleeps == []


@responses.activate
def test_too_many_requests_is_retried_then_sent(clock):
    responses.post(URL, status=429)
    responses.post(URL, json={"id": "m-1"}, status=201)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert result.status == "sent"
    assert len(responses.calls) == 2
    assert clock.sleeps == [1.0]


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_may_have_sent_so_it_is_unknown_and_never_retried(clock, status):
    responses.post(URL, status=status)
    responses.post(URL, json={"id": "m-1"}, status=201)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert (result.status, result.retryable) == ("unknown", False)
    assert result.error == f"fake answered HTTP {status}; the message may have been sent"
    assert len(responses.calls) == 1


@responses.activate
def test_backoff_doubles_up_to_the_cap_then_gives_up_as_retryable(clock):
    responses.post(URL, status=429)
    [result] = FakeProvider(clock=clock, max_attempts=6).run(messages(1))
    assert len(responses.calls) == 6
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


@responses.activate
def test_429_waits_for_retry_after_before_the_next_request(clock):
    times: list[float] = []

    def answer(request):
        times.append(clock())
        if len(times) == 1:
            return 429, {"Retry-After": "7"}, ""
        return 201, {}, '{"id": "m-1"}'

    responses.add_callback(responses.POST, URL, callback=answer)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert result.status == "sent"
    assert times[1] - times[0] >= 7


@responses.activate
def test_a_retry_after_longer_than_allowed_is_not_waited_for(clock):
    responses.post(URL, status=429, headers={"Retry-After": "3600"})
    [result] = FakeProvider(clock=clock, retry_after_max=60).run(messages(1))
    assert len(responses.calls) == 1
    assert clock.sleeps == []
    assert result.status == "failed"
    assert result.retryable is True
    assert "Retry-After 3600s" in result.error


@responses.activate
def test_permanent_client_error_is_not_retried(clock):
    responses.post(URL, status=400)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert len(responses.calls) == 1
    assert result == Result(log_id=0, status="failed", error="HTTP 400", retryable=False)


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request was never written."""
    return requests.ConnectionError(MaxRetryError(None, URL, NewConnectionError(None, "Connection refused")))


@responses.activate
def test_a_connect_timeout_is_retried(clock):
    responses.post(URL, body=requests.ConnectTimeout("connect timed out"))
    responses.post(URL, json={"id": "m-1"}, status=201)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert result.status == "sent"
    assert len(responses.calls) == 2


@responses.activate
@pytest.mark.parametrize(
    "error",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
    ],
)
def test_no_answer_after_the_request_was_written_is_unknown_and_never_retried(clock, error):
    responses.post(URL, body=error)
    responses.post(URL, json={"id": "m-1"}, status=201)
    [result] = FakeProvider(clock=clock).run(messages(1))
    assert result.status == "unknown"
    assert result.error.startswith("fake: no answer after the request was sent")
    assert len(responses.calls) == 1


@responses.activate
def test_connection_errors_give_up_after_the_attempts(clock):
    responses.post(URL, body=refused())
    [result] = FakeProvider(clock=clock, max_attempts=3).run(messages(1))
    assert len(responses.calls) == 3
    assert result.status == "failed"
    assert result.retryable is True
    assert result.error == "could not connect to fake (ConnectionError) (after 3 attempts)"


@responses.activate
def test_the_breaker_stops_calling_a_provider_that_keeps_failing(clock):
    responses.post(URL, body=refused())
    provider = FakeProvider(clock=clock, max_attempts=2, concurrency=1)
    provider.delivery.breaker = CircuitBreaker(threshold=5)
    results = provider.run(messages(10))
    assert len(responses.calls) == 5
    assert [(r.status, r.retryable) for r in results] == [("failed", True)] * 10
    assert results[-1].error.startswith("not attempted: provider unavailable: 5 consecutive failures")


@responses.activate
def test_batch_error_stops_the_batch_and_fails_every_message(clock):
    responses.post(URL, status=401)
    results = FakeProvider(clock=clock, concurrency=1).run(messages(5))
    assert len(responses.calls) == 1
    assert [result.log_id for result in results] == [0, 1, 2, 3, 4]
    assert {(result.status, result.error) for result in results} == {("failed", "credentials rejected")}


@responses.activate
def test_an_unreadable_answer_is_unknown_for_that_message_not_the_batch(clock):
    responses.post(URL, json={"id": "m-1"}, status=201, match=[responses.matchers.json_params_matcher({"to": "r0"})])
    responses.post(URL, body="not json", status=201)
    first, second = FakeProvider(clock=clock, concurrency=1).run(messages(2))
    assert first.status == "sent"
    assert second.status == "unknown"
    assert second.error.startswith("unexpected answer from fake")


@responses.activate
def test_pool_sends_concurrently_and_keeps_input_order(clock):
    last_arrived = threading.Event()
    overtaken: list[bool] = []

    def answer(request):
        recipient = request.body.decode().split('"')[3]
        if recipient == "r0":
            overtaken.append(last_arrived.wait(timeout=5))
        if recipient == "r11":
            last_arrived.set()
        return 201, {}, f'{{"id": "id-{recipient}"}}'

    responses.add_callback(responses.POST, URL, callback=answer)
    results = FakeProvider(clock=clock, concurrency=4).run(messages(12))
    assert overtaken == [True]
    assert [result.log_id for result in results] == list(range(12))
    assert [result.provider_message_id for result in results] == [f"id-r{n}" for n in range(12)]


def max_in_any_window(times: list[float], window: float) -> int:
    """The most requests seen in any half-open window [t, t + window), to the microsecond."""
    times = [round(t, 6) for t in times]
    return max(sum(1 for t in times if start <= t < round(start + window, 6)) for start in times)


def test_rate_limiter_holds_on_a_fake_clock(clock):
    limiter = RateLimiter(rate=10, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(50):
        limiter.acquire()
        times.append(clock())
    assert max_in_any_window(times, 1.0) <= 10
    assert times[-1] - times[0] == pytest.approx(4.9)


def test_rate_limiter_allows_a_burst_then_the_rate(clock):
    limiter = RateLimiter(rate=5, burst=5, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(10):
        limiter.acquire()
        times.append(clock())
    assert times[:5] == pytest.approx([1000.0] * 5)
    assert times[5:] == pytest.approx([1000.2, 1000.4, 1000.6, 1000.8, 1001.0])


def test_rate_limiter_pause_holds_everyone_back(clock):
    limiter = RateLimiter(rate=100, clock=clock, sleep=clock.sleep)
    limiter.pause(5)
    assert limiter.acquire() == pytest.approx(5)


def test_no_rate_limit_never_waits(clock):
    limiter = RateLimiter(rate=0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.acquire()
    assert clock.sleeps == []


@responses.activate
def test_requests_through_the_delivery_respect_the_rate(clock):
    times: list[float] = []

    def answer(request):
        times.append(clock())
        return 201, {}, '{"id": "x"}'

    responses.add_callback(responses.POST, URL, callback=answer)
    results = FakeProvider(clock=clock, rate=20, concurrency=1).run(messages(100))
    assert all(result.status == "sent" for result in results)
    assert max_in_any_window(times, 1.0) <= 20
    assert max_in_any_window(times, 0.5) <= 10


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
