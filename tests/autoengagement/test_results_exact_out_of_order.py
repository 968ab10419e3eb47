"""Scenarios where a results summary could disagree with the log: days written out of date order, pruning, a
refresh committing between the stats' statements, two visit batches locking the same days."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction

from autoengagement.models import ResultsDay
from autoengagement.services import results
from autoengagement.services.retention import prune_notification_logs
from autoengagement.services.run import run_due_configs
from autoengagement.stats import engagement_stats
from notifications.models import NotificationLog
from tests.autoengagement.datasets import MOVED_WEST_AT, business_whose_config_moved_west
from tests.autoengagement.reference import computed_stats, reference_stats
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, log_row, save_logs
from wallet.models import Customer

pytestmark = pytest.mark.django_db
S = NotificationLog.Status


def test_a_recreated_config_never_messages_a_customer_twice_in_one_spell():
    business = business_whose_config_moved_west()
    outcome = run_due_configs(now=MOVED_WEST_AT + dt.timedelta(minutes=1)).outcomes[0]
    assert (outcome.status, outcome.audience, outcome.sent) == ("success", 0, 0)
    assert NotificationLog.objects.filter(business=business).count() == 5


def test_a_day_written_before_an_already_summarised_later_day_has_the_later_day_recounted():
    """Rows dated before a summarised day give its customers an earlier day. Since the once-per-spell guard is the
    business's, no run writes such rows for the same customers any more (see the test above), so they are
    written by hand here and refreshed as a run refreshes its day."""
    business = business_whose_config_moved_west()
    config = business.auto_engagement_config
    earlier_day = dt.date(2026, 3, 10)
    results.mark_stale_from(business_id=business.pk, run_date=earlier_day)
    save_logs(
        [
            log_row(config, customer, earlier_day, channel="email", created_at=MOVED_WEST_AT + dt.timedelta(minutes=1))
            for customer in Customer.objects.filter(business=business)
        ]
    )
    results.refresh_days(business_id=business.pk, run_dates=[earlier_day])
    window = (earlier_day, dt.date(2026, 3, 11))
    assert reference_stats(business, *window)["groups"]["reached"] == 5
    # The refresh of 3/10 recounted 3/11 with it.
    earlier, later = (ResultsDay.objects.get(business=business, run_date=day) for day in window)
    assert not earlier.stale and not later.stale and later.refreshed_at == earlier.refreshed_at
    assert computed_stats(business, *window) == reference_stats(business, *window)


def test_pruning_keeps_every_row_a_stats_range_needs_and_pruned_days_keep_their_results():
    """A customer reached 500 and 300 days ago and today. Pruning deletes the 500-day-old row (beyond every range
    that reaches today) and keeps the 300-day-old one (today's previous day); the summary keeps the pruned day."""
    today = dt.date(2026, 9, 1)
    now = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business)
    days = [today - dt.timedelta(days=500), today - dt.timedelta(days=300)]
    customer = CustomerFactory(
        business=business, created_at=now - dt.timedelta(days=900), last_activity_at=now - dt.timedelta(days=10)
    )

    def reached(day):
        return log_row(config, customer, day)

    save_logs([reached(day) for day in days])
    results.refresh_stale_days()  # each old day's run summarised it
    assert prune_notification_logs(older_than_days=150, now=now).deleted == 1  # only the 500-day-old row
    save_logs([reached(today)])  # the new spell's run: its day marked, then refreshed
    results.refresh_stale_days()
    for window in [(today - dt.timedelta(days=365), today), (days[0], days[0] + dt.timedelta(days=365))]:
        assert engagement_stats(business=business, date_from=window[0], date_to=window[1]).reached == 1, window
    assert engagement_stats(business=business, date_from=days[0], date_to=days[0]).reached == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two connections")
def test_a_day_refreshed_between_the_stats_statements_is_counted_once(monkeypatch):
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business)
    day = dt.date(2026, 3, 10)
    save_logs([log_row(config, CustomerFactory(business=business), day) for _ in range(3)])
    original = results.spans_of

    def refresh_elsewhere():
        try:
            results.refresh_days(business_id=business.pk, run_dates=[day])  # e.g. the run-end refresh / sweep
        finally:
            connection.close()

    refreshed = threading.Event()

    def spans_then_concurrent_refresh(days):
        spans = original(days)  # the stats' "which days are stale" statement has run
        if not refreshed.is_set():  # once, from the stats' thread (the refresh itself calls spans_of too)
            refreshed.set()
            worker = threading.Thread(target=refresh_elsewhere)
            worker.start()
            worker.join()
        return spans

    monkeypatch.setattr(results, "spans_of", spans_then_concurrent_refresh)  # timing only: the real one runs
    stats = engagement_stats(business=business, date_from=day, date_to=day)
    assert refreshed.is_set() and ResultsDay.objects.get(business=business, run_date=day).stale is False
    assert stats.channels == {"wallet": {"sent": 3}}, stats.channels
    assert stats.reached == 3, stats.reached


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two connections")
def test_two_visit_batches_locking_the_same_days_never_deadlock(monkeypatch):
    """One batch credits a pending re-engagement of today and a sent one of an earlier day, the other a sent one of
    each: both lock the days they touch in one ordered statement before marking any."""
    business = BusinessFactory()
    earlier, today = dt.date(2026, 3, 9), dt.date(2026, 3, 10)
    results.mark_stale([(business.pk, earlier), (business.pk, today)])
    results.refresh_days(business_id=business.pk, run_dates=[earlier])  # earlier fresh; today stays stale
    c = [CustomerFactory(business=business).pk for _ in range(4)]
    R, Row = results.Reengagement, results.CreditedRow
    original = results.mark_stale
    first_marked, errors = threading.Event(), []

    def slow_mark_stale(days):
        original(days)
        if threading.current_thread().name == "t1" and not first_marked.is_set():
            first_marked.set()
            time.sleep(1.0)  # timing only: T2 gets to its _lock_days meanwhile

    monkeypatch.setattr(results, "mark_stale", slow_mark_stale)

    def batch(credits):
        try:
            with transaction.atomic():
                results.count_credits(credits)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    t1 = threading.Thread(
        name="t1",
        target=batch,
        args=({R(business.pk, today, c[0]): {Row(S.PENDING)}, R(business.pk, earlier, c[1]): {Row(S.SENT)}},),
    )
    t2 = threading.Thread(
        name="t2",
        target=batch,
        args=({R(business.pk, earlier, c[2]): {Row(S.SENT)}, R(business.pk, today, c[3]): {Row(S.SENT)}},),
    )
    t1.start()
    assert first_marked.wait(5)
    t2.start()
    t1.join(20)
    t2.join(20)
    assert errors == [], errors
