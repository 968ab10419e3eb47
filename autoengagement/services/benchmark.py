"""Synthetic data for the daily-run benchmark: many businesses, many customers, built in bulk."""

import datetime as dt
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from autoengagement.models import AutoEngagementConfig
from engagement_site.secure_ids import IdKind, make_ids
from notifications.models import NotificationLog
from wallet.models import AppleDeviceRegistration, Business, Customer, WalletPass

logger = logging.getLogger(__name__)

BATCH = 5000
EMAIL_DOMAIN = "bench.invalid"


def bench_email(tag: str, index: int) -> str:
    return f"bench-{tag}-{index}@{EMAIL_DOMAIN}"


def bench_business_ids(tag: str) -> list[str]:
    return list(
        Business.objects.filter(email__startswith=f"bench-{tag}-", email__endswith=f"@{EMAIL_DOMAIN}")
        .order_by("pk")
        .values_list("business_id", flat=True)
    )


def build_dataset(
    *, tag: str, businesses: int, customers: int, inactive_share: float, channels: list[str], now: dt.datetime
) -> None:
    """`businesses` businesses with `customers` customers each; `inactive_share` of them quiet for 30-90 days."""
    rng = random.Random(tag)
    for index in range(businesses):
        with transaction.atomic():
            business = Business.objects.create(
                name=f"Bench {index}", email=bench_email(tag, index), password="!", timezone="UTC"
            )
            AutoEngagementConfig.objects.create(business=business, channels=channels, inactivity_days=14)
            for start in range(0, customers, BATCH):
                size = min(BATCH, customers - start)
                rows = [
                    Customer(
                        customer_id=customer_id,
                        business=business,
                        first_name=f"Customer{start + offset}",
                        email=f"c{start + offset}@{EMAIL_DOMAIN}",
                        phone=f"+1555{start + offset:07d}",
                        push_token=f"token-{start + offset}",
                        created_at=now - dt.timedelta(days=400),
                        last_activity_at=now
                        - dt.timedelta(
                            days=rng.uniform(30, 90) if rng.random() < inactive_share else rng.uniform(0, 13)
                        ),
                    )
                    for offset, customer_id in enumerate(make_ids(IdKind.CUSTOMER, size))
                ]
                created = Customer.objects.bulk_create(rows)
                if "wallet" in channels:
                    WalletPass.objects.bulk_create(
                        WalletPass(pass_id=pass_id, customer=customer, platform="google")
                        for pass_id, customer in zip(make_ids(IdKind.PASS, len(created)), created, strict=True)
                    )
        logger.info("bench business built", extra={"business_id": business.business_id, "customers": customers})
    if connection.vendor == "postgresql":
        # Fresh tables have no planner statistics yet; production tables do.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def delete_dataset(*, tag: str) -> None:
    """Delete the benchmark's rows table by table, in bulk (a cascading ORM delete would load every row)."""
    business_pks = list(
        Business.objects.filter(email__startswith=f"bench-{tag}-", email__endswith=f"@{EMAIL_DOMAIN}").values_list(
            "pk", flat=True
        )
    )
    if not business_pks:
        return
    with transaction.atomic():
        NotificationLog.objects.filter(business_id__in=business_pks).delete()
        AppleDeviceRegistration.objects.filter(wallet_pass__customer__business_id__in=business_pks).delete()
        WalletPass.objects.filter(customer__business_id__in=business_pks)._raw_delete(connection.alias)
        Customer.objects.filter(business_id__in=business_pks)._raw_delete(connection.alias)
        AutoEngagementConfig.objects.filter(business_id__in=business_pks).delete()
        Business.objects.filter(pk__in=business_pks).delete()


@contextmanager
def count_queries() -> Iterator[list[int]]:
    """Count SQL statements without keeping their text (bulk statements are megabytes each)."""
    counter = [0]

    def wrapper(execute, sql, params, many, context):
        counter[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counter
