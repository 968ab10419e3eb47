"""Several real processes run the command at once on PostgreSQL: row claims share the work."""

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import in_holdout
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory
from tests.processes import PROJECT, database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


def start_command(*args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "true", "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_auto_engagement", "--now", NOW.isoformat(), "--format", "json", *args],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_processes_over_fifty_businesses_run_each_once_and_send_each_channel_once():
    businesses, per_business = 50, 8
    for _ in range(businesses):
        config = AutoEngagementConfigFactory(channels=["email", "sms"])
        CustomerFactory.create_batch(
            per_business,
            business=config.business,
            created_at=NOW - dt.timedelta(days=300),
            last_activity_at=NOW - dt.timedelta(days=30),
        )
    processes = [start_command() for _ in range(4)]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))

    ran = Counter(b["business_id"] for out in outputs for b in out["businesses"] if b["status"] == "success")
    assert len(ran) == businesses
    assert set(ran.values()) == {1}
    assert sum(out["total_notified"] for out in outputs) == businesses * per_business
    assert AutoEngagementConfig.objects.filter(last_run_status="success").count() == businesses
    sent = Counter(NotificationLog.objects.filter(status="sent").values_list("customer_id", "channel"))
    assert len(sent) == businesses * per_business * 2
    assert set(sent.values()) == {1}
    assert not NotificationLog.objects.exclude(status="sent").exists()


def test_two_concurrent_runs_assign_holdout_groups_as_one_run_would():
    businesses, per_business = 20, 10
    expected: dict[str, bool] = {}
    for _ in range(businesses):
        config = AutoEngagementConfigFactory(channels=["email"], holdout_percent=30)
        for member in CustomerFactory.create_batch(
            per_business,
            business=config.business,
            created_at=NOW - dt.timedelta(days=300),
            last_activity_at=NOW - dt.timedelta(days=30),
        ):
            expected[member.customer_id] = in_holdout(
                config_id=config.config_id,
                customer_id=member.customer_id,
                spell_start=member.last_activity_at,
                holdout_percent=30,
            )
    assert 0 < sum(expected.values()) < len(expected)

    def assigned() -> dict[str, bool]:
        rows = NotificationLog.objects.values_list("customer__customer_id", "status")
        return {customer_id: status == "holdout" for customer_id, status in rows}

    processes = [start_command() for _ in range(2)]
    totals = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        totals.append(json.loads(stdout.strip().splitlines()[-1])["total_holdout"])
    assert assigned() == expected
    assert sum(totals) == sum(expected.values())

    # The same customers, run again from scratch by one process: the same groups.
    NotificationLog.objects.all().delete()
    AutoEngagementConfig.objects.update(last_run_local_date=None, last_run_status=None)
    single = start_command()
    _, stderr = single.communicate(timeout=120)
    assert single.returncode == 0, stderr
    assert assigned() == expected
