"""The Google Wallet client against the Google Wallet stand-in of tests/faults (a real local HTTP server with its
OAuth2 token endpoint; libcurl cannot be mocked), and the daily cap of notifying messages through the backend."""

import base64
import datetime as dt
import json
import threading
import time
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from django.utils import timezone
from google.auth import crypt, jwt

from notifications.backends.base import CircuitBreaker, Message
from notifications.backends.http import RateLimiter
from notifications.backends.wallet import WalletBackend
from tests.factories import WalletPassFactory
from tests.faults.standins import Fault, GoogleWalletStandIn, Reply
from tests.wallet.conftest import GOOGLE_ISSUER_ID
from wallet.google_wallet import SCOPE, AddMessage, GoogleWalletClient, load_google_config, save_url
from wallet.models import GoogleWalletMessage

pytestmark = pytest.mark.django_db

OBJECT_A = f"{GOOGLE_ISSUER_ID}.pass_A"
OBJECT_B = f"{GOOGLE_ISSUER_ID}.pass_B"


def _public_pem(service_account) -> bytes:
    return service_account["public_key"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_file(tmp_path, google_service_account, *, token_uri: str):
    """The session's service account (its public key verifies the assertions), with `token_uri` as its token URI."""
    path = tmp_path / f"service-account-{abs(hash(token_uri))}.json"
    path.write_text(json.dumps({**google_service_account["info"], "token_uri": token_uri}))
    return path


@pytest.fixture
def google(google_settings, google_service_account, tmp_path):
    """The Google Wallet stand-in, answering the API and issuing tokens; GOOGLE_WALLET_* point at it."""
    with GoogleWalletStandIn() as standin:
        standin.configure(google_settings, _key_file(tmp_path, google_service_account, token_uri=standin.token_uri))
        yield standin


def _client(**kwargs) -> GoogleWalletClient:
    client = GoogleWalletClient(config=load_google_config(), **{"max_retries": 2, "backoff": 0.01, **kwargs})
    client.open()
    return client


@pytest.fixture
def google_client(google):
    client = _client()
    yield client
    client.close()


def _add(client: GoogleWalletClient, object_id: str = OBJECT_A, **fields):
    fields = {"message_id": "m", "header": "h", "body": "b", "notify": True, **fields}
    return client.add_message(object_id=object_id, **fields)


def _calls(standin: GoogleWalletStandIn, object_id: str, method: str = "POST") -> list:
    """The API requests the stand-in received for `object_id` (token requests are not among them)."""
    return [r for r in standin.received if r.recipient == object_id and r.method == method]


def _error(standin: GoogleWalletStandIn, status: int, **headers: str) -> Reply:
    return Reply(status, standin.error_body(status), headers)


class Arrivals:
    """Notes when each API request arrives and when the stand-in starts answering it (after `delay`), and the most
    requests it held at once."""

    def __init__(self, standin: GoogleWalletStandIn, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[tuple[str, float, float]] = []
        self.holding = self.most_held = 0
        self._lock = threading.Lock()
        standin.on_request = self

    def __call__(self, request) -> None:
        arrived = time.monotonic()
        with self._lock:
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
        time.sleep(self.delay)
        with self._lock:
            self.holding -= 1
            self.events.append((request.recipient, arrived, time.monotonic()))

    def of(self, object_id: str) -> list[tuple[float, float]]:
        return sorted((arrived, answered) for recipient, arrived, answered in self.events if recipient == object_id)


# The request


def test_add_message_request_shape_and_bearer_token(google_client, google):
    outcome = _add(
        google_client,
        message_id="reengagement-7",
        header="We miss you",
        body="Come back",
        now=dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC),
    )
    assert outcome.ok
    [request] = _calls(google, OBJECT_A)
    assert request.path == f"/walletobjects/v1/loyaltyObject/{OBJECT_A}/addMessage"
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert token in google.tokens
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "auto-engagement/1.0"
    assert request.json() == {
        "message": {
            "id": "reengagement-7",
            "header": "We miss you",
            "body": "Come back",
            "messageType": "TEXT_AND_NOTIFY",
            # Ours expire (GOOGLE_WALLET_MESSAGE_DAYS, 14 by default): they do not pile up on the pass.
            "displayInterval": {
                "start": {"date": "2026-11-30T09:00:00+00:00"},
                "end": {"date": "2026-12-14T09:00:00+00:00"},
            },
        }
    }
    assert google.deliveries == {OBJECT_A: 1}


def test_the_oauth_token_is_a_signed_service_account_assertion_exchanged_once(
    google_client, google, google_service_account
):
    for object_id in (OBJECT_A, OBJECT_B):
        assert _add(google_client, object_id, notify=False).ok
    [grant] = google.token_grants
    form = parse_qs(grant.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    # google-auth addresses the assertion to Google's token endpoint whatever token_uri it is posted to.
    claims = jwt.decode(
        form["assertion"][0],
        certs=_public_pem(google_service_account),
        audience="https://oauth2.googleapis.com/token",
    )
    assert claims["iss"] == google_service_account["info"]["client_email"]
    assert claims["scope"] == SCOPE
    assert google.deliveries == {OBJECT_A: 1, OBJECT_B: 1}


def test_text_without_notification(google_client, google):
    assert _add(google_client, notify=False).ok
    assert [call.json()["message"]["messageType"] for call in _calls(google, OBJECT_A)] == ["TEXT"]


# Outcome classes: only what provably did not reach Google is retried


def test_404_object_missing_is_permanent_and_not_retried(google_client, google):
    google.script(OBJECT_A, [_error(google, 404)])
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, False)
    assert "not found" in outcome.error
    assert google.requests[OBJECT_A] == 1


def test_other_4xx_are_permanent_and_not_retried(google_client, google):
    google.script(OBJECT_A, [Reply(400, {"error": {"code": 400, "message": "Invalid header"}})])
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, False)
    assert outcome.error == "Google Wallet 400: Invalid header"
    assert google.requests[OBJECT_A] == 1


