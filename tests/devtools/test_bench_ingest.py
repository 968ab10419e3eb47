"""bench_ingest sends its rows through the real endpoints, reports, and leaves nothing behind."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from wallet.models import Business, Customer

pytestmark = pytest.mark.django_db


def test_bench_ingest_reports_rates_and_queries_and_cleans_up():
    out = io.StringIO()
    call_command("bench_ingest", "--rows", "50", "--rounds", "2", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (figures["rows_per_request"], figures["rounds"]) == (50, 2)
    for kind in ("customers_created", "customers_updated", "visits"):
        assert len(figures[kind]["rows_per_second"]) == 2
        assert figures[kind]["median_rows_per_second"] > 0
        assert len(figures[kind]["sql_queries"]) == 1  # the same count every round
    assert not Business.objects.exists() and not Customer.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bench_ingest_over_http_sends_every_row_to_a_running_server(live_server, on_postgres):
    # The live server shares one connection between its threads on in-memory SQLite: one client at a time there.
    clients = 3 if on_postgres else 1
    out = io.StringIO()
    arguments = ["--url", live_server.url, "--clients", str(clients), "--rows", "40", "--rounds", "2", "--keep"]
    call_command("bench_ingest", *arguments, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (figures["clients"], figures["rows_per_request"], figures["requests_per_client"]) == (clients, 40, 2)
    for kind in ("customers_created", "customers_updated", "visits"):
        assert figures[kind]["rows_per_second"] > 0
    # Every row arrived: each client's 2 requests of 40 rows, each row changed by the second phase and given a visit.
    customers = Customer.objects.all()
    assert customers.count() == clients * 2 * 40
    assert set(customers.values_list("last_name", flat=True)) == {"v2"}
    assert not customers.filter(last_activity_at=None).exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["--rows", "0"],
        ["--rows", "10001"],
        ["--rounds", "0"],
        ["--url", "ftp://example.com"],
        ["--url", "not a url"],
        ["--url", "http://127.0.0.1:9", "--clients", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(arguments):
    with pytest.raises(CommandError):
        call_command("bench_ingest", *arguments, stdout=io.StringIO())
