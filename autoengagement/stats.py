"""Results of auto re-engagement (docs/results.md): did it bring customers back?

One read used by the stats API and the admin results pages. It reads the window's summarised days
(autoengagement/services/results.py: rows per channel and status, customer cohorts per measure) in three small
queries, and counts the stale days (a run in progress, say) from the log itself in two more: each day once, from
one source or the other, so the numbers match the log and the cost does not grow with it. Raw activity is never
read: visits were credited to their re-engagement (`reactivated_at`) when recorded.

The uplift is the reached group's reactivation rate minus the holdout group's, with a 95% interval for a
difference of two independent proportions by Newcombe's hybrid score method (method 10 in Newcombe R.G. 1998,
"Interval estimation for the difference between independent proportions: comparison of eleven methods",
Statistics in Medicine 17:873-890), built from the two groups' Wilson score intervals.
"""

import datetime as dt
import logging
import math
import zoneinfo
from dataclasses import dataclass, field
from itertools import chain

from django.db.models import Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from autoengagement.models import CohortMeasure, ResultsCohort, ResultsDay, ResultsOutcome
from autoengagement.services import results
from engagement_site.validation import timezone_errors
from notifications.channels import Channel
from notifications.models import LogRetention, NotificationLog
from wallet.models import Business

logger = logging.getLogger(__name__)

Status = NotificationLog.Status

Z_95 = 1.959963984540054  # the 97.5th percentile of the standard normal distribution
DEFAULT_DAYS = 30
MAX_DAYS = results.LONGEST_RANGE_DAYS
DECIMALS = 4


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class Uplift:
    estimate: float
    ci95_low: float
    ci95_high: float


@dataclass
class DailyPoint:
    date: dt.date
    sent: int = 0
    failed: int = 0
    reactivated: int = 0


@dataclass
class EngagementStats:
    date_from: dt.date
    date_to: dt.date
    timezone: str
    channels: dict[str, dict[str, int]]
    delivered: dict[str, int]
    reached: int
    holdout: int
    reactivated: dict[str, int]
    reactivation_rate: dict[str, float | None]
    uplift: Uplift | None
    daily: list[DailyPoint] = field(default_factory=list)


def wilson_interval(*, successes: int, trials: int, z: float = Z_95) -> Interval:
    """The Wilson score interval for a proportion (Newcombe's method 3): the p whose score test does not reject
    successes/trials. Never leaves 0..1 and behaves at 0 and n successes, unlike the Wald interval."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError("need 0 <= successes <= trials and trials > 0")
    z2 = z * z
    denominator = trials + z2
    centre = (successes + z2 / 2) / denominator
    half_width = z * math.sqrt(successes * (trials - successes) / trials + z2 / 4) / denominator
    return Interval(max(0.0, centre - half_width), min(1.0, centre + half_width))


def newcombe_interval(*, successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z_95) -> Uplift:
    """p1 - p2 with Newcombe's hybrid score interval (method 10): each side combines the distances from each
    proportion to the relevant end of its own Wilson interval, in quadrature."""
    p1, p2 = successes_1 / trials_1, successes_2 / trials_2
    first = wilson_interval(successes=successes_1, trials=trials_1, z=z)
    second = wilson_interval(successes=successes_2, trials=trials_2, z=z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - first.low) ** 2 + (second.high - p2) ** 2)
    high = difference + math.sqrt((first.high - p1) ** 2 + (p2 - second.low) ** 2)
    return Uplift(difference, max(-1.0, low), min(1.0, high))


def _shift(day: dt.date, days: int) -> dt.date:
    """`day` moved by `days`, clamped to the dates Python can hold."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def default_window(*, today: dt.date) -> tuple[dt.date, dt.date]:
    return _shift(today, -(DEFAULT_DAYS - 1)), today


def resolve_window(*, date_from: dt.date | None, date_to: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """Fill the missing ends: the last 30 days up to today by default; only date_to, the 30 days up to it; only
    date_from, up to today (at most MAX_DAYS days)."""
    if date_from is None and date_to is None:
        return default_window(today=today)
    if date_from is None:
        return _shift(date_to, -(DEFAULT_DAYS - 1)), date_to
    if date_to is None:
        return date_from, min(max(date_from, today), _shift(date_from, MAX_DAYS - 1))
    return date_from, date_to


def _zone_name(business: Business | None) -> str:
    if business is None:
        return "UTC"
    if timezone_errors(business.timezone):
        logger.warning("unknown business time zone; using UTC", extra={"business_id": business.business_id})
        return "UTC"
    return business.timezone


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, DECIMALS) if denominator else None


