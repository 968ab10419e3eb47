"""Delivery receipts: a device fetched the updated wallet pass, so the wallet message on it was delivered.

The PassKit web service announces the fetch (wallet.signals.pass_fetched); this marks the log row and counts it in
its day's results summary. Both belong together, and in the project's lock order (the day first, then the log
row: autoengagement.services.results.lock_days), which is why this lives with the results summary rather than
with the log.
"""

import logging

from django.db import transaction
from django.utils import timezone

from autoengagement.services import results
from notifications.channels import Channel
from notifications.models import NotificationLog
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
