"""Email delivery receipts through django-anymail, end to end with a real ESP's protocol: the run sends through
anymail's Postmark backend to a local server speaking Postmark's /email API, the log row records Postmark's
MessageID, and Postmark's own webhook payloads (https://postmarkapp.com/developer/webhooks/bounce-webhook,
delivery-webhook, spam-complaint-webhook), posted to anymail's tracking URL with its basic auth, mark the row and
the customer's consent."""

import base64
import json
import os
import subprocess
import sys
import uuid

import pytest
from django.core.management.base import CommandError

from notifications.models import NotificationLog
from tests.autoengagement.runs import DAY, NOW, inactive, make_config, run
from tests.notifications.scripted_server import Reply, ScriptedServer
from tests.processes import PROJECT
from wallet.models import Customer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.notifications.anymail_urls")]

SECRET = "hook:s3cret"
TRACKING = "/anymail/postmark/tracking/"
ADDRESS = "ana@example.com"


def postmark_answer(received) -> Reply:
    """Postmark's answer to POST /email (https://postmarkapp.com/developer/api/email-api)."""
    sent = received.json()
    return Reply(
        200,
        {
            "To": sent["To"],
            "SubmittedAt": "2026-06-01T09:00:00.0000000Z",
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        },
    )


@pytest.fixture
def postmark(settings):
    with ScriptedServer(postmark_answer) as server:
        settings.EMAIL_CHANNEL = "django"
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "server-token",
            "POSTMARK_API_URL": server.url.removesuffix("send"),
            "WEBHOOK_SECRET": SECRET,
        }
        settings.PUBLIC_BASE_URL = "https://engage.example.com"
        settings.DEFAULT_FROM_EMAIL = "hello@engage.example.com"
        yield server


@pytest.fixture
def sent_email(postmark):
    config = make_config(channels=["email"], inactivity_days=7, max_reminders=2)
    customer = inactive(config, days=10, with_pass=False, email=ADDRESS)
    run("--business", config.business.business_id, now=NOW)
    row = NotificationLog.objects.get(customer=customer)
    [request] = postmark.requests
    assert request.path == "/email"
    assert request.headers["x-postmark-server-token"] == "server-token"
    assert row.status == "sent"
    return row


def track(client, payload: dict, *, secret: str | None = SECRET):
    headers = {}
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(secret.encode()).decode()
    return client.post(TRACKING, json.dumps(payload), content_type="application/json", **headers)


def bounce(message_id: str, *, kind: str = "HardBounce", type_code: int = 1, email: str = ADDRESS) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": type_code,
        "Name": "Hard bounce" if kind == "HardBounce" else "Message delayed",
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
            if kind == "HardBounce"
            else "The server could not temporarily deliver your message (ex: Message is delayed due to network"
            " troubles)."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "hello@engage.example.com",
        "BouncedAt": "2026-06-01T09:00:05.0000000Z",
        "DumpAvailable": False,
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "Hi",
    }


def delivery(message_id: str, *, email: str = ADDRESS) -> dict:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": email,
        "Tag": "",
        "DeliveredAt": "2026-06-01T09:00:03.0000000Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }


def complaint(message_id: str, *, email: str = ADDRESS) -> dict:
    return {
        **bounce(message_id, email=email),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Description": "",
        "Details": "Test spam complaint details",
        "CanActivate": False,
    }


def test_the_row_records_postmarks_message_id(sent_email, postmark):
    # anymail read Postmark's MessageID from the answer; receipts name the message by it.
    uuid.UUID(sent_email.provider_message_id)


def test_a_delivery_event_marks_the_row_delivered(client, sent_email):
    assert track(client, delivery(sent_email.provider_message_id)).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.delivered_at is not None
    assert sent_email.delivery_error == ""
    assert not Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_a_hard_bounce_records_why_and_opts_the_address_out(client, sent_email):
    assert track(client, bounce(sent_email.provider_message_id)).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.delivered_at is None
    assert sent_email.delivery_error == (
        "bounced: The server was unable to deliver your message (ex: unknown user, mailbox not found)."
    )
    assert Customer.objects.get(pk=sent_email.customer_id).email_opt_out
    # The next reminder skips the email: the customer is opted out.
    run("--business", sent_email.business.business_id, now=NOW + 7 * DAY)
    later = NotificationLog.objects.get(customer_id=sent_email.customer_id, run_date=(NOW + 7 * DAY).date())
    assert (later.status, later.error) == ("skipped", "opted out")


def test_a_soft_bounce_records_why_but_keeps_the_address(client, sent_email):
    assert track(client, bounce(sent_email.provider_message_id, kind="Transient", type_code=2)).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.delivery_error.startswith("deferred: The server could not temporarily deliver your message")
    assert not Customer.objects.get(pk=sent_email.customer_id).email_opt_out
    # Delivered after all (the ESP retried): delivered, the error gone.
    track(client, delivery(sent_email.provider_message_id))
    sent_email.refresh_from_db()
    assert (sent_email.delivered_at is not None, sent_email.delivery_error) == (True, "")


