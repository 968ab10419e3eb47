"""A journey step's content per channel reaching each backend (the record outbox, and the live email, SMS and push
backends against local providers), rendered with the customer's attributes and fallbacks, customer values escaped
in an email's HTML, and an SMS of the step's own text sized and cut as the text alone."""

import datetime as dt

import pytest

from autoengagement.journeys import mirrored_fields
from autoengagement.services.preview import config_preview
from notifications.backends import record
from notifications.models import NotificationLog
from tests.autoengagement.runs import run
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory
from tests.notifications.providers import live_channels  # noqa: F401

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

STEP = {
    "after_days": 7,
    "message": {"header": "Default for {first_name}", "body": "Default body"},
    "email": {
        "subject": "Subject for {first_name}",
        "text": "Text: {attributes.tier|member}, {attributes.points|no} points",
        "html": '<html><body><h1 class="x">Hi {first_name}</h1><p>{attributes.tier|member} &amp; co</p></body></html>',
    },
    "sms": {"text": "SMS for {first_name}: {attributes.tier|member}"},
    "push": {"title": "Push for {first_name}", "body": "{attributes.points|0} points at {business_name}"},
    "wallet": {"header": "Pass {attributes.tier|member}", "body": "{days_inactive} days"},
}


def step_config(steps=(STEP,), **fields):
    steps = list(steps)
    return AutoEngagementConfigFactory(
        business=BusinessFactory(name="Bean & Bar"), steps=steps, **{**mirrored_fields(steps), **fields}
    )


def quiet(config, **fields):
    return CustomerFactory(
        business=config.business, created_at=NOW - 400 * DAY, last_activity_at=NOW - 10 * DAY, **fields
    )


def test_each_channel_gets_its_own_content_with_attributes_and_fallbacks():
    config = step_config(channels=["wallet", "email", "sms", "push"])
    gold = quiet(config, first_name="Ana", attributes={"tier": "gold", "points": 120}, push_token="tok-ana")
    plain = quiet(config, first_name="Ben", attributes={"tier": ""}, push_token="tok-ben")
    for member in (gold, plain):
        WalletPassFactory(customer=member)
    run()
    sent = {(m.channel, m.message.customer_id): m.message for m in record.outbox}
    assert len(sent) == 8

    def carried(channel, member):
        message = sent[channel, member.customer_id]
        return message.header, message.body, message.html

    assert carried("wallet", gold) == ("Pass gold", "10 days", "")
    assert carried("email", gold) == (
        "Subject for Ana",
        "Text: gold, 120 points",
        '<html><body><h1 class="x">Hi Ana</h1><p>gold &amp; co</p></body></html>',
    )
    assert carried("sms", gold) == ("", "SMS for Ana: gold", "")
    assert carried("push", gold) == ("Push for Ana", "120 points at Bean & Bar", "")
    # An empty or missing attribute takes its fallback (or nothing when the placeholder has none).
    assert carried("wallet", plain) == ("Pass member", "10 days", "")
    assert carried("email", plain)[:2] == ("Subject for Ben", "Text: member, no points")
    assert carried("sms", plain) == ("", "SMS for Ben: member", "")
    assert carried("push", plain) == ("Push for Ben", "0 points at Bean & Bar", "")
    # The rows hold what was sent: a retry or the history shows the same.
    for row in NotificationLog.objects.all():
        message = sent[row.channel, row.customer.customer_id]
        assert (row.header, row.body, row.html, row.step, row.variant) == (
            message.header,
            message.body,
            message.html,
            1,
            "",
        )


def test_customer_values_are_escaped_in_the_email_html_only():
    config = step_config(channels=["email", "sms"])
    quiet(config, first_name='<img src=x onerror="a()">', attributes={"tier": "<b>Gold</b> & co"})
    run()
    email = next(m.message for m in record.outbox if m.channel == "email")
    sms = next(m.message for m in record.outbox if m.channel == "sms")
    assert email.html == (
        '<html><body><h1 class="x">Hi &lt;img src=x onerror=&quot;a()&quot;&gt;</h1>'
        "<p>&lt;b&gt;Gold&lt;/b&gt; &amp; co &amp; co</p></body></html>"
    )
    # Text is text: the subject, the email's text part and an SMS carry the values as given.
    assert email.header == 'Subject for <img src=x onerror="a()">'
    assert email.body == "Text: <b>Gold</b> & co, no points"
    assert sms.body == 'SMS for <img src=x onerror="a()">: <b>Gold</b> & co'


def test_live_channels_receive_each_steps_content(live_channels):  # noqa: F811
    config = step_config(channels=["email", "sms", "push"])
    member = quiet(
        config,
        first_name="Ana <3",
        email="ana@example.com",
        phone="+14155550101",
        push_token="token-ana",
        attributes={"tier": "gold", "points": 7},
    )
    summary = run()
    assert summary["total_notified"] == 1 and summary["notifications_sent"] == 3
    [received] = live_channels.inbox.received
    email = received.message
    assert email["Subject"] == "Subject for Ana <3"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = email["List-Unsubscribe"].strip()[1:-1]
    assert link.startswith("https://engage.example.com/unsubscribe/")
    html = email.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html.startswith('<html><body><h1 class="x">Hi Ana &lt;3</h1><p>gold &amp; co</p>')
    # The unsubscribe footer is added before the step's own </body>.
    assert html.rstrip().endswith("</p>\n</body></html>") and f'href="{link}"' in html
    text = email.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Subject for Ana <3") and "Text: gold, 7 points" in text and link in text
    assert [(sms["To"], sms["Body"]) for sms in live_channels.sms] == [("+14155550101", "SMS for Ana <3: gold")]
    assert [push["message"]["notification"] for push in live_channels.pushes] == [
        {"title": "Push for Ana <3", "body": "7 points at Bean & Bar"}
    ]
    rows = NotificationLog.objects.filter(customer=member)
    assert {(row.channel, row.status, row.step) for row in rows} == {
        ("email", "sent", 1),
        ("sms", "sent", 1),
        ("push", "sent", 1),
    }


def test_an_sms_of_a_steps_own_text_is_sized_and_cut_as_that_text(live_channels, settings):  # noqa: F811
    """One segment holds 160 GSM-7 characters: a step's own 160-character text goes whole, where the message's
    header and body (one segment of 160 with the header, a newline and the body) would be cut."""
    settings.SMS_MAX_SEGMENTS = 1
    own = "x" * 152 + " {first_name}"  # 160 characters for a seven-letter name
    steps = [
        {"after_days": 7, "message": {"header": "Header", "body": own}, "sms": {"text": own}},
        {"after_days": 8, "message": {"header": "Header", "body": own}},
    ]
    config = step_config(steps=steps, channels=["sms"])
    quiet(config, first_name="Abigail", phone="+14155550101")
    run()
    run(now=NOW + DAY)
    whole, cut = (sms["Body"] for sms in live_channels.sms)
    assert whole == "x" * 152 + " Abigail"
    assert cut.startswith("Header\nxxx") and cut.endswith("...") and len(cut) <= 160
    preview = config_preview(config=config, now=NOW)
    assert [warning["message"] for warning in preview.warnings] == [
        "step 2: Header and body need 2 SMS segments; one segment holds 160 GSM-7 characters."
    ]
