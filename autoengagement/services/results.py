"""Results summarised per business and run date, so the stats read a few rows per day, not the log.

How each writer of re-engagement log rows keeps its day's summary exact:
- the run marks its day (and any later day) stale in the transaction that claims the config, again after each
  chunk, and refreshes the day (recomputes it from the log) when the business is done; no refresh touches a day
  while its config is running, so the day stays stale, and is counted from the log, for as long as rows may be
  pending, a crash included (recovery marks it again);
- a visit credited to a re-engagement adds that customer to the day's "came back" cohort (`count_credits`), and a
  delivery receipt (a device fetching an updated pass, a Twilio or email receipt) adds a delivery to the day's
  outcome of its channel (`count_delivery`), each in the transaction of its change, holding the day's row lock;
- a receipt that reports a sent row undelivered (or delivered after all) may change whether its customer counts as
  reached: unless another of the customer's rows of that day, step and variant still reaches them
  (`count_reach_change`), the day and the business's later days are marked stale in the receipt's transaction, and
  counted from the log until refreshed;
- rows written any other way (an import, a manual fix, a test) must mark their days stale (`mark_stale`), or be
  followed by `refresh_engagement_results --all`: a day with no summary row is a day with no rows.
Lock order: a transaction that changes log rows and their days' summaries locks the days first (`lock_days`, in
(business, date) order), then the log rows, so no two writers deadlock. A refresh locks the days it recomputes,
skipping any another transaction holds (that transaction keeps the day exact, or stale, itself), and recounts
the later days, whose customers' previous day it may have changed. The stats count every day once, from its
summary when fresh and from the log when stale, so they match the log, and are fast as soon as the run has
refreshed its day; every run_auto_engagement invocation ends by refreshing whatever is stale. Once the log is
pruned (`LogRetention`), days it can no longer recount are final: their summary is what the stats read.

Distinct customers do not add up day by day: a customer reached on two days of a window is one customer. Each
day's cohorts therefore keep their customers by the date of their previous day in the same measure, and a window
counts only those whose previous day falls before it (or who have none): each customer once, on their first day.
The same cohorts per journey step and variant (step > 0: the customers a step's variant reached, and those of them
credited) keep their customers by their previous day in the same step, variant and measure.

Reached means a `sent` row that no delivery receipt reported undelivered (an empty `delivery_error`): a customer whose
SMS bounced but whose email arrived is reached; one whose only message was reported undelivered is not.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from autoengagement.models import (
    EVERY_STEP,
    AutoEngagementConfig,
    CohortMeasure,
    ResultsCohort,
    ResultsDay,
    ResultsOutcome,
)
from engagement_site.db import bulk_update_rows
from notifications.channels import Channel
from notifications.models import IN_FLIGHT_STATUSES, LogRetention, NotificationLog

logger = logging.getLogger(__name__)

Status = NotificationLog.Status
AUTO = NotificationLog.Type.AUTO_REENGAGEMENT

DayKey = tuple[int, dt.date]  # (business pk, run date)


class Reengagement(NamedTuple):
    """One customer's re-engagement: their log rows of one run date."""

    business_id: int
    run_date: dt.date
    customer_id: int


# The longest stats range: how far back a day's cohorts look for each customer's previous day.
LONGEST_RANGE_DAYS = 366

# Days refreshed together: bounds the size of one refresh's statements and how long it holds the days' locks.
REFRESH_BATCH_DAYS = 366

# A log row of local run date D was written between D 00:00 at UTC+14 and D+1 00:00 at UTC-12, so within
# [D-1 00:00 UTC, D+2 00:00 UTC) whatever the business's zone was then: the range the history index narrows.
_BEFORE = dt.timedelta(days=1)
_AFTER = dt.timedelta(days=2)

# A group's rows, and the measures its customers count in (all of them / those whose re-engagement was credited).
_GROUPS = {
    Status.SENT: (CohortMeasure.REACHED, CohortMeasure.REACHED_BACK),
    Status.HOLDOUT: (CohortMeasure.HOLDOUT, CohortMeasure.HOLDOUT_BACK),
}


