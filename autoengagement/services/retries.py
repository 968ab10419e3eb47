"""Messages a run could not finish: retried on their own rows the same local day, or closed with a reason.

- A failed row the provider provably did not act on carries `next_attempt_at`; an invocation of the same local day
  that claims the business once that time has come sends it again (`retry_due_rows`), on the same row.
- A crash leaves rows `sending` (handed to a provider, outcome unknown) and rows `pending` (never touched):
  `recover_interrupted` marks the first `unknown`, never to be sent again; the second are sent by the run that
  resumes the day, or closed as failed when the day's send window has passed (`close_day`).

Only the rows of the config's last local run date can need either: every claim settles the previous date first.
Their reads go through the history index (business, type, created_at): the run's rows were written within a few
days of their local date, whatever the zone.
"""

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.delivery import ACTIVE_AGAIN, ChunkTally, Outgoing, RunContext, send_outgoing
from notifications import consent
from notifications.backends.base import ChannelBackend
from notifications.models import NotificationLog
from webhooks.events import EventType, FailureCode
from webhooks.services import subscriptions, write_events

logger = logging.getLogger(__name__)

Status = NotificationLog.Status

INTERRUPTED = (
    "interrupted while sending: a run stopped after handing this message to the provider; it may have been sent, "
    "so it is not sent again"
)
NOT_RESUMED = "not sent: the run that wrote it stopped and no run resumed it before the day's send window closed"
RETRIES_CLOSED = "no attempts left: the day's send window closed"
ROW_SPAN = dt.timedelta(days=3)

RETRY_FIELDS = (
    "pk",
    "notification_id",
    "channel",
    "status",
    "attempts",
    "header",
    "body",
    "html",
    "created_at",
    "customer_id",
    "customer__customer_id",
    "customer__email",
    "customer__phone",
    "customer__push_token",
    "customer__email_opt_out",
    "customer__sms_opt_out",
    "customer__push_opt_out",
    "customer__sms_undeliverable_phone",
    "customer__sms_undeliverable_reason",
    "customer__last_activity_at",
    "notification_id",
    "step",
    "variant",
)


def day_rows(*, business_id: int, run_date: dt.date) -> QuerySet[NotificationLog]:
    """The re-engagement rows of one business and local run date, read by the history index."""
    midnight = dt.datetime.combine(run_date, dt.time(), tzinfo=dt.UTC)
    return NotificationLog.objects.filter(
        business_id=business_id,
        type=NotificationLog.Type.AUTO_REENGAGEMENT,
        created_at__gte=midnight - ROW_SPAN,
        created_at__lt=midnight + ROW_SPAN,
        run_date=run_date,
    )


def recover_interrupted(*, config: AutoEngagementConfig) -> int:
    """After a crash: the rows its last window had in flight become `unknown` (never re-sent). Called in the claim's
    transaction, which marks the day stale first (the lock order: the day, then its log rows)."""
    if config.last_run_local_date is None:
        return 0
    results.mark_stale([(config.business_id, config.last_run_local_date)])
    return (
        day_rows(business_id=config.business_id, run_date=config.last_run_local_date)
        .filter(status=Status.SENDING)
        .update(status=Status.UNKNOWN, error=INTERRUPTED)
    )


def close_day(*, config: AutoEngagementConfig) -> int:
    """The config's last run date can no longer be sent to (a later day, or past its lateness bound): rows waiting
    for a retry become final failures, rows a dead run left pending fail as never resumed, rows it left sending are
    unknown."""
    if config.last_run_local_date is None:
        return 0
    results.mark_stale([(config.business_id, config.last_run_local_date)])
    rows = day_rows(business_id=config.business_id, run_date=config.last_run_local_date)
    _failed_events(config, rows)
    closed = rows.filter(status=Status.FAILED, next_attempt_at__isnull=False).update(next_attempt_at=None)
    closed += rows.filter(status=Status.SENDING).update(status=Status.UNKNOWN, error=INTERRUPTED)
    closed += rows.filter(status=Status.PENDING).update(status=Status.FAILED, error=NOT_RESUMED)
    if closed:
        logger.warning(
            "day closed with messages unsent",
            extra={
                "business_id": config.business.business_id,
                "config_id": config.config_id,
                "run_date": config.last_run_local_date.isoformat(),
                "rows": closed,
            },
        )
    return closed


