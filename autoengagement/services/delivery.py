"""One chunk of a business's audience, delivered with the two-write protocol.

1. One INSERT writes every log row: `pending` for messages to send, final `skipped` / `holdout` rows for the rest.
   The unique (config, customer, channel, run_date) constraint turns a second attempt into a no-op.
2. The INSERT returns the rows it wrote (a conflicting row is not among them); one indexed SELECT finds the
   chunk's customers who visited since the claim, whose rows are cancelled as "active again", never sent.
3. The channel backends send, outside any transaction.
4. One UPDATE per 1,000 rows records each outcome.
A crash between 1 and 4 leaves rows pending; the next run that claims the config marks them failed as
interrupted and never sends them again (a duplicate is worse than a gap the log explains).
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.audience import in_holdout
from autoengagement.templating import render
from engagement_site.db import bulk_insert_rows, bulk_update_rows
from engagement_site.secure_ids import IdKind, make_ids
from notifications import consent
from notifications.backends.base import ChannelBackend, Message, Result
from notifications.channels import Channel
from notifications.models import NotificationLog
from wallet.models import Business, Customer

logger = logging.getLogger(__name__)

ACTIVE_AGAIN = "active again"
INTERRUPTED = "interrupted: a previous run stopped before recording the outcome; not re-sent to avoid a duplicate"
NO_RESULT = "the channel backend returned no result for this message"
CONSENT_REVOKED = consent.PROVIDER_REVOKED
FIRST_NAME_FALLBACK = "there"

Status = NotificationLog.Status

# channel -> (customer field, value) applied when a provider says the recipient revoked consent
REVOCATIONS: dict[str, tuple[str, object]] = {
    Channel.EMAIL: ("email_opt_out", True),
    Channel.SMS: ("sms_opt_out", True),
    Channel.PUSH: ("push_token", ""),
}


@dataclass(kw_only=True)
class ChunkTally:
    """Counts of one chunk, or summed over a business's run: customers, and log rows by outcome."""

    audience: int = 0
    notified: int = 0
    holdout: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + count

    def add(self, other: "ChunkTally") -> None:
        for name in ("audience", "notified", "holdout", "sent", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.skip_reasons.items():
            self.skip(reason, count)


class PlannedLog(NamedTuple):
    """A NotificationLog row to insert, as a plain tuple (tens of thousands are built per second)."""

    notification_id: str
    business_id: int
    customer_id: int
    config_id: int
    type: str
    channel: str
    status: str
    header: str
    body: str
    error: str
    provider_message_id: str
    run_date: dt.date
    created_at: dt.datetime


LOG_FIELDS = PlannedLog._fields


@dataclass(frozen=True)
class RunContext:
    config: AutoEngagementConfig
    business: Business
    now: dt.datetime
    run_date: dt.date
    template: dict[str, str]


def render_for(context: RunContext, member: dict[str, Any]) -> tuple[str, str]:
    values = {
        "first_name": member["first_name"] or FIRST_NAME_FALLBACK,
        "business_name": context.business.name,
        "days_inactive": max((context.now - member["quiet_since"]).days, 0),
    }
    return render(context.template["header"], values), render(context.template["body"], values)


def _skip_reason(channel: str, member: dict[str, Any]) -> str | None:
    if channel == Channel.WALLET and not member["has_wallet_pass"]:
        return consent.NO_PASS
    return consent.skip_reason(channel=channel, customer=member)


def plan_chunk(context: RunContext, members: Sequence[dict[str, Any]]) -> tuple[list[PlannedLog], ChunkTally]:
    """The log rows for a chunk: what would be sent, skipped (and why) or held out. Writes nothing."""
    config = context.config
    tally = ChunkTally(audience=len(members))
    rows: list[PlannedLog] = []
    ids = iter(make_ids(IdKind.NOTIFICATION, len(members) * len(config.channels)))
    for member in members:
        holdout = in_holdout(
            config_id=config.config_id,
            customer_id=member["customer_id"],
            spell_start=member["quiet_since"],
            holdout_percent=config.holdout_percent,
        )
        header, body = ("", "") if holdout else render_for(context, member)
        tally.holdout += holdout
        for channel in config.channels:
            reason = None if holdout else _skip_reason(channel, member)
            if holdout:
                status = Status.HOLDOUT
            elif reason:
                status = Status.SKIPPED
                tally.skip(reason)
            else:
                status = Status.PENDING
            rows.append(
                PlannedLog(
                    next(ids),
                    config.business_id,
                    member["pk"],
                    config.pk,
                    NotificationLog.Type.AUTO_REENGAGEMENT.value,
                    channel,
                    status.value,
                    header,
                    body,
                    reason or "",
                    "",
                    context.run_date,
                    context.now,
                )
            )
    return rows, tally


def deliver_chunk(
    context: RunContext,
    members: Sequence[dict[str, Any]],
    backend_for: Callable[[str], ChannelBackend],
) -> ChunkTally:
    rows, tally = plan_chunk(context, members)
    inserted = bulk_insert_rows(NotificationLog, LOG_FIELDS, rows, returning=("pk", "notification_id"))

    # Customers who visited since the claim get nothing: checked once for the whole chunk, right before sending.
    active_again = set(
        Customer.objects.filter(
            business_id=context.config.business_id,
            pk__range=(members[0]["pk"], members[-1]["pk"]),
            last_activity_at__gt=context.now,
        ).values_list("pk", flat=True)
    )
    pending = {row.notification_id: row for row in rows if row.status == Status.PENDING}
    members_by_pk = {member["pk"]: member for member in members}
    to_send: dict[str, list[tuple[int, PlannedLog]]] = defaultdict(list)
    cancelled: list[int] = []
    for pk, notification_id in inserted:
        row = pending.get(notification_id)
        if row is None:
            continue
        if row.customer_id in active_again:
            cancelled.append(pk)
        else:
            to_send[row.channel].append((pk, row))
    if cancelled:
        NotificationLog.objects.filter(pk__in=cancelled).update(status=Status.SKIPPED, error=ACTIVE_AGAIN)
        tally.skip(ACTIVE_AGAIN, len(cancelled))

    outcomes: list[tuple[int, str, str, str, dt.datetime | None]] = []
    notified_customers: set[int] = set()
    revoked: dict[str, list[int]] = defaultdict(list)
    channels = list(to_send)
    for position, channel in enumerate(channels):
        batch = to_send[channel]
        customer_of = {pk: row.customer_id for pk, row in batch}
        try:
            results = backend_for(channel).send_batch(
                [
                    Message(
                        log_id=pk,
                        recipient=consent.recipient_for(channel, members_by_pk[row.customer_id]),
                        header=row.header,
                        body=row.body,
                        customer_id=members_by_pk[row.customer_id]["customer_id"],
                        business_id=context.business.business_id,
                        business_name=context.business.name,
                        extra={"run_date": context.run_date.isoformat()},
                    )
                    for pk, row in batch
                ]
            )
        except Exception as exc:
            # Whether any of this batch went out is unknown: record it failed, never leave it pending or resend it.
            error = f"{type(exc).__name__}: {exc}"
            outcomes.extend((pk, Status.FAILED, error, "", None) for pk in customer_of)
            outcomes.extend(
                (pk, Status.FAILED, f"not attempted: the {channel} backend failed ({error})", "", None)
                for later in channels[position + 1 :]
                for pk, _ in to_send[later]
            )
            bulk_update_rows(NotificationLog, ["status", "error", "provider_message_id", "sent_at"], outcomes)
            raise
        by_log = {result.log_id: result for result in results}
        for pk in customer_of:
            result = by_log.get(pk) or Result(log_id=pk, status="failed", error=NO_RESULT)
            sent = result.status == Status.SENT
            error = f"{CONSENT_REVOKED}: {result.error}" if result.revoked and not sent else result.error
            outcomes.append((pk, result.status, error, result.provider_message_id, context.now if sent else None))
            if sent:
                notified_customers.add(customer_of[pk])
                tally.sent += 1
            elif result.status == Status.FAILED:
                tally.failed += 1
            else:
                tally.skip(result.error or "skipped by provider")
            if result.revoked and channel in REVOCATIONS:
                revoked[channel].append(customer_of[pk])

    bulk_update_rows(NotificationLog, ["status", "error", "provider_message_id", "sent_at"], outcomes)
    for channel, customer_pks in revoked.items():
        field_name, value = REVOCATIONS[channel]
        Customer.objects.filter(pk__in=customer_pks).update(**{field_name: value})
        logger.info(
            "consent revoked by provider",
            extra={"business_id": context.business.business_id, "channel": channel, "customers": len(customer_pks)},
        )
    tally.notified = len(notified_customers)
    return tally


def fail_interrupted(*, config: AutoEngagementConfig) -> int:
    """Close the rows a crashed run left pending: failed, with why, and never sent again.

    Called when claiming a config whose last run never finished, before its local date moves on: every claim
    cleans up after the previous one, so only that run's date can hold pending rows. (No index on status: an
    indexed status would stop PostgreSQL from updating rows in place, and recovery is rare.)"""
    if config.last_run_local_date is not None:
        # Whatever the crash left, its day's summary may be behind: counted from the log until refreshed. Marked
        # first, in the claim's transaction, as the lock order wants (the day, then its log rows).
        results.mark_stale([(config.business_id, config.last_run_local_date)])
    return NotificationLog.objects.filter(
        config_id=config.pk, run_date=config.last_run_local_date, status=Status.PENDING
    ).update(status=Status.FAILED, error=INTERRUPTED)
