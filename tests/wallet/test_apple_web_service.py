import datetime as dt
import io
import json
import logging
import zipfile

import pytest
from django.utils import timezone
from django.utils.http import http_date

from tests.factories import AppleDeviceRegistrationFactory, NotificationLogFactory, WalletPassFactory
from tests.wallet.certs import PASS_TYPE_ID
from tests.wallet.conftest import issued_apple_pass
from wallet.apple_web_service import update_tag
from wallet.models import AppleDeviceRegistration, WalletPass
from wallet.passes import authentication_token

pytestmark = pytest.mark.django_db

BASE = "/wallet/apple/v1"
DEVICE = "a1b2c3d4e5f6device"
PUSH_TOKEN = "ab" * 32


def _auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"ApplePass {token}"}


def _register(client, wallet_pass, token, *, device=DEVICE, push_token=PUSH_TOKEN, pass_type=PASS_TYPE_ID):
    return client.post(
        f"{BASE}/devices/{device}/registrations/{pass_type}/{wallet_pass.pass_id}",
        data=json.dumps({"pushToken": push_token}),
        content_type="application/json",
        **_auth(token),
    )


# Registration


def test_register_creates_the_registration_201_then_200_when_already_there(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    assert _register(client, wallet_pass, token).status_code == 201
    registration = AppleDeviceRegistration.objects.get()
    assert (registration.wallet_pass, registration.device_library_identifier) == (wallet_pass, DEVICE)
    assert registration.push_token == PUSH_TOKEN
    again = _register(client, wallet_pass, token, push_token="cd" * 32)
    assert again.status_code == 200
    assert AppleDeviceRegistration.objects.get().push_token == "cd" * 32


@pytest.mark.parametrize("header", [None, "ApplePass wrong-token", "Bearer {token}", "ApplePass "])
def test_register_without_the_pass_token_is_401(client, apple_settings, header):
    wallet_pass, token = issued_apple_pass()
    extra = {"HTTP_AUTHORIZATION": header.format(token=token)} if header else {}
    response = client.post(
        f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}/{wallet_pass.pass_id}",
        data=json.dumps({"pushToken": PUSH_TOKEN}),
        content_type="application/json",
        **extra,
    )
    assert response.status_code == 401
    assert not AppleDeviceRegistration.objects.exists()


def test_another_pass_token_is_401(client, apple_settings):
    wallet_pass, _ = issued_apple_pass()
    _, other_token = issued_apple_pass()
    assert _register(client, wallet_pass, other_token).status_code == 401


def test_a_pass_never_issued_has_no_token_hash_and_is_401(client, apple_settings):
    wallet_pass = WalletPassFactory(platform="apple")
    assert _register(client, wallet_pass, authentication_token(pass_id=wallet_pass.pass_id)).status_code == 401


