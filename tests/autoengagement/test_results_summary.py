"""The results summary (autoengagement/services/results.py): the stats are the same numbers whether a day is
counted from the log or from its summary, and every writer of log rows leaves its day marked for refreshing."""

import datetime as dt
import importlib
import io
import random
import threading
import zoneinfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from autoengagement.models import AutoEngagementConfig, CohortMeasure, ResultsCohort, ResultsDay
from autoengagement.services import results
from autoengagement.services.receipts import record_delivery
from autoengagement.services.retries import recover_interrupted
from autoengagement.services.run import run_due_configs
from autoengagement.stats import engagement_stats
from notifications.models import NotificationLog
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
from wallet.services import customer_record_activity, record_visits

pytestmark = pytest.mark.django_db

S = NotificationLog.Status
ZONE = "America/New_York"
FIRST_DAY = dt.date(2026, 2, 20)
DAYS = 40


# The (step, variant) a random re-engagement comes from.
JOURNEY_KEYS = [(1, ""), (1, "A"), (1, "B"), (2, ""), (3, "x")]


def _random_logs(business, rng: random.Random, *, customers: int = 40, credited: bool = True) -> list[Customer]:
    """Re-engagements on random days: customers reached or held out several times, some credited (unless not
    `credited`), some not; by random journey steps and variants; some messages delivered, some emails bounced."""
    config = AutoEngagementConfig.objects.filter(business=business).first() or AutoEngagementConfigFactory(
        business=business, channels=["wallet", "email"], holdout_percent=30
    )
    people = Customer.objects.bulk_create(CustomerFactory.build(business=business) for _ in range(customers))
    zone = zoneinfo.ZoneInfo(business.timezone)
    rows = []
    for offset in range(DAYS):
        run_date = FIRST_DAY + dt.timedelta(days=offset)
        created_at = dt.datetime.combine(run_date, dt.time(9), tzinfo=zone)
        for customer in people:
            if rng.random() > 0.15:
                continue
            held = rng.random() < 0.3
            back = created_at + dt.timedelta(days=rng.uniform(0.1, 10)) if credited and rng.random() < 0.4 else None
            step, variant = (1, "") if held else rng.choice(JOURNEY_KEYS)
            for channel in ("wallet", "email"):
                if rng.random() < 0.05:  # a re-engagement whose channels came from two variants (two configs that day)
                    step, variant = rng.choice(JOURNEY_KEYS)
                status = S.HOLDOUT if held else rng.choice([S.SENT, S.SENT, S.FAILED, S.SKIPPED])
                delivered = created_at + dt.timedelta(minutes=2) if status == S.SENT and rng.random() < 0.5 else None
                # Some sent emails a receipt reported undelivered (a bounce): they reach nobody.
                bounced = status == S.SENT and channel == "email" and delivered is None and rng.random() < 0.4
                rows.append(
                    NotificationLog(
                        business=business,
                        config=config,
                        customer=customer,
                        channel=channel,
                        status=status,
                        run_date=run_date,
                        created_at=created_at,
                        delivered_at=delivered,
                        delivery_error="bounced: unknown user" if bounced else "",
                        reactivated_at=back if status in (S.SENT, S.HOLDOUT) else None,
                        step=step,
                        variant=variant,
                    )
                )
    save_logs(rows)
    return people


WINDOWS = [
    (FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS - 1)),  # everything
    (FIRST_DAY + dt.timedelta(days=5), FIRST_DAY + dt.timedelta(days=20)),  # customers seen before it, and again
    (FIRST_DAY + dt.timedelta(days=30), FIRST_DAY + dt.timedelta(days=30)),  # one day
    (FIRST_DAY - dt.timedelta(days=10), FIRST_DAY + dt.timedelta(days=3)),  # starts before any data
    (FIRST_DAY + dt.timedelta(days=35), FIRST_DAY + dt.timedelta(days=60)),  # ends after it
]


@pytest.mark.parametrize("summarised", ["none", "every day", "some days"])
def test_the_stats_match_a_reference_computed_from_every_row(summarised):
    rng = random.Random(f"results-{summarised}")
    first, second = BusinessFactory(timezone=ZONE), BusinessFactory(timezone="Asia/Kolkata")
    _random_logs(first, rng)
    _random_logs(second, rng)
    if summarised == "every day":
        results.refresh_stale_days()
    elif summarised == "some days":
        for business in (first, second):
            dates = [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS) if rng.random() < 0.5]
            results.refresh_days(business_id=business.pk, run_dates=dates)
        assert ResultsDay.objects.filter(stale=True).exists() and ResultsDay.objects.filter(stale=False).exists()
    # Customers reached on several days of a window exist, so distinct counts cannot simply add up.
    assert ResultsCohort.objects.exclude(previous_date=None).exists() or summarised != "every day"
    for date_from, date_to in WINDOWS:
        for business in (first, second, None):
            assert computed_stats(business, date_from, date_to) == reference_stats(business, date_from, date_to), (
                business,
                date_from,
                date_to,
            )


