"""The benchmark command builds its data, runs it in worker processes, reports counts and cleans up."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from autoengagement.models import AutoEngagementConfig
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


def test_steps_and_variants_give_the_configs_a_journey_whose_content_the_run_sends(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url())
    out = io.StringIO()
    call_command(
        "bench_auto_engagement",
        *("--businesses", "2", "--customers", "40", "--inactive-share", "1", "--channels", "wallet,email,sms"),
        *("--steps", "3", "--variants", "2", "--keep"),
        stdout=out,
    )
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (figures["steps"], figures["variants"], figures["notifications"]) == (3, 2, 240)
    assert figures["us_per_notification"] > 0
    configs = list(AutoEngagementConfig.objects.all())
    assert [len(config.steps) for config in configs] == [3, 3]
    assert {config.max_reminders for config in configs} == {3}
    # A fresh dataset has no history: every customer is due step 1, in one of its two variants.
    assert set(NotificationLog.objects.values_list("step", flat=True)) == {1}
    assert set(NotificationLog.objects.values_list("variant", flat=True)) == {"VA", "VB"}
    email = NotificationLog.objects.filter(channel="email").first()
    tier = email.customer.attributes["tier"]
    assert email.header.startswith(f"Step 1{email.variant[1]}: ") and f"Your {tier} card" in email.html
    assert set(NotificationLog.objects.filter(channel="sms").values_list("header", flat=True)) == {""}


@pytest.mark.parametrize(
    "args",
    [("--variants", "2"), ("--steps", "6"), ("--steps", "2", "--variants", "5"), ("--steps", "1", "--node-loop")],
)
def test_journey_options_are_checked(args):
    with pytest.raises(CommandError, match=r"--steps|--variants|--node-loop"):
        call_command("bench_auto_engagement", "--businesses", "1", "--customers", "1", *args, stdout=io.StringIO())
    assert not Business.objects.exists()
