"""Writes to customers that the notification channels cause."""

import logging

from django.db.models import Case, F, Value, When

from notifications.channels import Channel
from notifications.consent import ADDRESS_FIELDS, OPT_OUT_FIELDS, UNDELIVERABLE_PHONE_FIELD, UNDELIVERABLE_REASON_FIELD
from notifications.models import NotificationLog
from wallet.models import Customer

logger = logging.getLogger(__name__)


def customer_opt_out(*, customer_id: str, channel: str) -> bool:
    """Opt the customer out of `channel`; False when no such customer exists (e.g. deleted since). Idempotent."""
    field = OPT_OUT_FIELDS[Channel(channel)]
    updated = Customer.objects.filter(customer_id=customer_id).update(**{field: True})
    logger.info("customer opted out", extra={"customer_id": customer_id, "channel": channel, "found": bool(updated)})
    return bool(updated)


def opt_out_address(*, customer_pk: int, channel: str, address: str = "", reason: str = "") -> bool:
    """A provider says the recipient refused (STOP, a hard bounce, a complaint): opt the customer out of `channel`,
    only while they still have `address` (when given), so a changed address is not opted out for the old one's
    sake. Returns whether the customer was changed. Idempotent."""
    channel = Channel(channel)
    customers = Customer.objects.filter(pk=customer_pk)
    if address:
        field = ADDRESS_FIELDS[channel]
        customers = customers.filter(**{f"{field}__iexact" if channel == Channel.EMAIL else field: address})
    updated = customers.update(**{OPT_OUT_FIELDS[channel]: True})
    logger.info(
        "customer opted out by a provider's receipt",
        extra={"customer_pk": customer_pk, "channel": channel, "reason": reason, "changed": bool(updated)},
    )
    return bool(updated)


def mark_phone_undeliverable(*, customer_pk: int, phone: str = "", reason: str = "") -> bool:
    """A receipt says this number cannot receive texts: the SMS channel skips the customer while their phone is still
    `phone` (default: whatever it is now). Returns whether the customer was changed."""
    customers = Customer.objects.filter(pk=customer_pk).exclude(phone="")
    if phone:
        customers = customers.filter(phone=phone)
    updated = customers.update(**{UNDELIVERABLE_PHONE_FIELD: F("phone"), UNDELIVERABLE_REASON_FIELD: reason[:200]})
    logger.info(
        "phone marked undeliverable", extra={"customer_pk": customer_pk, "reason": reason, "changed": bool(updated)}
    )
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
        delivery_error=Case(When(delivery_error="", then=Value("")), default=Value(ERASED_ERROR)),
    )
    logger.info("notification logs anonymised", extra={"customer_pk": customer_pk, "rows": count})
    return count
