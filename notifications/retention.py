"""Deleting old notification log rows: in bounded batches, and never a row a delivery may still be writing.

Which old rows a feature still needs, and how long its results need them, is that feature's rule: win-back's is
autoengagement.services.retention (and its `prune_notification_logs` command), built on these two functions.
"""

import datetime as dt

from django.db import transaction
from django.db.models import Max, Min, QuerySet

from notifications.models import IN_FLIGHT_STATUSES, NotificationLog


def deletable_logs(*, cutoff: dt.datetime) -> QuerySet[NotificationLog]:
    """Rows older than `cutoff` that no delivery needs any more: not `pending` or `sending` (a run may still be
    about to record what happened to it) and not waiting for a retry."""
    return (
        NotificationLog.objects.filter(created_at__lt=cutoff)
        .exclude(status__in=IN_FLIGHT_STATUSES)
        .exclude(next_attempt_at__isnull=False)
    )


def delete_logs_in_batches(*, logs: QuerySet[NotificationLog], batch_size: int) -> tuple[int, int]:
    """Delete `logs` window by window (`batch_size` primary keys each); returns (rows deleted, windows).

    One query for the id range plus one short transaction and one DELETE per window, whatever the table's size, so
    the database never holds a huge transaction, locks or undo log, and replicas keep up. The queryset is
    re-evaluated per window: a row that stopped qualifying meanwhile is kept."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    bounds = logs.aggregate(low=Min("pk"), high=Max("pk"))
    deleted = batches = 0
    if bounds["low"] is not None:
        for start in range(bounds["low"], bounds["high"] + 1, batch_size):
            with transaction.atomic():
                count, _ = logs.filter(pk__gte=start, pk__lt=start + batch_size).delete()
            deleted += count
            batches += 1
    return deleted, batches
