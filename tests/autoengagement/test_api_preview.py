import datetime as dt

import pytest
from django.utils import timezone

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, WalletPassFactory

pytestmark = pytest.mark.django_db
URL = "/api/auto-engagement/preview"


def test_preview_reports_audience_reach_sample_and_warnings(api, business):
    AutoEngagementConfigFactory(
        business=business,
        channels=["wallet", "sms"],
        message_template={"header": "Hi {first_name}", "body": "x" * 200},
    )
    now = timezone.now()
    member = CustomerFactory(
        business=business,
        first_name="Ana",
        last_activity_at=now - dt.timedelta(days=30),
        created_at=now - dt.timedelta(days=90),
    )
    WalletPassFactory(customer=member)
    CustomerFactory(business=business, last_activity_at=now, created_at=now - dt.timedelta(days=90))
    response = api.post(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["audience"] == 1
    assert body["reachable"] == {"wallet": 1, "sms": 1}
    assert body["sample"] == {"customer_id": member.customer_id, "header": "Hi Ana", "body": "x" * 200}
    assert {w["channel"] for w in body["warnings"]} == {"wallet", "sms"}
    assert body["left_out_by_max_inactivity_days"] == 0
    assert not NotificationLog.objects.exists()


def test_preview_without_config_is_404(api):
    assert api.post(URL).status_code == 404


def test_preview_never_shows_another_business(api, business, other_business):
    AutoEngagementConfigFactory(business=business)
    AutoEngagementConfigFactory(business=other_business)
    now = timezone.now()
    CustomerFactory(
        business=other_business, last_activity_at=now - dt.timedelta(days=30), created_at=now - dt.timedelta(days=90)
    )
    assert api.post(URL).json()["audience"] == 0


def test_preview_needs_a_session(client):
    assert client.post(URL).status_code == 401


def test_preview_warnings_carry_channel_step_and_variant(api, business):
    variants = [
        {"name": "plain", "weight": 50},
        {"name": "offer", "weight": 50, "sms": {"text": "Use code {attributes.code|WELCOME} " + "x" * 160}},
    ]
    steps = [
        {"after_days": 7, "message": {"header": "Hi", "body": "Come back"}, "variants": variants},
        {"after_days": 30, "message": {"header": "Hi", "body": "y" * 120}},
    ]
    AutoEngagementConfigFactory(
        business=business, steps=steps, inactivity_days=7, max_reminders=2, channels=["sms", "wallet"]
    )
    response = api.post(URL)
    assert response.status_code == 200
    assert response.json()["warnings"] == [
        {
            "channel": "sms",
            "step": 1,
            "variant": "offer",
            "message": "step 1, variant offer: The text needs 2 SMS segments; one segment holds 160 GSM-7 characters.",
        },
        {
            "channel": "wallet",
            "step": 2,
            "variant": "",
            "message": "step 2: The body has 120 characters; a lock screen shows about 90, the rest is cut off.",
        },
        {
            "channel": None,
            "step": None,
            "variant": "",
            "message": "No customer of this business has the attribute 'code': {attributes.code} renders its fallback "
            "(or nothing) for everyone. Used in: step 1, variant offer, sms.",
        },
    ]


def test_preview_warnings_of_a_config_without_steps_name_no_step(api, business):
    AutoEngagementConfigFactory(
        business=business, channels=["push"], message_template={"header": "h", "body": "z" * 95}
    )
    assert api.post(URL).json()["warnings"] == [
        {
            "channel": "push",
            "step": None,
            "variant": "",
            "message": "The body has 95 characters; a lock screen shows about 90, the rest is cut off.",
        }
    ]


def test_preview_gives_the_audience_by_step(api, business):
    steps = [
        {"after_days": 7, "message": {"header": "Hi", "body": "Come back"}},
        {"after_days": 30, "message": {"header": "Hi", "body": "20% off"}},
    ]
    config = AutoEngagementConfigFactory(
        business=business, steps=steps, inactivity_days=7, max_reminders=2, channels=["wallet"]
    )
    now = timezone.now()
    for days in (10, 12, 40):
        CustomerFactory(
            business=business, last_activity_at=now - dt.timedelta(days=days), created_at=now - dt.timedelta(days=90)
        )
    assert api.post(URL).json()["steps"] == {"1": 3, "2": 0}
    config.steps, config.max_reminders = None, 1
    config.save()
    assert api.post(URL).json()["steps"] == {"1": 3}