def test_a_customer_reached_on_two_days_of_a_window_counts_once(business):
    config = AutoEngagementConfigFactory(business=business)
    customer = CustomerFactory(business=business)
    save_logs(
        [
            log_row(config, customer, day, reactivated_at=dt.datetime.combine(day, dt.time(18), tzinfo=dt.UTC))
            for day in (dt.date(2026, 3, 1), dt.date(2026, 3, 10), dt.date(2026, 3, 20))
        ]
    )
    results.refresh_stale_days()
    cohorts = {
        (run_date, previous)
        for run_date, previous in ResultsCohort.objects.filter(measure=CohortMeasure.REACHED).values_list(
            "day__run_date", "previous_date"
        )
    }
    assert cohorts == {
        (dt.date(2026, 3, 1), None),
        (dt.date(2026, 3, 10), dt.date(2026, 3, 1)),
        (dt.date(2026, 3, 20), dt.date(2026, 3, 10)),
    }
    windows = [(dt.date(2026, 3, 1), dt.date(2026, 3, 31)), (dt.date(2026, 3, 5), dt.date(2026, 3, 25))]
    for date_from, date_to in windows:
        result = engagement_stats(business=business, date_from=date_from, date_to=date_to)
        assert (result.reached, result.reactivated["reached"]) == (1, 1)
        assert sum(point.reactivated for point in result.daily) == (3 if date_from.day == 1 else 2)


def _day(business, run_date: dt.date) -> ResultsDay:
    return ResultsDay.objects.get(business=business, run_date=run_date)


NOW = dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC)  # 09:00 in New York


def _from_log(business, run_date: dt.date):
    """The stats of one day counted from the log (its summary set aside), leaving the summary as it was."""
    ResultsDay.objects.filter(business=business, run_date=run_date).update(stale=True)
    counted = engagement_stats(business=business, date_from=run_date, date_to=run_date)
    ResultsDay.objects.filter(business=business, run_date=run_date).update(stale=False)
    return counted


def test_a_run_summarises_its_day_and_a_visit_is_counted_into_it():
    business = BusinessFactory(timezone=ZONE)
    AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone=ZONE)
    inactive = Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=NOW - dt.timedelta(days=30)) for _ in range(5)
    )
    summary = run_due_configs(now=NOW)
    assert summary.outcomes[0].sent == 5
    run_date = dt.date(2026, 3, 10)
    assert _day(business, run_date).stale is False
    assert engagement_stats(business=business, date_from=run_date, date_to=run_date, now=NOW).reached == 5

    next_day = NOW + dt.timedelta(days=1)
    customer_record_activity(customer=inactive[0], occurred_at=next_day, now=next_day)
    assert _day(business, run_date).stale is False  # counted into the summary, not left to a refresh
    summarised = engagement_stats(business=business, date_from=run_date, date_to=run_date)
    assert summarised.reactivated == {"reached": 1, "holdout": 0}
    assert summarised == _from_log(business, run_date)


def test_a_day_stays_stale_while_its_run_is_in_flight(business):
    config = AutoEngagementConfigFactory(business=business, last_run_status="running", last_run_local_date=FIRST_DAY)
    _random_logs(business, random.Random("running"), customers=5)
    results.mark_stale([(business.pk, FIRST_DAY)])  # as its claim did
    later_days = ResultsDay.objects.filter(business=business, run_date__gt=FIRST_DAY).count()
    assert results.refresh_days(business_id=business.pk, run_dates=[FIRST_DAY]) == later_days  # all but the first
    assert _day(business, FIRST_DAY).stale is True
    config.mark_as_failed("stopped")
    assert results.refresh_stale_days() >= 1
    assert _day(business, FIRST_DAY).stale is False


