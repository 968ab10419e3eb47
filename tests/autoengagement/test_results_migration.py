"""Migration 0009 (results per step and variant): existing summaries stay exact without a rebuild."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from autoengagement.models import CohortMeasure, ResultsCohort, ResultsDay
from autoengagement.stats import engagement_stats
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, log_row

BEFORE = [("autoengagement", "0008_config_steps")]
AFTER = [("autoengagement", "0009_results_cohort_step_variant")]
DAY, LATER = dt.date(2026, 3, 2), dt.date(2026, 3, 9)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_reached_cohorts_are_copied_as_step_1_and_days_with_other_steps_are_marked_stale():
    apps = _migrate(BEFORE)
    try:
        config = AutoEngagementConfigFactory()
        business = config.business
        first, second = CustomerFactory.create_batch(2, business=business)
        back = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
        NotificationLog.objects.bulk_create(
            [
                log_row(config, first, DAY, reactivated_at=back),
                log_row(config, second, DAY, status="holdout"),
                log_row(config, first, LATER, step=2, variant="B"),  # written by a run that follows journeys
            ]
        )
        OldCohort = apps.get_model("autoengagement", "ResultsCohort")
        for run_date in (DAY, LATER):
            day = ResultsDay.objects.create(business=business, run_date=run_date, stale=False)
            previous = DAY if run_date == LATER else None
            OldCohort.objects.bulk_create(
                OldCohort(day_id=day.pk, measure=measure, previous_date=previous, customers=1)
                for measure in (CohortMeasure.REACHED, CohortMeasure.REACHED_BACK, CohortMeasure.HOLDOUT)
                if run_date == DAY or measure == CohortMeasure.REACHED
            )
    finally:
        _migrate(AFTER)
    copied = set(
        ResultsCohort.objects.filter(step=1).values_list("day__run_date", "measure", "variant", "previous_date")
    )
    assert copied == {
        (DAY, CohortMeasure.REACHED, "", None),
        (DAY, CohortMeasure.REACHED_BACK, "", None),
        (LATER, CohortMeasure.REACHED, "", DAY),
    }
    assert ResultsCohort.objects.filter(step=0).count() == 4  # the groups' cohorts, as they were
    stale = dict(ResultsDay.objects.values_list("run_date", "stale"))
    assert stale == {DAY: False, LATER: True}  # the day with a step 2 row is counted from the log until refreshed
    result = engagement_stats(business=business, date_from=DAY, date_to=DAY)
    assert result.steps is None  # only step 1 with no variant on DAY
    both = engagement_stats(business=business, date_from=DAY, date_to=LATER)
    assert [(s.step, [(v.name, v.reached, v.reactivated) for v in s.variants]) for s in both.steps] == [
        (1, [("", 1, 1)]),
        (2, [("B", 1, 0)]),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reverses_to_the_group_cohorts_alone():
    config = AutoEngagementConfigFactory()
    day = ResultsDay.objects.create(business=config.business, run_date=DAY, stale=False)
    ResultsCohort.objects.create(day=day, measure=CohortMeasure.REACHED, customers=3)
    ResultsCohort.objects.create(day=day, measure=CohortMeasure.REACHED, customers=3, step=1, variant="A")
    apps = _migrate(BEFORE)
    try:
        OldCohort = apps.get_model("autoengagement", "ResultsCohort")
        assert list(OldCohort.objects.values_list("measure", "customers")) == [(CohortMeasure.REACHED, 3)]
    finally:
        _migrate(AFTER)
