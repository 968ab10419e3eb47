import base64
import datetime as dt
import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from django.utils import timezone
from google.auth import crypt, jwt

from notifications.backends.base import Message
from tests.factories import WalletPassFactory
from tests.wallet.conftest import GOOGLE_API_BASE, GOOGLE_ISSUER_ID, GOOGLE_TOKEN_URI
from wallet.delivery import WalletBackend
from wallet.google_wallet import SCOPE, GoogleWalletClient, load_google_config, save_url
from wallet.models import GoogleWalletMessage

pytestmark = pytest.mark.django_db


def _public_pem(service_account) -> bytes:
    return service_account["public_key"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _add_message_url(pass_id: str) -> str:
    return f"{GOOGLE_API_BASE}/walletobjects/v1/loyaltyObject/{GOOGLE_ISSUER_ID}.{pass_id}/addMessage"


@pytest.fixture
def google_api(google_settings):
    with respx.mock(assert_all_called=False) as mock:
        mock.post(GOOGLE_TOKEN_URI).respond(
            json={"access_token": "ya29.test-token", "expires_in": 3600, "token_type": "Bearer"}
        )
        yield mock


@pytest.fixture
def google_client(google_api):
    client = GoogleWalletClient(config=load_google_config(), max_retries=2, backoff=0.01)
    client.open()
    yield client
    client.close()


def _calls_to(mock, url: str) -> list:
    return [call for call in mock.calls if str(call.request.url) == url]


def _add(client: GoogleWalletClient, pass_id: str = "pass_A", **fields):
    """One addMessage through the client's event loop."""
    fields = {"message_id": "m", "header": "h", "body": "b", "notify": True, **fields}
    return client.run(client.add_message(object_id=f"{GOOGLE_ISSUER_ID}.{pass_id}", **fields))


def test_add_message_request_shape_and_bearer_token(google_client, google_api):
    google_api.post(_add_message_url("pass_A")).respond(json={"resource": {}})
    outcome = _add(
        google_client,
        message_id="reengagement-7",
        header="We miss you",
        body="Come back",
        now=dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC),
    )
    assert outcome.ok
    [call] = _calls_to(google_api, _add_message_url("pass_A"))
    assert call.request.method == "POST"
    assert call.request.headers["Authorization"] == "Bearer ya29.test-token"
    assert json.loads(call.request.content) == {
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


def test_the_oauth_token_is_a_signed_service_account_assertion_exchanged_once(
    google_client, google_api, google_service_account
):
    for pass_id in ("pass_A", "pass_B"):
        google_api.post(_add_message_url(pass_id)).respond(json={})
        _add(google_client, pass_id, notify=False)
    [token_call] = _calls_to(google_api, GOOGLE_TOKEN_URI)
    form = parse_qs(token_call.request.content.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    # google-auth addresses the assertion to Google's token endpoint whatever token_uri it is posted to.
    claims = jwt.decode(
        form["assertion"][0],
        certs=_public_pem(google_service_account),
        audience="https://oauth2.googleapis.com/token",
    )
    assert claims["iss"] == google_service_account["info"]["client_email"]
    assert claims["scope"] == SCOPE


def test_text_without_notification(google_client, google_api):
    google_api.post(_add_message_url("pass_A")).respond(json={})
    _add(google_client, notify=False)
    call = _calls_to(google_api, _add_message_url("pass_A"))[0]
    assert json.loads(call.request.content)["message"]["messageType"] == "TEXT"


def test_404_object_missing_is_permanent_and_not_retried(google_client, google_api):
    google_api.post(_add_message_url("pass_A")).respond(404, json={"error": {"code": 404, "message": "not found"}})
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable) == (False, False)
    assert "not found" in outcome.error
    assert len(_calls_to(google_api, _add_message_url("pass_A"))) == 1


def test_429_is_retried_then_sent(google_client, google_api):
    url = _add_message_url("pass_A")
    google_api.post(url).mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "Rate Limit Exceeded"}}, headers={"Retry-After": "0"}),
            httpx.Response(200, json={}),
        ]
    )
    outcome = _add(google_client)
    assert outcome.ok
    assert len(_calls_to(google_api, url)) == 2


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_may_have_added_the_message_so_it_is_unknown_and_not_retried(google_client, google_api, status):
    url = _add_message_url("pass_A")
    google_api.post(url).respond(status, json={"error": {"message": "backend error"}})
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, False, True)
    assert str(status) in outcome.error
    assert len(_calls_to(google_api, url)) == 1


def test_429_past_the_retries_is_a_retryable_failure(google_client, google_api):
    url = _add_message_url("pass_A")
    google_api.post(url).respond(429, json={"error": {"code": 429, "message": "Too many requests"}})
    outcome = _add(google_client)
    assert (outcome.ok, outcome.retryable, outcome.unknown) == (False, True, False)
    assert len(_calls_to(google_api, url)) == 3


