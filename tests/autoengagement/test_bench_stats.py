"""bench_stats builds its data, times the real endpoint, reports, and leaves nothing behind."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from notifications.models import NotificationLog
from wallet.models import Business, Customer

pytestmark = pytest.mark.django_db(transaction=True)


def test_bench_stats_reports_latency_and_queries_and_cleans_up():
    out = io.StringIO()
    call_command("bench_stats", "--rows", "400", "--customers", "50", "--days", "40", "--requests", "2", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["rows"] == 400
    assert figures["whole_range"]["rows_in_window"] == 400
    assert 0 < figures["last_30_days"]["rows_in_window"] < 400
    assert figures["last_30_days"]["sql_queries"] == figures["whole_range"]["sql_queries"]
    assert figures["summarised_days"] == 40  # one per day the rows spread over
    partly, from_log = figures["last_30_days_one_stale"], figures["last_30_days_from_log"]
    assert partly["rows_in_window"] == from_log["rows_in_window"] == figures["last_30_days"]["rows_in_window"]
    assert partly["sql_queries"] == from_log["sql_queries"] == figures["last_30_days"]["sql_queries"] + 2
    assert figures["last_30_days"]["median_ms"] > 0
    assert not Business.objects.exists() and not Customer.objects.exists() and not NotificationLog.objects.exists()


def test_bench_stats_rejects_bad_usage():
    with pytest.raises(CommandError) as excinfo:
        call_command("bench_stats", "--days", "400", stdout=io.StringIO())
    assert excinfo.value.returncode == 2
