import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from engagement_site.db import UPDATE_BATCH_ROWS, bulk_insert_rows, bulk_update_rows
from notifications.models import NotificationLog
from tests.factories import NotificationLogFactory

pytestmark = pytest.mark.django_db


def test_bulk_update_rows_sets_each_rows_own_values_including_nulls():
    first, second, untouched = NotificationLogFactory.create_batch(3, status="pending")
    sent_at = dt.datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    bulk_update_rows(
        NotificationLog,
        ["status", "error", "provider_message_id", "sent_at"],
        [(first.pk, "sent", "", "prov-1", sent_at), (second.pk, "failed", 'boom\'s "quote"', "", None)],
    )
    first.refresh_from_db()
    second.refresh_from_db()
    untouched.refresh_from_db()
    assert (first.status, first.provider_message_id, first.sent_at) == ("sent", "prov-1", sent_at)
    assert (second.status, second.error, second.sent_at) == ("failed", 'boom\'s "quote"', None)
    assert untouched.status == "pending"


def test_bulk_update_rows_batches_statements():
    log = NotificationLogFactory(status="pending")
    rows = [(log.pk, "sent")] + [(10**9 + index, "sent") for index in range(UPDATE_BATCH_ROWS)]
    with CaptureQueriesContext(connection) as queries:
        bulk_update_rows(NotificationLog, ["status"], rows)
    # One statement on PostgreSQL (arrays), one per batch of rows on SQLite (VALUES lists).
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)
    log.refresh_from_db()
    assert log.status == "sent"


def test_bulk_update_rows_with_nothing_runs_no_query():
    with CaptureQueriesContext(connection) as queries:
        bulk_update_rows(NotificationLog, ["status"], [])
    assert len(queries) == 0


def test_bulk_insert_rows_inserts_in_one_statement_and_skips_conflicts():
    existing = NotificationLogFactory(channel="email")
    fields = (
        "notification_id",
        "business_id",
        "customer_id",
        "config_id",
        "channel",
        "status",
        "error",
        "provider_message_id",
        "header",
        "body",
        "type",
        "run_date",
        "created_at",
    )
    created = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)

    def row(notification_id, channel):
        return (
            notification_id,
            existing.business_id,
            existing.customer_id,
            existing.config_id,
            channel,
            "pending",
            "",
            "",
            "Hé",
            "body",
            "auto_reengagement",
            existing.run_date,
            created,
        )

    with CaptureQueriesContext(connection) as queries:
        returned = bulk_insert_rows(
            NotificationLog,
            fields,
            [row("ntf_aaaaaaaaaaaaaaaaaaaa", "sms"), row("ntf_bbbbbbbbbbbbbbbbbbbb", "email")],
            returning=("notification_id",),
        )
    assert returned == [("ntf_aaaaaaaaaaaaaaaaaaaa",)]
    assert len(queries) == 1
    inserted = NotificationLog.objects.get(notification_id="ntf_aaaaaaaaaaaaaaaaaaaa")
    assert (inserted.channel, inserted.header, inserted.created_at, inserted.run_date) == (
        "sms",
        "Hé",
        created,
        existing.run_date,
    )
    # The email row collides with the existing (config, customer, channel, run_date) and is skipped.
    assert not NotificationLog.objects.filter(notification_id="ntf_bbbbbbbbbbbbbbbbbbbb").exists()
    assert NotificationLog.objects.count() == 2
