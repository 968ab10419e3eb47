"""Writes to customers that the notification channels cause."""

import logging

from django.db.models import Case, Value, When

from notifications.channels import Channel
from notifications.consent import OPT_OUT_FIELDS
from notifications.models import NotificationLog
from wallet.models import Customer

logger = logging.getLogger(__name__)


def customer_opt_out(*, customer_id: str, channel: str) -> bool:
    """Opt the customer out of `channel`; False when no such customer exists (e.g. deleted since). Idempotent."""
    field = OPT_OUT_FIELDS[Channel(channel)]
    updated = Customer.objects.filter(customer_id=customer_id).update(**{field: True})
    logger.info("customer opted out", extra={"customer_id": customer_id, "channel": channel, "found": bool(updated)})
    return bool(updated)


# What an anonymised row's `error` says instead of its text, which may quote an address or a provider's message.
ERASED_ERROR = "(erased with the customer's personal data)"


def logs_anonymise(*, customer_pk: int) -> int:
    """Empty the rendered messages (header, body, HTML) and the error text of the customer's log rows, in one
    UPDATE whatever their number; returns how many rows. The rows themselves stay, with their channel, status and
    times, so history counts and the results stay exact."""
    count = NotificationLog.objects.filter(customer_id=customer_pk).update(
        header="",
        body="",
        html="",
        error=Case(When(error="", then=Value("")), default=Value(ERASED_ERROR)),
    )
    logger.info("notification logs anonymised", extra={"customer_pk": customer_pk, "rows": count})
    return count