def test_visits_credited_in_bulk_keep_the_summary_exact():
    rng = random.Random("visits")
    business = BusinessFactory(timezone=ZONE)
    people = _random_logs(business, rng, customers=40, credited=False)
    results.refresh_stale_days()
    visits = []
    for customer in people:
        moment = dt.datetime.combine(FIRST_DAY, dt.time(12), tzinfo=dt.UTC)
        for _ in range(rng.randrange(0, 6)):
            moment += dt.timedelta(days=rng.uniform(0.5, 12))
            visits.append((customer, moment))
    rng.shuffle(visits)
    half = len(visits) // 2
    later = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    record_visits(business=business, visits=visits[:half], now=later)
    record_visits(business=business, visits=visits[half:], now=later)
    assert NotificationLog.objects.filter(reactivated_at__isnull=False).exists()
    assert not ResultsDay.objects.filter(stale=True).exists()  # every credit was counted into the summary
    for date_from, date_to in WINDOWS:
        assert computed_stats(business, date_from, date_to) == reference_stats(business, date_from, date_to)


def test_a_delivery_receipt_is_counted_into_the_summary_and_crash_recovery_marks_its_day(business):
    customer = CustomerFactory(business=business)
    wallet_pass = WalletPassFactory(customer=customer, platform="apple", message_text="We miss you")
    sent_at = wallet_pass.updated_at - dt.timedelta(seconds=1)
    run_date = sent_at.date()  # the business is in UTC
    config = AutoEngagementConfigFactory(business=business, last_run_local_date=run_date)
    rows = [
        NotificationLog(
            business=business,
            config=config,
            customer=CustomerFactory(business=business) if status == S.SENDING else customer,
            channel="wallet",
            status=status,
            run_date=run_date,
            created_at=sent_at,
        )
        for status in (S.SENT, S.SENDING)
    ]
    save_logs(rows)
    results.refresh_stale_days()
    assert record_delivery(wallet_pass=wallet_pass) == 1
    assert _day(business, run_date).stale is False
    summarised = engagement_stats(business=business, date_from=run_date, date_to=run_date)
    assert summarised.delivered == {"wallet": 1}
    assert summarised == _from_log(business, run_date)

    assert recover_interrupted(config=config) == 1
    assert _day(business, run_date).stale is True
    result = engagement_stats(business=business, date_from=run_date, date_to=run_date)
    assert result.channels == {"wallet": {"sent": 1, "unknown": 1}} and result.delivered == {"wallet": 1}
    results.refresh_stale_days()
    assert engagement_stats(business=business, date_from=run_date, date_to=run_date) == result


def test_a_refresh_takes_a_fixed_number_of_queries_whatever_the_rows(business):
    rng = random.Random("queries")
    _random_logs(business, rng, customers=10)
    dates = [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS)]
    with CaptureQueriesContext(connection) as small:
        results.refresh_days(business_id=business.pk, run_dates=dates)
    _random_logs(business, rng, customers=60)
    with CaptureQueriesContext(connection) as large:
        results.refresh_days(business_id=business.pk, run_dates=dates)

    def log_reads(queries) -> int:
        return sum(NotificationLog._meta.db_table in query["sql"] for query in queries.captured_queries)

    def others(queries) -> int:  # SQLite splits a bulk INSERT of the summary rows into batches of 999 values
        return sum(not query["sql"].startswith("INSERT") for query in queries.captured_queries)

    assert log_reads(small) == log_reads(large) == 2  # the outcomes and the cohorts, for all 40 days at once
    assert others(small) == others(large)


def test_the_migration_marks_the_days_of_existing_logs(business):
    rng = random.Random("migration")
    _random_logs(business, rng, customers=5)
    ResultsDay.objects.all().delete()
    migration = importlib.import_module("autoengagement.migrations.0003_results_days_of_existing_logs")
    with connection.cursor() as cursor:
        cursor.execute(migration.MARK_EXISTING_DAYS)
    expected = set(NotificationLog.objects.values_list("business_id", "run_date").distinct())
    assert set(ResultsDay.objects.filter(stale=True).values_list("business_id", "run_date")) == expected


