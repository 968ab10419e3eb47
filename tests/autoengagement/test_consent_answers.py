"""Providers' answers that mean "no", through whole runs of the command, against local stand-ins of the providers:
Twilio's and FCM's over HTTP (tests/notifications/providers.py), APNs's over HTTP/2. Each answer is recorded on the
log row, is never retried, changes the customer, and the next run acts on it.
"""

import datetime as dt
import io
import json
from collections import Counter

import pytest
from django.core.management import call_command
from django.urls import reverse

from notifications.consent import PROVIDER_REVOKED
from notifications.models import NotificationLog
from tests.factories import AppleDeviceRegistrationFactory, AutoEngagementConfigFactory, CustomerFactory
from tests.notifications.providers import live_channels  # noqa: F401 (a fixture)
from tests.wallet.conftest import apns_server, apple_settings, cert_chain, issued_apple_pass  # noqa: F401
from wallet.models import AppleDeviceRegistration

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
# Twilio's answer for a number that replied STOP, and FCM's for a token that is no longer valid.
TWILIO_STOP = (
    400,
    {
        "code": 21610,
        "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610",
        "status": 400,
    },
)
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
FCM_UNREGISTERED = (
    404,
    {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": FCM_ERROR, "errorCode": "UNREGISTERED"}],
        }
    },
)
FCM_INVALID_TOKEN = (
    400,
    {
        "error": {
            "code": 400,
            "message": "The registration token is not a valid FCM registration token",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}],
        }
    },
)


def run(now):
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", now.isoformat(), "--format", "json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def make_config(channels):
    # Two reminders a spell, a week apart: the second run reaches the same customers again.
    return AutoEngagementConfigFactory(channels=channels, inactivity_days=7, max_reminders=2)


def quiet(config, **fields):
    return CustomerFactory(
        business=config.business, created_at=NOW - 300 * DAY, last_activity_at=NOW - 10 * DAY, **fields
    )


def rows(customer, run_date):
    return {
        row.channel: (row.status, row.error)
        for row in NotificationLog.objects.filter(customer=customer, run_date=run_date.date())
    }


def test_sms_stop_and_dead_push_tokens_are_consent_not_retried_and_the_next_run_respects_them(live_channels):  # noqa: F811
    config = make_config(["sms", "push"])
    stop = quiet(config, phone="+14155550101", push_token="token-stop")
    dead = quiet(config, phone="+14155550102", push_token="token-dead")
    invalid = quiet(config, phone="+14155550103", push_token="token-invalid")
    fine = quiet(config, phone="+14155550104", push_token="token-fine")
    live_channels.refusals.update(
        {"+14155550101": TWILIO_STOP, "token-dead": FCM_UNREGISTERED, "token-invalid": FCM_INVALID_TOKEN}
    )

    summary = run(NOW)
    assert (summary["notifications_sent"], summary["notifications_failed"]) == (5, 3)
    stop_rows, dead_rows, invalid_rows = rows(stop, NOW), rows(dead, NOW), rows(invalid, NOW)
    assert stop_rows["sms"][0] == "failed"
    assert stop_rows["sms"][1].startswith(f"{PROVIDER_REVOKED}: Twilio error 21610")
    assert stop_rows["push"] == ("sent", "")
    assert dead_rows["push"][0] == "failed"
    assert dead_rows["push"][1].startswith(f"{PROVIDER_REVOKED}: FCM UNREGISTERED")
    assert invalid_rows["push"][1].startswith(f"{PROVIDER_REVOKED}: FCM INVALID_ARGUMENT")
    assert rows(fine, NOW) == {"sms": ("sent", ""), "push": ("sent", "")}
    # Never retried: one request each, though 4xx answers of other kinds and 5xx are retried.
    assert Counter(sms["To"] for sms in live_channels.sms)["+14155550101"] == 1
    tokens = Counter(push["message"]["token"] for push in live_channels.pushes)
    assert (tokens["token-dead"], tokens["token-invalid"]) == (1, 1)
    for customer in (stop, dead, invalid, fine):
        customer.refresh_from_db()
    assert (stop.sms_opt_out, stop.push_token) == (True, "token-stop")
    assert (dead.sms_opt_out, dead.push_token) == (False, "")
    assert invalid.push_token == ""
    assert (fine.sms_opt_out, fine.push_token) == (False, "token-fine")

    live_channels.sms.clear()
    live_channels.pushes.clear()
    later = NOW + 7 * DAY
    run(later)
    assert rows(stop, later) == {"sms": ("skipped", "opted out"), "push": ("sent", "")}
    assert rows(dead, later) == {"sms": ("sent", ""), "push": ("skipped", "no address")}
    assert rows(invalid, later)["push"] == ("skipped", "no address")
    assert rows(fine, later) == {"sms": ("sent", ""), "push": ("sent", "")}
    assert sorted(sms["To"] for sms in live_channels.sms) == ["+14155550102", "+14155550103", "+14155550104"]
    assert sorted(push["message"]["token"] for push in live_channels.pushes) == ["token-fine", "token-stop"]