def engagement_stats(
    *,
    business: Business | None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    now: dt.datetime | None = None,
) -> EngagementStats:
    """The results of `business` (None: every business) for re-engagements run between two local dates,
    inclusive (default: the last 30 days up to today in the business's zone, UTC for every business).

    A re-engagement's date is its run_date, the business's local date of the run (docs/results.md).

    reached / holdout count distinct customers with a `sent` / `holdout` row in the window; reactivated counts
    those whose re-engagement was credited with a visit. The daily series is by the local day of the
    re-engagement: rows sent and failed that day, and the reached customers of that day who came back since.
    """
    zone_name = _zone_name(business)
    today = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(zone_name)).date()
    date_from, date_to = resolve_window(date_from=date_from, date_to=date_to, today=today)
    window = _SummaryWindow.of(business, date_from, date_to)
    daily = {
        date_from + dt.timedelta(days=offset): DailyPoint(date_from + dt.timedelta(days=offset))
        for offset in range((date_to - date_from).days + 1)
    }
    channels, delivered = _add_outcomes(window, daily)
    groups = _add_cohorts(window, daily, date_from)
    reached, holdout = groups[CohortMeasure.REACHED], groups[CohortMeasure.HOLDOUT]
    uplift = None
    if reached and holdout:
        exact = newcombe_interval(
            successes_1=groups[CohortMeasure.REACHED_BACK],
            trials_1=reached,
            successes_2=groups[CohortMeasure.HOLDOUT_BACK],
            trials_2=holdout,
        )
        uplift = Uplift(*(round(value, DECIMALS) for value in (exact.estimate, exact.ci95_low, exact.ci95_high)))
    return EngagementStats(
        date_from=date_from,
        date_to=date_to,
        timezone=zone_name,
        channels=channels,
        delivered=delivered,
        reached=reached,
        holdout=holdout,
        reactivated={"reached": groups[CohortMeasure.REACHED_BACK], "holdout": groups[CohortMeasure.HOLDOUT_BACK]},
        reactivation_rate={
            "reached": _rate(groups[CohortMeasure.REACHED_BACK], reached),
            "holdout": _rate(groups[CohortMeasure.HOLDOUT_BACK], holdout),
        },
        uplift=uplift,
        daily=list(daily.values()),
    )


@dataclass(frozen=True)
class _SummaryWindow:
    """The window's summary rows and its stale days: each day is counted once, from its summary or from the log.

    The days found stale here are counted from the log and left out of the summary reads, whatever refreshes or
    claims commit between the statements. A stale day is counted from the log unless the log was pruned too far for
    that (then its summary is final).
    """

    in_window: Q
    not_stale: Q
    stale_spans: list[results.DaySpan]

    @classmethod
    def of(cls, business: Business | None, date_from: dt.date, date_to: dt.date) -> "_SummaryWindow":
        days = ResultsDay.objects.filter(run_date__gte=date_from, run_date__lte=date_to)
        if business is not None:
            days = days.filter(business=business)
        final = Coalesce(
            Subquery(LogRetention.objects.filter(pk=1).values("summaries_final_before")), Value(dt.date.min)
        )
        stale = list(days.filter(stale=True, run_date__gte=final).values_list("pk", "business_id", "run_date"))
        # A plain join from the summary rows to their day (index range on the day, then each day's rows by index):
        # a good plan whatever the planner's statistics say, even on tables just written.
        in_window = Q(day__run_date__gte=date_from, day__run_date__lte=date_to)
        if business is not None:
            in_window &= Q(day__business=business)
        return cls(
            in_window=in_window,
            not_stale=~Q(day_id__in=[pk for pk, _, _ in stale]) if stale else Q(),
            stale_spans=results.spans_of((business_id, run_date) for _, business_id, run_date in stale),
        )


def _add_outcomes(
    window: _SummaryWindow, daily: dict[dt.date, DailyPoint]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Rows per day, channel and status: the per-channel outcomes, the wallet deliveries, the daily sent / failed."""
    channels: dict[str, dict[str, int]] = {}
    delivered: dict[str, int] = {}
    outcomes = chain(
        ResultsOutcome.objects.filter(window.in_window, window.not_stale)
        .values_list("day__run_date", "channel", "status")
        .annotate(rows=Sum("rows"), delivered=Sum("delivered"))
        .order_by(),
        (
            (row.run_date, row.channel, row.status, row.rows, row.delivered)
            for row in results.outcomes_from_log(window.stale_spans)
        ),
    )
    for day, channel, status, count, delivered_count in outcomes:
        per_channel = channels.setdefault(channel, {})
        per_channel[status] = per_channel.get(status, 0) + count
        if channel == Channel.WALLET:
            delivered[channel] = delivered.get(channel, 0) + delivered_count
        point = daily.get(day)
        if point is not None and status == Status.SENT:
            point.sent += count
        elif point is not None and status == Status.FAILED:
            point.failed += count
    return channels, delivered


def _add_cohorts(window: _SummaryWindow, daily: dict[dt.date, DailyPoint], date_from: dt.date) -> dict[str, int]:
    """Distinct customers per measure: each customer counts on their first day of the window, i.e. in the cohorts
    whose previous day is before it. The daily reactivated counts every cohort of its day."""
    first_in_window = Q(previous_date__isnull=True) | Q(previous_date__lt=date_from)
    cohorts = chain(
        ResultsCohort.objects.filter(window.in_window, window.not_stale)
        .values_list("day__run_date", "measure")
        .annotate(first=Sum("customers", filter=first_in_window, default=0), every=Sum("customers"))
        .order_by(),
        (
            (
                row.run_date,
                row.measure,
                row.customers if row.previous_date is None or row.previous_date < date_from else 0,
                row.customers,
            )
            for row in results.cohorts_from_log(window.stale_spans)
        ),
    )
    groups = dict.fromkeys(CohortMeasure.values, 0)
    for day, measure, first, every in cohorts:
        groups[measure] += first
        if measure == CohortMeasure.REACHED_BACK and day in daily:
            daily[day].reactivated += every
    return groups
