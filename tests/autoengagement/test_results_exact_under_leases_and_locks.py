"""Targeted attempts to make the stats disagree with the log, or a writer deadlock: a run outliving its lease, a
run dated before a summarised day, pruning then rebuilding, and pairs of writers locking the same days."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction

from autoengagement.models import AutoEngagementConfig, ResultsDay
from autoengagement.services import results
from autoengagement.services.receipts import record_delivery
from autoengagement.services.retention import prune_notification_logs
from autoengagement.services.run import claim_config, run_due_configs
from autoengagement.stats import engagement_stats
from notifications.backends.base import ChannelBackend, Result
from notifications.models import NotificationLog
from tests.autoengagement.datasets import MOVED_WEST_AT, business_whose_config_moved_west
from tests.autoengagement.reference import computed_stats, reference_stats
from tests.factories import (
    AutoEngagementConfigFactory,
    BusinessFactory,
    CustomerFactory,
    WalletPassFactory,
    log_row,
    save_logs,
)
from wallet.models import Customer
from wallet.services import record_visits

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
SLOW = {"during": None}


class SlowBackend(ChannelBackend):
    """A provider so slow that the chunk outlives the run's lease (timeouts x retries on 2,000 messages)."""

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages):
        if SLOW["during"]:
            during, SLOW["during"] = SLOW["during"], None
            during()  # what happens elsewhere while this batch is on its way
        return [Result(log_id=m.log_id, status="sent", provider_message_id=f"p{m.log_id}") for m in messages]


def test_a_run_that_outlives_its_lease_sends_its_day_back_to_the_log(settings):
    settings.EMAIL_CHANNEL = f"{__name__}.SlowBackend"
    business = BusinessFactory()
    Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=NOW - dt.timedelta(days=30)) for _ in range(4)
    )
    AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone="UTC")

    def lease_expires_and_the_next_invocation_takes_over():
        # Wall clock: 15 minutes later the lease has expired; cron's next run_auto_engagement sees a crashed run.
        AutoEngagementConfig.objects.update(lease_expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        run_due_configs(now=NOW + dt.timedelta(minutes=15))  # fail_interrupted, resume (nothing left), refresh

    SLOW["during"] = lease_expires_and_the_next_invocation_takes_over
    summary = run_due_configs(now=NOW)  # the first run: its batch comes back after the takeover
    assert summary.outcomes[0].error.startswith("LeaseLost"), summary.as_dict()
    day = ResultsDay.objects.get(business=business, run_date=NOW.date())
    window = (NOW.date(), NOW.date())
    assert reference_stats(business, *window)["channels"] == {"email": {"sent": 4}}  # the log: the messages went out
    assert day.stale is False  # the late writes marked it; the invocation's closing sweep recounted it
    assert computed_stats(business, *window) == reference_stats(business, *window)


def test_stats_during_a_run_dated_before_an_already_summarised_day(settings):
    """The first review's scenario (config recreated in a zone west of the old one), checked while the new run is
    on its way rather than after its refresh. The customers reached on the later day are not messaged again (the
    guard is the business's): the new run reaches five customers who became inactive since."""
    settings.EMAIL_CHANNEL = f"{__name__}.SlowBackend"
    now = MOVED_WEST_AT
    business = business_whose_config_moved_west()
    Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=now - dt.timedelta(days=30)) for _ in range(5)
    )
    window = (dt.date(2026, 3, 10), dt.date(2026, 3, 11))
    seen = {}

    def look():
        seen["computed"], seen["reference"] = computed_stats(business, *window), reference_stats(business, *window)

    settings.AUTO_ENGAGEMENT_CHUNK_SIZE = 2
    calls = []

    def on_second_chunk():
        calls.append(1)
        if len(calls) == 2:
            look()  # the first chunk's messages are sent, the second's on their way
        else:
            SLOW["during"] = on_second_chunk

    SLOW["during"] = on_second_chunk
    assert run_due_configs(now=now + dt.timedelta(minutes=1)).outcomes[0].sent == 5  # run_date 2026-03-10
    assert computed_stats(business, *window) == reference_stats(business, *window)  # after the refresh: fine
    assert seen["computed"]["groups"] == seen["reference"]["groups"]  # while the run is on its way


# Deadlocks (PostgreSQL, two connections): every writer locks the days first, in one order.

S = NotificationLog.Status


def _pause_visit_after_locking_its_days(monkeypatch, started):
    """Timing only: the visit transaction holds its day locks a moment longer (as a slow statement would)."""
    original = results.lock_days

    def lock_then_pause(keys):
        locked = original(keys)
        if threading.current_thread().name == "visit":
            started.set()
            time.sleep(1.5)
        return locked

    monkeypatch.setattr(results, "lock_days", lock_then_pause)


def _visit_thread(business, customer, at, errors):
    """A thread recording `customer`'s visit at `at` (its name lets the pause above find it)."""
    return _in_thread("visit", lambda: record_visits(business=business, visits=[(customer.pk, at)], now=at), errors)


def _in_thread(name, fn, errors):
    def target():
        try:
            fn()
        except Exception as exc:
            errors.append((name, exc))
        finally:
            connection.close()

    return threading.Thread(name=name, target=target)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two connections")
