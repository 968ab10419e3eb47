import io
import json
import shutil
import subprocess
import zipfile

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.backends import get_backend
from notifications.backends.base import Message
from notifications.backends.wallet import WalletBackend, _apple_attempt, _Attempt, combine_attempts
from notifications.models import NotificationLog
from tests.factories import AppleDeviceRegistrationFactory, CustomerFactory, NotificationLogFactory, WalletPassFactory
from tests.faults.conftest import service_account_key
from tests.faults.standins import GoogleWalletStandIn, Reply
from tests.wallet.certs import PASS_TYPE_ID
from tests.wallet.conftest import GOOGLE_ISSUER_ID, issued_apple_pass
from wallet.apns import PushOutcome
from wallet.models import AppleDeviceRegistration, WalletPass

pytestmark = pytest.mark.django_db


def _object_id(wallet_pass) -> str:
    return f"{GOOGLE_ISSUER_ID}.{wallet_pass.pass_id}"


def _google_calls(google: GoogleWalletStandIn, wallet_pass) -> list:
    """The addMessage requests the Google stand-in received for the pass's loyalty object."""
    return [r for r in google.received if r.recipient == _object_id(wallet_pass) and r.method == "POST"]


@pytest.fixture
def live(apns_server, google_settings, tmp_path):
    """Both platforms configured, each against its local stand-in: APNs (HTTP/2, client certificates) and the
    Google Wallet API with its OAuth2 token endpoint (tests/faults/standins.py)."""
    google_settings.WALLET_CHANNEL = "live"
    with GoogleWalletStandIn() as google:
        google.configure(google_settings, service_account_key(tmp_path, token_uri=google.token_uri))
        yield apns_server, google


def _message(customer_id: str, log_id: int, body: str = "Come back for a free coffee") -> Message:
    return Message(
        log_id=log_id, recipient=customer_id, header="We miss you", body=body, extra={"run_date": "2026-11-25"}
    )


def _device(wallet_pass, token: str):
    return AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token=token)


def test_live_alias_selects_the_wallet_backend(settings):
    settings.WALLET_CHANNEL = "live"
    assert isinstance(get_backend("wallet"), WalletBackend)


def test_nothing_configured_is_a_configuration_error(settings):
    settings.APPLE_PASS_TYPE_ID = ""
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    with pytest.raises(ImproperlyConfigured):
        WalletBackend().open()


def test_what_open_took_is_closed_again_when_the_google_settings_fail_to_load(apple_settings, google_settings):
    google_settings.GOOGLE_WALLET_CREDENTIALS = ""
    backend = WalletBackend()
    with pytest.raises(ImproperlyConfigured, match="GOOGLE_WALLET_CREDENTIALS"):
        backend.open()
    assert backend.apns.pool is None, "the APNs connection pool opened before is closed"
    assert not backend.is_open


def test_mixed_batch_reaches_each_customer_on_every_pass(live):
    apns_server, google = live
    apple_two_devices = WalletPassFactory(platform="apple")
    alive = _device(apple_two_devices, "a1" * 32)
    dead = _device(apple_two_devices, "a2" * 32)
    apple_no_device = WalletPassFactory(platform="apple")
    google_only = WalletPassFactory(platform="google")
    both_apple = WalletPassFactory(platform="apple")
    both_google = WalletPassFactory(platform="google", customer=both_apple.customer)
    _device(both_apple, "b1" * 32)
    only_dead_device = WalletPassFactory(platform="apple")
    _device(only_dead_device, "c1" * 32)
    google_missing = WalletPassFactory(platform="google")
    no_pass = CustomerFactory()
    apns_server.answer("a2" * 32, 410)
    apns_server.answer("c1" * 32, 410)
    google.script(_object_id(google_missing), [Reply(404, google.error_body(404))])

    customers = [
        apple_two_devices.customer,
        apple_no_device.customer,
        google_only.customer,
        both_apple.customer,
        only_dead_device.customer,
        google_missing.customer,
        no_pass,
    ]
    messages = [_message(customer.customer_id, log_id) for log_id, customer in enumerate(customers, start=1)]
    messages.append(_message("cust_" + "N" * 20, 99))
    with WalletBackend() as backend:
        results = {result.log_id: result for result in backend.send_batch(messages)}

    assert [results[n].status for n in range(1, 8)] + [results[99].status] == [
        "sent",
        "skipped",
        "sent",
        "sent",
        "failed",
        "failed",
        "skipped",
        "skipped",
    ]
    assert results[1].provider_message_id.startswith("apns:")
    assert results[2].error == "no registered device"
    assert results[3].provider_message_id == "google:reengagement-3"
    assert "apns:" in results[4].provider_message_id
    assert "google:reengagement-4" in results[4].provider_message_id
    assert "410" in results[5].error
    assert not results[5].retryable
    assert "not found" in results[6].error
    assert google.deliveries == {_object_id(google_only): 1, _object_id(both_google): 1}
    assert google.requests[_object_id(google_missing)] == 1
    assert results[7].error == results[99].error == "no pass"

    assert sorted(push.path.rsplit("/", 1)[1] for push in apns_server.pushes) == sorted(
        ["a1" * 32, "a2" * 32, "b1" * 32, "c1" * 32]
    )
    assert all(
        json.loads(push.body) == {} and push.headers["apns-topic"] == PASS_TYPE_ID for push in apns_server.pushes
    )
    remaining = set(AppleDeviceRegistration.objects.values_list("push_token", flat=True))
    assert remaining == {alive.push_token, "b1" * 32}
    assert dead.push_token not in remaining

    messages_on_passes = dict(WalletPass.objects.values_list("pass_id", "message_text"))
    assert messages_on_passes[apple_two_devices.pass_id] == "We miss you — Come back for a free coffee"
    assert messages_on_passes[both_apple.pass_id] == "We miss you — Come back for a free coffee"
    assert messages_on_passes[apple_no_device.pass_id] == ""


