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

Results per journey step and variant (`steps`) come from the same cohort reads: the customers each step's variant
reached and those of them who came back, each variant compared with the holdout group and with its step's first
variant by the same method (docs/results.md, "Results per step and variant").
"""

import datetime as dt
import json
import logging
import math
import zoneinfo
from dataclasses import dataclass, field
from itertools import chain

from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from autoengagement.models import (
    EVERY_STEP,
    AutoEngagementConfig,
    CohortMeasure,
    ResultsCohort,
    ResultsDay,
    ResultsOutcome,
)
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


@dataclass(frozen=True)
class VariantResult:
    """One variant of a journey step: the customers it reached (a `sent` row of it) and those of them whose
    re-engagement by it was credited with a visit; its rate against the holdout group's (`uplift`) and against its
    step's first variant (`vs_first`, None for the first), each None while a side is empty."""

    name: str
    reached: int
    reactivated: int
    rate: float | None
    uplift: Uplift | None
    vs_first: Uplift | None


@dataclass(frozen=True)
class StepResult:
    step: int
    variants: list[VariantResult]


# Said in every stats answer, so a reader of the numbers knows what "reached" means since receipts exist.
REACHED_DEFINITION = (
    "reached counts distinct customers with at least one message sent and not reported undelivered by a delivery "
    "receipt (Twilio status callbacks, email bounces); a customer whose every sent message was reported "
    "undelivered is not reached"
)


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
    # Per journey step and variant; None (left out of the JSON) while there are no journeys to report: the config
    # has no steps and nobody in the window was reached by a step after the first or a named variant.
    steps: list[StepResult] | None = None
    reached_definition: str = REACHED_DEFINITION


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

    reached / holdout count distinct customers with a `sent` row no receipt reported undelivered / a `holdout` row
    in the window; reactivated counts
    those whose re-engagement was credited with a visit. The daily series is by the local day of the
    re-engagement: rows sent and failed that day, and the reached customers of that day who came back since.
    `steps` gives the same per journey step and variant (see `_steps`), or None while there is none to report.
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
    groups, variants = _add_cohorts(window, daily, date_from)
    reached, holdout = groups[CohortMeasure.REACHED], groups[CohortMeasure.HOLDOUT]
    holdout_back = groups[CohortMeasure.HOLDOUT_BACK]
    return EngagementStats(
        date_from=date_from,
        date_to=date_to,
        timezone=zone_name,
        channels=channels,
        delivered=delivered,
        reached=reached,
        holdout=holdout,
        reactivated={"reached": groups[CohortMeasure.REACHED_BACK], "holdout": holdout_back},
        reactivation_rate={
            "reached": _rate(groups[CohortMeasure.REACHED_BACK], reached),
            "holdout": _rate(holdout_back, holdout),
        },
        uplift=_difference(groups[CohortMeasure.REACHED_BACK], reached, holdout_back, holdout),
        daily=list(daily.values()),
        steps=_steps(variants, window.journey, holdout=(holdout_back, holdout))
        if window.has_journeys(variants)
        else None,
    )


def _difference(successes_1: int, trials_1: int, successes_2: int, trials_2: int) -> Uplift | None:
    """The first rate minus the second with its 95% interval (Newcombe's method 10), rounded; None while a side
    is empty."""
    if not trials_1 or not trials_2:
        return None
    exact = newcombe_interval(successes_1=successes_1, trials_1=trials_1, successes_2=successes_2, trials_2=trials_2)
    return Uplift(*(round(value, DECIMALS) for value in (exact.estimate, exact.ci95_low, exact.ci95_high)))


# (step, variant name) -> [customers reached, of whom came back]
VariantCounts = dict[tuple[int, str], list[int]]
# The variant names of each step of a config's journey, in the config's order ("" for a step without variants).
Journey = tuple[tuple[str, ...], ...]


