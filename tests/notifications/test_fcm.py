"""The FCM backend against the local FCM stand-in (tests/faults/standins.py): a real HTTP server that speaks FCM HTTP
v1, issues OAuth2 access tokens at /token, only accepts the tokens it issued, and records every request it received
on its side. The backend runs on a fake clock: its backoff waits are recorded, never waited."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.exceptions import ImproperlyConfigured

from notifications.backends import get_backend
from notifications.backends.base import Message, Result
from notifications.backends.fcm import FcmPushBackend
from tests.faults.standins import Fault, FcmStandIn, Reply, Request
from tests.notifications.fakes import FakeClock

PROJECT = "demo-project"
SEND_PATH = f"/v1/projects/{PROJECT}/messages:send"
CLIENT_EMAIL = "fcm-sender@demo-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key_file(path, private_key: rsa.RSAPrivateKey, *, token_uri: str):
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path


@pytest.fixture
def fcm():
    """FCM and its OAuth2 token endpoint: one local server."""
    with FcmStandIn(project_id=PROJECT) as standin:
        yield standin


@pytest.fixture
def key_file(tmp_path, private_key, fcm):
    return write_key_file(tmp_path / "service-account.json", private_key, token_uri=fcm.token_uri)


@pytest.fixture(autouse=True)
def fcm_settings(settings, key_file, fcm):
    settings.PUSH_CHANNEL = "fcm"
    settings.FCM_CREDENTIALS = str(key_file)
    settings.FCM_PROJECT_ID = ""
    settings.FCM_API_BASE = fcm.base_url + "/"  # a trailing slash is fine
    settings.FCM_RATE_LIMIT = 0
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 3
    settings.CHANNEL_HTTP_CONCURRENCY = 1
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def send(clock: FakeClock, messages: list[Message], *, sleep=None) -> list[Result]:
    with FcmPushBackend(clock=clock, sleep=sleep or clock.sleep) as backend:
        return backend.send_batch(messages)


def push(log_id: int = 1, token: str = "device-token-1") -> Message:
    return Message(log_id=log_id, recipient=token, header="We miss you", body="A free coffee is waiting.")


def bearers(fcm: FcmStandIn) -> list[str]:
    """The access token of every push the stand-in received, in order."""
    return [request.headers["authorization"].removeprefix("Bearer ") for request in fcm.received]


def fcm_error(http_status: int, status: str, message: str, error_code: str | None = None, **extra) -> dict:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {
        "error": {
            "code": http_status,
            "message": message,
            "status": status,
            "details": (details if error_code else []) + extra.get("details", []),
        }
    }


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_the_alias_selects_this_backend():
    assert isinstance(get_backend("push"), FcmPushBackend)


def test_token_from_the_service_account_then_the_exact_send_request(clock, fcm, private_key):
    [result] = send(clock, [push()])
    assert result == Result(log_id=1, status="sent", provider_message_id=f"projects/{PROJECT}/messages/1")

    [grant] = fcm.token_grants
    assert (grant.method, grant.path) == ("POST", "/token")
    form = grant.form()
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header_b64, claims_b64, signature_b64 = form["assertion"].split(".")
    header, claims = json.loads(b64decode(header_b64)), json.loads(b64decode(claims_b64))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    private_key.public_key().verify(
        b64decode(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )

    [request] = fcm.received
    assert (request.method, request.path) == ("POST", SEND_PATH)
    assert request.headers["content-type"] == "application/json"
    [token] = bearers(fcm)
    assert token in fcm.tokens, "the token the endpoint issued"
    assert request.json() == {
        "message": {
            "token": "device-token-1",
            "notification": {"title": "We miss you", "body": "A free coffee is waiting."},
        }
    }


def test_the_timeout_setting_bounds_the_wait_for_an_answer(clock, settings, fcm):
    settings.CHANNEL_HTTP_TIMEOUT = 0.3
    fcm.fault = Fault.HANGING
    started = time.monotonic()
    [result] = send(clock, [push()])
    assert time.monotonic() - started < 3
    assert (result.status, result.error) == (
        "unknown",
        "FCM: no answer after the request was sent (timeout); it may have been sent",
    )
    assert len(fcm.received) == 1


def test_one_token_serves_the_whole_batch(clock, fcm, settings):
    settings.CHANNEL_HTTP_CONCURRENCY = 4
    results = send(clock, [push(log_id=n, token=f"t{n}") for n in range(8)])
    assert [result.status for result in results] == ["sent"] * 8
    assert fcm.token_requests == 1
    assert len(fcm.received) == 8
    assert len(set(bearers(fcm))) == 1


def test_project_id_setting_overrides_the_key_file(clock, fcm, settings):
    settings.FCM_PROJECT_ID = "other-project"
    [result] = send(clock, [push()])
    assert result.status == "sent"
    assert [request.path for request in fcm.received] == ["/v1/projects/other-project/messages:send"]


def test_429_with_retry_after_then_success(clock, fcm):
    times: list[float] = []

    def note(request: Request) -> None:
        times.append(clock())

    fcm.on_request = note
    quota = fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED")
    fcm.script("device-token-1", [Reply(429, quota, headers={"Retry-After": "3"}), Fault.OK])
    [result] = send(clock, [push()])
    assert result.provider_message_id == f"projects/{PROJECT}/messages/1"
    assert len(times) == 2
    assert times[1] - times[0] >= 3


def test_503_then_success(clock, fcm):
    fcm.script("device-token-1", [Reply(503, fcm_error(503, "UNAVAILABLE", "overloaded", "UNAVAILABLE")), Fault.OK])
    [result] = send(clock, [push()])
    assert result.status == "sent"
    assert len(fcm.received) == 2


def test_500_may_have_sent_the_push_so_it_is_unknown_and_not_retried(clock, fcm):
    fcm.script("device-token-1", [Reply(500, fcm_error(500, "INTERNAL", "internal error", "INTERNAL")), Fault.OK])
    [result] = send(clock, [push()])
    assert result.status == "unknown"
    assert result.error == "FCM answered HTTP 500; the message may have been sent"
    assert len(fcm.received) == 1


@pytest.mark.parametrize("code", ["APNS_AUTH_ERROR", "THIRD_PARTY_AUTH_ERROR"])
def test_a_third_party_auth_error_fails_that_message_and_the_batch_goes_on(clock, fcm, code):
    fcm.reject_auth("device-token-1", error_code=code)
    first, second = send(clock, [push(log_id=1), push(log_id=2)])
    assert (first.status, first.retryable, first.revoked) == ("failed", False, False)
    assert code in first.error
    assert second.status == "sent"
    assert len(fcm.received) == 2, "no resend"
    assert fcm.token_requests == 1, "no token refresh"


def test_400_unrelated_to_the_token_is_permanent_and_keeps_the_token(clock, fcm):
    fcm.fault = Reply(400, fcm_error(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT"))
    [result] = send(clock, [push()])
    assert len(fcm.received) == 1
    assert result.status == "failed"
    assert result.retryable is False
    assert result.revoked is False
    assert result.error == "FCM INVALID_ARGUMENT: Message is too big"


def test_unregistered_token_is_revoked_and_not_retried(clock, fcm):
    fcm.unregistered("device-token-1", times=3)
    [result] = send(clock, [push()])
    assert len(fcm.received) == 1
    assert (result.status, result.revoked, result.retryable) == ("failed", True, False)
    assert "UNREGISTERED" in result.error


def test_invalid_registration_token_is_revoked(clock, fcm):
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
    }
    fcm.fault = Reply(400, fcm_error(400, "INVALID_ARGUMENT", "Invalid value", "INVALID_ARGUMENT", details=[violation]))
    [result] = send(clock, [push()])
    assert (result.status, result.revoked) == ("failed", True)


def test_refused_connection_then_success(clock, fcm, settings, tmp_path, private_key):
    # Tokens come from a second stand-in, so only the FCM endpoint refuses connections; FCM takes its tokens.
    with FcmStandIn(project_id=PROJECT) as tokens:
        key_file = write_key_file(tmp_path / "other-key.json", private_key, token_uri=tokens.token_uri)
        settings.FCM_CREDENTIALS = str(key_file)
        fcm.tokens = tokens.tokens
        fcm.down()

        def sleep(seconds: float) -> None:  # FCM is back by the time the backoff is over
            clock.sleep(seconds)
            fcm.up()

        [result] = send(clock, [push()], sleep=sleep)
    assert result.status == "sent"
    assert len(clock.sleeps) == 1, "one backoff: the refused attempt, then the one that went through"
    assert len(fcm.received) == 1
    assert tokens.token_requests == 1


def test_a_401_refreshes_the_token_once_and_resends(clock, fcm):
    fcm.script(
        "device-token-1",
        [Reply(401, fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication"))],
    )
    first, second = send(clock, [push(log_id=1), push(log_id=2)])
    assert (first.status, second.status) == ("sent", "sent")
    assert fcm.token_requests == 2
    old, new, again = bearers(fcm)
    assert old != new == again


def test_an_expired_token_is_refreshed_and_the_message_sent_again(clock, fcm):
    with FcmPushBackend(clock=clock, sleep=clock.sleep) as backend:
        [first] = backend.send_batch([push(log_id=1)])
        fcm.expire_tokens()  # FCM now answers 401 to the token the backend holds
        [second] = backend.send_batch([push(log_id=2)])
    assert (first.status, second.status) == ("sent", "sent")
    assert fcm.token_requests == 2
    old, rejected, new = bearers(fcm)
    assert old == rejected != new
    assert fcm.deliveries == {"device-token-1": 2}


def test_a_token_near_expiry_is_refreshed_before_use(clock, fcm):
    fcm.token_expires_in = 60
    send(clock, [push(log_id=1), push(log_id=2)])
    assert fcm.token_requests == 2
    first, second = bearers(fcm)
    assert first != second


def test_a_token_rejected_even_after_refresh_fails_the_whole_batch(clock, fcm):
    fcm.fault = Reply(401, fcm_error(401, "UNAUTHENTICATED", "invalid authentication"))
    results = send(clock, [push(log_id=n) for n in range(4)])
    assert len(fcm.received) == 2
    assert fcm.token_requests == 2
    assert [result.log_id for result in results] == [0, 1, 2, 3]
    assert all(result.status == "failed" and "401" in result.error for result in results)


def test_token_endpoint_refusing_the_key_fails_the_batch_without_sending(clock, fcm):
    fcm.token_error = Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    results = send(clock, [push(log_id=n) for n in range(3)])
    assert fcm.received == []
    assert fcm.token_requests == 1
    assert all(result.status == "failed" and "invalid_grant" in result.error for result in results)
    assert all(result.retryable is False for result in results)


def test_permission_denied_fails_the_whole_batch(clock, fcm):
    fcm.fault = Reply(403, fcm_error(403, "PERMISSION_DENIED", "Permission denied"))
    results = send(clock, [push(log_id=n) for n in range(3)])
    assert len(fcm.received) == 1
    assert all(result.status == "failed" and "PERMISSION_DENIED" in result.error for result in results)


def test_missing_credentials_refuse_to_open(settings):
    settings.FCM_CREDENTIALS = ""
    with pytest.raises(ImproperlyConfigured, match="FCM_CREDENTIALS is not set"):
        FcmPushBackend().open()


def test_unreadable_key_file_refuses_to_open(settings, tmp_path):
    settings.FCM_CREDENTIALS = str(tmp_path / "missing.json")
    with pytest.raises(ImproperlyConfigured, match="cannot read"):
        FcmPushBackend().open()


def test_a_key_file_that_is_not_a_service_account_refuses_to_open(settings, tmp_path):
    path = tmp_path / "user.json"
    path.write_text('{"type": "authorized_user"}')
    settings.FCM_CREDENTIALS = str(path)
    with pytest.raises(ImproperlyConfigured, match="not a service-account key file"):
        FcmPushBackend().open()


def test_unreachable_token_endpoint_fails_the_batch_as_retryable(clock, settings, tmp_path, private_key, fcm):
    with FcmStandIn() as gone:
        token_uri = gone.token_uri
    # The key's token endpoint refuses connections; FCM itself is up.
    settings.FCM_CREDENTIALS = str(write_key_file(tmp_path / "other-key.json", private_key, token_uri=token_uri))
    results = send(clock, [push(log_id=n) for n in range(2)])
    assert fcm.received == []
    assert all(result.status == "failed" and result.retryable for result in results)
    assert "token endpoint" in results[0].error
