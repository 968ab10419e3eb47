"""The daily run with WALLET_CHANNEL=live: local stand-ins for APNs and the Google Wallet API (issue: wallet)."""

import datetime as dt
import io
import json
import shutil
import subprocess
import zipfile

import pytest
from django.core.management import call_command

from notifications.models import NotificationLog
from tests.factories import (
    AppleDeviceRegistrationFactory,
    AutoEngagementConfigFactory,
    CustomerFactory,
    WalletPassFactory,
)
from tests.faults.conftest import service_account_key
from tests.faults.standins import GoogleWalletStandIn
from tests.wallet.certs import PASS_TYPE_ID
from tests.wallet.conftest import GOOGLE_ISSUER_ID, issued_apple_pass

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


def quiet_customer(business, **fields):
    return CustomerFactory(
        business=business,
        created_at=NOW - dt.timedelta(days=300),
        last_activity_at=NOW - dt.timedelta(days=30),
        **fields,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to verify the signature")
def test_a_run_reaches_apple_and_google_holders_and_the_device_fetches_the_signed_update(
    apns_server, google_settings, client, cert_chain, tmp_path
):
    google_settings.WALLET_CHANNEL = "live"
    config = AutoEngagementConfigFactory(
        channels=["wallet"], message_template={"header": "We miss you", "body": "Double points for {first_name}"}
    )
    apple_pass, token = issued_apple_pass(customer=quiet_customer(config.business, first_name="Ana"))
    AppleDeviceRegistrationFactory(wallet_pass=apple_pass, device_library_identifier="device-1", push_token="e1" * 32)
    google_pass = WalletPassFactory(platform="google", customer=quiet_customer(config.business, first_name="Ben"))
    nobody = quiet_customer(config.business)
    object_id = f"{GOOGLE_ISSUER_ID}.{google_pass.pass_id}"

    with GoogleWalletStandIn() as google:
        google.configure(google_settings, service_account_key(tmp_path, token_uri=google.token_uri))
        out = io.StringIO()
        call_command("run_auto_engagement", "--now", NOW.isoformat(), "--format", "json", stdout=out)
    assert google.token_requests == 1
    [call] = google.received
    assert (call.method, call.path) == ("POST", f"/walletobjects/v1/loyaltyObject/{object_id}/addMessage")
    assert call.headers["authorization"].removeprefix("Bearer ") in google.tokens
    sent_to_google = call.json()
    assert google.deliveries == {object_id: 1}
    assert json.loads(out.getvalue().strip().splitlines()[-1])["total_notified"] == 2

    assert [push.path for push in apns_server.pushes] == [f"/3/device/{'e1' * 32}"]
    assert json.loads(apns_server.pushes[0].body) == {}
    assert sent_to_google["message"]["messageType"] == "TEXT_AND_NOTIFY"
    assert "Double points for Ben" in json.dumps(sent_to_google)
    rows = {row.customer_id: row for row in NotificationLog.objects.all()}
    assert rows[apple_pass.customer_id].status == "sent"
    assert rows[google_pass.customer_id].status == "sent"
    assert (rows[nobody.pk].status, rows[nobody.pk].error) == ("skipped", "no pass")
    assert rows[apple_pass.customer_id].delivered_at is None

    # The device, woken by the push, fetches the updated pass from the web service.
    response = client.get(
        f"/wallet/apple/v1/passes/{PASS_TYPE_ID}/{apple_pass.pass_id}", HTTP_AUTHORIZATION=f"ApplePass {token}"
    )
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    message = json.loads(files["pass.json"])["storeCard"]["secondaryFields"][0]
    assert (message["key"], message["changeMessage"]) == ("message", "%@")
    assert "Double points for Ana" in message["value"]
    (tmp_path / "signature").write_bytes(files["signature"])
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "signature"),
         "-content", str(tmp_path / "manifest.json"), "-CAfile", str(cert_chain.ca_file), "-purpose", "any",
         "-out", "/dev/null"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    rows[apple_pass.customer_id].refresh_from_db()
    assert rows[apple_pass.customer_id].delivered_at is not None
