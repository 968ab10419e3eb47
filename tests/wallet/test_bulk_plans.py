"""The bulk endpoints' customer lookups read about one row per value they look up, not the whole business, when the
statistics do not know the business yet (analysed before its import began, as autovacuum lags a large import): then
a request's cost does not grow with the business (issue 18's ingestion benchmark, `bench_ingest`)."""

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import BusinessFactory
from wallet import bulk
from wallet.models import Customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

KNOWN = 3000
ASKED = 200


def _rows_read(plan: dict, table: str) -> int:
    """Rows of `table` every scan node of `plan` (EXPLAIN ANALYZE, JSON) read, kept or filtered out, over its loops."""
    read = 0
    if plan.get("Relation Name") == table:
        kept_or_dropped = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += (kept_or_dropped + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"]
    return read + sum(_rows_read(child, table) for child in plan.get("Plans", []))


def _customer_rows_read(queries: CaptureQueriesContext) -> list[int]:
    """Rows of wallet_customer each SELECT of `queries` read, measured by running it again under EXPLAIN ANALYZE."""
    counts = []
    for query in queries.captured_queries:
        sql = query["sql"]
        if sql.startswith("SELECT") and "wallet_customer" in sql:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
                [[plans]] = cursor.fetchall()
            plan = (plans if isinstance(plans, list) else json.loads(plans))[0]["Plan"]
            counts.append(_rows_read(plan, "wallet_customer"))
    return counts


@pytest.fixture
def imported_business():
    """A business with KNOWN customers the statistics do not know of: analysed while only another business had
    customers."""
    other = BusinessFactory()
    bulk.customers_upsert(business=other, rows=[{"external_id": f"other-{index}"} for index in range(KNOWN)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallet_customer")
    business = BusinessFactory()
    bulk.customers_upsert(business=business, rows=[{"external_id": f"crm-{index}"} for index in range(KNOWN)])
    return business


def test_an_upsert_reads_one_customer_row_per_external_id(imported_business):
    rows = [{"external_id": f"crm-{index}", "first_name": "Ann"} for index in range(0, 2 * ASKED, 2)]
    rows += [{"external_id": f"new-{index}"} for index in range(ASKED)]
    with CaptureQueriesContext(connection) as queries:
        result = bulk.customers_upsert(business=imported_business, rows=rows)
    assert (result.created, result.updated) == (ASKED, ASKED)
    reads = _customer_rows_read(queries)
    assert reads and all(read <= 2 * len(rows) for read in reads), reads


@pytest.mark.parametrize("key", ["external_id", "customer_id"])
def test_visits_read_one_customer_row_per_customer(imported_business, key):
    customers = Customer.objects.filter(business=imported_business).order_by("pk")[: 2 * ASKED : 2]
    occurred_at = timezone.now() - dt.timedelta(minutes=5)
    rows = [
        bulk.VisitRow(
            customer_id=customer.customer_id if key == "customer_id" else None,
            external_id=customer.external_id if key == "external_id" else None,
            occurred_at=occurred_at,
        )
        for customer in customers
    ]
    with CaptureQueriesContext(connection) as queries:
        result = bulk.visits_record(business=imported_business, rows=rows)
    assert result.credited == ASKED
    reads = _customer_rows_read(queries)
    assert len(reads) >= 2 and all(read <= 2 * ASKED for read in reads), reads
