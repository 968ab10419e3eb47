"""Twilio delivery receipts: the StatusCallback the backend asks for, the endpoint that checks X-Twilio-Signature
(signed here with the official `twilio` package's RequestValidator, the oracle for the algorithm), and what a
receipt does to the log row and to the customer's SMS consent."""

from urllib.parse import urlencode, urlsplit

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from notifications.models import NotificationLog
from notifications.receipts import twilio_signature, twilio_signature_valid
from tests.api import client_for
from tests.autoengagement.runs import DAY, NOW, inactive, make_config, run
from tests.factories import CustomerFactory, NotificationLogFactory
from tests.faults.standins import TwilioStandIn
from wallet.models import Customer

pytestmark = pytest.mark.django_db

TOKEN = "twilio-secret-token"
BASE = "https://engage.example.com"
PATH = "/notifications/twilio/status/"
SID = "SM" + "a" * 32
PHONE = "+14155550100"


@pytest.fixture(autouse=True)
def twilio_receipt_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE
    return settings


@pytest.fixture
def sms_row():
    customer = CustomerFactory(phone=PHONE)
    return NotificationLogFactory(
        config__business=customer.business,
        customer=customer,
        channel="sms",
        provider_message_id=SID,
        sent_at=timezone.now(),
    )


def callback_form(status: str, *, sid: str = SID, error_code: str = "", to: str = PHONE) -> dict[str, str]:
    """The form Twilio posts to a StatusCallback (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status)."""
    form = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": to,
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


def post_callback(client, form, *, notification_id: str, token: str = TOKEN, signature: str | None = None, base=BASE):
    """Post as Twilio does: urlencoded, signed over the public URL with the official validator."""
    path = f"{PATH}?{urlencode({'notification_id': notification_id})}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(base + path, form)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(path, urlencode(form), content_type="application/x-www-form-urlencoded", **headers)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"MessageSid": SID, "MessageStatus": "delivered", "To": PHONE},
        {"Body": "Café ☕ & more = 100%", "b": "2", "a": "1", "A": "0"},
        {"ErrorCode": "30003", "ErrorMessage": "Unreachable destination handset"},
    ],
)
def test_our_signature_is_twilios(params):
    url = f"{BASE}{PATH}?notification_id=ntf_x&extra=a%20b"
    validator = RequestValidator(TOKEN)
    ours = twilio_signature(url=url, params=params.items(), auth_token=TOKEN)
    assert ours == validator.compute_signature(url, params)
    assert validator.validate(url, params, ours)
    assert twilio_signature_valid(
        url=url, params=params.items(), auth_token=TOKEN, signature=validator.compute_signature(url, params)
    )
    assert not twilio_signature_valid(url=url, params=params.items(), auth_token="other", signature=ours)
    assert not twilio_signature_valid(url=url + "&x=1", params=params.items(), auth_token=TOKEN, signature=ours)
    assert not twilio_signature_valid(url=url, params=params.items(), auth_token="", signature=ours)


def test_a_signed_delivered_callback_marks_the_row_delivered(client, sms_row):
    response = post_callback(client, callback_form("delivered"), notification_id=sms_row.notification_id)
    assert (response.status_code, response.content) == (204, b"")
    sms_row.refresh_from_db()
    assert sms_row.delivered_at is not None
    assert sms_row.delivery_error == ""
    item = client_for(sms_row.business).get("/api/auto-engagement/history").json()["results"][0]
    assert item["delivered_at"] is not None
    assert item["delivery_error"] == ""


def test_without_a_public_base_url_the_request_url_is_signed(client, settings, sms_row):
    settings.PUBLIC_BASE_URL = ""
    form = callback_form("delivered")
    assert post_callback(client, form, notification_id=sms_row.notification_id).status_code == 403
    response = post_callback(client, form, notification_id=sms_row.notification_id, base="http://testserver")
    assert response.status_code == 204