def test_a_complaint_opts_out_without_calling_the_message_undelivered(client, sent_email):
    track(client, delivery(sent_email.provider_message_id))
    assert track(client, complaint(sent_email.provider_message_id)).status_code == 200
    sent_email.refresh_from_db()
    assert (sent_email.delivered_at is not None, sent_email.delivery_error) == (True, "")
    assert Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_a_bounce_after_delivery_keeps_delivered_but_opts_out(client, sent_email):
    track(client, delivery(sent_email.provider_message_id))
    track(client, bounce(sent_email.provider_message_id))
    sent_email.refresh_from_db()
    assert (sent_email.delivered_at is not None, sent_email.delivery_error) == (True, "")
    assert Customer.objects.get(pk=sent_email.customer_id).email_opt_out


@pytest.mark.parametrize("secret", [None, "hook:wrong"])
def test_without_the_webhook_secret_nothing_changes(client, sent_email, secret):
    assert track(client, bounce(sent_email.provider_message_id), secret=secret).status_code == 400
    sent_email.refresh_from_db()
    assert sent_email.delivery_error == ""
    assert not Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_an_event_for_an_unknown_message_changes_nothing(client, sent_email):
    assert track(client, bounce(str(uuid.uuid4()))).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.delivery_error == ""
    assert not Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_a_bounce_for_an_old_address_leaves_the_new_one_subscribed(client, sent_email):
    Customer.objects.filter(pk=sent_email.customer_id).update(email="ana@new.example.com")
    track(client, bounce(sent_email.provider_message_id))
    sent_email.refresh_from_db()
    assert sent_email.delivery_error.startswith("bounced:")
    assert not Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_the_address_matches_whatever_its_case(client, sent_email):
    track(client, bounce(sent_email.provider_message_id, email=ADDRESS.upper()))
    assert Customer.objects.get(pk=sent_email.customer_id).email_opt_out


def test_an_esp_refusing_the_recipient_is_a_permanent_failure(settings, postmark):
    # Postmark's answer for an address on its suppression list (after a hard bounce or a spam complaint).
    message = (
        "You tried to send to recipient(s) that have been marked as inactive.\n"
        f"Found inactive addresses: {ADDRESS}.\n"
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint."
    )
    postmark.script = [Reply(422, {"ErrorCode": 406, "Message": message})]
    config = make_config(channels=["email"])
    customer = inactive(config, days=10, with_pass=False, email=ADDRESS)
    run("--business", config.business.business_id, now=NOW)
    row = NotificationLog.objects.get(customer=customer)
    assert (row.status, row.error, row.next_attempt_at) == ("failed", "the email service refused the recipient", None)


# How an operator selects an ESP: settings read in a fresh process, as the service starts.

READ = (
    "import django, json; django.setup(); from django.conf import settings as s; from django.urls import reverse; "
    "from django.core.checks import run_checks; "
    "print(json.dumps([s.EMAIL_BACKEND, 'anymail' in s.INSTALLED_APPS, getattr(s, 'ANYMAIL_WEBHOOK_SECRET', None), "
    "getattr(s, 'ANYMAIL_POSTMARK_SERVER_TOKEN', None), reverse('anymail:postmark_tracking_webhook'), "
    "sorted(m.id for m in run_checks() if m.id.startswith('notifications.'))]))"
)


def _settings_read(**environment: str):
    cleared = {key: value for key, value in os.environ.items() if not key.startswith(("EMAIL_", "ANYMAIL_"))}
    env = {**cleared, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "engagement_site.settings", **environment}
    return subprocess.run([sys.executable, "-c", READ], cwd=PROJECT, env=env, capture_output=True, text=True)


def test_an_operator_selects_an_esp_through_the_environment():
    finished = _settings_read(
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="server-token",
        ANYMAIL_WEBHOOK_SECRET=SECRET,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == [
        "anymail.backends.postmark.EmailBackend",
        True,
        SECRET,
        "server-token",
        TRACKING,
        [],
    ]


def test_an_esp_without_a_webhook_secret_is_reported():
    finished = _settings_read(EMAIL_BACKEND="anymail.backends.postmark.EmailBackend")
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)[-1] == ["notifications.W004"]


def test_without_an_esp_no_anymail_webhook_is_served():
    finished = _settings_read(EMAIL_URL="smtp://mail.example.com:25")
    assert finished.returncode != 0
    assert "NoReverseMatch" in finished.stderr or "not a registered namespace" in finished.stderr


def test_an_esp_error_after_the_request_is_an_unknown_outcome(settings, postmark):
    postmark.script = [Reply(500, {"ErrorCode": 0, "Message": "Internal server error"})]
    config = make_config(channels=["email"])
    customer = inactive(config, days=10, with_pass=False, email=ADDRESS)
    with pytest.raises(CommandError):  # a channel with only unknown outcomes fails the business (not answering)
        run("--business", config.business.business_id, now=NOW)
    row = NotificationLog.objects.get(customer=customer)
    assert row.status == "unknown"
    assert len(postmark.requests) == 1  # never sent again