@dataclass(frozen=True)
class DaySpan:
    """Consecutive run dates of one business."""

    business_id: int
    first: dt.date
    last: dt.date


@dataclass(frozen=True)
class OutcomeCount:
    business_id: int
    run_date: dt.date
    channel: str
    status: str
    rows: int
    delivered: int


@dataclass(frozen=True)
class CohortCount:
    business_id: int
    run_date: dt.date
    measure: str
    previous_date: dt.date | None
    customers: int
    step: int = EVERY_STEP  # or a journey step, with its variant: the customers that step's variant reached
    variant: str = ""


def spans_of(days: Iterable[DayKey]) -> list[DaySpan]:
    """Days grouped into runs of consecutive dates per business (one range condition each)."""
    spans: list[DaySpan] = []
    for business_id, run_date in sorted(set(days)):
        last = spans[-1] if spans else None
        if last and last.business_id == business_id and run_date - last.last == dt.timedelta(days=1):
            spans[-1] = DaySpan(business_id, last.first, run_date)
        else:
            spans.append(DaySpan(business_id, run_date, run_date))
    return spans


def _midnight_utc(day: dt.date, shift: dt.timedelta) -> dt.datetime:
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    try:
        return midnight + shift
    except OverflowError:  # the first or last dates Python holds
        return midnight


def _span_bounds(span: DaySpan) -> tuple[dt.datetime, dt.datetime]:
    return _midnight_utc(span.first, -_BEFORE), _midnight_utc(span.last, _AFTER)


def _log_rows(spans: Sequence[DaySpan]) -> QuerySet[NotificationLog]:
    condition = Q()
    for span in spans:
        start, end = _span_bounds(span)
        condition |= Q(
            business_id=span.business_id,
            run_date__gte=span.first,
            run_date__lte=span.last,
            created_at__gte=start,
            created_at__lt=end,
        )
    return NotificationLog.objects.filter(condition, type=AUTO)


def outcomes_from_log(spans: Sequence[DaySpan]) -> list[OutcomeCount]:
    """Rows per business, day, channel and status, from the log (one aggregate query)."""
    if not spans:
        return []
    rows = (
        _log_rows(spans)
        .order_by()
        .values_list("business_id", "run_date", "channel", "status")
        .annotate(rows=Count("pk"), delivered=Count("delivered_at"))
    )
    return [OutcomeCount(*row) for row in rows]


