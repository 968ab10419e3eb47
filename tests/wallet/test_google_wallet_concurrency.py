"""Google Wallet at the provider's speed: a batch's addMessage calls in flight at once, under the shared rate limit,
against the real HTTP stand-in of tests/faults (which counts, on its side, the calls in flight, when each arrived and
what it delivered)."""

import threading
import time

import pytest

from notifications.backends.base import CircuitBreaker, Message
from notifications.backends.wallet import WalletBackend
from tests.factories import WalletPassFactory
from tests.faults.conftest import service_account_key
from tests.faults.standins import Fault, GoogleWalletStandIn
from tests.wallet.conftest import GOOGLE_ISSUER_ID
from wallet.models import GoogleWalletMessage

pytestmark = pytest.mark.django_db

DELAY = 0.5  # each answer of the slow stand-in comes this long after the request


class CountingStandIn(GoogleWalletStandIn):
    """The Google stand-in, also counting the API calls it is handling at once and when each one arrived, and
    answering each `delay` seconds late (on a connection kept alive, unlike Fault.ACCEPT_THEN_TIMEOUT's)."""

    def __init__(self, *, delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []
        self._count_lock = threading.Lock()

    def _apply(self, handler, release, route, fault) -> None:
        with self._count_lock:
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                release.wait(self.delay)
            super()._apply(handler, release, route, fault)
        finally:
            with self._count_lock:
                self.in_flight -= 1


def use_standin(google, settings, tmp_path, **overrides) -> None:
    """The live wallet channel, Google only, pointed at `google`, with no rate limit unless overridden."""
    settings.WALLET_CHANNEL = "live"
    settings.APPLE_PASS_TYPE_ID = ""
    settings.GOOGLE_WALLET_RATE_LIMIT = 0
    for name, value in overrides.items():
        setattr(settings, name, value)
    google.configure(settings, service_account_key(tmp_path, token_uri=google.token_uri))


@pytest.fixture
def standin(google_settings, tmp_path):
    """The stand-in answering every call after DELAY."""
    with CountingStandIn(delay=DELAY) as google:
        use_standin(google, google_settings, tmp_path, GOOGLE_WALLET_TIMEOUT=10, GOOGLE_WALLET_CONCURRENCY=100)
        yield google


def _google_customers(count: int) -> list:
    return [WalletPassFactory(platform="google") for _ in range(count)]


def _messages(passes, first_log_id: int = 1) -> list[Message]:
    return [
        Message(
            log_id=first_log_id + n,
            recipient=wallet_pass.customer.customer_id,
            header="We miss you",
            body="Come back",
            extra={"run_date": "2026-11-25"},
        )
        for n, wallet_pass in enumerate(passes)
    ]


def _object_id(wallet_pass) -> str:
    return f"{GOOGLE_ISSUER_ID}.{wallet_pass.pass_id}"


def _send(messages: list[Message], breaker: CircuitBreaker | None = None) -> tuple[list, float]:
    backend = WalletBackend()
    backend.breaker = breaker
    started = time.monotonic()
    with backend:
        results = backend.send_batch(messages)
    return results, time.monotonic() - started


def test_a_batch_of_slow_answers_is_in_flight_at_once_and_delivered_exactly_once(standin):
    passes = _google_customers(60)
    messages = _messages(passes)
    results, elapsed = _send(messages)

    assert [result.log_id for result in results] == [message.log_id for message in messages]
    assert {result.status for result in results} == {"sent"}
    assert [result.provider_message_id for result in results] == [f"google:reengagement-{m.log_id}" for m in messages]
    assert standin.deliveries == {_object_id(wallet_pass): 1 for wallet_pass in passes}
    assert standin.total_requests == 60
    # One after another this would take 60 x DELAY = 30 s.
    assert standin.max_in_flight >= 30
    assert elapsed < 10 * DELAY
    assert standin.token_requests == 1, "one token shared by every concurrent call"
    assert GoogleWalletMessage.objects.filter(notified=True).count() == 60


def test_no_more_calls_in_flight_than_the_concurrency_setting(standin, settings):
    settings.GOOGLE_WALLET_CONCURRENCY = 8
    passes = _google_customers(24)
    results, elapsed = _send(_messages(passes))
    assert {result.status for result in results} == {"sent"}
    assert 2 <= standin.max_in_flight <= 8
    assert elapsed >= 3 * DELAY  # 24 calls, 8 at a time
    assert standin.deliveries == {_object_id(wallet_pass): 1 for wallet_pass in passes}


def test_the_rate_limit_holds_under_concurrency(standin, settings):
    standin.delay = 0  # fast answers: only the rate limit holds the calls back
    settings.GOOGLE_WALLET_RATE_LIMIT = 20
    passes = _google_customers(60)
    results, _ = _send(_messages(passes))

    assert {result.status for result in results} == {"sent"}
    assert standin.deliveries == {_object_id(wallet_pass): 1 for wallet_pass in passes}
    arrivals = sorted(standin.arrivals)
    assert len(arrivals) == 60
    # Arrivals jitter: a call that waited on a busy machine (or opened the connection) lands a little after its slot,
    # closer to the next than the rate spaces them. So the bound is 10% over two seconds (the issue's own check is
    # 5% over ten seconds: benchmarks/bench_quota.py); without the limit all 60 would land within a fraction of one.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 2.0) for start in arrivals)
    assert busiest <= 44, f"{busiest} calls in two seconds at a limit of 20/s"
    assert arrivals[-1] - arrivals[0] >= 2.5  # 60 calls at 20/s: about 3 s


def test_quota_exceeded_falls_back_to_text_under_concurrency(standin):
    passes = _google_customers(30)
    capped = passes[::3]
    for wallet_pass in capped:
        standin.exceed_quota(_object_id(wallet_pass))
    messages = _messages(passes)
    results, _ = _send(messages)

    assert {result.status for result in results} == {"sent"}
    assert standin.deliveries == {_object_id(wallet_pass): 1 for wallet_pass in passes}
    assert standin.max_in_flight >= 10
    for wallet_pass in passes:
        sent = [message["messageType"] for message in standin.messages(_object_id(wallet_pass))]
        assert sent == (["TEXT"] if wallet_pass in capped else ["TEXT_AND_NOTIFY"])
        assert standin.requests[_object_id(wallet_pass)] == (2 if wallet_pass in capped else 1)
    notified = dict(GoogleWalletMessage.objects.values_list("wallet_pass_id", "notified"))
    assert notified == {wallet_pass.pk: wallet_pass not in capped for wallet_pass in passes}


def test_two_messages_for_one_pass_in_a_batch_go_in_order_and_count_against_the_cap(standin):
    """The run never puts a customer twice in a batch, but if a batch did, the pass's daily count stays right."""
    standin.delay = 0
    standin.notify_limit = 3
    wallet_pass, other = _google_customers(2)
    GoogleWalletMessage.objects.bulk_create(
        GoogleWalletMessage(wallet_pass=wallet_pass, message_id=f"old-{n}", notified=True) for n in range(2)
    )
    messages = _messages([wallet_pass, other, wallet_pass])
    results, _ = _send(messages)
    assert [result.status for result in results] == ["sent"] * 3
    sent = [(m["id"], m["messageType"]) for m in standin.messages(_object_id(wallet_pass))]
    assert sent == [("reengagement-1", "TEXT_AND_NOTIFY"), ("reengagement-3", "TEXT")]


def test_an_open_breaker_stops_the_calls_still_waiting_for_their_slot(standin, settings):
    """Google unreachable: the breaker opens after a few refused connections, and the calls that were waiting for
    a rate-limit slot are then not made at all (retryable, not attempted) instead of each trying in turn."""
    settings.GOOGLE_WALLET_RATE_LIMIT = 20
    settings.WALLET_MAX_RETRIES = 0
    passes = _google_customers(40)
    standin.fault = Fault.REFUSED
    results, _ = _send(_messages(passes), breaker=CircuitBreaker(threshold=3))

    assert {(result.status, result.retryable) for result in results} == {("failed", True)}
    attempted = [result for result in results if result.attempted]
    assert len(attempted) < 10
    assert all("not attempted" in result.error for result in results if not result.attempted)


class SlowTokenStandIn(CountingStandIn):
    """Its token endpoint answers only after `token_delay` seconds (a client gives up long before)."""

    token_delay = 1.5
    token_arrivals = 0

    def token_reply(self, request):
        with self.lock:
            self.token_arrivals += 1
        threading.Event().wait(self.token_delay)
        return super().token_reply(request)


def test_a_hanging_token_endpoint_costs_one_timeout_not_one_per_call(google_settings, tmp_path):
    with SlowTokenStandIn() as google:
        use_standin(google, google_settings, tmp_path, GOOGLE_WALLET_TIMEOUT=0.5, WALLET_MAX_RETRIES=0)
        passes = _google_customers(10)
        results, elapsed = _send(_messages(passes))
        assert {(result.status, result.retryable) for result in results} == {("failed", True)}
        assert all("token unavailable" in result.error for result in results)
        assert google.token_arrivals == 1
        assert google.total_requests == 0, "no addMessage was made without a token"
        assert elapsed < 2.5  # one timeout of 0.5 s (not 10 of them), plus setup
