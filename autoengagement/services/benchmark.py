"""Synthetic data for the daily-run benchmark: many businesses, many customers, built in bulk."""

import datetime as dt
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import audience_queryset
from autoengagement.templating import render
from engagement_site.db import bulk_insert_rows
from engagement_site.secure_ids import IdKind, make_ids
from notifications import consent
from notifications.backends import get_backend
from notifications.backends.base import ChannelBackend, Message
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


def run_node_loop(*, business_ids: list[str], now: dt.datetime) -> dict[str, int]:
    """The original Node loop, ported literally, as a baseline on the same data: per business its inactive
    customers in one query, then per customer and channel the message sent through the channel's backend and
    its log row written with the outcome, one INSERT per row (no chunks, claims, windows or conflict checks)."""
    backends: dict[str, ChannelBackend] = {}
    counts = {"notifications": 0, "customers_notified": 0}
    configs = AutoEngagementConfig.objects.select_related("business").filter(business__business_id__in=business_ids)
    for config in configs:
        template = config.get_message_template()
        with_pass = set(
            WalletPass.objects.filter(customer__business_id=config.business_id).values_list("customer_id", flat=True)
        )
        for customer in audience_queryset(config=config, now=now).order_by("pk"):
            values = {
                "first_name": customer.first_name or "there",
                "business_name": config.business.name,
                "days_inactive": max((now - customer.quiet_since).days, 0),
            }
            header, body = render(template["header"], values), render(template["body"], values)
            notified = False
            for channel in config.channels:
                if channel == "wallet" and customer.pk not in with_pass:
                    reason = consent.NO_PASS
                else:
                    reason = consent.skip_reason(channel=channel, customer=customer)
                log = NotificationLog(
                    business_id=config.business_id,
                    customer=customer,
                    config=config,
                    channel=channel,
                    header=header,
                    body=body,
                    run_date=now.date(),
                    created_at=now,
                )
                if reason:
                    log.status, log.error = NotificationLog.Status.SKIPPED, reason
                else:
                    backend = backends.get(channel) or backends.setdefault(channel, get_backend(channel))
                    recipient = (
                        customer.customer_id
                        if channel == "wallet"
                        else getattr(customer, consent.ADDRESS_FIELDS[channel])
                    )
                    [result] = backend.send_batch(
                        [
                            Message(
                                log_id=0,
                                recipient=recipient,
                                header=header,
                                body=body,
                                customer_id=customer.customer_id,
                            )
                        ]
                    )
                    log.status, log.provider_message_id, log.error = (
                        result.status,
                        result.provider_message_id,
                        result.error,
                    )
                    log.attempts, log.sent_at = 1, now if result.status == "sent" else None
                    notified = notified or result.status == "sent"
                log.save()
                counts["notifications"] += 1
            counts["customers_notified"] += notified
        config.mark_as_completed(counts["customers_notified"])
    return counts


@contextmanager
def count_queries() -> Iterator[list[int]]:
    """Count SQL statements without keeping their text (bulk statements are megabytes each)."""
    counter = [0]

    def wrapper(execute, sql, params, many, context):
        counter[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counter


STATS_CHANNELS = ("wallet", "email")


def build_stats_dataset(*, tag: str, rows: int, customers: int, days: int, now: dt.datetime) -> Business:
    """One business with `rows` re-engagement log rows (two channels per re-engagement) spread evenly over the
    `days` days before `now`: the worst case for one business's stats (every row is its own).

    A fifth of the re-engagements are holdout; of the rest the wallet row is sent 85%, failed 5%, skipped 10%
    (60% of the sent ones delivered) and the email row sent 75%, failed 5%, skipped 20%; 30% of the reached and
    10% of the held-out customers came back (reactivated_at on both rows)."""
    rng = random.Random(tag)
    business = Business.objects.create(name="Bench stats", email=bench_email(tag, 0), password="!", timezone="UTC")
    config = AutoEngagementConfig.objects.create(business=business, channels=list(STATS_CHANNELS), holdout_percent=20)
    customer_pks: list[int] = []
    for start in range(0, customers, BATCH):
        size = min(BATCH, customers - start)
        created = Customer.objects.bulk_create(
            Customer(customer_id=customer_id, business=business, created_at=now - dt.timedelta(days=days + 400))
            for customer_id in make_ids(IdKind.CUSTOMER, size)
        )
        customer_pks.extend(customer.pk for customer in created)
    events = rows // len(STATS_CHANNELS)
    first_day = (now - dt.timedelta(days=days)).replace(hour=9, minute=0, second=0, microsecond=0)
    fields = (
        "notification_id",
        "business_id",
        "customer_id",
        "config_id",
        "type",
        "channel",
        "status",
        "header",
        "body",
        "error",
        "provider_message_id",
        "run_date",
        "created_at",
        "sent_at",
        "delivered_at",
        "reactivated_at",
    )
    batch: list[tuple] = []
    ids = iter(())
    for event in range(events):
        if event % BATCH == 0:
            ids = iter(make_ids(IdKind.NOTIFICATION, BATCH * len(STATS_CHANNELS)))
        created_at = first_day + dt.timedelta(days=event * days // events)
        customer_pk = customer_pks[event % len(customer_pks)]
        held = rng.random() < 0.2
        back = created_at + dt.timedelta(days=rng.uniform(0.5, 13)) if rng.random() < (0.1 if held else 0.3) else None
        for channel in STATS_CHANNELS:
            if held:
                status = "holdout"
            else:
                draw = rng.random()
                sent_share = 0.85 if channel == "wallet" else 0.75
                status = "sent" if draw < sent_share else ("failed" if draw < sent_share + 0.05 else "skipped")
            sent = status == "sent"
            delivered = (
                created_at + dt.timedelta(minutes=3) if sent and channel == "wallet" and rng.random() < 0.6 else None
            )
            batch.append(
                (
                    next(ids),
                    business.pk,
                    customer_pk,
                    config.pk,
                    NotificationLog.Type.AUTO_REENGAGEMENT.value,
                    channel,
                    status,
                    "" if held else "We miss you",
                    "" if held else "Come back this week.",
                    "",
                    "",
                    created_at.date(),
                    created_at,
                    created_at if sent else None,
                    delivered,
                    back,
                )
            )
        if len(batch) >= 20 * BATCH:
            bulk_insert_rows(NotificationLog, fields, batch)
            batch = []
    bulk_insert_rows(NotificationLog, fields, batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {NotificationLog._meta.db_table}")
    logger.info("bench stats dataset built", extra={"business_id": business.business_id, "rows": rows})
    return business