def journey_of(steps: object) -> Journey | None:
    """The variant names of each step of a config's `steps` (None: a config without steps)."""
    if not isinstance(steps, list) or not steps:
        return None
    return tuple(
        tuple(variant["name"] for variant in step.get("variants") or ()) or ("",)
        for step in steps
        if isinstance(step, dict)
    )


def _steps(variants: VariantCounts, journey: Journey | None, *, holdout: tuple[int, int]) -> list[StepResult]:
    """Each step's variants in order, compared with the holdout group and their step's first variant.

    With a journey (the business's config has steps): every step of it and its variants in the config's order, even
    those nobody was reached by in the window; then any other step and variant the window's customers were reached
    by (a journey edited since), variants by name after the config's, steps by number. Without one: the steps and
    variants the window's customers were reached by, variants by name ("" first)."""
    order: dict[int, list[str]] = {}
    for number, names in enumerate(journey or (), start=1):
        order[number] = list(names)
    for step, name in sorted(variants):
        names = order.setdefault(step, [])
        if name not in names:
            names.append(name)
    holdout_back, holdout_reached = holdout
    result = []
    for step in sorted(order):
        first_back, first_reached = None, 0
        rows = []
        for name in order[step]:
            reached, back = variants.get((step, name), (0, 0))
            if not rows:
                first_back, first_reached = back, reached
            rows.append(
                VariantResult(
                    name=name,
                    reached=reached,
                    reactivated=back,
                    rate=_rate(back, reached),
                    uplift=_difference(back, reached, holdout_back, holdout_reached),
                    vs_first=_difference(back, reached, first_back, first_reached) if rows else None,
                )
            )
        result.append(StepResult(step=step, variants=rows))
    return result


def best_variant(step: StepResult) -> str | None:
    """The variant of this step to call best, if the data say so: the one with the highest rate, alone at the top,
    when its interval against the step's first variant excludes zero (or, if it is the first, when every other
    variant's interval against it lies below zero)."""
    rated = [variant for variant in step.variants if variant.rate is not None]
    if len(rated) < 2:
        return None
    top = max(variant.rate for variant in rated)
    leaders = [variant for variant in rated if variant.rate == top]
    if len(leaders) != 1:
        return None
    (leader,) = leaders
    if leader is step.variants[0]:
        others = step.variants[1:]
        return leader.name if all(v.vs_first is not None and v.vs_first.ci95_high < 0 for v in others) else None
    return leader.name if leader.vs_first is not None and leader.vs_first.ci95_low > 0 else None


