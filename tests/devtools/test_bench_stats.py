"""bench_stats builds its data, times the real endpoint, reports, and leaves nothing behind."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from notifications.models import NotificationLog
from wallet.models import Business, Customer

pytestmark = pytest.mark.django_db(transaction=True)


def _index_names() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexname FROM pg_indexes")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in cursor.fetchall()}


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
    for args in (("--days", "400"), ("--steps", "6"), ("--steps", "2", "--variants", "5")):
        with pytest.raises(CommandError) as excinfo:
            call_command("bench_stats", *args, stdout=io.StringIO())
        assert excinfo.value.returncode == 2


def test_bench_stats_builds_a_journey_and_reads_its_steps_in_the_same_queries():
    out = io.StringIO()
    args = ("--rows", "400", "--customers", "50", "--days", "40", "--requests", "1")
    call_command("bench_stats", *args, "--steps", "3", "--variants", "4", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["journey"] == "3x4" and figures["cohort_rows"] > 0
    assert figures["whole_range"]["rows_in_window"] == 400
    assert figures["last_30_days_from_log"]["sql_queries"] == figures["last_30_days"]["sql_queries"] + 2
    out = io.StringIO()
    call_command("bench_stats", *args, stdout=out)
    seed = json.loads(out.getvalue().strip().splitlines()[-1])
    assert seed["journey"] == "none"
    assert seed["last_30_days"]["sql_queries"] == figures["last_30_days"]["sql_queries"]  # journeys add no query


def test_bench_stats_plain_compares_the_log_alone_with_the_summary_and_cleans_up():
    out = io.StringIO()
    call_command(
        "bench_stats",
        *("--rows", "400", "--customers", "50", "--days", "40", "--requests", "2"),
        *("--plain", "--write-rows", "30", "--steps", "2", "--variants", "2"),
        stdout=out,
    )
    lines = out.getvalue().strip().splitlines()
    figures = json.loads(lines[-1])
    plain = figures["plain"]
    assert figures["journey"] == "2x2"
    assert plain["matches_summary"] is True  # the log alone gives the summary's answer, byte for byte, steps included
    for window in ("last_30_days", "whole_range"):
        summary = figures[window]
        for measured in (
            plain["without_index"]["log"][window],
            plain["without_index"]["log_created_at"][window],
            plain["with_index"]["log"][window],
            plain["with_index"]["log_index_only"][window],
        ):
            assert measured["rows_in_window"] == summary["rows_in_window"]
            # The summary's three statements against the log's four aggregates and the journey's statement.
            assert measured["sql_queries"] == summary["sql_queries"] + 2
            assert measured["median_ms"] > 0
    for label in ("without_index", "with_index"):
        from_log = plain[label]["from_log_path"]["last_30_days"]
        assert from_log["rows_in_window"] == figures["last_30_days"]["rows_in_window"]
        assert from_log["sql_queries"] == figures["last_30_days"]["sql_queries"] + 2
        writes = plain[label]["writes"]
        assert writes["insert_rows"] == writes["update_rows"] == 30
        assert writes["insert_ms"] > 0 and writes["update_ms"] > 0
    stale = plain["last_30_days_attribution_stale"]
    assert stale["stale_days"] == 14 and stale["sql_queries"] == figures["last_30_days"]["sql_queries"] + 2
    recount = plain["recount"]
    assert recount["latest_day"]["days_recounted"] == 1
    assert set(recount["count_credits_ms"]) == {"1", "100"}
    assert recount["attribution_start"]["days_recounted"] == recount["attribution_days"] == 14
    assert plain["index"]["name"] in plain["index"]["definition"]
    assert any(line.startswith("-- plan log_index_only_with_index customers") for line in lines)
    assert any("source=log_with_index" in line for line in lines)
    # The rolled-back writes left nothing, the index is gone, and so is the data.
    assert figures["rows"] == 400 and figures["last_30_days_from_log"]["rows_in_window"] > 0
    assert plain["index"]["name"] not in _index_names()
    assert not Business.objects.exists() and not Customer.objects.exists() and not NotificationLog.objects.exists()


def test_bench_stats_reuses_kept_data():
    out = io.StringIO()
    args = ("--rows", "200", "--customers", "20", "--days", "10", "--requests", "1")
    call_command("bench_stats", *args, "--keep", stdout=out)
    first = json.loads(out.getvalue().strip().splitlines()[-1])
    assert NotificationLog.objects.count() == 200
    out = io.StringIO()
    call_command("bench_stats", *args, "--reuse", first["tag"], stdout=out)
    again = json.loads(out.getvalue().strip().splitlines()[-1])
    assert again["tag"] == first["tag"] and again["rows"] == 200
    assert again["whole_range"]["rows_in_window"] == 200
    assert not Business.objects.exists() and not NotificationLog.objects.exists()
    with pytest.raises(CommandError):
        call_command("bench_stats", "--reuse", first["tag"], stdout=io.StringIO())
