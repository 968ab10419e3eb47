import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from autoengagement.services.preview import config_preview, text_warnings
from autoengagement.services.run import run_due_configs
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def make_config(**fields):
    return AutoEngagementConfigFactory(business=BusinessFactory(name="Bean Bar"), **fields)


def quiet(config, days, **fields):
    return CustomerFactory(
        business=config.business, created_at=NOW - 500 * DAY, last_activity_at=NOW - days * DAY, **fields
    )


def test_preview_counts_reach_per_channel_and_renders_a_sample_without_writing():
    config = make_config(
        channels=["wallet", "email", "sms"],
        inactivity_days=7,
        max_inactivity_days=100,
        message_template={"header": "Hi {first_name}", "body": "{days_inactive} days"},
    )
    first = quiet(config, 10, first_name="Ana", sms_opt_out=True)
    WalletPassFactory(customer=first)
    quiet(config, 20, email="")
    quiet(config, 3)  # active
    quiet(config, 101)  # beyond max_inactivity_days
    quiet(config, 200)
    with CaptureQueriesContext(connection) as queries:
        preview = config_preview(config=config, now=NOW)
    assert len(queries) <= 4
    assert preview.audience == 2
    assert preview.reachable == {"wallet": 1, "email": 1, "sms": 1}
    assert preview.left_out_by_max_inactivity_days == 2
    assert preview.sample == {"customer_id": first.customer_id, "header": "Hi Ana", "body": "10 days"}
    assert preview.warnings == []
    assert not NotificationLog.objects.exists()


def test_preview_with_nobody_inactive_renders_an_example():
    config = make_config(inactivity_days=9, message_template={"header": "Hi {first_name}", "body": "{days_inactive}"})
    preview = config_preview(config=config, now=NOW)
    assert preview.audience == 0
    assert preview.sample == {"customer_id": "", "header": "Hi there", "body": "9"}


def test_text_warnings_per_channel():
    long_body = "x" * 91
    assert [w["channel"] for w in text_warnings(channels=["wallet", "push", "email"], header="h", body=long_body)] == [
        "wallet",
        "push",
    ]
    assert text_warnings(channels=["wallet"], header="h", body="x" * 90) == []
    assert text_warnings(channels=["sms"], header="h", body="x" * 158) == []  # 'h' + newline + 158 = 160
    assert "2 SMS segments" in text_warnings(channels=["sms"], header="h", body="x" * 159)[0]["message"]
    assert "non-GSM" in text_warnings(channels=["sms"], header="h", body="é" + "ж" * 70)[0]["message"]


def test_admin_preview_and_run_now_actions(admin_client):
    config = make_config(channels=["email"])
    member = quiet(config, 30, first_name="Ana")
    url = reverse("admin:autoengagement_autoengagementconfig_changelist")
    response = admin_client.post(url, {"action": "preview_audience", "_selected_action": [config.pk]}, follow=True)
    assert "1 customer(s) would be reached now (email: 1)" in response.content.decode()
    assert not NotificationLog.objects.exists()

    # "Run now" never runs inside the web request: it asks the next invocation, which runs it whatever the time.
    response = admin_client.post(url, {"action": "run_now", "_selected_action": [config.pk]}, follow=True)
    assert "Run requested for 1 business(es)" in response.content.decode()
    assert not NotificationLog.objects.exists()
    config.refresh_from_db()
    assert config.run_requested_at is not None
    summary = run_due_configs(now=timezone.now())
    assert [(o.business_id, o.notified) for o in summary.outcomes] == [(config.business.business_id, 1)]
    assert NotificationLog.objects.get(customer=member).status == "sent"
    config.refresh_from_db()
    assert (config.run_requested_at, config.last_run_status) == (None, "success")
    assert run_due_configs(now=timezone.now()).outcomes == [], "asked once, run once"
    admin_client.post(url, {"action": "run_now", "_selected_action": [config.pk]}, follow=True)
    assert run_due_configs(now=timezone.now()).outcomes[0].notified == 0
    assert NotificationLog.objects.count() == 1
