import base64
import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.exceptions import ImproperlyConfigured

from notifications.backends import get_backend
from notifications.backends.base import Message, Result
from notifications.backends.fcm import FcmPushBackend
from tests.notifications.fakes import FakeClock

TOKEN_URI = "https://oauth2.test/token"
SEND_URL = "https://fcm.test/v1/projects/demo-project/messages:send"
CLIENT_EMAIL = "fcm-sender@demo-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path, private_key):
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "demo-project",
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "1234567890",
                "token_uri": TOKEN_URI,
            }
        )
    )
    return path


@pytest.fixture(autouse=True)
def fcm_settings(settings, key_file):
    settings.PUSH_CHANNEL = "fcm"
    settings.FCM_CREDENTIALS = str(key_file)
    settings.FCM_PROJECT_ID = ""
    settings.FCM_API_BASE = "https://fcm.test"
    settings.FCM_RATE_LIMIT = 0
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 3
    settings.CHANNEL_HTTP_CONCURRENCY = 1
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def token_endpoint(*tokens: str, expires_in: int = 3600) -> None:
    for token in tokens:
        responses.post(TOKEN_URI, json={"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})


def send(clock: FakeClock, messages: list[Message]) -> list[Result]:
    with FcmPushBackend(clock=clock, sleep=clock.sleep) as backend:
        return backend.send_batch(messages)


def push(log_id: int = 1, token: str = "device-token-1") -> Message:
    return Message(log_id=log_id, recipient=token, header="We miss you", body="A free coffee is waiting.")


def fcm_calls() -> list:
    return [call for call in responses.calls if call.request.url == SEND_URL]


def token_calls() -> list:
    return [call for call in responses.calls if call.request.url == TOKEN_URI]


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


@responses.activate
def test_token_from_the_service_account_then_the_exact_send_request(clock, private_key):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:1"})
    [result] = send(clock, [push()])
    assert result == Result(log_id=1, status="sent", provider_message_id="projects/demo-project/messages/0:1")

    [grant] = token_calls()
    form = parse_qs(grant.request.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    header_b64, claims_b64, signature_b64 = form["assertion"][0].split(".")
    header, claims = json.loads(b64decode(header_b64)), json.loads(b64decode(claims_b64))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    private_key.public_key().verify(
        b64decode(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )

    [call] = fcm_calls()
    assert call.request.method == "POST"
    assert call.request.headers["Authorization"] == "Bearer access-token-1"
    assert json.loads(call.request.body) == {
        "message": {
            "token": "device-token-1",
            "notification": {"title": "We miss you", "body": "A free coffee is waiting."},
        }
    }
    assert call.request.req_kwargs["timeout"] == 5.0


@responses.activate
def test_one_token_serves_the_whole_batch(clock, settings):
    settings.CHANNEL_HTTP_CONCURRENCY = 4
    token_endpoint("access-token-1")
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:1"})
    results = send(clock, [push(log_id=n, token=f"t{n}") for n in range(8)])
    assert [result.status for result in results] == ["sent"] * 8
    assert len(token_calls()) == 1
    assert len(fcm_calls()) == 8


@responses.activate
def test_project_id_setting_overrides_the_key_file(clock, settings):
    settings.FCM_PROJECT_ID = "other-project"
    token_endpoint("access-token-1")
    responses.post("https://fcm.test/v1/projects/other-project/messages:send", json={"name": "n"})
    [result] = send(clock, [push()])
    assert result.status == "sent"


@responses.activate
def test_429_with_retry_after_then_success(clock):
    token_endpoint("access-token-1")
    times: list[float] = []

    def answer(request):
        times.append(clock())
        if len(times) == 1:
            return (
                429,
                {"Retry-After": "3"},
                json.dumps(fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED")),
            )
        return 200, {}, '{"name": "projects/demo-project/messages/0:2"}'

    responses.add_callback(responses.POST, SEND_URL, callback=answer)
    [result] = send(clock, [push()])
    assert result.provider_message_id == "projects/demo-project/messages/0:2"
    assert times[1] - times[0] >= 3


@responses.activate
def test_503_then_success(clock):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, status=503, json=fcm_error(503, "UNAVAILABLE", "overloaded", "UNAVAILABLE"))
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:3"})
    [result] = send(clock, [push()])
    assert result.status == "sent"
    assert len(fcm_calls()) == 2


@responses.activate
def test_500_may_have_sent_the_push_so_it_is_unknown_and_not_retried(clock):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, status=500, json=fcm_error(500, "INTERNAL", "internal error", "INTERNAL"))
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:3"})
    [result] = send(clock, [push()])
    assert result.status == "unknown"
    assert len(fcm_calls()) == 1


@responses.activate
@pytest.mark.parametrize("code", ["APNS_AUTH_ERROR", "THIRD_PARTY_AUTH_ERROR"])
def test_a_third_party_auth_error_fails_that_message_and_the_batch_goes_on(clock, code):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, status=401, json=fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS", code))
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:3"})
    first, second = send(clock, [push(log_id=1), push(log_id=2)])
    assert (first.status, first.retryable, first.revoked) == ("failed", False, False)
    assert code in first.error
    assert second.status == "sent"
    assert len(fcm_calls()) == 2, "no token refresh, no resend"


@responses.activate
def test_400_unrelated_to_the_token_is_permanent_and_keeps_the_token(clock):
    token_endpoint("access-token-1")
    responses.post(
        SEND_URL, status=400, json=fcm_error(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT")
    )
    [result] = send(clock, [push()])
    assert len(fcm_calls()) == 1
    assert result.status == "failed"
    assert result.retryable is False
    assert result.revoked is False
    assert result.error == "FCM INVALID_ARGUMENT: Message is too big"


@responses.activate
def test_unregistered_token_is_revoked_and_not_retried(clock):
    token_endpoint("access-token-1")
    responses.post(
        SEND_URL, status=404, json=fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
    )
    [result] = send(clock, [push()])
    assert len(fcm_calls()) == 1
    assert (result.status, result.revoked, result.retryable) == ("failed", True, False)
    assert "UNREGISTERED" in result.error


@responses.activate
def test_invalid_registration_token_is_revoked(clock):
    token_endpoint("access-token-1")
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
    }
    responses.post(
        SEND_URL,
        status=400,
        json=fcm_error(400, "INVALID_ARGUMENT", "Invalid value", "INVALID_ARGUMENT", details=[violation]),
    )
    [result] = send(clock, [push()])
    assert (result.status, result.revoked) == ("failed", True)


@responses.activate
def test_connect_timeout_then_success(clock):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, body=requests.ConnectTimeout("connect timed out"))
    responses.post(SEND_URL, json={"name": "projects/demo-project/messages/0:4"})
    [result] = send(clock, [push()])
    assert result.status == "sent"
    assert len(fcm_calls()) == 2


@responses.activate
def test_a_401_refreshes_the_token_once_and_resends(clock):
    token_endpoint("old-token", "new-token")

    def answer(request):
        if request.headers["Authorization"] == "Bearer old-token":
            return 401, {}, json.dumps(fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication"))
        return 200, {}, '{"name": "projects/demo-project/messages/0:5"}'

    responses.add_callback(responses.POST, SEND_URL, callback=answer)
    first, second = send(clock, [push(log_id=1), push(log_id=2)])
    assert (first.status, second.status) == ("sent", "sent")
    assert len(token_calls()) == 2
    assert [call.request.headers["Authorization"] for call in fcm_calls()] == [
        "Bearer old-token",
        "Bearer new-token",
        "Bearer new-token",
    ]


@responses.activate
def test_a_token_near_expiry_is_refreshed_before_use(clock):
    token_endpoint("short-1", "short-2", expires_in=60)
    responses.post(SEND_URL, json={"name": "n"})
    send(clock, [push(log_id=1), push(log_id=2)])
    assert len(token_calls()) == 2
    assert [call.request.headers["Authorization"] for call in fcm_calls()] == ["Bearer short-1", "Bearer short-2"]


@responses.activate
def test_a_token_rejected_even_after_refresh_fails_the_whole_batch(clock):
    token_endpoint("bad-1", "bad-2")
    responses.post(SEND_URL, status=401, json=fcm_error(401, "UNAUTHENTICATED", "invalid authentication"))
    results = send(clock, [push(log_id=n) for n in range(4)])
    assert len(fcm_calls()) == 2
    assert [result.log_id for result in results] == [0, 1, 2, 3]
    assert all(result.status == "failed" and "401" in result.error for result in results)


@responses.activate
def test_token_endpoint_refusing_the_key_fails_the_batch_without_sending(clock):
    responses.post(
        TOKEN_URI, status=400, json={"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    )
    results = send(clock, [push(log_id=n) for n in range(3)])
    assert fcm_calls() == []
    assert len(token_calls()) == 1
    assert all(result.status == "failed" and "invalid_grant" in result.error for result in results)
    assert all(result.retryable is False for result in results)


@responses.activate
def test_permission_denied_fails_the_whole_batch(clock):
    token_endpoint("access-token-1")
    responses.post(SEND_URL, status=403, json=fcm_error(403, "PERMISSION_DENIED", "Permission denied"))
    results = send(clock, [push(log_id=n) for n in range(3)])
    assert len(fcm_calls()) == 1
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


@responses.activate
def test_unreachable_token_endpoint_fails_the_batch_as_retryable(clock):
    responses.post(TOKEN_URI, body=requests.ConnectionError("refused"))
    results = send(clock, [push(log_id=n) for n in range(2)])
    assert fcm_calls() == []
    assert all(result.status == "failed" and result.retryable for result in results)
    assert "token endpoint" in results[0].error