def test_429_is_retried_then_sent(google_client, google):
    google.script(OBJECT_A, [_error(google, 429, **{"Retry-After": "0"})])
    outcome = _add(google_client)
    assert outcome.ok
    assert google.requests[OBJECT_A] == 2
    assert google.deliveries == {OBJECT_A: 1}


def test_429_past_the_retries_is_a_retryable_failure(google_client, google):
    google.script(OBJECT_A, [_error(google, 429)] * 3)  # no Retry-After: the client's own backoff
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, True, False)
    assert "429" in outcome.error
    assert google.requests[OBJECT_A] == 3  # WALLET_MAX_RETRIES = 2
    assert google.deliveries == {}


def test_retry_after_in_seconds_is_waited_for_and_holds_back_every_sender(google):
    """A's 429 asks for a second: A is sent again a second later, and B's second call, due meanwhile, waits for the
    shared limiter too (without the pause it would go out at once, well within the second)."""
    arrivals = Arrivals(google)

    def answer_b1_late(request) -> None:
        # B's first answer takes a moment, so B's second call is due only after A's 429 has come back.
        arrivals(request)
        if request.recipient == OBJECT_B and len(arrivals.of(OBJECT_B)) == 1:
            time.sleep(0.3)

    google.on_request = answer_b1_late
    google.script(OBJECT_A, [_error(google, 429, **{"Retry-After": "1"})])
    google.script(OBJECT_B, [Reply(200, {"resource": {}}, deliver=True)])
    client = _client(limiter=RateLimiter(rate=1000))
    try:
        outcomes = client.add_messages(
            [
                AddMessage(OBJECT_A, "a", "h", "b", notify=True),
                AddMessage(OBJECT_B, "b1", "h", "b", notify=True),
                AddMessage(OBJECT_B, "b2", "h", "b", notify=True),
            ]
        )
    finally:
        client.close()
    assert [outcome.ok for outcome in outcomes] == [True, True, True]
    (a_first, _), (a_again, _) = arrivals.of(OBJECT_A)
    (b_first, _), (b_second, _) = arrivals.of(OBJECT_B)
    assert a_again - a_first >= 0.95
    assert b_first - a_first < 0.5
    assert b_second - a_first >= 0.9


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_may_have_added_the_message_so_it_is_unknown_and_not_retried(google_client, google, status):
    google.script(OBJECT_A, [_error(google, status, **{"Retry-After": "0"})])
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, True)
    assert str(status) in outcome.error
    assert outcome.error.endswith("it may be on the pass")
    assert google.requests[OBJECT_A] == 1


