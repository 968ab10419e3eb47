"""The results summary's per-customer lookups keep a good plan when the log's statistics are stale: analysed while
empty (as a new deployment or the benchmark does), then filled before autovacuum gets to it."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.services import results
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, log_row, save_logs

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_previous_days_are_looked_up_by_the_customer_index_with_stale_statistics():
    config = AutoEngagementConfigFactory()
    day = dt.date(2026, 3, 2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notifications_notificationlog")
    customers = CustomerFactory.create_batch(40, business=config.business)
    save_logs(
        [log_row(config, customer, day - dt.timedelta(days=back)) for customer in customers for back in range(0, 60, 3)]
    )
    with CaptureQueriesContext(connection) as queries:
        results.cohorts_from_log(results.spans_of([(config.business_id, day)]))
    [sql] = [query["sql"] for query in queries.captured_queries if "MAX(e.run_date)" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    subplans = plan.split("SubPlan")[1:]
    assert subplans and all("notification_once_per_business_day" in subplan for subplan in subplans), plan
