"""What wallet announces (wallet.signals) and when: the contract the apps above it rely on, checked with receivers
of the test's own, whatever those apps do with it."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import CustomerFactory
from tests.wallet.certs import PASS_TYPE_ID
from tests.wallet.conftest import issued_apple_pass
from wallet.models import Business, Customer, WalletPass
from wallet.services import record_visits
from wallet.signals import Visit, pass_fetched, visits_recorded

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def received():
    """Connect test receivers to a signal for the test's duration; returns what each call received."""
    calls: list[dict] = []
    connected = []

    def connect(signal, receiver=None):
        def record(sender, **kwargs):
            calls.append({"sender": sender, **kwargs})
            if receiver:
                receiver(sender, **kwargs)

        signal.connect(record, weak=False)
        connected.append((signal, record))
        return calls

    yield connect
    for signal, record in connected:
        signal.disconnect(record)


@pytest.mark.django_db(transaction=True)
def test_record_visits_announces_the_visits_that_move_customers_forward_inside_its_transaction(received):
    customer = CustomerFactory(last_activity_at=NOW - 10 * DAY)
    business = customer.business
    seen_in_transaction = []
    calls = received(visits_recorded, lambda sender, **kwargs: seen_in_transaction.append(connection.in_atomic_block))

    moved = record_visits(
        business=business,
        visits=[(customer, NOW - 2 * DAY), (customer, NOW - 20 * DAY), (customer, NOW - DAY)],
        now=NOW,
    )

    assert moved == 1
    assert seen_in_transaction == [True]
    assert calls == [
        {
            "sender": Business,
            "signal": visits_recorded,
            "business": business,
            "visits": [
                Visit(customer_pk=customer.pk, previous_activity_at=NOW - 10 * DAY, occurred_at=NOW - 2 * DAY),
                Visit(customer_pk=customer.pk, previous_activity_at=NOW - 2 * DAY, occurred_at=NOW - DAY),
            ],
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_a_receiver_failing_rolls_back_the_visits_and_the_other_receivers_writes(received):
    customer = CustomerFactory(last_activity_at=NOW - 10 * DAY, first_name="Ana")

    def write(sender, **kwargs):
        Customer.objects.filter(pk=customer.pk).update(first_name="Changed")

    def fail(sender, **kwargs):
        raise RuntimeError("receiver failed")

    received(visits_recorded, write)
    received(visits_recorded, fail)
    with pytest.raises(RuntimeError):
        record_visits(business=customer.business, visits=[(customer, NOW - DAY)], now=NOW)

    customer.refresh_from_db()
    assert (customer.first_name, customer.last_activity_at) == ("Ana", NOW - 10 * DAY)


@pytest.mark.django_db
def test_serving_the_current_pass_announces_the_fetch_and_a_304_does_not(client, apple_settings, received):
    wallet_pass, token = issued_apple_pass()
    WalletPass.objects.filter(pk=wallet_pass.pk).update(message_text="Come back", updated_at=timezone.now())
    calls = received(pass_fetched)
    url = f"/wallet/apple/v1/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}"
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}

    served = client.get(url, **auth)
    assert served.status_code == 200
    assert [(call["sender"], call["wallet_pass"].pk) for call in calls] == [(WalletPass, wallet_pass.pk)]

    assert client.get(url, HTTP_IF_MODIFIED_SINCE=served["Last-Modified"], **auth).status_code == 304
    assert client.get(url, HTTP_AUTHORIZATION="ApplePass wrong").status_code == 401
    assert len(calls) == 1