def _as_date(value: dt.date | str | None) -> dt.date | None:
    """A date read by raw SQL (SQLite hands back text)."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


def cohorts_from_log(spans: Sequence[DaySpan]) -> list[CohortCount]:
    """Each day's reached and held-out customers (a `sent` row not reported undelivered: an empty delivery_error; a
    `holdout` row), and those of them credited with a visit, counted by the date of
    their previous day in the same measure; and per journey step and variant, the customers it reached (a `sent` row
    of that step and variant) and those of them credited, by their previous day in the same step, variant and
    measure. One query; the previous days are looked up per customer and day through the log's customer index."""
    if not spans:
        return []
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    adapt_date = connection.ops.adapt_datefield_value
    adapt_datetime = connection.ops.adapt_datetimefield_value
    span_conditions, span_params = [], []
    for span in spans:
        start, end = _span_bounds(span)
        span_conditions.append(
            "(l.business_id = %s AND l.run_date >= %s AND l.run_date <= %s AND l.created_at >= %s "
            "AND l.created_at < %s)"
        )
        span_params += [span.business_id, adapt_date(span.first), adapt_date(span.last)]
        span_params += [adapt_datetime(start), adapt_datetime(end)]
    in_spans = " OR ".join(span_conditions)
    # By customer alone (a customer has one business), with the type tested in the aggregate's FILTER rather than the
    # WHERE: no condition then names a column of the business-led history index, so the unique index that leads with
    # the customer is the only one that can serve the probe, whatever the planner's statistics say. (With the type in
    # the WHERE, a log analysed while it held only dead rows looked empty, the two indexes cost the same, and the
    # history index was scanned whole on `type` for every customer: 11 s for a day of 2,000 customers.)
    earlier = (
        f"SELECT MAX(e.run_date) FILTER (WHERE e.type = %s) FROM {table} e WHERE e.customer_id = l.customer_id "
        "AND e.status = l.status AND e.delivery_error = '' AND e.run_date < l.run_date"
    )
    earlier_of_variant = f"{earlier} AND e.step = l.step AND e.variant = l.variant"
    credited = "MAX(CASE WHEN l.reactivated_at IS NULL THEN 0 ELSE 1 END)"
    # Two parts in one statement: per customer and day (the groups, step 0), then per customer, day, step and
    # variant (the sent rows only). A customer reached by two variants on one day (two configs that day) counts once
    # in the group and once in each variant.
    sql = f"""
        SELECT business_id, run_date, status, {EVERY_STEP}, '', previous, credited, previous_credited, COUNT(*)
        FROM (
            SELECT l.business_id AS business_id, l.run_date AS run_date, l.status AS status,
                {credited} AS credited,
                ({earlier}) AS previous,
                CASE WHEN {credited} = 1 THEN ({earlier} AND e.reactivated_at IS NOT NULL) END AS previous_credited
            FROM {table} l
            WHERE l.type = %s AND l.status IN (%s, %s) AND l.delivery_error = '' AND ({in_spans})
            GROUP BY l.business_id, l.customer_id, l.run_date, l.status
        ) per_customer
        GROUP BY business_id, run_date, status, previous, credited, previous_credited
        UNION ALL
        SELECT business_id, run_date, status, step, variant, previous, credited, previous_credited, COUNT(*)
        FROM (
            SELECT l.business_id AS business_id, l.run_date AS run_date, l.status AS status, l.step AS step,
                l.variant AS variant,
                {credited} AS credited,
                ({earlier_of_variant}) AS previous,
                CASE WHEN {credited} = 1 THEN ({earlier_of_variant} AND e.reactivated_at IS NOT NULL) END
                    AS previous_credited
            FROM {table} l
            WHERE l.type = %s AND l.status = %s AND l.delivery_error = '' AND ({in_spans})
            GROUP BY l.business_id, l.customer_id, l.run_date, l.status, l.step, l.variant
        ) per_variant
        GROUP BY business_id, run_date, status, step, variant, previous, credited, previous_credited
    """
    params = [AUTO, AUTO, AUTO, Status.SENT, Status.HOLDOUT, *span_params, AUTO, AUTO, AUTO, Status.SENT, *span_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    counts: dict[tuple[int, dt.date, str, dt.date | None, int, str], int] = defaultdict(int)
    for business_id, run_date, status, step, variant, previous, credited, previous_credited, customers in fetched:
        day = _as_date(run_date)
        everyone, came_back = _GROUPS[status]
        counts[business_id, day, everyone, _as_date(previous), step, variant] += customers
        if credited:
            counts[business_id, day, came_back, _as_date(previous_credited), step, variant] += customers
    return [
        CohortCount(business_id, day, measure, previous, customers, step, variant)
        for (business_id, day, measure, previous, step, variant), customers in counts.items()
    ]


def summaries_final_before(pruned_before: dt.datetime) -> dt.date:
    """The first day whose customers' previous days (one stats range back, a day more for local dates) are all
    still in a log pruned before `pruned_before`; the summaries of earlier days are final."""
    return pruned_before.date() + dt.timedelta(days=LONGEST_RANGE_DAYS + 1)


def final_before() -> dt.date | None:
    """Days before this are final (the log was pruned too far to recompute them); None while nothing was pruned."""
    return LogRetention.objects.filter(pk=1).values_list("summaries_final_before", flat=True).first()


def mark_stale(days: Iterable[DayKey]) -> None:
    """Say these days' log rows changed: the stats count them from the log until they are refreshed.

    Outside a transaction, call it after the change; inside one that also changes log rows, before touching them
    (the lock order). Either way a refresh running at the same time sees the change or leaves the mark."""
    keys = sorted(set(days))
    if not keys:
        return
    ResultsDay.objects.bulk_create(
        [ResultsDay(business_id=business_id, run_date=run_date, stale=True) for business_id, run_date in keys],
        update_conflicts=True,
        unique_fields=["business", "run_date"],
        update_fields=["stale"],
        batch_size=1000,
    )


def lock_days(keys: Collection[DayKey]) -> dict[DayKey, ResultsDay]:
    """Lock these days' summary rows, creating missing ones as stale, in one fixed order.

    The project's lock order: a transaction that changes log rows and their days' summaries locks the days first,
    through this function, then touches the log rows. Two such transactions therefore never deadlock."""
    if not keys:
        return {}
    ResultsDay.objects.bulk_create(
        [ResultsDay(business_id=business_id, run_date=run_date) for business_id, run_date in sorted(keys)],
        ignore_conflicts=True,
    )
    dates_of: dict[int, set[dt.date]] = defaultdict(set)
    for business_id, run_date in keys:
        dates_of[business_id].add(run_date)
    condition = Q()
    for business_id, dates in dates_of.items():
        condition |= Q(business_id=business_id, run_date__in=sorted(dates))
    rows = ResultsDay.objects.select_for_update().filter(condition).order_by("business_id", "run_date")
    return {(day.business_id, day.run_date): day for day in rows}


@transaction.atomic
def mark_stale_from(*, business_id: int, run_date: dt.date) -> None:
    """Mark a day and the business's later days stale: a run of that day is starting, and until it is refreshed
    the later days' cohorts may point past its customers."""
    lock_days({(business_id, run_date)})
    later = (
        ResultsDay.objects.select_for_update()
        .filter(business_id=business_id, run_date__gte=run_date)
        .order_by("run_date")
        .values_list("pk", flat=True)
    )
    ResultsDay.objects.filter(pk__in=list(later)).update(stale=True)


class CreditedRow(NamedTuple):
    """What the summary needs of a log row about to be credited with a visit."""

    status: str
    step: int = 1
    variant: str = ""
    # A receipt reported the row undelivered: a `sent` row that reaches nobody, so it counts in no cohort.
    undelivered: bool = False

    @property
    def reaches(self) -> bool:
        return not self.undelivered


@transaction.atomic
def count_credits(credits: Mapping[Reengagement, Collection[CreditedRow]]) -> None:
    """Add re-engagements about to be credited with a visit to their days' "came back" cohorts (the group's, and
    each step and variant's whose `sent` row is credited); `credits` maps each to its rows. Call it in the
    transaction that credits them, before their UPDATE.

    A re-engagement with a row still pending belongs to a run in flight, whose day is stale anyway; a day that is
    stale or has no summary is left to its refresh, which will read the credit from the log."""
    in_flight = {
        (r.business_id, r.run_date)
        for r, rows in credits.items()
        if any(row.status in IN_FLIGHT_STATUSES for row in rows)
    }
    groups: dict[Reengagement, str] = {}
    variants: dict[Reengagement, set[tuple[int, str]]] = {}
    for reengagement, rows in credits.items():
        if any(row.status in IN_FLIGHT_STATUSES for row in rows):
            continue
        statuses = {row.status for row in rows if row.reaches}
        if Status.SENT in statuses or Status.HOLDOUT in statuses:
            groups[reengagement] = Status.SENT if Status.SENT in statuses else Status.HOLDOUT
        variants[reengagement] = {(row.step, row.variant) for row in rows if row.status == Status.SENT and row.reaches}
    increments, recount = _cohort_increments(groups, variants)
    # Every day this batch touches is locked first, in one ordered statement, so two batches never deadlock.
    touched = {increment[0] for increment in increments} | recount | in_flight
    locked = lock_days(touched)
    mark_stale(recount | in_flight)
    fresh = {key: day.pk for key, day in locked.items() if not (day.stale or key in recount or key in in_flight)}
    _add_to_cohorts(increments, fresh)


# (day, measure, step, variant, previous day) -> customers the cohort gains
CohortIncrements = dict[tuple[DayKey, str, int, str, dt.date | None], int]


def _cohort_increments(
    groups: Mapping[Reengagement, str], variants: Mapping[Reengagement, Collection[tuple[int, str]]]
) -> tuple[CohortIncrements, set[DayKey]]:
    """The customers each (day, measure, step, variant, previous day) cohort gains from these credits, and the later
    days whose cohorts the credits would change (their previous day moves): those are recounted instead."""
    # Each customer's credited days so far, per group and per step and variant of the sent rows (the batch's rows are
    # not credited yet).
    credited_days: dict[tuple[int, int, str, int, str], set[dt.date]] = defaultdict(set)
    earlier = (
        NotificationLog.objects.filter(
            customer_id__in={r.customer_id for r in (*groups, *variants)},
            type=AUTO,
            status__in=list(_GROUPS),
            reactivated_at__isnull=False,
            delivery_error="",
        )
        .order_by()
        .values_list("business_id", "customer_id", "status", "run_date", "step", "variant")
        .distinct()
    )
    for business_id, customer_id, status, run_date, step, variant in earlier:
        credited_days[business_id, customer_id, status, EVERY_STEP, ""].add(run_date)
        if status == Status.SENT:
            credited_days[business_id, customer_id, status, step, variant].add(run_date)
    increments: CohortIncrements = defaultdict(int)
    recount: set[DayKey] = set()
    cohorts = [(r, status, EVERY_STEP, "") for r, status in groups.items()]
    cohorts += [(r, Status.SENT, step, variant) for r, keys in variants.items() for step, variant in sorted(keys)]
    for reengagement, status, step, variant in sorted(cohorts, key=lambda cohort: cohort[0].run_date):
        days = credited_days[reengagement.business_id, reengagement.customer_id, status, step, variant]
        if reengagement.run_date in days:
            continue  # the customer already counts on that day (another config's re-engagement)
        # A later credited day (only rows written out of order make one) would get a new previous day: recount it.
        recount.update((reengagement.business_id, day) for day in days if day > reengagement.run_date)
        previous = max((day for day in days if day < reengagement.run_date), default=None)
        key = (reengagement.business_id, reengagement.run_date)
        increments[key, _GROUPS[status][1], step, variant, previous] += 1
        days.add(reengagement.run_date)
    return increments, recount


def _add_to_cohorts(increments: CohortIncrements, fresh: Mapping[DayKey, int]) -> None:
    """Grow the cohorts of the fresh (summarised, locked) days, creating those not there yet."""
    cohorts = {
        (row.day_id, row.measure, row.step, row.variant, row.previous_date): row
        for row in ResultsCohort.objects.filter(
            day_id__in=fresh.values(), measure__in=[measure for _, measure in _GROUPS.values()]
        )
    }
    grown: list[tuple[int, int]] = []
    new: list[ResultsCohort] = []
    for (key, measure, step, variant, previous), customers in increments.items():
        if key not in fresh:
            continue
        existing = cohorts.get((fresh[key], measure, step, variant, previous))
        if existing is None:
            new.append(
                ResultsCohort(
                    day_id=fresh[key],
                    measure=measure,
                    previous_date=previous,
                    customers=customers,
                    step=step,
                    variant=variant,
                )
            )
        else:
            grown.append((existing.pk, existing.customers + customers))
    bulk_update_rows(ResultsCohort, ["customers"], grown)
    ResultsCohort.objects.bulk_create(new)


@transaction.atomic
def count_delivery(*, business_id: int, run_date: dt.date, status: str, channel: str = Channel.WALLET) -> None:
    """Add a row (of this channel and status) just marked delivered to its day's outcomes. Call it in the
    transaction that marks the row, after locking its day (`lock_days`)."""
    day = lock_days({(business_id, run_date)})[business_id, run_date]
    if day.stale:
        return
    counted = ResultsOutcome.objects.filter(day=day, channel=channel, status=status).update(
        delivered=F("delivered") + 1
    )
    if not counted:  # a summary that does not know the row: count the day from the log until refreshed
        mark_stale([(business_id, run_date)])


@transaction.atomic
def count_reach_change(*, log: NotificationLog) -> bool:
    """A receipt just changed whether this `sent` row reaches its customer (its delivery_error was set or cleared):
    unless another of the customer's rows of that day, step and variant still reaches them, so no cohort changes,
    the day and the business's later days are marked stale (their cohorts point back at this day's customers) and
    counted from the log until refreshed. Call it in the transaction that changed the row, holding its day's lock
    (`lock_days`). Returns whether the days were marked."""
    others = (
        NotificationLog.objects.filter(
            customer_id=log.customer_id,
            business_id=log.business_id,
            run_date=log.run_date,
            type=AUTO,
            status=Status.SENT,
            delivery_error="",
            step=log.step,
            variant=log.variant,
        )
        .exclude(pk=log.pk)
        .exists()
    )
    if others:
        return False
    mark_stale_from(business_id=log.business_id, run_date=log.run_date)
    return True


def _running_dates(business_id: int, dates: Iterable[dt.date]) -> set[dt.date]:
    """Days whose run is in progress (or crashed): they may still have pending rows, so they stay stale until the
    run ends (or its recovery fails them)."""
    return set(
        AutoEngagementConfig.objects.filter(
            business_id=business_id,
            last_run_status=AutoEngagementConfig.RunStatus.RUNNING,
            last_run_local_date__in=list(dates),
        ).values_list("last_run_local_date", flat=True)
    )


def refresh_days(*, business_id: int, run_dates: Iterable[dt.date]) -> int:
    """Recompute these days of one business, and its later days, from the log and mark them fresh; returns the days
    refreshed (a running day, or one another transaction holds, is skipped and stays as it is)."""
    final = final_before()
    requested = {run_date for run_date in run_dates if final is None or run_date >= final}
    if not requested:
        return 0
    # A day's cohorts point back at each customer's previous day, so rows dated before an already summarised day
    # (a config recreated in a zone west of the old one, an import) change what that later day should say: the
    # later days are marked stale first, in a statement of their own, and recounted in this refresh.
    with transaction.atomic():
        later = dict(
            ResultsDay.objects.select_for_update()
            .filter(business_id=business_id, run_date__gt=min(requested))
            .exclude(run_date__in=requested)
            .order_by("run_date")
            .values_list("run_date", "pk")
        )
        ResultsDay.objects.filter(pk__in=list(later.values())).update(stale=True)
    requested.update(later)
    dates = sorted(requested - _running_dates(business_id, requested))
    return sum(
        _refresh_batch(business_id, dates[start : start + REFRESH_BATCH_DAYS])
        for start in range(0, len(dates), REFRESH_BATCH_DAYS)
    )


@transaction.atomic
def _refresh_batch(business_id: int, dates: Sequence[dt.date]) -> int:
    known = set(
        ResultsDay.objects.filter(business_id=business_id, run_date__in=dates).values_list("run_date", flat=True)
    )
    # Only the missing days are inserted: an insert meeting a row that a transaction in flight has marked would
    # wait for it, which is what skipping locked days below avoids.
    ResultsDay.objects.bulk_create(
        [ResultsDay(business_id=business_id, run_date=run_date) for run_date in dates if run_date not in known],
        ignore_conflicts=True,
    )
    # Locked in date order: a visit crediting one of these days waits until this transaction commits, then adds
    # its count to the fresh summary. A day locked by another refresh or by a change in flight is skipped: that
    # transaction keeps it exact (or stale) itself.
    day_pks = dict(
        ResultsDay.objects.select_for_update(skip_locked=True)
        .filter(business_id=business_id, run_date__in=dates)
        .order_by("run_date")
        .values_list("run_date", "pk")
    )
    # Checked again under the lock: a claim that committed since makes the day its run's.
    for run_date in _running_dates(business_id, list(day_pks)):
        day_pks.pop(run_date, None)
    spans = spans_of((business_id, run_date) for run_date in day_pks)
    outcomes = outcomes_from_log(spans)
    cohorts = cohorts_from_log(spans)
    ResultsOutcome.objects.filter(day_id__in=day_pks.values()).delete()
    ResultsCohort.objects.filter(day_id__in=day_pks.values()).delete()
    ResultsOutcome.objects.bulk_create(
        ResultsOutcome(
            day_id=day_pks[row.run_date], channel=row.channel, status=row.status, rows=row.rows, delivered=row.delivered
        )
        for row in outcomes
    )
    ResultsCohort.objects.bulk_create(
        ResultsCohort(
            day_id=day_pks[row.run_date],
            measure=row.measure,
            previous_date=row.previous_date,
            customers=row.customers,
            step=row.step,
            variant=row.variant,
        )
        for row in cohorts
    )
    ResultsDay.objects.filter(pk__in=day_pks.values()).update(stale=False, refreshed_at=timezone.now())
    return len(day_pks)


def refresh_day_keys(keys: Iterable[DayKey]) -> int:
    """Refresh these (business, run date) days, business by business; returns the days refreshed."""
    by_business: dict[int, list[dt.date]] = defaultdict(list)
    for business_id, run_date in keys:
        by_business[business_id].append(run_date)
    refreshed = sum(refresh_days(business_id=pk, run_dates=dates) for pk, dates in by_business.items())
    if refreshed:
        logger.info("results days refreshed", extra={"businesses": len(by_business), "days": refreshed})
    return refreshed


def refresh_stale_days(*, business_ids: Iterable[int] | None = None) -> int:
    """Refresh every stale day (of these businesses); returns the days refreshed."""
    stale = ResultsDay.objects.filter(stale=True)
    if (final := final_before()) is not None:
        stale = stale.filter(run_date__gte=final)
    if business_ids is not None:
        stale = stale.filter(business_id__in=list(business_ids))
    return refresh_day_keys(stale.order_by("business_id", "run_date").values_list("business_id", "run_date"))


def rebuild_results(
    *, business_ids: Iterable[int] | None = None, date_from: dt.date | None = None, date_to: dt.date | None = None
) -> int:
    """Summarise again every day with log rows (or a summary) in the range, e.g. after rows were written or
    deleted outside the run, except the final days of a pruned log; returns the days refreshed."""
    logs = NotificationLog.objects.filter(type=AUTO)
    days = ResultsDay.objects.all()
    if business_ids is not None:
        business_ids = list(business_ids)
        logs = logs.filter(business_id__in=business_ids)
        days = days.filter(business_id__in=business_ids)
    final = final_before()
    if final is not None and (date_from is None or date_from < final):
        date_from = final  # earlier days are final: their log was pruned
    if date_from is not None:
        logs, days = logs.filter(run_date__gte=date_from), days.filter(run_date__gte=date_from)
    if date_to is not None:
        logs, days = logs.filter(run_date__lte=date_to), days.filter(run_date__lte=date_to)
    keys = set(logs.order_by().values_list("business_id", "run_date").distinct())
    keys |= set(days.values_list("business_id", "run_date"))
    refreshed = refresh_day_keys(keys)
    if connection.vendor == "postgresql":
        # Tables written in one go have no statistics until autovacuum gets to them; without them the planner
        # takes the summary for a few rows and picks plans that make the stats reads many times slower.
        with connection.cursor() as cursor:
            for model in (ResultsDay, ResultsOutcome, ResultsCohort):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    return refreshed
