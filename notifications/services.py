"""Writes to customers that the notification channels cause."""

import logging

from notifications.channels import Channel
from notifications.consent import OPT_OUT_FIELDS
from wallet.models import Customer

logger = logging.getLogger(__name__)


def customer_opt_out(*, customer_id: str, channel: str) -> bool:
    """Opt the customer out of `channel`; False when no such customer exists (e.g. deleted since). Idempotent."""
    field = OPT_OUT_FIELDS[Channel(channel)]
    updated = Customer.objects.filter(customer_id=customer_id).update(**{field: True})
    logger.info("customer opted out", extra={"customer_id": customer_id, "channel": channel, "found": bool(updated)})
    return bool(updated)
