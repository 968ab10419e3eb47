"""The benchmark command builds its data, runs it in worker processes, reports counts and cleans up."""

import io
import json

import pytest
from django.core.management import call_command

from notifications.models import NotificationLog
from tests.processes import database_url
from wallet.models import Business, Customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_bench_runs_every_business_once_across_workers_and_deletes_its_data(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url())
    out = io.StringIO()
    call_command(
        "bench_auto_engagement",
        "--businesses",
        "3",
        "--customers",
        "40",
        "--inactive-share",
        "0.5",
        "--workers",
        "2",
        stdout=out,
    )
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (figures["businesses"], figures["workers"], figures["customers"]) == (3, 2, 120)
    assert 0 < figures["notifications"] == figures["customers_notified"] < 120
    assert figures["sql_queries"] > 0 and figures["peak_rss_mb"] > 0
    assert not Business.objects.exists()
    assert not Customer.objects.exists()
    assert not NotificationLog.objects.exists()


def test_shared_workers_split_one_big_business_and_count_each_notification_once(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("AUTO_ENGAGEMENT_PART_SIZE", "50")
    out = io.StringIO()
    call_command(
        "bench_auto_engagement",
        *("--businesses", "1", "--customers", "400", "--inactive-share", "1", "--workers", "2", "--shared"),
        stdout=out,
    )
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (figures["businesses"], figures["workers"]) == (1, 2)
    # Wallet only (the default), no holdout in the synthetic configs: every customer has one row, counted once.
    assert figures["notifications"] == 400
    assert not NotificationLog.objects.exists()


def test_node_loop_baseline_writes_the_same_rows_one_insert_each(monkeypatch):
    """`--node-loop` times the literal port of the original loop on the same data: one INSERT per log row."""
    monkeypatch.setenv("DATABASE_URL", database_url())
    figures = {}
    for mode in ((), ("--node-loop",)):
        out = io.StringIO()
        args = ("--businesses", "2", "--customers", "30", "--inactive-share", "1", "--channels", "wallet,email")
        call_command("bench_auto_engagement", *args, *mode, stdout=out)
        figures[mode] = json.loads(out.getvalue().strip().splitlines()[-1])
    run, loop = figures[()], figures[("--node-loop",)]
    assert run["notifications"] == loop["notifications"] == 120
    assert run["customers_notified"] == loop["customers_notified"] == 60
    assert loop["sql_queries"] >= loop["notifications"] > run["sql_queries"]
    assert not NotificationLog.objects.exists()