def test_403_quota_exceeded_is_the_notification_quota(google_client, google_api):
    url = _add_message_url("pass_A")
    body = {
        "error": {
            "code": 403,
            "message": "Quota exceeded for issuer when adding TEXT_AND_NOTIFY message",
            "errors": [{"message": "Quota exceeded", "domain": "walletobjects", "reason": "quotaExceeded"}],
        }
    }
    google_api.post(url).respond(403, json=body)
    outcome = _add(google_client)
    assert (outcome.ok, outcome.quota_exceeded, outcome.retryable) == (False, True, False)
    assert len(_calls_to(google_api, url)) == 1


def test_only_the_newest_of_our_messages_stay_on_the_object(google_client, google_api):
    others = [{"id": "platform-offer", "header": "Offer", "body": "10% off"}]
    ours = [{"id": f"reengagement-{n}", "header": "h", "body": "b"} for n in range(1, 6)]
    google_api.post(_add_message_url("pass_A")).respond(json={"resource": {"messages": others[:1] + ours}})
    object_url = _add_message_url("pass_A").removesuffix("/addMessage")
    google_api.patch(object_url).respond(json={})
    outcome = _add(google_client, message_id="reengagement-5")
    assert outcome.ok
    [patch] = [call for call in google_api.calls if call.request.method == "PATCH"]
    kept = json.loads(patch.request.content)["messages"]
    assert [m["id"] for m in kept] == ["platform-offer", "reengagement-3", "reengagement-4", "reengagement-5"]


def test_a_failed_token_exchange_is_a_retryable_failure(google_settings):
    with respx.mock() as mock:
        mock.post(GOOGLE_TOKEN_URI).respond(500, json={"error": "internal"})
        client = GoogleWalletClient(config=load_google_config(), max_retries=0, backoff=0.01)
        client.open()
        outcome = _add(client)
        client.close()
    assert (outcome.ok, outcome.retryable) == (False, True)


# The daily limit of notifying messages, through the backend


def _message(customer, log_id: int) -> Message:
    return Message(
        log_id=log_id,
        recipient=customer.customer_id,
        header="We miss you",
        body="Come back",
        extra={"run_date": "2026-11-25"},
    )


def _message_types(mock, pass_id: str) -> list[str]:
    return [
        json.loads(call.request.content)["message"]["messageType"]
        for call in _calls_to(mock, _add_message_url(pass_id))
    ]


def test_past_three_notifications_in_24_hours_the_message_goes_as_text(google_api):
    wallet_pass = WalletPassFactory(platform="google")
    google_api.post(_add_message_url(wallet_pass.pass_id)).respond(json={})
    GoogleWalletMessage.objects.create(
        wallet_pass=wallet_pass, message_id="old", notified=True, sent_at=timezone.now() - dt.timedelta(hours=25)
    )
    with WalletBackend() as backend:
        results = [backend.send_batch([_message(wallet_pass.customer, log_id)])[0] for log_id in range(1, 6)]
    assert [result.status for result in results] == ["sent"] * 5
    assert _message_types(google_api, wallet_pass.pass_id) == ["TEXT_AND_NOTIFY"] * 3 + ["TEXT"] * 2
    assert GoogleWalletMessage.objects.filter(wallet_pass=wallet_pass, notified=True).count() == 4


def test_past_the_cap_skip_mode_makes_no_call(google_api, google_settings):
    google_settings.GOOGLE_WALLET_OVER_LIMIT = "skip"
    wallet_pass = WalletPassFactory(platform="google")
    google_api.post(_add_message_url(wallet_pass.pass_id)).respond(json={})
    GoogleWalletMessage.objects.bulk_create(
        GoogleWalletMessage(wallet_pass=wallet_pass, message_id=f"m{n}", notified=True) for n in range(3)
    )
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "skipped"
    assert "limit" in result.error
    assert _calls_to(google_api, _add_message_url(wallet_pass.pass_id)) == []


def test_a_failed_call_does_not_count_against_the_cap(google_api):
    wallet_pass = WalletPassFactory(platform="google")
    google_api.post(_add_message_url(wallet_pass.pass_id)).respond(404, json={"error": {"message": "gone"}})
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "failed"
    assert not result.retryable
    assert not GoogleWalletMessage.objects.exists()


def test_a_quota_refusal_from_google_is_not_retried_and_the_message_goes_as_text(google_api):
    wallet_pass = WalletPassFactory(platform="google")
    url = _add_message_url(wallet_pass.pass_id)
    quota = {"error": {"code": 429, "message": "QuotaExceededException: too many notifications", "status": "x"}}
    google_api.post(url).mock(side_effect=[httpx.Response(429, json=quota), httpx.Response(200, json={})])
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer, 1)])
    assert result.status == "sent"
    assert _message_types(google_api, wallet_pass.pass_id) == ["TEXT_AND_NOTIFY", "TEXT"]
    assert list(GoogleWalletMessage.objects.values_list("notified", flat=True)) == [False]


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
