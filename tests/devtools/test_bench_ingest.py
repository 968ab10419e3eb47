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


@pytest.mark.parametrize("arguments", [["--rows", "0"], ["--rows", "10001"], ["--rounds", "0"]])
def test_bad_arguments_are_usage_errors(arguments):
    with pytest.raises(CommandError):
        call_command("bench_ingest", *arguments, stdout=io.StringIO())