def test_a_crash_recovery_claim_and_a_visit_to_the_crashed_day_never_deadlock(monkeypatch):
    day = dt.date(2026, 3, 10)
    created = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone="UTC")
    customer = CustomerFactory(business=business, created_at=created - dt.timedelta(days=30))
    save_logs([log_row(config, customer, day, status=S.PENDING, channel="email", created_at=created)])
    # the run of 3/10 was killed with this row pending; its lease has expired
    AutoEngagementConfig.objects.filter(pk=config.pk).update(
        last_run_status="running", last_run_local_date=day, lease_expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    )
    started, errors = threading.Event(), []
    _pause_visit_after_locking_its_days(monkeypatch, started)
    visit = _visit_thread(business, customer, created + dt.timedelta(hours=3), errors)
    claim = _in_thread(
        "claim",
        lambda: claim_config(config_pk=config.pk, now=created + dt.timedelta(hours=1), owner="next-invocation"),
        errors,
    )
    visit.start()
    assert started.wait(5)
    claim.start()
    visit.join(20)
    claim.join(20)
    assert errors == [], errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two connections")
def test_a_pass_fetch_and_a_visit_crediting_the_same_wallet_row_never_deadlock(monkeypatch):
    day = dt.date(2026, 3, 10)
    created = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business, channels=["wallet"], run_time="09:00", timezone="UTC")
    customer = CustomerFactory(business=business, created_at=created - dt.timedelta(days=30))
    wallet_pass = WalletPassFactory(customer=customer, message_text="We miss you")
    save_logs([log_row(config, customer, day, created_at=created)])
    results.refresh_stale_days()  # the run's refresh: the day is fresh
    started, errors = threading.Event(), []
    _pause_visit_after_locking_its_days(monkeypatch, started)
    visit = _visit_thread(business, customer, created + dt.timedelta(hours=3), errors)
    fetch = _in_thread("fetch", lambda: record_delivery(wallet_pass=wallet_pass), errors)
    visit.start()
    assert started.wait(5)
    fetch.start()
    visit.join(20)
    fetch.join(20)
    assert errors == [], errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two connections")
def test_a_refresh_marking_later_days_and_a_visit_batch_locking_them_never_deadlock():
    """refresh_days marks the later days stale; a visit batch locks the same days: both in date order."""
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone="UTC")
    d1, d3, d5 = dt.date(2026, 3, 1), dt.date(2026, 3, 3), dt.date(2026, 3, 5)
    people = [CustomerFactory(business=business, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) for _ in range(2)]
    rows = []
    for day in (d5, d3, d1):  # d5's summary row created first: it comes first in the heap
        rows.append(log_row(config, people[0 if day == d3 else 1], day, channel="email"))
        save_logs(rows[-1:])
    results.refresh_stale_days()
    assert not ResultsDay.objects.filter(stale=True).exists()
    errors, holder_has_d5, release = [], threading.Event(), threading.Event()

    def holder():  # e.g. a pass fetch or another visit batch holding d5's lock for a moment
        with transaction.atomic():
            list(ResultsDay.objects.select_for_update().filter(business=business, run_date=d5))
            holder_has_d5.set()
            release.wait(10)

    def refresh():  # the run's (or the sweep's) refresh of an earlier day: marks d3, d5 stale first
        results.refresh_days(business_id=business.pk, run_dates=[d1])

    def visit():  # one batch crediting a re-engagement on d3 and one on d5
        record_visits(
            business=business,
            visits=[
                (people[0].pk, dt.datetime(2026, 3, 6, tzinfo=dt.UTC)),
                (people[1].pk, dt.datetime(2026, 3, 6, tzinfo=dt.UTC)),
            ],
            now=dt.datetime(2026, 3, 7, tzinfo=dt.UTC),
        )

    threads = [
        _in_thread("holder", holder, errors),
        _in_thread("refresh", refresh, errors),
        _in_thread("visit", visit, errors),
    ]
    threads[0].start()
    assert holder_has_d5.wait(5)
    threads[1].start()
    time.sleep(0.5)  # the refresh's UPDATE waits at d5
    threads[2].start()
    time.sleep(0.5)  # the visit batch has locked d3 and waits at d5
    release.set()
    for thread in threads:
        thread.join(20)
    assert errors == [], errors


def test_after_pruning_the_days_the_log_can_no_longer_recount_are_final():
    """A customer reached 500 and 300 days ago. After pruning, the 300-day-old day cannot be recounted (its
    customer's previous day is gone), so `refresh_engagement_results --all --date-from` leaves it as it is."""

    today = dt.date(2026, 9, 1)
    now = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business)
    days = [today - dt.timedelta(days=500), today - dt.timedelta(days=300)]
    customer = CustomerFactory(
        business=business, created_at=now - dt.timedelta(days=900), last_activity_at=now - dt.timedelta(days=10)
    )
    save_logs([log_row(config, customer, day) for day in days])
    results.refresh_stale_days()
    window = (days[0], days[0] + dt.timedelta(days=365))  # 366 days: accepted by the API
    assert engagement_stats(business=business, date_from=window[0], date_to=window[1]).reached == 1
    assert prune_notification_logs(older_than_days=150, now=now).deleted == 1
    assert engagement_stats(business=business, date_from=window[0], date_to=window[1]).reached == 1  # as designed
    results.rebuild_results(business_ids=[business.pk], date_from=days[1])
    assert engagement_stats(business=business, date_from=window[0], date_to=window[1]).reached == 1
