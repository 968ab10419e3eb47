import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.services.audience import audience_queryset
from autoengagement.services.retention import STATS_WINDOW_DAYS, prune_notification_logs
from notifications.models import LogRetention, NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def log(config, customer, days_ago, **fields):
    return NotificationLogFactory(
        config=config,
        customer=customer,
        created_at=NOW - days_ago * DAY,
        run_date=(NOW - days_ago * DAY).date(),
        **fields,
    )


@pytest.fixture
def config():
    return AutoEngagementConfigFactory(inactivity_days=7)


def test_keeps_what_the_rules_need_and_deletes_the_rest(config):
    # Came back 300 days ago, lapsed again: the row from the previous spell (500 days ago) is history.
    returned = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - 300 * DAY)
    old_spell = log(config, returned, 500)
    # Never came back since the message 250 days ago: that row keeps them from being messaged again.
    lapsed = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - 260 * DAY)
    current_spell = log(config, lapsed, 250)
    # Never active at all: the spell starts at creation.
    never_seen = CustomerFactory(business=config.business, created_at=NOW - 500 * DAY, last_activity_at=None)
    never_seen_row = log(config, never_seen, 480)
    # Older than the never-seen customer's creation (imported history): before the spell, so history.
    before_creation = log(config, never_seen, 501, channel="email")
    # Inside the stats window, whatever the spell: kept.
    recent = log(config, returned, STATS_WINDOW_DAYS - 1, channel="sms")
    # Old but still pending: a run may be about to record its outcome.
    pending = log(config, returned, 350, channel="push", status="pending")
    # The config was deleted (the business switched the feature off): its rows no longer count.
    orphan = log(config, lapsed, 600, channel="email")
    NotificationLog.objects.filter(pk=orphan.pk).update(config=None)

    result = prune_notification_logs(older_than_days=30, now=NOW)

    assert result.retention_days == STATS_WINDOW_DAYS
    assert result.deleted == 3
    retention = LogRetention.objects.get()
    assert retention.pruned_before == NOW - STATS_WINDOW_DAYS * DAY
    assert retention.summaries_final_before == (NOW - STATS_WINDOW_DAYS * DAY).date() + dt.timedelta(days=367)
    remaining = set(NotificationLog.objects.values_list("pk", flat=True))
    assert remaining == {current_spell.pk, never_seen_row.pk, recent.pk, pending.pk}
    assert {old_spell.pk, before_creation.pk, orphan.pk}.isdisjoint(remaining)
    # The once-per-spell rule still holds for the customers whose rows were kept.
    audience = set(audience_queryset(config=config, now=NOW).values_list("pk", flat=True))
    assert lapsed.pk not in audience
    assert never_seen.pk not in audience


def test_older_than_longer_than_the_stats_window_is_honoured(config):
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    kept = log(config, customer, 499)
    deleted = log(config, customer, 501, channel="sms")
    result = prune_notification_logs(older_than_days=500, now=NOW)
    assert result.deleted == 1
    assert NotificationLog.objects.filter(pk=kept.pk).exists()
    assert not NotificationLog.objects.filter(pk=deleted.pk).exists()


def test_stats_window_edge(config):
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    just_inside = NotificationLogFactory(
        config=config, customer=customer, created_at=NOW - STATS_WINDOW_DAYS * DAY + dt.timedelta(seconds=1)
    )
    just_outside = NotificationLogFactory(
        config=config,
        customer=customer,
        channel="sms",
        created_at=NOW - STATS_WINDOW_DAYS * DAY - dt.timedelta(seconds=1),
    )
    prune_notification_logs(older_than_days=1, now=NOW)
    assert list(NotificationLog.objects.values_list("pk", flat=True)) == [just_inside.pk]
    assert not NotificationLog.objects.filter(pk=just_outside.pk).exists()


def test_deletes_in_bounded_batches_with_a_fixed_number_of_queries_each(config):
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    for n in range(10):
        log(config, customer, 500 + n)
    keep = log(config, customer, 10)

    with CaptureQueriesContext(connection) as queries:
        result = prune_notification_logs(older_than_days=30, now=NOW, batch_size=3)

    deletes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert result.deleted == 10
    assert result.batches == len(deletes) == 4  # ids in windows of 3: 3 + 3 + 3 + 1
    # Per batch: one DELETE, plus its transaction's savepoint statements; one range query in front; the retention
    # recorded at the end.
    others = [
        q
        for q in queries
        if not q["sql"].lstrip().upper().startswith(("DELETE", "SAVEPOINT", "RELEASE"))
        and "notifications_logretention" not in q["sql"]
    ]
    assert len(others) == 1
    assert list(NotificationLog.objects.values_list("pk", flat=True)) == [keep.pk]


def test_each_batch_is_its_own_transaction(config):
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    for n in range(5):
        log(config, customer, 500 + n)
    with CaptureQueriesContext(connection) as queries:
        prune_notification_logs(older_than_days=30, now=NOW, batch_size=2)
    # Inside the test's transaction, each batch's atomic block is a savepoint: one per batch (and the last ones
    # record the retention).
    deletes = [index for index, q in enumerate(queries) if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3
    assert all(queries[index - 1]["sql"].startswith("SAVEPOINT") for index in deletes)


def test_dry_run_counts_and_deletes_nothing(config):
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    for n in range(4):
        log(config, customer, 500 + n)
    result = prune_notification_logs(older_than_days=30, now=NOW, dry_run=True)
    assert result.deleted == 4
    assert NotificationLog.objects.count() == 4


def test_nothing_to_delete(config):
    assert prune_notification_logs(older_than_days=30, now=NOW).batches == 0


def test_command(config, time_machine):
    time_machine.move_to(NOW, tick=False)
    customer = CustomerFactory(business=config.business, created_at=NOW - 900 * DAY, last_activity_at=NOW - DAY)
    for n in range(3):
        log(config, customer, 500 + n)

    out = io.StringIO()
    call_command("prune_notification_logs", "--older-than", "30", "--dry-run", "--format", "json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "deleted": 0,
        "would_delete": 3,
        "batches": 0,
        "retention_days": STATS_WINDOW_DAYS,
        "cutoff": (NOW - STATS_WINDOW_DAYS * DAY).isoformat(),
        "dry_run": True,
    }
    assert NotificationLog.objects.count() == 3

    out = io.StringIO()
    call_command("prune_notification_logs", "--older-than", "600", "--batch-size", "2", stdout=out)
    assert out.getvalue().startswith("0 notification log row(s) older than 600 days")
    call_command("prune_notification_logs", "--older-than", "480", stdout=out)
    assert "3 notification log row(s) older than 480 days (before 2025-02-06 09:00 UTC) deleted in 1 batch(es)." in (
        out.getvalue()
    )
    assert not NotificationLog.objects.exists()


@pytest.mark.parametrize("value", ["0", "-3", "ten", "36501", "99999999999"])
def test_command_rejects_a_bad_age(value):
    with pytest.raises(CommandError, match="older-than"):
        call_command("prune_notification_logs", "--older-than", value)
