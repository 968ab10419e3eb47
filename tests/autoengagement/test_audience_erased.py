"""Customers whose personal data was erased (wallet.services.customer_erase) are never in the audience again."""

import datetime as dt

import pytest

from autoengagement.services.audience import audience_queryset, iter_audience_chunks
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, WalletPassFactory
from wallet.services import customer_erase

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.mark.parametrize("steps", [None, [{"after_days": 7, "message": {"header": "Hi", "body": "Come back"}}]])
def test_an_erased_customer_is_in_neither_audience_read(steps):
    config = AutoEngagementConfigFactory(inactivity_days=7, steps=steps)
    kept, erased = (
        CustomerFactory(business=config.business, created_at=NOW - 400 * DAY, last_activity_at=NOW - 30 * DAY)
        for _ in range(2)
    )
    WalletPassFactory(customer=erased)
    both = {kept.pk, erased.pk}
    assert set(audience_queryset(config=config, now=NOW).values_list("pk", flat=True)) == both
    customer_erase(customer=erased, now=NOW)
    assert set(audience_queryset(config=config, now=NOW).values_list("pk", flat=True)) == {kept.pk}
    chunks = list(iter_audience_chunks(config=config, now=NOW, chunk_size=10))
    assert [[member["pk"] for member in chunk] for chunk in chunks] == [[kept.pk]]