def test_register_unknown_pass_or_pass_type_is_404(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    wallet_pass.pass_id = "pass_" + "Z" * 20
    assert _register(client, wallet_pass, token).status_code == 404
    real_pass, real_token = issued_apple_pass()
    assert _register(client, real_pass, real_token, pass_type="pass.com.other").status_code == 404
    google_pass = WalletPassFactory(platform="google")
    assert _register(client, google_pass, real_token).status_code == 404


def test_register_with_a_bad_push_token_is_400(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    assert _register(client, wallet_pass, token, push_token="").status_code == 400
    assert _register(client, wallet_pass, token, push_token="../../x").status_code == 400


def test_unregister_removes_only_that_device(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    _register(client, wallet_pass, token)
    _register(client, wallet_pass, token, device="other-device")
    response = client.delete(
        f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **_auth(token)
    )
    assert response.status_code == 200
    assert list(AppleDeviceRegistration.objects.values_list("device_library_identifier", flat=True)) == ["other-device"]


def test_unregister_without_auth_is_401_and_keeps_the_registration(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    _register(client, wallet_pass, token)
    response = client.delete(f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}/{wallet_pass.pass_id}")
    assert response.status_code == 401
    assert AppleDeviceRegistration.objects.count() == 1


# Serial numbers updated since a tag


def test_updated_serials_lists_the_device_passes_then_only_newer_ones(client, apple_settings):
    old_pass, _ = issued_apple_pass()
    new_pass, _ = issued_apple_pass()
    other_device_pass, _ = issued_apple_pass()
    AppleDeviceRegistrationFactory(wallet_pass=old_pass, device_library_identifier=DEVICE)
    AppleDeviceRegistrationFactory(wallet_pass=new_pass, device_library_identifier=DEVICE)
    AppleDeviceRegistrationFactory(wallet_pass=other_device_pass, device_library_identifier="someone-else")
    base_time = timezone.now()
    WalletPass.objects.filter(pk=old_pass.pk).update(updated_at=base_time - dt.timedelta(hours=2))
    WalletPass.objects.filter(pk=new_pass.pk).update(updated_at=base_time)

    everything = client.get(f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}")
    assert everything.status_code == 200
    assert everything.json() == {
        "serialNumbers": sorted([old_pass.pass_id, new_pass.pass_id]),
        "lastUpdated": update_tag(moment=base_time),
    }

    since = update_tag(moment=base_time - dt.timedelta(hours=1))
    newer = client.get(f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}", {"passesUpdatedSince": since})
    assert newer.status_code == 200
    assert newer.json()["serialNumbers"] == [new_pass.pass_id]

    tag = everything.json()["lastUpdated"]
    none = client.get(f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}", {"passesUpdatedSince": tag})
    assert none.status_code == 204


def test_updated_serials_for_an_unknown_device_or_pass_type_is_204(client, apple_settings):
    wallet_pass, _ = issued_apple_pass()
    AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, device_library_identifier=DEVICE)
    assert client.get(f"{BASE}/devices/unknown/registrations/{PASS_TYPE_ID}").status_code == 204
    assert client.get(f"{BASE}/devices/{DEVICE}/registrations/pass.com.other").status_code == 204


def test_updated_serials_with_a_malformed_tag_is_400(client, apple_settings):
    response = client.get(f"{BASE}/devices/{DEVICE}/registrations/{PASS_TYPE_ID}", {"passesUpdatedSince": "yesterday"})
    assert response.status_code == 400


# The latest pass


def _pkpass_json(response) -> dict:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return json.loads(archive.read("pass.json"))


def test_latest_pass_is_the_signed_pkpass_with_last_modified(client, apple_settings):
    wallet_pass, token = issued_apple_pass(message_text="Come back soon")
    response = client.get(f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **_auth(token))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"
    assert response["Last-Modified"] == http_date(wallet_pass.updated_at.timestamp())
    pass_json = _pkpass_json(response)
    assert pass_json["serialNumber"] == wallet_pass.pass_id
    assert pass_json["authenticationToken"] == token


def test_latest_pass_if_modified_since_is_304_until_the_pass_changes(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    url = f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}"
    last_modified = client.get(url, **_auth(token))["Last-Modified"]
    not_modified = client.get(url, HTTP_IF_MODIFIED_SINCE=last_modified, **_auth(token))
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    WalletPass.objects.filter(pk=wallet_pass.pk).update(updated_at=timezone.now() + dt.timedelta(seconds=5))
    assert client.get(url, HTTP_IF_MODIFIED_SINCE=last_modified, **_auth(token)).status_code == 200


def test_latest_pass_without_auth_is_401_and_unknown_is_404(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    assert client.get(f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}").status_code == 401
    assert client.get(f"{BASE}/passes/{PASS_TYPE_ID}/pass_{'Q' * 20}", **_auth(token)).status_code == 404
    assert client.get(f"{BASE}/passes/pass.com.other/{wallet_pass.pass_id}", **_auth(token)).status_code == 404


def test_fetching_the_updated_pass_marks_the_newest_sent_wallet_log_delivered(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    customer = wallet_pass.customer
    sent_at = timezone.now() - dt.timedelta(minutes=5)
    older = NotificationLogFactory(
        customer=customer, business=customer.business, created_at=sent_at - dt.timedelta(days=9)
    )
    newest = NotificationLogFactory(
        customer=customer, business=customer.business, created_at=sent_at, run_date=sent_at.date()
    )
    url = f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}"

    client.get(url, **_auth(token))  # before any push: the pass carries no message yet
    newest.refresh_from_db()
    assert newest.delivered_at is None

    WalletPass.objects.filter(pk=wallet_pass.pk).update(message_text="Come back", updated_at=timezone.now())
    assert client.get(url, **_auth(token)).status_code == 200
    newest.refresh_from_db()
    older.refresh_from_db()
    assert newest.delivered_at is not None
    assert older.delivered_at is None


def test_a_fetch_before_the_run_records_the_outcome_still_marks_the_pending_row(client, apple_settings):
    """Devices fetch within a second of the push, possibly before the run's chunk update turns pending into sent."""
    wallet_pass, token = issued_apple_pass()
    customer = wallet_pass.customer
    pending = NotificationLogFactory(
        customer=customer, business=customer.business, status="pending", created_at=timezone.now()
    )
    WalletPass.objects.filter(pk=wallet_pass.pk).update(message_text="Come back", updated_at=timezone.now())
    assert client.get(f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **_auth(token)).status_code == 200
    pending.refresh_from_db()
    assert pending.delivered_at is not None


def test_a_log_written_after_the_pass_update_is_not_marked_by_an_older_pass(client, apple_settings):
    wallet_pass, token = issued_apple_pass()
    WalletPass.objects.filter(pk=wallet_pass.pk).update(
        message_text="Come back", updated_at=timezone.now() - dt.timedelta(days=1)
    )
    customer = wallet_pass.customer
    later = NotificationLogFactory(customer=customer, business=customer.business)
    client.get(f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **_auth(token))
    later.refresh_from_db()
    assert later.delivered_at is None


# Device logs


def test_device_logs_are_accepted_and_logged(client, caplog):
    with caplog.at_level(logging.WARNING, logger="wallet.apple_web_service"):
        response = client.post(
            f"{BASE}/log", data=json.dumps({"logs": ["Web service error: 500"]}), content_type="application/json"
        )
    assert response.status_code == 200
    assert [record.device_log for record in caplog.records] == ["Web service error: 500"]


def test_web_service_rejects_wrong_methods(client, apple_settings):
    assert client.get(f"{BASE}/log").status_code == 405
    wallet_pass, token = issued_apple_pass()
    assert client.put(f"{BASE}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **_auth(token)).status_code == 405