def test_the_rebuild_command_summarises_days_written_outside_the_run(business):
    rng = random.Random("rebuild")
    _random_logs(business, rng, customers=10)
    NotificationLog.objects.filter(run_date=FIRST_DAY).delete()  # a day whose rows went away
    ResultsDay.objects.update(stale=False)  # as if the summary were of another time
    before = engagement_stats(business=business, date_from=FIRST_DAY, date_to=FIRST_DAY + dt.timedelta(days=DAYS))
    out = io.StringIO()
    call_command("refresh_engagement_results", "--business", business.business_id, "--all", stdout=out)
    # Every day with rows, and the day whose rows went away (now summarised as empty).
    assert out.getvalue() == f"{ResultsDay.objects.count()} results days refreshed\n"
    assert not ResultsDay.objects.get(run_date=FIRST_DAY).outcomes.exists()
    assert not ResultsDay.objects.filter(stale=True).exists()
    after = computed_stats(business, FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS))
    assert after == reference_stats(business, FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS))
    assert after["groups"]["reached"] != before.reached or after["channels"] != before.channels


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--business", "biz_00000000000000000000"], "--business"),
        (["--date-from", "2026-13-01", "--all"], "--date-from"),
        (["--date-from", "2026-03-02", "--date-to", "2026-03-01", "--all"], "--date-to"),
        (["--date-from", "2026-03-02"], "--all"),
    ],
)
def test_the_rebuild_command_names_the_bad_argument(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("refresh_engagement_results", *arguments)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections need PostgreSQL")
def test_a_refresh_skips_a_day_held_by_a_visit_in_flight_and_the_visit_keeps_it_exact():
    business = BusinessFactory()
    config = AutoEngagementConfigFactory(business=business)
    customer = CustomerFactory(business=business)
    run_date = dt.date(2026, 3, 10)
    save_logs([log_row(config, customer, run_date)])
    assert results.refresh_stale_days() == 1
    counted, release = threading.Event(), threading.Event()

    def visit_in_flight() -> None:
        try:
            with transaction.atomic():  # e.g. a point-of-sale import still writing: the day's lock stays held
                record_visits(
                    business=business,
                    visits=[(customer, dt.datetime(2026, 3, 12, tzinfo=dt.UTC))],
                    now=dt.datetime(2026, 3, 13, tzinfo=dt.UTC),
                )
                counted.set()
                release.wait(10)
        finally:
            connection.close()

    visitor = threading.Thread(target=visit_in_flight)
    visitor.start()
    try:
        assert counted.wait(10)
        assert results.refresh_days(business_id=business.pk, run_dates=[run_date]) == 0  # skipped, not waited for
    finally:
        release.set()
        visitor.join(10)
    result = engagement_stats(business=business, date_from=run_date, date_to=run_date)
    assert (result.reached, result.reactivated["reached"]) == (1, 1)
    assert _day(business, run_date).stale is False
    assert result == _from_log(business, run_date)


def test_a_failed_refresh_is_logged_and_never_fails_the_run(monkeypatch, caplog):
    business = BusinessFactory(timezone=ZONE)
    AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone=ZONE)
    Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=NOW - dt.timedelta(days=30)) for _ in range(3)
    )

    def unavailable(**kwargs):
        raise RuntimeError("summary tables unavailable")

    monkeypatch.setattr(results, "refresh_days", unavailable)
    summary = run_due_configs(now=NOW)
    assert (summary.outcomes[0].status, summary.outcomes[0].sent) == ("success", 3)
    assert "results refresh failed" in caplog.text
    run_date = dt.date(2026, 3, 10)
    assert _day(business, run_date).stale is True  # counted from the log meanwhile
    assert engagement_stats(business=business, date_from=run_date, date_to=run_date).reached == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_visits_and_refreshes_racing_each_other_leave_the_summary_exact():
    rng = random.Random("race")
    business = BusinessFactory(timezone=ZONE)
    people = _random_logs(business, rng, customers=60, credited=False)
    results.refresh_stale_days()
    dates = [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS)]
    later = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    plans = []  # per visitor thread: batches of visits, each customer's visits in time order across batches
    for share in (people[0::3], people[1::3], people[2::3]):
        moments = {customer.pk: dt.datetime.combine(FIRST_DAY, dt.time(12), tzinfo=dt.UTC) for customer in share}
        batches = []
        for _ in range(8):
            batch = []
            for customer in rng.sample(share, 6):
                moments[customer.pk] += dt.timedelta(days=rng.uniform(0.5, 6))
                batch.append((customer, moments[customer.pk]))
            batches.append(batch)
        plans.append(batches)
    errors: list[BaseException] = []
    done = threading.Event()

    def visitor(batches) -> None:
        try:
            for batch in batches:
                record_visits(business=business, visits=batch, now=later)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    def refresher() -> None:
        try:
            while not done.is_set():
                results.refresh_days(business_id=business.pk, run_dates=dates)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=visitor, args=(batches,)) for batches in plans]
    sweeper = threading.Thread(target=refresher)
    sweeper.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    sweeper.join(60)
    assert not errors
    assert NotificationLog.objects.filter(reactivated_at__isnull=False).count() > 20
    everything = (FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS - 1))
    assert not ResultsDay.objects.filter(stale=True).exists()
    assert computed_stats(business, *everything) == reference_stats(business, *everything)
    for date_from, date_to in WINDOWS:
        assert computed_stats(business, date_from, date_to) == reference_stats(business, date_from, date_to)
