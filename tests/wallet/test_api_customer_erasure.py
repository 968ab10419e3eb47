"""DELETE /api/customers/{id}: the customer's personal data is erased from every column that held it, the results
stay exact, and the customer is gone from the API and the daily run."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from notifications.models import NotificationLog
from notifications.services import ERASED_ERROR
from tests.autoengagement.datasets import WINDOW, ZONE, build_dataset
from tests.factories import (
    AppleDeviceRegistrationFactory,
    AutoEngagementConfigFactory,
    CustomerFactory,
    NotificationLogFactory,
    WalletPassFactory,
)
from wallet.models import AppleDeviceRegistration, Customer, GoogleWalletMessage, WalletPass

pytestmark = pytest.mark.django_db

URL = "/api/customers"
PERSONAL = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+14155550100",
    "push_token": "fcm-token-of-ada",
    "attributes": {"tier": "gold", "points": 120},
    "external_id": "crm-ada",
}


def _config(business) -> AutoEngagementConfig:
    return AutoEngagementConfig.objects.filter(business=business).first() or AutoEngagementConfigFactory(
        business=business
    )


def _customer_with_everything(business, external_id: str = "crm-ada") -> Customer:
    customer = CustomerFactory(business=business, **(PERSONAL | {"external_id": external_id}))
    apple = WalletPassFactory(customer=customer, platform="apple", message_text="Ada, we miss you")
    google = WalletPassFactory(customer=customer, platform="google")
    AppleDeviceRegistrationFactory(wallet_pass=apple, push_token="a" * 64)
    GoogleWalletMessage.objects.create(wallet_pass=google, message_id="m1", notified=True)
    for day, channel in enumerate(("email", "sms", "push", "wallet")):
        NotificationLogFactory(
            config=_config(business),
            customer=customer,
            channel=channel,
            header="Hello Ada",
            body="Ada, 10% off for you at ada@example.com",
            html="<p>Ada</p>",
            error="550 mailbox ada@example.com unavailable" if channel == "email" else "",
            run_date=dt.date(2026, 3, 1 + day),
        )
    return customer


def test_erasure_empties_every_column_that_held_personal_data(api, business):
    customer = _customer_with_everything(business)
    bystander = _customer_with_everything(business, external_id="crm-other")
    response = api.delete(f"{URL}/{customer.customer_id}")
    assert response.status_code == 204
    customer.refresh_from_db()
    assert customer.erased_at is not None
    assert (customer.first_name, customer.last_name, customer.email, customer.phone, customer.push_token) == (("",) * 5)
    assert (customer.attributes, customer.external_id) == ({}, None)
    assert not WalletPass.objects.filter(customer=customer).exists()
    assert not AppleDeviceRegistration.objects.filter(wallet_pass__customer=customer).exists()
    assert not GoogleWalletMessage.objects.filter(wallet_pass__customer=customer).exists()
    logs = NotificationLog.objects.filter(customer=customer)
    assert logs.count() == 4  # kept, for the counts
    assert set(logs.values_list("header", "body", "html")) == {("", "", "")}
    assert set(logs.values_list("channel", "error")) == {
        ("email", ERASED_ERROR),
        ("sms", ""),
        ("push", ""),
        ("wallet", ""),
    }
    # Nothing of the customer is left in any text column of any of these tables.
    for model in (Customer, WalletPass, AppleDeviceRegistration, GoogleWalletMessage, NotificationLog):
        for row in model.objects.filter(**({"pk": customer.pk} if model is Customer else {})).values():
            if model is not Customer and row.get("customer_id", row.get("wallet_pass_id")) not in (customer.pk,):
                continue
            text = repr(row)
            for value in ("Ada", "Lovelace", "ada@example.com", "4155550100", "fcm-token", "gold", "crm-ada"):
                assert value not in text, (model.__name__, row)
    # Another customer of the business keeps everything.
    bystander.refresh_from_db()
    assert (bystander.first_name, bystander.erased_at) == ("Ada", None)
    assert WalletPass.objects.filter(customer=bystander).count() == 2
    assert set(NotificationLog.objects.filter(customer=bystander).values_list("header", flat=True)) == {"Hello Ada"}


def test_an_erased_customer_is_gone_from_the_api(api, business):
    customer = _customer_with_everything(business)
    assert api.get(f"{URL}/{customer.customer_id}").status_code == 200
    assert api.delete(f"{URL}/{customer.customer_id}").status_code == 204
    # Idempotent in effect: the second DELETE finds no customer and changes nothing.
    assert api.delete(f"{URL}/{customer.customer_id}").status_code == 404
    assert api.get(f"{URL}/{customer.customer_id}").status_code == 404
    assert api.patch(f"{URL}/{customer.customer_id}", {"first_name": "Ada"}, format="json").status_code == 404
    assert api.post(f"{URL}/{customer.customer_id}/activity", {}, format="json").status_code == 404
    assert api.get(URL).json()["count"] == 0
    # The external_id is free again: importing it anew makes a new customer.
    response = api.post(f"{URL}/bulk", {"customers": [{"external_id": "crm-ada"}]}, format="json")
    assert response.json() == {"created": 1, "updated": 0}
    assert Customer.objects.filter(business=business).count() == 2


def test_another_business_cannot_erase_a_customer(other_api, business):
    customer = _customer_with_everything(business)
    assert other_api.delete(f"{URL}/{customer.customer_id}").status_code == 404
    customer.refresh_from_db()
    assert (customer.first_name, customer.erased_at) == ("Ada", None)
    assert WalletPass.objects.filter(customer=customer).count() == 2


def test_erasure_takes_the_same_queries_whatever_the_log_holds(api, business):
    few = _customer_with_everything(business)
    many = _customer_with_everything(business, external_id="crm-many")
    NotificationLog.objects.bulk_create(
        NotificationLogFactory.build(business=business, config=_config(business), customer=many, run_date=day)
        for day in (dt.date(2025, 1, 1) + dt.timedelta(days=n) for n in range(300))
    )
    counts = []
    for customer in (few, many):
        with CaptureQueriesContext(connection) as queries:
            assert api.delete(f"{URL}/{customer.customer_id}").status_code == 204
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert NotificationLog.objects.filter(customer=many).count() == 304


@pytest.mark.parametrize("summarised", [False, True])
def test_erasure_leaves_the_results_exactly_as_they_were(api, business, summarised):
    business.timezone = ZONE
    business.save()
    build_dataset(business)
    if summarised:
        results.refresh_stale_days()
    before = api.get("/api/auto-engagement/stats", WINDOW).json()
    history_before = api.get("/api/auto-engagement/history", {"limit": 100}).json()["count"]
    erased = list(NotificationLog.objects.filter(business=business).values_list("customer__customer_id", flat=True))
    erased = sorted(set(erased))[::3]  # reached, holdout, credited or not: a third of everyone
    assert len(erased) > 20
    for customer_id in erased:
        assert api.delete(f"{URL}/{customer_id}").status_code == 204
    assert api.get("/api/auto-engagement/stats", WINDOW).json() == before
    assert api.get("/api/auto-engagement/history", {"limit": 100}).json()["count"] == history_before
    # Recounted from the log, too.
    days = NotificationLog.objects.filter(business=business).values_list("business_id", "run_date").distinct()
    results.mark_stale(list(days))
    results.refresh_stale_days()
    assert api.get("/api/auto-engagement/stats", WINDOW).json() == before