@pytest.mark.parametrize("fault", [Fault.RESET_AFTER_RECEIPT, Fault.ACCEPT_THEN_TIMEOUT])
def test_no_answer_after_the_request_was_written_is_unknown_and_not_retried(google, google_settings, fault):
    google_settings.GOOGLE_WALLET_TIMEOUT = 0.5  # the stand-in answers ACCEPT_THEN_TIMEOUT after 3 s
    google.script(OBJECT_A, [fault])
    client = _client()
    try:
        outcome = _add(client)
    finally:
        client.close()
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, True)
    assert "no answer after the request was sent" in outcome.error
    assert google.requests[OBJECT_A] == 1
    assert google.deliveries == {OBJECT_A: 1}  # Google did act on it: sending it again would show it twice


def test_no_connection_is_retried_then_sent(google_settings, google_service_account, tmp_path):
    """The API refuses connections (nothing was written) until the client waits for its retry: then it is sent."""
    with (
        GoogleWalletStandIn() as tokens,
        GoogleWalletStandIn(require_auth=False, fault=Fault.REFUSED) as api,
    ):
        api.configure(google_settings, _key_file(tmp_path, google_service_account, token_uri=tokens.token_uri))

        def back_up_then_sleep(seconds: float) -> None:
            api.fault = Fault.OK
            time.sleep(seconds)

        client = _client(sleep=back_up_then_sleep)
        try:
            outcome = _add(client)
        finally:
            client.close()
    assert outcome.ok
    assert api.requests == {OBJECT_A: 1}  # the refused attempt never reached it
    assert api.deliveries == {OBJECT_A: 1}


def test_a_refused_connection_past_the_retries_is_a_retryable_failure(
    google_settings, google_service_account, tmp_path
):
    with (
        GoogleWalletStandIn() as tokens,
        GoogleWalletStandIn(require_auth=False, fault=Fault.REFUSED) as api,
    ):
        api.configure(google_settings, _key_file(tmp_path, google_service_account, token_uri=tokens.token_uri))
        client = _client()
        try:
            outcome = _add(client)
        finally:
            client.close()
    assert (outcome.ok, outcome.retryable, outcome.unknown, outcome.attempted) == (False, True, False, True)
    assert outcome.error == "Google Wallet unreachable: connect error"
    assert api.total_requests == 0


def test_403_quota_exceeded_is_the_notification_quota(google_client, google):
    google.exceed_quota(OBJECT_A)
    outcome = _add(google_client)
    assert (outcome.ok, outcome.quota_exceeded, outcome.retryable, outcome.unknown) == (False, True, False, False)
    assert google.requests[OBJECT_A] == 1


def test_a_403_without_quota_exceeded_is_a_permanent_refusal(google_client, google):
    denied = {"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}}
    google.script(OBJECT_A, [Reply(403, denied)])
    outcome = _add(google_client)
    assert (outcome.ok, outcome.quota_exceeded, outcome.retryable) == (False, False, False)
    assert outcome.error == "Google Wallet 403: The caller does not have permission"


# The OAuth2 token


def test_a_401_refreshes_the_token_once_and_sends_again(google_client, google):
    assert _add(google_client, OBJECT_A).ok
    google.expire_tokens()  # the token the client holds is now refused
    objects = [f"{GOOGLE_ISSUER_ID}.expired-{n}" for n in range(5)]
    outcomes = google_client.add_messages([AddMessage(o, "m", "h", "b", notify=True) for o in objects])
    assert [outcome.ok for outcome in outcomes] == [True] * 5
    assert google.token_requests == 2, "the calls refused at once share one refresh"
    for object_id in objects:
        refused, accepted = _calls(google, object_id)
        assert refused.headers["authorization"] != accepted.headers["authorization"]
    assert google.deliveries == dict.fromkeys([OBJECT_A, *objects], 1)


def test_a_second_401_after_the_refresh_is_final(google_client, google):
    google.script(OBJECT_A, [_error(google, 401)] * 2)
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, False)
    assert outcome.error.startswith("Google Wallet 401")
    assert google.requests[OBJECT_A] == 2
    assert google.token_requests == 2


def test_a_call_sent_again_after_a_401_waits_for_the_breaker(google_client, google):
    """The breaker opens while B's refused call is answered (another sender's failures): B is not sent again, and
    its 401, not acted on, is no attempt."""
    assert _add(google_client, OBJECT_A).ok
    google.expire_tokens()
    breaker = google_client.breaker = CircuitBreaker(threshold=1)
    google.on_request = lambda request: breaker.record(ok=False, error="Google Wallet 503")
    outcome = _add(google_client, OBJECT_B)
    assert (outcome.ok, outcome.retryable, outcome.attempted) == (False, True, False)
    assert outcome.error.startswith("not attempted: ")
    assert google.requests[OBJECT_B] == 1


