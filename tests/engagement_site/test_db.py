import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from engagement_site.db import UPDATE_BATCH_ROWS, bulk_update_rows
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
    assert len(queries) == 2
    log.refresh_from_db()
    assert log.status == "sent"


def test_bulk_update_rows_with_nothing_runs_no_query():
    with CaptureQueriesContext(connection) as queries:
        bulk_update_rows(NotificationLog, ["status"], [])
    assert len(queries) == 0