@pytest.mark.parametrize(
    "how",
    ["missing", "garbage", "another token", "another notification", "another body", "no auth token"],
)
def test_a_callback_not_signed_by_twilio_is_a_403_and_changes_nothing(client, settings, sms_row, how):
    form = callback_form("undelivered", error_code="30003")
    notification_id = sms_row.notification_id
    signature = None
    if how == "missing":
        signature = ""
    elif how == "garbage":
        signature = "bm90IGEgc2lnbmF0dXJl"
    elif how == "another token":
        signature = RequestValidator("someone-else").compute_signature(
            f"{BASE}{PATH}?notification_id={notification_id}", form
        )
    elif how == "another notification":
        signature = RequestValidator(TOKEN).compute_signature(f"{BASE}{PATH}?notification_id=ntf_other", form)
    elif how == "another body":
        signature = RequestValidator(TOKEN).compute_signature(
            f"{BASE}{PATH}?notification_id={notification_id}", callback_form("delivered")
        )
    elif how == "no auth token":
        settings.TWILIO_AUTH_TOKEN = ""
    response = post_callback(client, form, notification_id=notification_id, signature=signature)
    assert response.status_code == 403
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (None, "")
    assert Customer.objects.get(pk=sms_row.customer_id).sms_undeliverable_phone == ""


def test_only_post_is_accepted(client):
    assert client.get(PATH).status_code == 405


def test_an_unknown_or_foreign_notification_is_answered_204_and_changes_nothing(client, sms_row):
    # Unknown id: the same answer as a known one, so callers learn nothing about which notifications exist.
    assert post_callback(client, callback_form("delivered"), notification_id="ntf_" + "x" * 20).status_code == 204
    # A known notification but another message's sid: the signed URL names the row, the body must agree with it.
    other = callback_form("undelivered", sid="SM" + "b" * 32, error_code="30003")
    assert post_callback(client, other, notification_id=sms_row.notification_id).status_code == 204
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (None, "")
    assert Customer.objects.get(pk=sms_row.customer_id).sms_undeliverable_phone == ""


def test_progress_statuses_change_nothing(client, sms_row):
    for status in ("queued", "sending", "sent", "accepted"):
        assert post_callback(client, callback_form(status), notification_id=sms_row.notification_id).status_code == 204
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (None, "")


def test_out_of_order_callbacks_never_undo_delivered(client, sms_row):
    nid = sms_row.notification_id
    assert post_callback(client, callback_form("delivered"), notification_id=nid).status_code == 204
    sms_row.refresh_from_db()
    delivered_at = sms_row.delivered_at
    for status, code in [("sent", ""), ("queued", ""), ("delivered", ""), ("undelivered", "30003"), ("failed", "")]:
        assert post_callback(client, callback_form(status, error_code=code), notification_id=nid).status_code == 204
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (delivered_at, "")
    # A number that did receive the message is not marked undeliverable by a contradicting late report.
    assert Customer.objects.get(pk=sms_row.customer_id).sms_undeliverable_phone == ""


def test_undelivered_then_delivered_ends_delivered(client, sms_row):
    nid = sms_row.notification_id
    post_callback(client, callback_form("undelivered", error_code="30008"), notification_id=nid)
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (None, "Twilio 30008: Unknown error")
    post_callback(client, callback_form("sent"), notification_id=nid)  # a late progress report changes nothing
    sms_row.refresh_from_db()
    assert sms_row.delivery_error == "Twilio 30008: Unknown error"
    post_callback(client, callback_form("delivered"), notification_id=nid)
    sms_row.refresh_from_db()
    assert sms_row.delivered_at is not None
    assert sms_row.delivery_error == ""


def test_a_repeated_failure_is_recorded_once(client, sms_row):
    form = callback_form("failed", error_code="30007")
    for _ in range(3):
        assert post_callback(client, form, notification_id=sms_row.notification_id).status_code == 204
    sms_row.refresh_from_db()
    assert (sms_row.delivered_at, sms_row.delivery_error) == (None, "Twilio 30007: Message filtered")


