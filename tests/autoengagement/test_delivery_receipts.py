"""Apple delivery receipts end to end: the run updates the pass and pushes through the local APNs stand-in, the
device downloads the pass over the PassKit web service, and only then does the wallet log row (and the history
item) say delivered."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.models import NotificationLog
from tests.api import client_for
from tests.factories import AppleDeviceRegistrationFactory, AutoEngagementConfigFactory, CustomerFactory
from tests.wallet.certs import PASS_TYPE_ID
from tests.wallet.conftest import apns_server, apple_settings, cert_chain, issued_apple_pass  # noqa: F401

pytestmark = pytest.mark.django_db
PASS_URL = "/wallet/apple/v1/passes/{pass_type}/{pass_id}"


def test_the_device_fetching_the_pushed_pass_marks_the_row_delivered(client, apns_server, apple_settings):  # noqa: F811
    apple_settings.WALLET_CHANNEL = "live"
    config = AutoEngagementConfigFactory(channels=["wallet"])
    customer = CustomerFactory(
        business=config.business, last_activity_at=timezone.now() - dt.timedelta(days=30), first_name="Ana"
    )
    wallet_pass, token = issued_apple_pass(customer=customer)
    AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token="d" * 64)
    url = PASS_URL.format(pass_type=PASS_TYPE_ID, pass_id=wallet_pass.pass_id)
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}

    before = client.get(url, **auth)  # the device syncs before any re-engagement: nothing to mark
    assert before.status_code == 200
    assert not NotificationLog.objects.exists()

    call_command("run_auto_engagement", "--business", config.business.business_id, stdout=io.StringIO())
    row = NotificationLog.objects.get(customer=customer)
    assert (row.status, row.delivered_at) == ("sent", None)
    assert [push.path.rsplit("/", 1)[-1] for push in apns_server.pushes] == ["d" * 64]

    # Until the device comes for the pass, the row is only sent (APNs 200 means Apple accepted the push).
    assert client.get(url, HTTP_IF_MODIFIED_SINCE=before["Last-Modified"], **auth).status_code == 200
    row.refresh_from_db()
    assert row.delivered_at is not None

    history = client_for(config.business).get("/api/auto-engagement/history").json()
    assert history["results"][0]["notification_id"] == row.notification_id
    assert history["results"][0]["delivered_at"] is not None