def test_a_call_sent_again_after_a_401_takes_a_slot_of_the_rate_limit(google):
    """Sent again is one more request to Google: it waits for a slot of the shared budget like any other."""
    limiter = RecordingLimiter(rate=5)
    client = _client(limiter=limiter)
    try:
        assert _add(client, OBJECT_A).ok
        google.expire_tokens()
        assert _add(client, OBJECT_B).ok
    finally:
        client.close()
    assert google.requests[OBJECT_B] == 2
    assert len(limiter.booked_at) == 3


def test_a_failed_token_exchange_is_a_retryable_failure_and_no_call_is_made(google):
    google.token_error = Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    client = _client(max_retries=0)
    try:
        outcome = _add(client)
    finally:
        client.close()
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, True, False)
    assert outcome.error == "Google Wallet token unavailable: RefreshError"
    assert google.total_requests == 0


# Our older messages, the breaker, concurrency and order


def test_only_the_newest_of_our_messages_stay_on_the_object(google_client, google):
    others = [{"id": "platform-offer", "header": "Offer", "body": "10% off"}]
    ours = [{"id": f"reengagement-{n}", "header": "h", "body": "b"} for n in range(1, 5)]
    google.objects[OBJECT_A] = {"id": OBJECT_A, "messages": others + ours}
    outcome = _add(google_client, message_id="reengagement-5")
    assert outcome.ok
    [patch] = _calls(google, OBJECT_A, "PATCH")
    assert patch.headers["authorization"].removeprefix("Bearer ") in google.tokens
    kept = ["platform-offer", "reengagement-3", "reengagement-4", "reengagement-5"]
    assert [m["id"] for m in patch.json()["messages"]] == kept
    assert [m["id"] for m in google.messages(OBJECT_A)] == kept


def test_a_failed_patch_leaves_the_message_sent(google_client, google):
    ours = [{"id": f"reengagement-{n}", "header": "h", "body": "b"} for n in range(1, 4)]
    google.objects[OBJECT_A] = {"id": OBJECT_A, "messages": ours}
    google.script(OBJECT_A, [Fault.OK, _error(google, 503)])
    outcome = _add(google_client, message_id="reengagement-4")
    assert (outcome.ok, outcome.unknown) == (True, False)
    assert len(_calls(google, OBJECT_A, "PATCH")) == 1, "a removal is not retried"


def test_an_open_breaker_makes_no_call(google_client, google):
    breaker = CircuitBreaker(threshold=1)
    breaker.record(ok=False, error="Google Wallet 503")
    google_client.breaker = breaker
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.attempted) == (False, True, False)
    assert outcome.error.startswith("not attempted: ")
    assert google.total_requests == 0


def test_the_breaker_is_consulted_again_when_the_slot_comes(google):
    """B books the second slot (0.2 s later); A's 500 opens the breaker meanwhile, so B is never sent."""
    google.script(OBJECT_A, [_error(google, 500)])
    breaker = CircuitBreaker(threshold=1)
    client = _client(breaker=breaker, limiter=RateLimiter(rate=5))
    try:
        lost, waiting = client.add_messages(
            [AddMessage(OBJECT_A, "a", "h", "b", notify=True), AddMessage(OBJECT_B, "b", "h", "b", notify=True)]
        )
    finally:
        client.close()
    assert lost.unknown
    assert (waiting.ok, waiting.retryable, waiting.attempted) == (False, True, False)
    assert google.requests == {OBJECT_A: 1}


def test_the_breaker_is_consulted_before_a_retry(google):
    google.script(OBJECT_A, [_error(google, 429, **{"Retry-After": "0"})])
    client = _client(breaker=CircuitBreaker(threshold=1))
    try:
        outcome = _add(client)
    finally:
        client.close()
    # The 429 opened the breaker: no second attempt; the message failed retryably after one attempt.
    assert (outcome.ok, outcome.retryable, outcome.attempted) == (False, True, True)
    assert "429" in outcome.error
    assert google.requests[OBJECT_A] == 1


