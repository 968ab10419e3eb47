"""Oracles the results tests share: the stats computed the obvious way from every log row, and the service's answer
in the same shape, so a test compares the two."""

import datetime as dt
from collections import defaultdict

from autoengagement.models import AutoEngagementConfig, CohortMeasure
from autoengagement.stats import engagement_stats
from notifications.models import NotificationLog

S = NotificationLog.Status


def reference_stats(business, date_from: dt.date, date_to: dt.date) -> dict:
    """The stats computed the obvious way, in Python, from every log row of the window."""
    rows = NotificationLog.objects.filter(run_date__gte=date_from, run_date__lte=date_to)
    if business is not None:
        rows = rows.filter(business=business)
    channels: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    groups: dict[str, set] = defaultdict(set)
    daily: dict[dt.date, list] = {
        date_from + dt.timedelta(days=n): [0, 0, set()] for n in range((date_to - date_from).days + 1)
    }
    delivered: dict[str, int] = defaultdict(int)
    variants: dict[tuple[int, str], tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for row in rows:
        channels[row.channel][row.status] += 1
        if row.channel == "wallet" or row.delivered_at is not None:
            delivered[row.channel] += row.delivered_at is not None
        person = (row.business_id, row.customer_id)
        if row.status == S.SENT:
            daily[row.run_date][0] += 1
        if row.status == S.SENT and not row.delivery_error:  # reached: sent, and no receipt said undelivered
            reached_by, back_by = variants[row.step, row.variant]
            reached_by.add(person)
            if row.reactivated_at:
                back_by.add(person)
            groups["reached"].add(person)
            if row.reactivated_at:
                groups["reached_back"].add(person)
                daily[row.run_date][2].add(person)
        elif row.status == S.FAILED:
            daily[row.run_date][1] += 1
        elif row.status == S.HOLDOUT:
            groups["holdout"].add(person)
            if row.reactivated_at:
                groups["holdout_back"].add(person)
    reported = _configs_with_steps(business) or any(key != (1, "") for key in variants)
    return {
        "channels": {channel: dict(statuses) for channel, statuses in channels.items()},
        "delivered": dict(delivered),
        "groups": {measure: len(groups[measure]) for measure in CohortMeasure.values},
        "daily": [(day, sent, failed, len(back)) for day, (sent, failed, back) in daily.items()],
        # Per (step, variant) reached by someone: customers reached by it and those of them whose row was credited;
        # reported when a config with steps is in view or someone was reached by a later step or a named variant.
        "steps": {key: (len(reached), len(back)) for key, (reached, back) in variants.items()} if reported else {},
        "steps_reported": reported,
    }


def _configs_with_steps(business) -> bool:
    configs = AutoEngagementConfig.objects.filter(steps__isnull=False)
    return configs.filter(business=business).exists() if business is not None else configs.exists()


def computed_stats(business, date_from: dt.date, date_to: dt.date) -> dict:
    result = engagement_stats(business=business, date_from=date_from, date_to=date_to)
    return {
        "channels": result.channels,
        "delivered": result.delivered,
        "groups": {
            "reached": result.reached,
            "holdout": result.holdout,
            "reached_back": result.reactivated["reached"],
            "holdout_back": result.reactivated["holdout"],
        },
        "daily": [(point.date, point.sent, point.failed, point.reactivated) for point in result.daily],
        "steps": {
            (step.step, variant.name): (variant.reached, variant.reactivated)
            for step in result.steps or ()
            for variant in step.variants
            if variant.reached
        },
        "steps_reported": result.steps is not None,
    }
