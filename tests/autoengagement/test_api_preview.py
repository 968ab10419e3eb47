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