def test_calls_on_different_objects_are_in_flight_at_once_and_one_objects_go_in_order(google):
    arrivals = Arrivals(google, delay=0.3)
    objects = [f"{GOOGLE_ISSUER_ID}.p{n}" for n in range(10)]
    calls = [AddMessage(o, f"m-{o}", "h", "b", notify=True) for o in objects]
    calls += [AddMessage(objects[0], "second", "h", "b", notify=False)]
    client = _client(concurrency=20)
    started = time.monotonic()
    try:
        outcomes = client.add_messages(calls)
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert [outcome.message_id for outcome in outcomes] == [call.message_id for call in calls]
    assert all(outcome.ok for outcome in outcomes)
    assert arrivals.most_held == 10  # one after another this would be 11 x 0.3 s
    assert elapsed < 2.0
    (_, first_answered), (second_arrived, _) = arrivals.of(objects[0])
    assert second_arrived >= first_answered, "the second call on an object waits for the first one's answer"
    assert [m["id"] for m in google.messages(objects[0])] == [f"m-{objects[0]}", "second"]


def test_no_more_calls_in_flight_than_the_concurrency(google):
    arrivals = Arrivals(google, delay=0.2)
    calls = [AddMessage(f"{GOOGLE_ISSUER_ID}.p{n}", "m", "h", "b", notify=True) for n in range(12)]
    client = _client(concurrency=4)
    try:
        outcomes = client.add_messages(calls)
    finally:
        client.close()
    assert all(outcome.ok for outcome in outcomes)
    assert arrivals.most_held == 4


