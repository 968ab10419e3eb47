"""The daily run's database path: plans that hold with degenerate statistics, and the PostgreSQL fast paths writing
exactly what the generic ones write."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.services import results
from engagement_site.db import bulk_insert_rows
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, log_row, save_logs

DAY = dt.date(2026, 3, 2)


def _explain(sql: str, params=()) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _analysed_with_dead_rows_only(config) -> None:
    """The log as a benchmark's (or a full prune's) mass delete leaves it when ANALYZE runs before any VACUUM: pages
    but no live rows, so the planner takes every scan of it for one row and every index for as cheap as another."""
    customer = CustomerFactory(business=config.business)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_notificationlog (notification_id, business_id, customer_id, config_id, type,"
            " channel, status, header, body, error, provider_message_id, attempts, run_date, created_at)"
            " SELECT 'ntf_dead' || n, %s, %s, %s, 'auto_reengagement', 'wallet', 'sent', 'h', 'b', '', '', 1,"
            " DATE '2000-01-01' + n, TIMESTAMPTZ '2026-01-01'"
            " FROM generate_series(1, 60000) AS n",
            [config.business_id, customer.pk, config.pk],
        )
        cursor.execute("DELETE FROM notifications_notificationlog")
        cursor.execute("ANALYZE notifications_notificationlog")
        cursor.execute("SELECT reltuples, relpages FROM pg_class WHERE relname = 'notifications_notificationlog'")
        reltuples, relpages = cursor.fetchone()
    assert reltuples == 0 and relpages > 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_previous_days_use_the_customer_index_on_a_log_analysed_with_only_dead_rows():
    config = AutoEngagementConfigFactory()
    _analysed_with_dead_rows_only(config)
    customers = CustomerFactory.create_batch(40, business=config.business)
    save_logs([log_row(config, c, DAY - dt.timedelta(days=back)) for c in customers for back in range(0, 60, 3)])
    with CaptureQueriesContext(connection) as queries:
        results.cohorts_from_log(results.spans_of([(config.business_id, DAY)]))
        results.outcomes_from_log(results.spans_of([(config.business_id, DAY)]))
    [cohorts] = [q["sql"] for q in queries.captured_queries if "MAX(e.run_date)" in q["sql"]]
    [outcomes] = [q["sql"] for q in queries.captured_queries if "MAX(e.run_date)" not in q["sql"]]
    day_scan, *subplans = _explain(cohorts).split("SubPlan")
    # The per-customer probe: before, the history index scanned whole on `type`, once per customer and day.
    assert subplans and all("notification_once_per_business_day" in subplan for subplan in subplans), subplans
    # The day's rows themselves: the business's history index, never a whole scan of the customer-led index.
    assert "notification_history_idx" in day_scan, day_scan
    assert "notification_history_idx" in _explain(outcomes)


@pytest.mark.django_db
def test_values_shared_by_every_row_are_written_as_if_each_row_carried_them():
    """The run sends the columns its rows share once per chunk (`same`); the rows must be those a full insert writes."""
    config = AutoEngagementConfigFactory()
    customers = CustomerFactory.create_batch(3, business=config.business)
    created = dt.datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)
    shared = {
        "business_id": config.business_id,
        "config_id": config.pk,
        "type": "auto_reengagement",
        "provider_message_id": "",
        "attempts": 0,
        "run_date": DAY,
        "created_at": created,
    }
    varying = ("notification_id", "customer_id", "channel", "status", "header", "body", "error")

    def rows(prefix: str) -> list[tuple]:
        return [
            (
                f"ntf_{prefix}{n:019d}",
                c.pk,
                "email",
                "pending",
                "Hé 'x'",
                'b\\n"q"',
                "",
            )
            for n, c in enumerate(customers)
        ]

    full = [(*row, *shared.values()) for row in rows("a")]
    bulk_insert_rows(NotificationLog, (*varying, *shared), full)
    NotificationLog.objects.update(run_date=DAY - dt.timedelta(days=1))  # frees the once-per-day constraint
    returned = bulk_insert_rows(NotificationLog, varying, rows("b"), same=shared, returning=("notification_id",))
    assert sorted(returned) == [(f"ntf_b{n:019d}",) for n in range(3)]
    # A second attempt writes nothing: the shared run_date meets the once-per-day constraint.
    assert bulk_insert_rows(NotificationLog, varying, rows("c"), same=shared, returning=("pk",)) == []
    columns = [*varying[1:], "business_id", "config_id", "created_at", "type", "attempts", "provider_message_id"]
    written = {
        prefix: list(
            NotificationLog.objects.filter(notification_id__startswith=f"ntf_{prefix}")
            .order_by("notification_id")
            .values_list(*columns)
        )
        for prefix in "ab"
    }
    assert written["a"] == written["b"] and len(written["a"]) == 3
    assert set(
        NotificationLog.objects.filter(notification_id__startswith="ntf_b").values_list("run_date", flat=True)
    ) == {DAY}