def test_twilios_own_error_message_is_kept(client, sms_row):
    form = {**callback_form("undelivered", error_code="30034"), "ErrorMessage": "Message from an unregistered number"}
    post_callback(client, form, notification_id=sms_row.notification_id)
    sms_row.refresh_from_db()
    assert sms_row.delivery_error == "Twilio 30034: Message from an unregistered number"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("30003", "Twilio 30003: Unreachable destination handset"),
        ("30005", "Twilio 30005: Unknown destination handset"),
        ("30006", "Twilio 30006: Landline or unreachable carrier"),
    ],
)
def test_a_number_that_cannot_receive_is_marked(client, sms_row, code, reason):
    post_callback(client, callback_form("undelivered", error_code=code), notification_id=sms_row.notification_id)
    customer = Customer.objects.get(pk=sms_row.customer_id)
    assert (customer.sms_undeliverable_phone, customer.sms_undeliverable_reason) == (PHONE, reason)
    assert not customer.sms_opt_out


@pytest.mark.parametrize("code", ["30004", "30007", "30008", ""])
def test_other_failures_leave_the_number_alone(client, sms_row, code):
    post_callback(client, callback_form("undelivered", error_code=code), notification_id=sms_row.notification_id)
    customer = Customer.objects.get(pk=sms_row.customer_id)
    assert (customer.sms_undeliverable_phone, customer.sms_opt_out) == ("", False)


def test_a_receipt_about_an_old_number_leaves_the_new_one_alone(client, sms_row):
    Customer.objects.filter(pk=sms_row.customer_id).update(phone="+14155550199")
    post_callback(client, callback_form("undelivered", error_code="30003"), notification_id=sms_row.notification_id)
    customer = Customer.objects.get(pk=sms_row.customer_id)
    assert customer.sms_undeliverable_phone == ""
    sms_row.refresh_from_db()
    assert sms_row.delivery_error.startswith("Twilio 30003")


def test_stop_reported_by_a_receipt_opts_the_customer_out(client, sms_row):
    post_callback(client, callback_form("failed", error_code="21610"), notification_id=sms_row.notification_id)
    customer = Customer.objects.get(pk=sms_row.customer_id)
    assert customer.sms_opt_out
    sms_row.refresh_from_db()
    assert sms_row.delivery_error == "Twilio 21610: Attempt to send to unsubscribed recipient"


def test_a_receipt_may_arrive_before_the_run_records_the_sid(client, sms_row):
    # Twilio can call back while the run is still sending the window: the row is `sending`, its sid not written yet.
    NotificationLog.objects.filter(pk=sms_row.pk).update(status="sending", provider_message_id="", sent_at=None)
    post_callback(client, callback_form("delivered"), notification_id=sms_row.notification_id)
    sms_row.refresh_from_db()
    assert sms_row.delivered_at is not None


def test_a_receipt_for_another_channels_row_changes_nothing(client, sms_row):
    NotificationLog.objects.filter(pk=sms_row.pk).update(channel="email")
    post_callback(client, callback_form("delivered"), notification_id=sms_row.notification_id)
    sms_row.refresh_from_db()
    assert sms_row.delivered_at is None


# End to end: the run sends through the Twilio stand-in, which receives our StatusCallback URL; Twilio's receipt says
# the number is unreachable; the next reminder skips the SMS with that reason; a new number is texted again.


@pytest.fixture
def twilio(settings):
    with TwilioStandIn(account_sid="AC" + "0" * 32, auth_token=TOKEN, from_number="+15005550006") as standin:
        settings.SMS_CHANNEL = "twilio"
        standin.configure(settings)
        settings.TWILIO_API_BASE = standin.base_url
        settings.TWILIO_RATE_LIMIT = 0
        yield standin


