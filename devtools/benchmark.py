"""Synthetic data for the daily-run benchmark: many businesses, many customers, built in bulk; and what the stats
benchmark compares the results summary with (the same answers counted from the log alone)."""

import datetime as dt
import logging
import random
import statistics
import time
import zoneinfo
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from autoengagement import stats
from autoengagement.journeys import MAX_STEPS, mirrored_fields, steps_errors
from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.audience import audience_queryset
from autoengagement.templating import render
from engagement_site.db import bulk_insert_rows
from engagement_site.secure_ids import IdKind, make_ids
from notifications import consent
from notifications.backends import get_backend
from notifications.backends.base import ChannelBackend, Message
from notifications.channels import Channel
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


JOURNEY_DAYS = (14, 30, 60, 90, 120)
TIERS = ("gold", "silver", "bronze")


def bench_journey(*, steps: int, variants: int) -> list[dict[str, object]] | None:
    """A journey of `steps` steps (after 14, 30, 60, 90, 120 days; none for 0), each with `variants` variants (0: none),
    their content different on every channel and using the customers' attributes, as a real journey would."""
    if not steps:
        return None
    journey = []
    for number, after_days in enumerate(JOURNEY_DAYS[:steps], start=1):
        step: dict[str, object] = {"after_days": after_days, **_step_content(f"Step {number}")}
        if variants:
            weights = [100 // variants] * variants
            weights[0] += 100 - sum(weights)
            step["variants"] = [
                {"name": f"V{letter}", "weight": weight, **_step_content(f"Step {number}{letter}")}
                for letter, weight in zip("ABCD", weights, strict=False)
            ]
        journey.append(step)
    assert not steps_errors(journey), steps_errors(journey)
    return journey


def _step_content(name: str) -> dict[str, dict[str, str]]:
    return {
        "message": {"header": f"{name}: miss you, {{first_name}}", "body": "{days_inactive} days at {business_name}"},
        "email": {
            "subject": f"{name}: {{first_name}}, your {{attributes.tier|member}} card",
            "text": "It has been {days_inactive} days. You have {attributes.points|no} points at {business_name}.",
            "html": "<html><body><h1>Hi {first_name}</h1><p>Your {attributes.tier|member} card has "
            "{attributes.points|no} points at {business_name}.</p></body></html>",
        },
        "sms": {"text": f"{name}: {{first_name}}, {{attributes.points|no}} points wait at {{business_name}}"},
        "push": {"title": f"{name}: {{first_name}}", "body": "{attributes.points|no} points at {business_name}"},
        "wallet": {"header": f"{name}: {{attributes.tier|member}}", "body": "{days_inactive} days: come back"},
    }


def build_dataset(
    *,
    tag: str,
    businesses: int,
    customers: int,
    inactive_share: float,
    channels: list[str],
    now: dt.datetime,
    steps: int = 0,
    variants: int = 0,
) -> None:
    """`businesses` businesses with `customers` customers each; `inactive_share` of them quiet for 30-90 days; each
    customer with attributes (a tier and points). With `steps`, the configs follow bench_journey (a fresh dataset
    has no history, so every customer is due step 1)."""
    assert 0 <= steps <= MAX_STEPS
    rng = random.Random(tag)
    journey = bench_journey(steps=steps, variants=variants)
    config_fields = {"inactivity_days": 14, **(mirrored_fields(journey) if journey else {})}
    for index in range(businesses):
        with transaction.atomic():
            business = Business.objects.create(
                name=f"Bench {index}", email=bench_email(tag, index), password="!", timezone="UTC"
            )
            AutoEngagementConfig.objects.create(business=business, channels=channels, steps=journey, **config_fields)
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
                        attributes={"tier": rng.choice(TIERS), "points": rng.randrange(1000)},
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


def stats_journey(steps: int, variants: int) -> list[dict] | None:
    """A config's `steps` with `steps` steps of `variants` variants each (1: no variants); None for 0 steps."""
    if steps == 0:
        return None
    journey = []
    for number in range(1, steps + 1):
        step: dict = {"after_days": 7 * number, "message": {"header": "We miss you", "body": "Come back this week."}}
        if variants > 1:
            weights = [100 // variants] * variants
            weights[0] += 100 - sum(weights)
            step["variants"] = [{"name": f"v{index + 1}", "weight": weight} for index, weight in enumerate(weights)]
        journey.append(step)
    return journey


def build_stats_dataset(
    *, tag: str, rows: int, customers: int, days: int, now: dt.datetime, steps: int = 0, variants: int = 1
) -> Business:
    """One business with `rows` re-engagement log rows (two channels per re-engagement) spread evenly over the
    `days` days before `now`: the worst case for one business's stats (every row is its own).

    A fifth of the re-engagements are holdout; of the rest the wallet row is sent 85%, failed 5%, skipped 10%
    (60% of the sent ones delivered) and the email row sent 75%, failed 5%, skipped 20%; 30% of the reached and
    10% of the held-out customers came back (reactivated_at on both rows).

    With `steps` (1..5), the config is a journey of that many steps of `variants` variants each (1: none): a
    customer's successive re-engagements go through its steps in turn, each drawing one of its step's variants
    (held-out rows are step 1 with no variant). Without, every row is step 1 with no variant, as the seed's."""
    rng = random.Random(tag)
    business = Business.objects.create(name="Bench stats", email=bench_email(tag, 0), password="!", timezone="UTC")
    journey = stats_journey(steps, variants)
    config = AutoEngagementConfig.objects.create(
        business=business, channels=list(STATS_CHANNELS), holdout_percent=20, steps=journey
    )
    names = [variant["name"] for variant in journey[0].get("variants", ())] if journey else []
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
        "step",
        "variant",
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
        step, variant = 1, ""
        if journey and not held:
            step = 1 + (event // len(customer_pks)) % len(journey)
            variant = rng.choice(names) if names else ""
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
                    step,
                    variant,
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


def stats_dataset_business(*, tag: str) -> Business | None:
    """The business of a stats dataset built earlier with this tag (bench_stats --keep, then --reuse)."""
    return Business.objects.filter(email=bench_email(tag, 0)).first()


# The stats without the summary (bench_stats --plain): what a summary-free `engagement_stats` would run, and the
# covering index it would want. The key narrows the log to one business's re-engagements of a window of run dates;
# the included columns are every other column those statements read (rows per channel and status, wallet deliveries,
# distinct customers per group, credited ones), so they can be answered from the index alone.
PLAIN_INDEX = "bench_notification_results_idx"
PLAIN_INDEX_KEY = ("business_id", "type", "run_date")
PLAIN_INDEX_INCLUDE = ("channel", "status", "customer_id", "delivered_at", "reactivated_at", "step", "variant")

Status = NotificationLog.Status
AUTO = NotificationLog.Type.AUTO_REENGAGEMENT


def _plain_condition(
    business_id: int | None, date_from: dt.date, date_to: dt.date, *, created_at_bounds: bool
) -> tuple[str, list[object]]:
    conditions = ["type = %s", "run_date >= %s", "run_date <= %s"]
    params: list[object] = [
        AUTO.value,
        connection.ops.adapt_datefield_value(date_from),
        connection.ops.adapt_datefield_value(date_to),
    ]
    if business_id is not None:
        conditions.insert(0, "business_id = %s")
        params.insert(0, business_id)
    if created_at_bounds:
        # The bounds the existing path adds so the history index (business, type, created_at) can narrow the scan.
        start, end = results._span_bounds(results.DaySpan(business_id or 0, date_from, date_to))
        conditions += ["created_at >= %s", "created_at < %s"]
        params += [connection.ops.adapt_datetimefield_value(start), connection.ops.adapt_datetimefield_value(end)]
    return " AND ".join(conditions), params


def plain_stats_queries(
    *, business_id: int | None, date_from: dt.date, date_to: dt.date, created_at_bounds: bool = False
) -> dict[str, tuple[str, list[object]]]:
    """The four statements of the stats answered from the log alone, by name: rows per day, channel and status
    (with wallet deliveries); the window's distinct reached / held-out customers and those of them credited with a
    visit; the daily reached customers credited with a visit; per step and variant, the distinct customers it
    reached and those of them credited."""
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    where, params = _plain_condition(business_id, date_from, date_to, created_at_bounds=created_at_bounds)
    sent, holdout = Status.SENT.value, Status.HOLDOUT.value
    return {
        "outcomes": (
            f"SELECT run_date, channel, status, COUNT(*), COUNT(delivered_at) FROM {table} WHERE {where} "
            "GROUP BY run_date, channel, status",
            params,
        ),
        "customers": (
            "SELECT COUNT(DISTINCT customer_id) FILTER (WHERE status = %s), "
            "COUNT(DISTINCT customer_id) FILTER (WHERE status = %s), "
            "COUNT(DISTINCT customer_id) FILTER (WHERE status = %s AND reactivated_at IS NOT NULL), "
            "COUNT(DISTINCT customer_id) FILTER (WHERE status = %s AND reactivated_at IS NOT NULL) "
            f"FROM {table} WHERE {where} AND status IN (%s, %s)",
            [sent, holdout, sent, holdout, *params, sent, holdout],
        ),
        "daily_reactivated": (
            f"SELECT run_date, COUNT(DISTINCT customer_id) FROM {table} WHERE {where} AND status = %s "
            "AND reactivated_at IS NOT NULL GROUP BY run_date",
            [*params, sent],
        ),
        "variants": (
            "SELECT step, variant, COUNT(DISTINCT customer_id), "
            "COUNT(DISTINCT customer_id) FILTER (WHERE reactivated_at IS NOT NULL) "
            f"FROM {table} WHERE {where} AND status = %s GROUP BY step, variant",
            [*params, sent],
        ),
    }


def plain_engagement_stats(
    *,
    business: Business | None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    now: dt.datetime | None = None,
    created_at_bounds: bool = False,
) -> stats.EngagementStats:
    """`autoengagement.stats.engagement_stats` without the summary: the same answer, counted from the log in the
    four statements of `plain_stats_queries` (every day as if stale, with the distinct counts done by the database
    rather than through the summary's cohorts), plus the config's journey (the statement the stats read it in)."""
    zone_name = stats._zone_name(business)
    today = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(zone_name)).date()
    date_from, date_to = stats.resolve_window(date_from=date_from, date_to=date_to, today=today)
    queries = plain_stats_queries(
        business_id=business.pk if business is not None else None,
        date_from=date_from,
        date_to=date_to,
        created_at_bounds=created_at_bounds,
    )
    fetched = {}
    with connection.cursor() as cursor:
        for name, (sql, params) in queries.items():
            cursor.execute(sql, params)
            fetched[name] = cursor.fetchall()
    daily = {
        date_from + dt.timedelta(days=offset): stats.DailyPoint(date_from + dt.timedelta(days=offset))
        for offset in range((date_to - date_from).days + 1)
    }
    channels: dict[str, dict[str, int]] = {}
    delivered: dict[str, int] = {}
    for run_date, channel, status, count, delivered_count in fetched["outcomes"]:
        channels.setdefault(channel, {})[status] = channels.get(channel, {}).get(status, 0) + count
        if channel == Channel.WALLET:
            delivered[channel] = delivered.get(channel, 0) + delivered_count
        point = daily.get(results._as_date(run_date))
        if point is not None and status == Status.SENT:
            point.sent += count
        elif point is not None and status == Status.FAILED:
            point.failed += count
    reached, holdout, reached_back, holdout_back = fetched["customers"][0]
    for run_date, customers in fetched["daily_reactivated"]:
        point = daily.get(results._as_date(run_date))
        if point is not None:
            point.reactivated += customers
    variants = {(step, variant): [customers, back] for step, variant, customers, back in fetched["variants"]}
    window = stats._SummaryWindow.of(business, date_from, date_to)
    steps = None
    if window.has_journeys(variants):
        steps = stats._steps(variants, window.journey, holdout=(holdout_back, holdout))
    return stats.EngagementStats(
        date_from=date_from,
        date_to=date_to,
        timezone=zone_name,
        channels=channels,
        delivered=delivered,
        reached=reached,
        holdout=holdout,
        reactivated={"reached": reached_back, "holdout": holdout_back},
        reactivation_rate={
            "reached": stats._rate(reached_back, reached),
            "holdout": stats._rate(holdout_back, holdout),
        },
        uplift=stats._difference(reached_back, reached, holdout_back, holdout),
        daily=list(daily.values()),
        steps=steps,
    )


def plain_index_definition() -> str:
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    key = ", ".join(PLAIN_INDEX_KEY)
    if connection.vendor == "postgresql":
        return f"CREATE INDEX {PLAIN_INDEX} ON {table} ({key}) INCLUDE ({', '.join(PLAIN_INDEX_INCLUDE)})"
    # No INCLUDE elsewhere: the same columns as trailing key columns cover the statements just as well.
    return f"CREATE INDEX {PLAIN_INDEX} ON {table} ({', '.join((*PLAIN_INDEX_KEY, *PLAIN_INDEX_INCLUDE))})"


def create_plain_index() -> float:
    """Create the candidate covering index (and refresh the planner's statistics); returns the seconds it took."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(plain_index_definition())
    seconds = time.perf_counter() - started
    analyze_log()
    return seconds


def drop_plain_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {PLAIN_INDEX}")


def analyze_log(*, vacuum: bool = False) -> None:
    """Refresh the log's planner statistics (and, on PostgreSQL, vacuum it: dead rows left by the rolled-back write
    measurements, and the visibility map an index-only scan relies on)."""
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"{'VACUUM ' if vacuum else ''}ANALYZE {table}")
        else:
            cursor.execute(f"ANALYZE {table}")


def relation_bytes(name: str) -> int | None:
    """On-disk size of a table or index (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
        return cursor.fetchone()[0]


def explain_plain(*, business_id: int, date_from: dt.date, date_to: dt.date, created_at_bounds: bool = False):
    """Each plain statement's plan, executed: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on
    SQLite (which does not run it)."""
    queries = plain_stats_queries(
        business_id=business_id, date_from=date_from, date_to=date_to, created_at_bounds=created_at_bounds
    )
    plans: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for name, (sql, params) in queries.items():
            if connection.vendor == "postgresql":
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                plans[name] = [row[0] for row in cursor.fetchall()]
            else:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                plans[name] = [str(row[-1]) for row in cursor.fetchall()]
    return plans


def time_log_writes(*, business: Business, rows: int, now: dt.datetime) -> dict[str, float | int]:
    """What an index costs the log's writers, in one transaction rolled back: `rows` new rows inserted in the
    run's statements (one per chunk of customers, on the days after `now`), then `rows` existing rows updated the
    way a visit credit does (reactivated_at, one statement per chunk). Milliseconds each; the caller vacuums."""
    config_pk = AutoEngagementConfig.objects.filter(business=business).values_list("pk", flat=True).first()
    customer_pks = list(Customer.objects.filter(business=business).order_by("pk").values_list("pk", flat=True))
    chunk = settings.AUTO_ENGAGEMENT_CHUNK_SIZE * len(STATS_CHANNELS)
    fields = ("notification_id", "business_id", "customer_id", "config_id", "type", "channel", "status", "header")
    fields += ("body", "error", "provider_message_id", "run_date", "created_at", "sent_at")
    ids = iter(make_ids(IdKind.NOTIFICATION, rows))
    pending: list[tuple] = []
    for row in range(rows):
        event, channel = divmod(row, len(STATS_CHANNELS))
        day = now.date() + dt.timedelta(days=1 + event // len(customer_pks))
        at = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
        customer_pk, channel_name = customer_pks[event % len(customer_pks)], STATS_CHANNELS[channel]
        message = ("We miss you", "Come back this week.", "", "")
        pending.append(
            (next(ids), business.pk, customer_pk, config_pk, AUTO.value, channel_name, "sent", *message, day, at, at)
        )
    targets = list(
        NotificationLog.objects.filter(business=business, status=Status.SENT, reactivated_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:rows]
    )
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    pk = connection.ops.quote_name(NotificationLog._meta.pk.column)
    figures: dict[str, float | int] = {"insert_rows": len(pending), "update_rows": len(targets)}
    with transaction.atomic():
        started = time.perf_counter()
        for start in range(0, len(pending), chunk):
            bulk_insert_rows(NotificationLog, fields, pending[start : start + chunk])
        figures["insert_ms"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for start in range(0, len(targets), chunk):
                part = targets[start : start + chunk]
                cursor.execute(
                    f"UPDATE {table} SET reactivated_at = %s WHERE {pk} IN ({', '.join(['%s'] * len(part))})",
                    [connection.ops.adapt_datetimefield_value(now), *part],
                )
        figures["update_ms"] = round((time.perf_counter() - started) * 1000, 1)
        transaction.set_rollback(True)
    return figures


def time_count_credits(*, business: Business, since: dt.date, sizes: Sequence[int], repeats: int) -> dict[str, float]:
    """Median milliseconds of the summary's incremental upkeep for a batch of visit credits (`results.count_credits`
    for `size` re-engagements of the days from `since` not credited yet, as the credit's transaction calls it), in
    a transaction rolled back each time; keyed by batch size."""
    needed = max(sizes) * repeats
    credited: dict[results.Reengagement, set[results.CreditedRow]] = {}
    rows = (
        NotificationLog.objects.filter(business=business, type=AUTO, run_date__gte=since, reactivated_at__isnull=True)
        .order_by("run_date", "customer_id")
        .values_list("customer_id", "run_date", "status", "step", "variant")
    )
    for customer_id, run_date, status, step, variant in rows[: needed * len(STATS_CHANNELS) * 2].iterator():
        key = results.Reengagement(business.pk, run_date, customer_id)
        if key in credited or len(credited) < needed:
            credited.setdefault(key, set()).add(results.CreditedRow(status, step, variant))
    keys = list(credited)
    figures: dict[str, float] = {}
    for size in sizes:
        timings = []
        for repeat in range(repeats):
            batch = {key: credited[key] for key in keys[repeat * size : (repeat + 1) * size]}
            with transaction.atomic():
                started = time.perf_counter()
                results.count_credits(batch)
                timings.append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
        figures[str(size)] = round(statistics.median(timings), 1)
    return figures


@contextmanager
def without_seq_scans() -> Iterator[None]:
    """Make PostgreSQL's planner take an index scan wherever one applies (this session only): here, the covering
    index for a window that holds the whole table, where it would rather scan the table (or, told not to, read the
    history index's bitmap and then the table)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_bitmapscan")
