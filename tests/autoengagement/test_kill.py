"""A real `kill -9` in the middle of a run on PostgreSQL, then the next invocation: nothing sent twice, nothing lost
without a row that says why, nothing left pending.
"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.retries import INTERRUPTED
from engagement_site.secure_ids import IdKind, make_ids
from notifications.models import NotificationLog
from tests.autoengagement.test_concurrency import database_url
from tests.factories import AutoEngagementConfigFactory
from wallet.models import Customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
PROJECT = Path(__file__).resolve().parents[2]
BUSINESSES, PER_BUSINESS = 4, 2500
CHANNELS = ["email", "sms"]
LEASE_SECONDS = 2


def start_run() -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "AUTO_ENGAGEMENT_LEASE_SECONDS": str(LEASE_SECONDS),
        "AUTO_ENGAGEMENT_CHUNK_SIZE": "200",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_auto_engagement", "--now", NOW.isoformat(), "--format", "json"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_audience() -> None:
    for _ in range(BUSINESSES):
        config = AutoEngagementConfigFactory(channels=CHANNELS)
        Customer.objects.bulk_create(
            [
                Customer(
                    customer_id=customer_id,
                    business_id=config.business_id,
                    first_name="Ana",
                    email=f"c{n}@example.com",
                    phone=f"+1415{n:07d}",
                    created_at=NOW - dt.timedelta(days=300),
                    last_activity_at=NOW - dt.timedelta(days=30),
                )
                for n, customer_id in enumerate(make_ids(IdKind.CUSTOMER, PER_BUSINESS))
            ],
            batch_size=5000,
        )


def test_a_run_killed_mid_way_is_finished_by_the_next_one_without_a_duplicate_or_a_pending_row():
    make_audience()
    total = BUSINESSES * PER_BUSINESS * len(CHANNELS)

    victim = start_run()
    deadline = time.monotonic() + 120
    while NotificationLog.objects.count() < total // 3:
        assert victim.poll() is None, "the run finished before it could be killed: raise PER_BUSINESS"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    written_before = NotificationLog.objects.count()
    assert 0 < written_before < total
    crashed = AutoEngagementConfig.objects.filter(last_run_status="running")
    assert crashed.count() == 1, "exactly the business being run when the process died is left running"

    time.sleep(LEASE_SECONDS + 0.5)  # its lease expires
    rerun = start_run()
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["total_failed"] == 0
    assert summary["total_processed"] >= 1, "the crashed business was resumed"

    assert set(AutoEngagementConfig.objects.values_list("last_run_status", flat=True)) == {"success"}
    rows = list(NotificationLog.objects.values_list("customer_id", "channel", "status", "error"))
    per_customer_channel = Counter((customer, channel) for customer, channel, _, _ in rows)
    assert len(per_customer_channel) == total, "every customer has a row for each channel"
    assert set(per_customer_channel.values()) == {1}, "and only one"
    statuses = Counter(status for _, _, status, _ in rows)
    assert "pending" not in statuses
    assert set(statuses) <= {"sent", "failed"}
    # What was not sent says why: the dead run's unrecorded chunk, never re-sent in case it went out.
    assert {error for _, _, status, error in rows if status == "failed"} <= {INTERRUPTED}
    assert statuses["sent"] >= total - 200 * len(CHANNELS)