def _post_status_callback(client, standin_form: dict[str, str], status: str, error_code: str = ""):
    """Twilio calling the StatusCallback URL it was given for this message."""
    url = standin_form["StatusCallback"]
    form = callback_form(status, sid=standin_form["Sid"], error_code=error_code, to=standin_form["To"])
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    split = urlsplit(url)
    return client.post(
        f"{split.path}?{split.query}",
        urlencode(form),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def test_an_unreachable_number_stops_being_texted_until_it_changes(client, twilio):
    config = make_config(channels=["sms", "email"], inactivity_days=7, max_reminders=3)
    customer = inactive(config, days=10, with_pass=False, phone=PHONE, email="ana@example.com")

    run("--business", config.business.business_id, now=NOW)
    sms = NotificationLog.objects.get(customer=customer, channel="sms")
    [sent] = twilio.messages
    assert sent["StatusCallback"] == f"{BASE}{PATH}?notification_id={sms.notification_id}"
    assert sms.provider_message_id == sent["Sid"]

    assert _post_status_callback(client, sent, "sent").status_code == 204
    assert _post_status_callback(client, sent, "undelivered", "30003").status_code == 204
    sms.refresh_from_db()
    assert sms.delivery_error == "Twilio 30003: Unreachable destination handset"

    # The second reminder, a spell's inactivity_days later: email goes, the SMS is skipped with the receipt's reason.
    run("--business", config.business.business_id, now=NOW + 7 * DAY)
    second = NotificationLog.objects.get(customer=customer, channel="sms", run_date=(NOW + 7 * DAY).date())
    assert (second.status, second.error) == (
        "skipped",
        "undeliverable number: Twilio 30003: Unreachable destination handset",
    )
    assert NotificationLog.objects.get(customer=customer, channel="email", run_date=(NOW + 7 * DAY).date()).status == (
        "sent"
    )
    assert len(twilio.messages) == 1

    # The business gives the customer a new number: the third reminder texts it.
    api = client_for(config.business)
    response = api.patch(f"/api/customers/{customer.customer_id}", {"phone": "+14155550111"}, format="json")
    assert response.status_code == 200
    customer.refresh_from_db()
    assert (customer.sms_undeliverable_phone, customer.sms_undeliverable_reason) == ("", "")
    run("--business", config.business.business_id, now=NOW + 14 * DAY)
    third = NotificationLog.objects.get(customer=customer, channel="sms", run_date=(NOW + 14 * DAY).date())
    assert third.status == "sent"
    assert [message["To"] for message in twilio.messages] == [PHONE, "+14155550111"]


def test_a_patch_that_keeps_the_number_keeps_its_mark(client, sms_row):
    post_callback(client, callback_form("undelivered", error_code="30005"), notification_id=sms_row.notification_id)
    api = client_for(sms_row.business)
    url = f"/api/customers/{sms_row.customer.customer_id}"
    assert api.patch(url, {"first_name": "Ana", "phone": PHONE}, format="json").status_code == 200
    customer = Customer.objects.get(pk=sms_row.customer_id)
    assert (customer.sms_undeliverable_phone, customer.first_name) == (PHONE, "Ana")


def test_no_status_callback_is_asked_for_without_a_public_base_url(settings, twilio):
    settings.PUBLIC_BASE_URL = ""
    config = make_config(channels=["sms"])
    inactive(config, days=10, with_pass=False, phone=PHONE)
    run("--business", config.business.business_id, now=NOW)
    [sent] = twilio.messages
    assert "StatusCallback" not in sent


def test_staff_filter_the_log_by_what_receipts_said(admin_client, client, sms_row):
    other = NotificationLogFactory(channel="sms", provider_message_id="SM" + "c" * 32)
    post_callback(client, callback_form("undelivered", error_code="30003"), notification_id=sms_row.notification_id)
    url = "/admin/notifications/notificationlog/"
    response = admin_client.get(url, {"receipt": "undelivered"})
    assert response.status_code == 200, response
    undelivered = response.content.decode()
    assert sms_row.notification_id in undelivered and other.notification_id not in undelivered
    assert "Twilio 30003: Unreachable destination handset" in undelivered
    delivered = admin_client.get(url, {"receipt": "delivered"}).content.decode()
    assert sms_row.notification_id not in delivered