@dataclass(frozen=True)
class _SummaryWindow:
    """The window's summary rows and its stale days: each day is counted once, from its summary or from the log.

    The days found stale here are counted from the log and left out of the summary reads, whatever refreshes or
    claims commit between the statements. A stale day is counted from the log unless the log was pruned too far for
    that (then its summary is final). Read in the same statement: the business's journey (its config's steps), or
    for every business whether any config has steps.
    """

    in_window: Q
    not_stale: Q
    stale_spans: list[results.DaySpan]
    journey: Journey | None
    any_journey: bool

    @classmethod
    def of(cls, business: Business | None, date_from: dt.date, date_to: dt.date) -> "_SummaryWindow":
        quote = connection.ops.quote_name
        day, config = quote(ResultsDay._meta.db_table), quote(AutoEngagementConfig._meta.db_table)
        retention = quote(LogRetention._meta.db_table)
        adapt_date = connection.ops.adapt_datefield_value
        if business is None:
            exists = f"SELECT 1 FROM {config} c WHERE c.steps IS NOT NULL"
            journey_sql, journey_params = f"SELECT CASE WHEN EXISTS ({exists}) THEN 1 ELSE 0 END", []
        else:
            journey_sql, journey_params = f"SELECT c.steps FROM {config} c WHERE c.business_id = %s", [business.pk]
        of_business, business_params = ("AND d.business_id = %s", [business.pk]) if business is not None else ("", [])
        # One row at least (the journey), then one per stale day of the window that the log can still recount.
        sql = f"""
            SELECT ({journey_sql}), d.id, d.business_id, d.run_date
            FROM (SELECT 1 AS one) one
            LEFT JOIN {day} d ON d.stale = %s {of_business} AND d.run_date >= %s AND d.run_date <= %s
                AND d.run_date >= COALESCE((SELECT r.summaries_final_before FROM {retention} r WHERE r.id = 1), %s)
        """
        params = [*journey_params, True, *business_params, adapt_date(date_from), adapt_date(date_to)]
        params.append(adapt_date(dt.date.min))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        journey_value = fetched[0][0]
        stale = [(pk, business_id, results._as_date(run_date)) for _, pk, business_id, run_date in fetched if pk]
        # A plain join from the summary rows to their day (index range on the day, then each day's rows by index):
        # a good plan whatever the planner's statistics say, even on tables just written.
        in_window = Q(day__run_date__gte=date_from, day__run_date__lte=date_to)
        if business is not None:
            in_window &= Q(day__business=business)
            journey = journey_of(json.loads(journey_value) if isinstance(journey_value, str) else journey_value)
        else:
            journey = None
        return cls(
            in_window=in_window,
            not_stale=~Q(day_id__in=[pk for pk, _, _ in stale]) if stale else Q(),
            stale_spans=results.spans_of((business_id, run_date) for _, business_id, run_date in stale),
            journey=journey,
            any_journey=journey is not None if business is not None else bool(journey_value),
        )

    def has_journeys(self, variants: VariantCounts) -> bool:
        """Whether the stats report steps: a config with steps, or a customer of the window reached by a step
        after the first or a named variant."""
        return self.any_journey or any(key != (1, "") for key in variants)


def _add_outcomes(
    window: _SummaryWindow, daily: dict[dt.date, DailyPoint]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Rows per day, channel and status: the per-channel outcomes, the deliveries receipts reported (wallet whenever
    it has rows, other channels once any was reported), the daily sent / failed."""
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
        if channel == Channel.WALLET or delivered_count:
            delivered[channel] = delivered.get(channel, 0) + delivered_count
        point = daily.get(day)
        if point is not None and status == Status.SENT:
            point.sent += count
        elif point is not None and status == Status.FAILED:
            point.failed += count
    return channels, delivered


def _add_cohorts(
    window: _SummaryWindow, daily: dict[dt.date, DailyPoint], date_from: dt.date
) -> tuple[dict[str, int], VariantCounts]:
    """Distinct customers per measure: each customer counts on their first day of the window, i.e. in the cohorts
    whose previous day is before it. The daily reactivated counts every cohort of its day. The cohorts of a journey
    step and variant (step > 0) give, the same way, the customers each variant reached and those who came back."""
    first_in_window = Q(previous_date__isnull=True) | Q(previous_date__lt=date_from)
    cohorts = chain(
        ResultsCohort.objects.filter(window.in_window, window.not_stale)
        .values_list("day__run_date", "measure", "step", "variant")
        .annotate(first=Sum("customers", filter=first_in_window, default=0), every=Sum("customers"))
        .order_by(),
        (
            (
                row.run_date,
                row.measure,
                row.step,
                row.variant,
                row.customers if row.previous_date is None or row.previous_date < date_from else 0,
                row.customers,
            )
            for row in results.cohorts_from_log(window.stale_spans)
        ),
    )
    groups = dict.fromkeys(CohortMeasure.values, 0)
    variants: VariantCounts = {}
    for day, measure, step, variant, first, every in cohorts:
        if step != EVERY_STEP:
            counts = variants.setdefault((step, variant), [0, 0])
            counts[measure == CohortMeasure.REACHED_BACK] += first
            continue
        groups[measure] += first
        if measure == CohortMeasure.REACHED_BACK and day in daily:
            daily[day].reactivated += every
    return groups, variants
