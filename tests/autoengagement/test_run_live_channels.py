"""The daily run with the real email, SMS and push backends against local providers (issue: channels for real)."""

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory
from tests.notifications.providers import TWILIO_SID, live_channels  # noqa: F401

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


def run(now=NOW):
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", now.isoformat(), "--format", "json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_run_delivers_each_message_once_on_email_sms_and_push(live_channels):  # noqa: F811
    config = AutoEngagementConfigFactory(
        business=BusinessFactory(name="Bean Bar"),
        channels=["email", "sms", "push"],
        message_template={"header": "We miss you, {first_name}", "body": "A free coffee at {business_name}."},
    )
    quiet = {"created_at": NOW - dt.timedelta(days=300), "last_activity_at": NOW - dt.timedelta(days=20)}
    ana = CustomerFactory(
        business=config.business,
        first_name="Ana",
        email="ana@example.com",
        phone="+14155550101",
        push_token="token-ana",
        **quiet,
    )
    ben = CustomerFactory(
        business=config.business,
        first_name="Ben",
        email="ben@example.com",
        phone="+14155550102",
        push_token="",
        sms_opt_out=True,
        **quiet,
    )

    summary = run()
    assert summary["total_notified"] == 2
    assert sorted(r.rcpt_tos[0] for r in live_channels.inbox.received) == ["ana@example.com", "ben@example.com"]
    email = next(r.message for r in live_channels.inbox.received if r.rcpt_tos == ["ana@example.com"])
    assert email["Subject"] == "We miss you, Ana"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://engage.example.com/unsubscribe/" in email["List-Unsubscribe"]
    assert {part.get_content_type() for part in email.walk()} >= {"text/plain", "text/html"}
    assert [(sms["To"], sms["Body"]) for sms in live_channels.sms] == [
        ("+14155550101", "We miss you, Ana\nA free coffee at Bean Bar.")
    ]
    assert [push["message"]["token"] for push in live_channels.pushes] == ["token-ana"]
    assert live_channels.pushes[0]["message"]["notification"] == {
        "title": "We miss you, Ana",
        "body": "A free coffee at Bean Bar.",
    }

    rows = {(row.customer_id, row.channel): row for row in NotificationLog.objects.all()}
    assert {key: row.status for key, row in rows.items()} == {
        (ana.pk, "email"): "sent",
        (ana.pk, "sms"): "sent",
        (ana.pk, "push"): "sent",
        (ben.pk, "email"): "sent",
        (ben.pk, "sms"): "skipped",
        (ben.pk, "push"): "skipped",
    }
    assert rows[(ana.pk, "sms")].provider_message_id.startswith("SM")
    assert rows[(ana.pk, "push")].provider_message_id.startswith("projects/fake-project/messages/")
    assert rows[(ana.pk, "email")].provider_message_id
    assert (rows[(ben.pk, "sms")].error, rows[(ben.pk, "push")].error) == ("opted out", "no address")

    # Later runs send nothing again: every message went out exactly once.
    run(NOW + dt.timedelta(hours=1))
    run(NOW + dt.timedelta(days=1))
    assert len(live_channels.inbox.received) == 2
    assert len(live_channels.sms) == 1
    assert len(live_channels.pushes) == 1
    assert NotificationLog.objects.count() == 6
