"""Delivery receipts: a device fetched the updated wallet pass, so the wallet message on it was delivered; a
Twilio StatusCallback or an email tracking event said an SMS or email was delivered, or was not.

The PassKit web service announces the fetch (wallet.signals.pass_fetched), the providers' webhooks announce their
receipts (notifications.signals.delivery_reported); this marks the log row and counts it in its day's results
summary. Both belong together, and in the project's lock order (the day first, then the log
row: autoengagement.services.results.lock_days), which is why this lives with the results summary rather than
with the log.
"""

import logging

from django.db import transaction
from django.utils import timezone

from autoengagement.services import results
from notifications import services as consent_services
from notifications.channels import Channel
from notifications.models import IN_FLIGHT_STATUSES, NotificationLog
from notifications.receipts import Receipt
from wallet.models import WalletPass

logger = logging.getLogger(__name__)


def record_delivery(*, wallet_pass: WalletPass) -> int:
    """The device fetched the updated pass: mark the newest sent, undelivered wallet log written before the update.

    A row still `sending` counts too: the device can fetch the pass within a second of the push, before the run has
    recorded the window's outcomes (that later update leaves delivered_at alone)."""
    if not wallet_pass.message_text:
        return 0
    newest = (
        NotificationLog.objects.filter(
            customer_id=wallet_pass.customer_id,
            channel=Channel.WALLET,
            status__in=[NotificationLog.Status.SENT, NotificationLog.Status.PENDING, NotificationLog.Status.SENDING],
            delivered_at__isnull=True,
            created_at__lte=wallet_pass.updated_at,
        )
        .order_by("-created_at", "-pk")
        .values_list("pk", "business_id", "run_date", "status")[:1]
    )
    if not newest:
        return 0
    pk, business_pk, run_date, status = newest[0]
    with transaction.atomic():  # the row and its day's results summary change together, the day locked first
        results.lock_days({(business_pk, run_date)})
        marked = NotificationLog.objects.filter(pk=pk, delivered_at__isnull=True).update(delivered_at=timezone.now())
        if marked:
            results.count_delivery(business_id=business_pk, run_date=run_date, status=status)
    if marked:
        logger.info("wallet message delivered", extra={"pass_id": wallet_pass.pass_id})
    return marked


# What a receipt may be about: a row the provider accepted, or is being handed right now (the run records the
# window's outcomes, provider ids included, after the whole window was sent).
RECEIPT_STATUSES = (NotificationLog.Status.SENT, *IN_FLIGHT_STATUSES)


def find_receipt_row(receipt: Receipt) -> NotificationLog | None:
    """The log row a receipt is about, or None. With our notification_id (Twilio's callback URL) the row must also
    carry the provider's message id, or none yet (its outcome not recorded): a signed callback for one message
    cannot touch another. Without it, the provider's message id alone (an email's, indexed)."""
    rows = NotificationLog.objects.filter(channel=receipt.channel, status__in=RECEIPT_STATUSES)
    if receipt.notification_id:
        row = rows.filter(notification_id=receipt.notification_id).first()
        if row is None or row.provider_message_id not in ("", receipt.provider_message_id):
            return None
        return row
    return rows.filter(provider_message_id=receipt.provider_message_id).order_by("-pk").first()


def record_receipt(*, receipt: Receipt) -> bool:
    """Apply a provider's receipt to its log row, the results summary and the customer's consent; returns whether
    the row was found (an unknown message changes nothing).

    Receipts arrive more than once and out of order, so each is applied as a merge that order cannot change:
    delivered sets delivered_at (once) and clears delivery_error; undelivered sets delivery_error unless a receipt
    already said delivered (a positive report wins over a failure: the message did reach the phone or mailbox); of
    two failures, the later one's reason is kept (either way the message did not arrive).
    Consent follows the receipt whether or not the row changed, but only while the customer still has the number or
    address the provider reported on (a changed phone is texted again)."""
    found = find_receipt_row(receipt)
    if found is None:
        logger.info("receipt for an unknown message", extra={"channel": receipt.channel, "outcome": receipt.outcome})
        return False
    with transaction.atomic():  # the day first, then the row (results.lock_days: the project's lock order)
        results.lock_days({(found.business_id, found.run_date)})
        row = NotificationLog.objects.select_for_update().get(pk=found.pk)
        reached_before = row.status == NotificationLog.Status.SENT and not row.delivery_error
        newly_delivered = False
        if receipt.outcome == "delivered":
            newly_delivered = row.delivered_at is None
            if newly_delivered or row.delivery_error:
                row.delivered_at = row.delivered_at or timezone.now()
                row.delivery_error = ""
                row.save(update_fields=["delivered_at", "delivery_error"])
        elif receipt.outcome == "undelivered" and row.delivered_at is None and row.delivery_error != receipt.error:
            row.delivery_error = receipt.error
            row.save(update_fields=["delivery_error"])
        if newly_delivered:
            results.count_delivery(
                business_id=row.business_id, run_date=row.run_date, status=row.status, channel=row.channel
            )
        reached_after = row.status == NotificationLog.Status.SENT and not row.delivery_error
        if reached_before != reached_after:
            results.count_reach_change(log=row)
        # A number another receipt says received the message is not marked undeliverable; opt-outs always apply.
        if receipt.consent == "opt_out" or (receipt.consent == "undeliverable" and row.delivered_at is None):
            _apply_consent(receipt, row)
    logger.info(
        "delivery receipt recorded",
        extra={
            "business_pk": row.business_id,
            "channel": row.channel,
            "outcome": receipt.outcome,
            "delivered": row.delivered_at is not None,
            "undelivered": bool(row.delivery_error),
        },
    )
    return True


def _apply_consent(receipt: Receipt, row: NotificationLog) -> None:
    if receipt.consent == "undeliverable":
        consent_services.mark_phone_undeliverable(
            customer_pk=row.customer_id, phone=receipt.recipient, reason=receipt.reason
        )
    elif receipt.consent == "opt_out":
        consent_services.opt_out_address(
            customer_pk=row.customer_id, channel=receipt.channel, address=receipt.recipient, reason=receipt.reason
        )
