"""Reactivation: which re-engagement a recorded visit is credited to (docs/results.md, "Reactivation").

A visit that ends a customer's inactivity spell is credited to the latest re-engagement of that spell (created
after the customer's previous visit, at or before this one) when it falls within the config's attribution_days
of it. The credit is stored on the re-engagement's log rows as `reactivated_at`, so the stats count it with an
aggregate and never read raw activity. Holdout rows are credited exactly like reached ones: that is what makes
the two groups comparable.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from django.utils import timezone

from autoengagement.services import results
from autoengagement.validation import ATTRIBUTION_DAYS_RANGE
from engagement_site.db import bulk_update_rows, in_values
from notifications.models import NotificationLog
from wallet.signals import Visit
from webhooks.events import EventType
from webhooks.services import subscriptions, write_events

logger = logging.getLogger(__name__)

Status = NotificationLog.Status

# Rows a visit can be credited to. `pending` too: a visit may land while the message is on its way, and the row
# turns `sent` afterwards. Skipped and failed rows keep their credit out of the stats anyway (reached = sent).
ATTRIBUTABLE_STATUSES = (Status.PENDING, Status.SENDING, Status.SENT, Status.HOLDOUT)
LONGEST_WINDOW = dt.timedelta(days=ATTRIBUTION_DAYS_RANGE[1])


class Candidate(NamedTuple):
    """A log row a visit may be credited to."""

    pk: int
    customer_pk: int
    config_pk: int
    created_at: dt.datetime
    attribution_days: int
    business_pk: int
    run_date: dt.date
    status: str
    step: int
    variant: str
    delivery_error: str


def attribute_visits(*, visits: Sequence[Visit]) -> int:
    """Credit each visit to its spell's latest re-engagement, if within attribution_days; returns rows credited.

    A fixed number of queries whatever the number of visits: one read of the candidate rows (this batch's
    customers, not yet credited, created in the longest possible window before the visits), the results
    summary's count of the credits (autoengagement.services.results.count_credits), one bulk UPDATE. The caller
    (wallet.services.record_visits, through its visits_recorded signal) holds the customers' rows locked, so
    `previous_activity_at` is the truth, and a transaction open, so the summary and the log change together.
    """
    if not visits:
        return 0
    by_customer: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in _candidates(visits):
        by_customer[candidate.customer_pk].append(candidate)
    credited = [(row, visit.occurred_at) for visit in visits for row in _credit(visit, by_customer)]
    rows: dict[results.Reengagement, set[results.CreditedRow]] = defaultdict(set)
    for row, _ in credited:
        key = results.Reengagement(row.business_pk, row.run_date, row.customer_pk)
        rows[key].add(results.CreditedRow(row.status, row.step, row.variant, bool(row.delivery_error)))
    results.count_credits(rows)
    bulk_update_rows(NotificationLog, ["reactivated_at"], [(row.pk, at) for row, at in credited])
    _reactivated_events(credited)
    if credited:
        logger.info("visits credited to re-engagements", extra={"visits": len(visits), "rows": len(credited)})
    return len(credited)


def _reactivated_events(credited: Sequence[tuple[Candidate, dt.datetime]]) -> None:
    """customer.reactivated, one per credited re-engagement (its channels' rows together), in the caller's
    transaction, for each business whose endpoints subscribe: a query per business credited (the visits of one call
    belong to one business), and two more when it subscribes (the rows' public ids, the outbox INSERT)."""
    by_business: dict[int, list[tuple[Candidate, dt.datetime]]] = defaultdict(list)
    for row, at in credited:
        by_business[row.business_pk].append((row, at))
    for business_pk, rows in by_business.items():
        subscribed = subscriptions(business_pk=business_pk)
        if EventType.CUSTOMER_REACTIVATED not in subscribed:
            continue
        public = {
            pk: rest
            for pk, *rest in NotificationLog.objects.filter(pk__in=[row.pk for row, _ in rows]).values_list(
                "pk", "notification_id", "customer__customer_id", "business__business_id", "config__config_id"
            )
        }
        events: dict[tuple[int, int, dt.datetime], dict[str, object]] = {}
        for row, at in rows:
            notification_id, customer_id, business_id, config_id = public[row.pk]
            event = events.setdefault(
                (row.customer_pk, row.config_pk, row.created_at),
                {
                    "business_id": business_id,
                    "customer_id": customer_id,
                    "config_id": config_id,
                    "run_date": row.run_date.isoformat(),
                    "step": row.step,
                    "variant": row.variant,
                    "group": "holdout" if row.status == Status.HOLDOUT else "reached",
                    "reactivated_at": at.astimezone(dt.UTC).isoformat(),
                    "notification_ids": [],
                },
            )
            event["notification_ids"].append(notification_id)
        write_events(
            subscribed=subscribed,
            business_pk=business_pk,
            event_type=EventType.CUSTOMER_REACTIVATED,
            data=list(events.values()),
            timestamp=timezone.now(),
        )


def _candidates(visits: Sequence[Visit]) -> list[Candidate]:
    earliest = min(visit.occurred_at for visit in visits) - LONGEST_WINDOW
    latest = max(visit.occurred_at for visit in visits)
    rows = NotificationLog.objects.filter(
        in_values(NotificationLog, "customer", list({visit.customer_pk for visit in visits})),
        type=NotificationLog.Type.AUTO_REENGAGEMENT,
        config__isnull=False,
        status__in=ATTRIBUTABLE_STATUSES,
        reactivated_at__isnull=True,
        created_at__gte=earliest,
        created_at__lte=latest,
    ).values_list(
        "pk",
        "customer_id",
        "config_id",
        "created_at",
        "config__attribution_days",
        "business_id",
        "run_date",
        "status",
        "step",
        "variant",
        "delivery_error",
    )
    return [Candidate(*row) for row in rows]


def _credit(visit: Visit, by_customer: dict[int, list[Candidate]]) -> list[Candidate]:
    """The rows this visit is credited to (every channel's row of its spell's latest re-engagement, if recent
    enough), taken out of `by_customer` so a later visit in the same batch cannot be credited to them again."""
    rows = by_customer.get(visit.customer_pk)
    if not rows:
        return []
    in_spell = [
        row
        for row in rows
        if row.created_at <= visit.occurred_at
        and (visit.previous_activity_at is None or row.created_at > visit.previous_activity_at)
    ]
    if not in_spell:
        return []
    latest = max(in_spell, key=lambda row: row.created_at)
    if visit.occurred_at - latest.created_at > dt.timedelta(days=latest.attribution_days):
        return []
    # Every channel's row of that re-engagement (one run writes them all with the same created_at).
    chosen = [row for row in in_spell if row.config_pk == latest.config_pk and row.created_at == latest.created_at]
    by_customer[visit.customer_pk] = [row for row in rows if row not in chosen]
    return chosen
