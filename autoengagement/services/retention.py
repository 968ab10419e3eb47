"""Retention for win-back's notification log: old rows deleted in bounded batches, the rows that still matter kept.

The log grows by one row per customer and channel on every run. Most old rows are history nobody reads, but some
are load-bearing, so a row is deleted only when all of these hold:

- it is older than the retention period: `--older-than DAYS`, raised to at least `STATS_WINDOW_DAYS` (the
  stats endpoint's longest range, 366 days, plus the longest attribution window a config may have, 90 days, plus
  two days for local dates): the results summary looks a customer's previous re-engagement up in the log, as far
  back as a stats range reaches, when a day is summarised and when a visit is credited up to 90 days later;
  the summaries of days older than that lookback allows become final (`LogRetention`), so every range the stats
  accept stays exact;
- it is not `pending` (a run may still be about to record what happened to it): notifications.retention;
- the once-per-spell rule no longer needs it: the audience leaves out a customer who already has a row of this
  config written since the start of the current inactivity spell (`coalesce(last_activity_at, created_at)`);
  deleting such a row would message that customer again. Rows from before the current spell, and rows whose
  config was deleted, no longer count for anyone.

Deleting walks the primary key in windows of `batch_size` ids, one short transaction and one DELETE per window
(notifications.retention.delete_logs_in_batches), so the database never holds a huge transaction, locks or undo
log, and replicas keep up.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce

from autoengagement.services import results
from autoengagement.stats import MAX_DAYS as STATS_MAX_DAYS
from autoengagement.validation import ATTRIBUTION_DAYS_RANGE
from notifications.models import LogRetention, NotificationLog
from notifications.retention import deletable_logs, delete_logs_in_batches

logger = logging.getLogger(__name__)

# Rows this recent are kept whatever --older-than says: a visit is credited up to the longest attribution window
# after its re-engagement, and counting it needs the customer's re-engagements as far back as the longest stats
# range reaches.
STATS_WINDOW_DAYS = STATS_MAX_DAYS + ATTRIBUTION_DAYS_RANGE[1] + 2
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class PruneResult:
    cutoff: dt.datetime
    retention_days: int
    deleted: int
    batches: int
    dry_run: bool


def effective_retention_days(*, older_than_days: int) -> int:
    return max(older_than_days, STATS_WINDOW_DAYS)


def prunable_logs(*, cutoff: dt.datetime) -> QuerySet[NotificationLog]:
    """Rows older than `cutoff` that neither a pending delivery nor the once-per-spell rule needs."""
    current_spell_start = Coalesce(F("customer__last_activity_at"), F("customer__created_at"))
    # Rows of the current spell keep the once-per-spell guard, whichever config (deleted or not) wrote them.
    still_counts = Q(created_at__gte=current_spell_start)
    return deletable_logs(cutoff=cutoff).exclude(still_counts)


@transaction.atomic
def _record_retention(cutoff: dt.datetime) -> None:
    """Remember how far the log is pruned, so the results summary stops recomputing days it can no longer."""
    current = LogRetention.objects.select_for_update().filter(pk=1).first()
    pruned_before = max(cutoff, current.pruned_before) if current else cutoff
    LogRetention.objects.update_or_create(
        pk=1,
        defaults={
            "pruned_before": pruned_before,
            "summaries_final_before": results.summaries_final_before(pruned_before),
        },
    )


def prune_notification_logs(
    *,
    older_than_days: int,
    now: dt.datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
) -> PruneResult:
    """Delete prunable rows window by window (`batch_size` primary keys each); with `dry_run`, only count them.

    Costs one query for the id range plus one DELETE per window, whatever the table's size.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    retention_days = effective_retention_days(older_than_days=older_than_days)
    cutoff = now - dt.timedelta(days=retention_days)
    candidates = prunable_logs(cutoff=cutoff)
    log_context = {"cutoff": cutoff.isoformat(), "retention_days": retention_days, "dry_run": dry_run}
    if dry_run:
        count = candidates.count()
        logger.info("notification logs that would be pruned", extra={**log_context, "count": count})
        return PruneResult(cutoff, retention_days, count, 0, True)

    # Re-evaluated per window: a visit recorded meanwhile protects its customer's rows again.
    deleted, batches = delete_logs_in_batches(logs=candidates, batch_size=batch_size)
    _record_retention(cutoff)
    logger.info("notification logs pruned", extra={**log_context, "deleted": deleted, "batches": batches})
    return PruneResult(cutoff, retention_days, deleted, batches, False)