class RecordingLimiter(RateLimiter):
    """The real limiter, noting when each slot is booked."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.booked_at: list[float] = []

    def reserve(self) -> float:
        self.booked_at.append(time.monotonic())
        return super().reserve()


def test_no_more_slots_are_booked_ahead_than_calls_may_be_in_flight(google):
    """Under a rate limit, calls waiting for their slot count against the concurrency: a batch never books the
    shared budget far ahead (slots another process could use, or that an open breaker would waste)."""
    arrivals = Arrivals(google)
    limiter = RecordingLimiter(rate=20)
    calls = [AddMessage(f"{GOOGLE_ISSUER_ID}.p{n}", "m", "h", "b", notify=True) for n in range(10)]
    client = _client(limiter=limiter, concurrency=2)
    try:
        outcomes = client.add_messages(calls)
    finally:
        client.close()
    assert all(outcome.ok for outcome in outcomes)
    first = limiter.booked_at[0]
    assert sum(1 for when in limiter.booked_at if when - first < 0.03) == 2
    times = sorted(arrived for _, arrived, _ in arrivals.events)
    assert times[-1] - times[0] >= 9 * 0.05 * 0.9  # 10 calls at 20 a second


class UnreachableQuotaStore(RateLimiter):
    """A shared budget whose store cannot be reached (its statement fails)."""

    def reserve(self) -> float:
        raise ConnectionError("quota store unreachable")


def test_an_unexpected_error_makes_the_call_unknown_and_the_batch_goes_on(google):
    client = _client(limiter=UnreachableQuotaStore(rate=10))
    try:
        outcomes = client.add_messages(
            [AddMessage(OBJECT_A, "a", "h", "b", notify=True), AddMessage(OBJECT_B, "b", "h", "b", notify=True)]
        )
    finally:
        client.close()
    assert [(o.ok, o.unknown, o.retryable) for o in outcomes] == [(False, True, False)] * 2
    assert outcomes[0].error == "Google Wallet: unexpected error (ConnectionError); it may be on the pass"


# The daily limit of notifying messages, through the backend


def _message(customer, log_id: int) -> Message:
    return Message(
        log_id=log_id,
        recipient=customer.customer_id,
        header="We miss you",
        body="Come back",
        extra={"run_date": "2026-11-25"},
    )


def _object_id(wallet_pass) -> str:
    return f"{GOOGLE_ISSUER_ID}.{wallet_pass.pass_id}"


def _message_types(standin: GoogleWalletStandIn, wallet_pass) -> list[str]:
    return [call.json()["message"]["messageType"] for call in _calls(standin, _object_id(wallet_pass))]


def test_past_three_notifications_in_24_hours_the_message_goes_as_text(google):
    wallet_pass = WalletPassFactory(platform="google")
    GoogleWalletMessage.objects.create(
        wallet_pass=wallet_pass, message_id="old", notified=True, sent_at=timezone.now() - dt.timedelta(hours=25)
    )
    with WalletBackend() as backend:
        results = [backend.send_batch([_message(wallet_pass.customer, log_id)])[0] for log_id in range(1, 6)]
    assert [result.status for result in results] == ["sent"] * 5
    assert _message_types(google, wallet_pass) == ["TEXT_AND_NOTIFY"] * 3 + ["TEXT"] * 2
    assert GoogleWalletMessage.objects.filter(wallet_pass=wallet_pass, notified=True).count() == 4
    # Our older messages were removed as the new ones came (GOOGLE_WALLET_KEEP_MESSAGES = 3).
    assert [m["id"] for m in google.messages(_object_id(wallet_pass))] == [f"reengagement-{n}" for n in (3, 4, 5)]


def test_past_the_cap_skip_mode_makes_no_call(google, google_settings):
    google_settings.GOOGLE_WALLET_OVER_LIMIT = "skip"
    wallet_pass = WalletPassFactory(platform="google")
    GoogleWalletMessage.objects.bulk_create(
        GoogleWalletMessage(wallet_pass=wallet_pass, message_id=f"m{n}", notified=True) for n in range(3)
    )
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "skipped"
    assert "limit" in result.error
    assert google.total_requests == 0


def test_a_failed_call_does_not_count_against_the_cap(google):
    wallet_pass = WalletPassFactory(platform="google")
    google.script(_object_id(wallet_pass), [_error(google, 404)])
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "failed"
    assert not result.retryable
    assert not GoogleWalletMessage.objects.exists()


def test_a_quota_refusal_from_google_is_not_retried_and_the_message_goes_as_text(google):
    wallet_pass = WalletPassFactory(platform="google")
    quota = {"error": {"code": 429, "message": "QuotaExceededException: too many notifications", "status": "x"}}
    google.script(_object_id(wallet_pass), [Reply(429, quota)])
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "sent"
    assert _message_types(google, wallet_pass) == ["TEXT_AND_NOTIFY", "TEXT"]
    assert list(GoogleWalletMessage.objects.values_list("notified", flat=True)) == [False]


def test_a_batch_with_unknown_and_retryable_outcomes_keeps_each_messages_own(google, google_settings):
    """Outcomes come back per message in input order, whatever finished first."""
    google_settings.WALLET_MAX_RETRIES = 0
    passes = [WalletPassFactory(platform="google") for _ in range(4)]
    google.script(_object_id(passes[0]), [_error(google, 503)])
    google.script(_object_id(passes[1]), [_error(google, 429)])
    google.script(_object_id(passes[3]), [_error(google, 404)])
    with WalletBackend() as backend:
        results = backend.send_batch([_message(p.customer, n) for n, p in enumerate(passes, start=1)])
    assert [(r.log_id, r.status, r.retryable) for r in results] == [
        (1, "unknown", False),
        (2, "failed", True),
        (3, "sent", False),
        (4, "failed", False),
    ]
    assert results[2].provider_message_id == "google:reengagement-3"


# The save link


def test_save_url_is_a_savetowallet_jwt_carrying_the_loyalty_object(google_settings, google_service_account):
    wallet_pass = WalletPassFactory(platform="google")
    url = save_url(wallet_pass=wallet_pass, config=load_google_config())
    assert url.startswith("https://pay.google.com/gp/v/save/")
    token = url.rsplit("/", 1)[1].encode()
    signed, signature = token.rsplit(b".", 1)
    verifier = crypt.RSAVerifier.from_string(_public_pem(google_service_account))
    assert verifier.verify(signed, base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
    assert not verifier.verify(signed + b"x", base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
    claims = jwt.decode(token, verify=False)
    assert claims["aud"] == "google"
    assert claims["typ"] == "savetowallet"
    assert claims["iss"] == google_service_account["info"]["client_email"]
    [loyalty_object] = claims["payload"]["loyaltyObjects"]
    assert loyalty_object["id"] == f"{GOOGLE_ISSUER_ID}.{wallet_pass.pass_id}"
    assert loyalty_object["classId"] == f"{GOOGLE_ISSUER_ID}.loyalty"
    assert loyalty_object["accountId"] == wallet_pass.customer.customer_id


def test_a_transient_token_error_is_one_token_request_in_tests(google):
    """google-auth would sleep and exchange again after a 503; the suite turns that off (tests/conftest.py), so each
    scripted token answer is one request and no test waits seconds for it."""
    google.token_error = Reply(503, {"error": "temporarily_unavailable"})
    client = _client(max_retries=0)
    started = time.monotonic()
    try:
        outcome = _add(client)
    finally:
        client.close()
    assert (outcome.ok, outcome.retryable) == (False, True)
    assert google.token_requests == 1
    assert time.monotonic() - started < 1