def _failed_events(config: AutoEngagementConfig, rows: QuerySet[NotificationLog]) -> None:
    """message.failed for the rows close_day fails for good (in its transaction, before it updates them), when an
    endpoint of the business subscribes: rows waiting for a retry, and pending rows no run resumed."""
    subscribed = subscriptions(business_pk=config.business_id)
    if EventType.MESSAGE_FAILED not in subscribed:
        return
    closing = rows.filter(
        Q(status=Status.FAILED, next_attempt_at__isnull=False) | Q(status=Status.PENDING)
    ).values_list("notification_id", "customer__customer_id", "channel", "step", "variant", "status")
    data = [
        {
            "business_id": config.business.business_id,
            "notification_id": notification_id,
            "customer_id": customer_id,
            "channel": channel,
            "step": step,
            "variant": variant,
            "status": Status.FAILED.value,
            "run_date": config.last_run_local_date.isoformat(),
            "error_code": FailureCode.NOT_RESUMED if status == Status.PENDING else FailureCode.RETRIES_EXHAUSTED,
        }
        for notification_id, customer_id, channel, step, variant, status in closing
    ]
    write_events(
        subscribed=subscribed,
        business_pk=config.business_id,
        event_type=EventType.MESSAGE_FAILED,
        data=data,
        timestamp=timezone.now(),
    )


def next_retry_at(*, business_id: int, run_date: dt.date) -> dt.datetime | None:
    """The earliest `next_attempt_at` of the day's rows waiting for a retry."""
    waiting = day_rows(business_id=business_id, run_date=run_date).filter(
        status=Status.FAILED, next_attempt_at__isnull=False
    )
    return waiting.aggregate(first=Min("next_attempt_at"))["first"]


def retry_due_rows(
    context: RunContext,
    backend_for: Callable[[str], ChannelBackend],
    *,
    chunk_size: int,
    customers: tuple[int, int] | None = None,
) -> ChunkTally:
    """Send the day's rows that are due: `pending` rows a stopped run never sent, and failed rows whose next
    attempt has come (with `customers`, those of the customers in that inclusive key range: one part of a split
    business). A customer who visited since the row was written, or has since opted out or lost the address, is
    skipped instead (with the reason)."""
    tally = ChunkTally()
    due = day_rows(business_id=context.business.pk, run_date=context.run_date).filter(
        Q(status=Status.PENDING) | Q(status=Status.FAILED, next_attempt_at__lte=context.now)
    )
    if customers is not None:
        due = due.filter(customer_id__gte=customers[0], customer_id__lte=customers[1])
    last_pk = 0
    while True:
        rows = list(due.filter(pk__gt=last_pk).order_by("pk").values(*RETRY_FIELDS)[:chunk_size])
        if not rows:
            return tally
        last_pk = rows[-1]["pk"]
        outgoing, skipped = _split(rows)
        if skipped:
            _skip(skipped, tally)
        tally.notified += len(send_outgoing(context, outgoing, backend_for, tally))
        if len(rows) < chunk_size:
            return tally


def _split(rows: list[dict[str, Any]]) -> tuple[list[Outgoing], list[tuple[int, str]]]:
    outgoing, skipped = [], []
    for row in rows:
        customer = {name.removeprefix("customer__"): value for name, value in row.items()}
        customer["customer_id"] = row["customer__customer_id"]
        active_again = row["customer__last_activity_at"] and row["customer__last_activity_at"] > row["created_at"]
        reason = ACTIVE_AGAIN if active_again else consent.skip_reason(channel=row["channel"], customer=customer)
        if reason:
            skipped.append((row["pk"], reason))
            continue
        outgoing.append(
            Outgoing(
                pk=row["pk"],
                channel=row["channel"],
                customer_pk=row["customer_id"],
                status=row["status"],
                attempts=row["attempts"],
                recipient=consent.recipient_for(row["channel"], customer),
                header=row["header"],
                body=row["body"],
                customer_id=row["customer__customer_id"],
                html=row["html"],
                notification_id=row["notification_id"],
                step=row["step"],
                variant=row["variant"],
            )
        )
    return outgoing, skipped


def _skip(skipped: list[tuple[int, str]], tally: ChunkTally) -> None:
    by_reason: dict[str, list[int]] = {}
    for pk, reason in skipped:
        by_reason.setdefault(reason, []).append(pk)
    for reason, pks in by_reason.items():
        NotificationLog.objects.filter(pk__in=pks, status__in=(Status.PENDING, Status.FAILED)).update(
            status=Status.SKIPPED, error=reason, next_attempt_at=None
        )
        tally.skip(reason, len(pks))