def test_apns_410_removes_the_registration_and_the_next_run_skips_the_pass(apns_server, apple_settings):  # noqa: F811
    apple_settings.WALLET_CHANNEL = "live"
    config = make_config(["wallet"])
    gone_pass, _ = issued_apple_pass(customer=quiet(config))
    gone = AppleDeviceRegistrationFactory(wallet_pass=gone_pass, push_token="a" * 64)
    both_pass, _ = issued_apple_pass(customer=quiet(config))
    kept = AppleDeviceRegistrationFactory(wallet_pass=both_pass, push_token="b" * 64)
    removed = AppleDeviceRegistrationFactory(wallet_pass=both_pass, push_token="c" * 64)
    apns_server.answer("a" * 64, 410)
    apns_server.answer("c" * 64, 410)

    run(NOW)
    gone_row = rows(gone_pass.customer, NOW)["wallet"]
    assert gone_row == ("failed", f"{PROVIDER_REVOKED}: APNs 410 Unregistered")
    assert rows(both_pass.customer, NOW)["wallet"] == ("sent", "")  # the other device was reached
    assert set(AppleDeviceRegistration.objects.values_list("pk", flat=True)) == {kept.pk}
    assert not AppleDeviceRegistration.objects.filter(pk__in=[gone.pk, removed.pk]).exists()
    pushed = Counter(push.path.rsplit("/", 1)[-1] for push in apns_server.pushes)
    assert pushed == {"a" * 64: 1, "b" * 64: 1, "c" * 64: 1}  # a 410 is not retried

    apns_server.pushes.clear()
    later = NOW + 7 * DAY
    run(later)
    assert rows(gone_pass.customer, later)["wallet"] == ("skipped", "no registered device")
    assert rows(both_pass.customer, later)["wallet"] == ("sent", "")
    assert [push.path.rsplit("/", 1)[-1] for push in apns_server.pushes] == ["b" * 64]


def test_admin_shows_provider_answers_and_opt_outs(admin_client, live_channels):  # noqa: F811
    config = make_config(["sms"])
    stop = quiet(config, phone="+14155550101")
    reached = quiet(config, phone="+14155550104")
    live_channels.refusals["+14155550101"] = TWILIO_STOP
    run(NOW)

    url = reverse("admin:notifications_notificationlog_changelist")
    page = admin_client.get(url, {"provider_answer": "consent_revoked"}).content.decode()
    assert "Consent revoked" in page
    assert stop.customer_id in page
    assert "consent revoked by the provider: Twilio error 21610" in page
    assert reached.customer_id not in page
    assert reached.customer_id in admin_client.get(url).content.decode()

    customers = admin_client.get(reverse("admin:wallet_customer_changelist"), {"sms_opt_out__exact": "1"})
    assert stop.customer_id in customers.content.decode()