def test_the_same_text_twice_still_changes_the_message_field(live):
    wallet_pass = WalletPassFactory(platform="apple")
    _device(wallet_pass, "d1" * 32)
    with WalletBackend() as backend:
        backend.send_batch([_message(wallet_pass.customer.customer_id, 1)])
        wallet_pass.refresh_from_db()
        first_value, first_time = wallet_pass.message_text, wallet_pass.updated_at
        backend.send_batch([_message(wallet_pass.customer.customer_id, 2)])
    wallet_pass.refresh_from_db()
    assert wallet_pass.message_text != first_value
    assert wallet_pass.message_text.endswith("(2026-11-25)")
    assert wallet_pass.updated_at > first_time


def _batch(count: int, offset: int) -> list[Message]:
    """Customers with an Apple pass on one device and a Google pass, each followed by one with no pass."""
    messages = []
    for n in range(count):
        apple = WalletPassFactory(platform="apple")
        _device(apple, f"{offset + n:064x}")
        WalletPassFactory(platform="google", customer=apple.customer)
        messages.append(_message(apple.customer.customer_id, offset + n))
        messages.append(_message(CustomerFactory().customer_id, 10_000 + offset + n))
    return messages


def test_queries_do_not_grow_with_the_batch(live, django_assert_max_num_queries):
    apns_server, google = live
    small = _batch(2, 100)
    large = _batch(12, 200)
    batches = []
    with WalletBackend() as backend:
        with CaptureQueriesContext(connection) as small_queries:
            backend.send_batch(small)
        batches.append(len(apns_server.pushes))
        with django_assert_max_num_queries(8):
            results = backend.send_batch(large)
        batches.append(len(apns_server.pushes))
        with CaptureQueriesContext(connection) as large_queries:
            backend.send_batch(large)
        batches.append(len(apns_server.pushes))
    assert len(large_queries) == len(small_queries)
    assert [result.status for result in results] == ["sent", "skipped"] * 12
    assert google.total_requests == 2 + 12 + 12
    # The pushes share connections: never one per push (test_apns checks a batch keeps to exactly one; here, on a
    # busy machine, a connection dropped mid-run may be reopened once per batch at most).
    assert apns_server.connections <= len(batches) < len(apns_server.pushes)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_registered_device_then_fetches_the_updated_signed_pass(live, client, cert_chain, tmp_path):
    """The whole Apple path: the push, then the device's fetch of the pass, then the delivery receipt."""
    wallet_pass, token = issued_apple_pass()
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}
    base = "/wallet/apple/v1"
    registration_url = f"{base}/devices/device-1/registrations/{PASS_TYPE_ID}"
    url = f"{base}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}"
    registered = client.post(
        f"{registration_url}/{wallet_pass.pass_id}",
        data=json.dumps({"pushToken": "e1" * 32}),
        content_type="application/json",
        **auth,
    )
    assert registered.status_code == 201
    tag = client.get(registration_url).json()["lastUpdated"]
    old_last_modified = client.get(url, **auth)["Last-Modified"]
    customer = wallet_pass.customer
    log = NotificationLogFactory(customer=customer, business=customer.business, status="pending")

    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(customer.customer_id, log.pk, body="Double points today")])
    assert result.status == "sent"
    assert [push.path for push in live[0].pushes] == [f"/3/device/{'e1' * 32}"]
    NotificationLog.objects.filter(pk=log.pk).update(status="sent")  # what the daily run does with the result

    updated = client.get(registration_url, {"passesUpdatedSince": tag})
    assert updated.status_code == 200
    assert updated.json()["serialNumbers"] == [wallet_pass.pass_id]
    response = client.get(url, HTTP_IF_MODIFIED_SINCE=old_last_modified, **auth)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    message_field = json.loads(files["pass.json"])["storeCard"]["secondaryFields"][0]
    assert message_field["value"] == "We miss you — Double points today"
    assert message_field["changeMessage"] == "%@"
    (tmp_path / "signature").write_bytes(files["signature"])
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    verified = subprocess.run(
        [
            "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "signature"),
            "-content", str(tmp_path / "manifest.json"), "-CAfile", str(cert_chain.ca_file), "-purpose", "any",
            "-out", "/dev/null",
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    log.refresh_from_db()
    assert log.delivered_at is not None


def test_a_pass_gone_from_every_device_is_a_consent_answer_but_not_when_anything_else_failed():
    gone = _apple_attempt(PushOutcome(token="a", ok=False, unregistered=True, error="APNs 410 Unregistered"))
    busy = _apple_attempt(PushOutcome(token="b", ok=False, error="APNs 429 TooManyRequests", retryable=True))
    result = combine_attempts(log_id=1, attempts=[gone, gone])
    assert (result.status, result.revoked, result.retryable) == ("failed", True, False)
    result = combine_attempts(log_id=1, attempts=[gone, busy])
    assert (result.status, result.revoked, result.retryable) == ("failed", False, True)
    result = combine_attempts(log_id=1, attempts=[gone, _Attempt("failed", "Google 404", retryable=False)])
    assert result.revoked is False
    assert combine_attempts(log_id=1, attempts=[gone, _Attempt("sent", provider_id="x")]).status == "sent"


def test_a_retry_of_the_same_message_leaves_the_text_the_first_attempt_set(live):
    """A device that got the first push must not show the message twice: a retry pushes again (idempotent), and
    the `message` field keeps the value the first attempt gave it, even when that value carries the date."""
    wallet_pass = WalletPassFactory(platform="apple", message_text="We miss you — Come back for a free coffee")
    _device(wallet_pass, "e1" * 32)
    first = _message(wallet_pass.customer.customer_id, 1)
    retry = Message(**{**first.__dict__, "extra": {**first.extra, "attempt": 2}})
    with WalletBackend() as backend:
        backend.send_batch([first])
        wallet_pass.refresh_from_db()
        first_value = wallet_pass.message_text
        [result] = backend.send_batch([retry])
    wallet_pass.refresh_from_db()
    assert first_value.endswith("(2026-11-25)")
    assert wallet_pass.message_text == first_value
    assert result.status == "sent"


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
def test_a_token_apns_will_never_accept_removes_the_registration(live, reason):
    apns_server, _ = live
    wallet_pass = WalletPassFactory(platform="apple")
    dead = _device(wallet_pass, "f1" * 32)
    alive = _device(wallet_pass, "f2" * 32)
    apns_server.answer(dead.push_token, 400, reason=reason)
    with WalletBackend() as backend:
        [result] = backend.send_batch([_message(wallet_pass.customer.customer_id, 1)])
    assert result.status == "sent"
    assert list(AppleDeviceRegistration.objects.values_list("pk", flat=True)) == [alive.pk]


def test_a_5xx_from_google_is_unknown_and_a_quota_answer_falls_back_to_text(live):
    _, google = live
    lost = WalletPassFactory(platform="google")
    capped = WalletPassFactory(platform="google")
    google.script(_object_id(lost), [Reply(500, google.error_body(500), deliver=True)])
    google.exceed_quota(_object_id(capped))
    with WalletBackend() as backend:
        unknown, sent = backend.send_batch(
            [_message(lost.customer.customer_id, 1), _message(capped.customer.customer_id, 2)]
        )
    assert (unknown.status, unknown.retryable) == ("unknown", False)
    assert len(_google_calls(google, lost)) == 1, "never retried"
    assert sent.status == "sent"
    capped_calls = [call.json() for call in _google_calls(google, capped)]
    assert [call["message"]["messageType"] for call in capped_calls] == ["TEXT_AND_NOTIFY", "TEXT"]
    assert google.deliveries == {_object_id(lost): 1, _object_id(capped): 1}
