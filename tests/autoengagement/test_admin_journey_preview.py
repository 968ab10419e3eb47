"""The change page's Preview (autoengagement.content_preview): each step's and variant's content per channel,
rendered for "Ana" with a real customer's attributes (or the fallbacks), escaped where it is HTML."""

import html

import pytest
from django.urls import reverse

from autoengagement.content_preview import PREVIEW_CSP, with_preview_csp
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory

pytestmark = pytest.mark.django_db

STEPS = [
    {
        "after_days": 4,
        "message": {"header": "Hi {first_name}", "body": "Your code: {attributes.code|WELCOME}"},
        "email": {
            "subject": "A gift for {first_name}",
            "text": "Code {attributes.code|WELCOME}",
            "html": '<p>Hello {first_name}, <b>{attributes.code|WELCOME}</b></p><img src="https://pixel.example/t.gif">',
        },
        "variants": [
            {"name": "plain", "weight": 50},
            {"name": "short", "weight": 50, "sms": {"text": "{business_name}: {attributes.code|WELCOME}"}},
        ],
    },
    {"after_days": 20, "message": {"header": "Last call", "body": "{days_inactive} days, {first_name}"}},
]
HOSTILE = "<script>alert(1)</script>"


def _preview_page(client, config) -> tuple[object, str]:
    response = client.get(reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk]))
    assert response.status_code == 200
    return response.context["journey_preview"], response.content.decode()


def _channels(variant) -> dict[str, object]:
    return {channel.channel: channel for channel in variant.channels}


def test_each_step_and_variant_is_rendered_per_channel_with_a_real_customers_attributes(admin_client):
    business = BusinessFactory(name="Cafe & Co")
    config = AutoEngagementConfigFactory(business=business, steps=STEPS, channels=["wallet", "email", "sms"])
    customer = CustomerFactory(business=business, attributes={"code": HOSTILE})
    CustomerFactory(business=business, attributes={})  # newer, without attributes: not the sample

    preview, page = _preview_page(admin_client, config)

    assert preview.sample_customer_id == customer.customer_id
    assert [(step.number, step.after_days, [v.name for v in step.variants]) for step in preview.steps] == [
        (1, 4, ["plain", "short"]),
        (2, 20, [""]),
    ]
    plain, short = (_channels(variant) for variant in preview.steps[0].variants)
    assert (plain["wallet"].header, plain["wallet"].body) == ("Hi Ana", f"Your code: {HOSTILE}")
    assert (plain["push"].header, plain["push"].enabled) == ("Hi Ana", False)
    assert plain["sms"].body == f"Hi Ana\nYour code: {HOSTILE}"
    assert short["sms"].body == f"Cafe & Co: {HOSTILE}"
    assert (plain["email"].header, plain["email"].body) == ("A gift for Ana", f"Code {HOSTILE}")
    # The email's own HTML: the customer's value escaped, the author's markup kept, any request forbidden.
    assert plain["email"].html == with_preview_csp(
        '<p>Hello Ana, <b>&lt;script&gt;alert(1)&lt;/script&gt;</b></p><img src="https://pixel.example/t.gif">'
    )
    assert plain["email"].html.startswith(PREVIEW_CSP)
    last = _channels(preview.steps[1].variants[0])
    assert last["wallet"].body == "20 days, Ana"

    # On the page: text escaped once, the frame's document escaped once more inside its srcdoc attribute.
    assert HOSTILE not in page
    assert html.escape(f"Your code: {HOSTILE}", quote=False) in page
    assert 'sandbox="" srcdoc="' in page
    assert "&lt;b&gt;&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;&lt;/b&gt;" in page
    assert "Cafe &amp; Co: &lt;script&gt;" in page
    assert customer.customer_id in page


def test_without_a_customer_with_attributes_the_fallbacks_show(admin_client):
    config = AutoEngagementConfigFactory(steps=STEPS)
    CustomerFactory(business=config.business, attributes={})
    CustomerFactory(attributes={"code": "OTHER-BUSINESS"})

    preview, page = _preview_page(admin_client, config)

    assert (preview.sample_customer_id, preview.attributes) == ("", {})
    wallet = _channels(preview.steps[0].variants[0])["wallet"]
    assert wallet.body == "Your code: WELCOME"
    assert "OTHER-BUSINESS" not in page
    assert "attribute placeholders show their fallbacks" in page


def test_a_config_without_steps_previews_its_message_and_the_standard_email_layout(admin_client):
    config = AutoEngagementConfigFactory(
        message_template={"header": "We miss you, {first_name}", "body": "Back at {business_name} & soon?"},
        inactivity_days=9,
        max_reminders=3,
    )

    preview, page = _preview_page(admin_client, config)
    assert "The message: after 9 days of inactivity, then every 9 days while inactive, 3 times at most" in page

    (step,) = preview.steps
    assert (step.number, step.after_days) == (1, 9)
    channels = _channels(step.variants[0])
    assert channels["wallet"].body == f"Back at {config.business.name} & soon?"
    email = channels["email"].html
    assert "<head>" + PREVIEW_CSP in email  # in the layout's head, so the document keeps its doctype
    assert "We miss you, Ana" in email and "&amp; soon?" in email
    assert "1 segment (GSM-7)" in channels["sms"].note


def test_the_request_blocking_policy_goes_into_the_head_or_first():
    assert with_preview_csp("<p>x</p>") == PREVIEW_CSP + "<p>x</p>"
    document = '<!doctype html><html><HEAD lang="en"><title>t</title></HEAD><body><header>h</header></body></html>'
    assert with_preview_csp(document) == document.replace('<HEAD lang="en">', '<HEAD lang="en">' + PREVIEW_CSP)
