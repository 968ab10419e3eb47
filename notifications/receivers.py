"""Notifications' reactions to other libraries' signals and to what the wallet app announces (wallet.signals),
connected in NotificationsConfig.ready(). Thin: each calls the service that owns the rule, in the sender's
transaction."""

from typing import Any

from notifications.receipts import Receipt, anymail_receipt
from notifications.services import logs_anonymise
from notifications.signals import delivery_reported
from wallet.models import Customer


def report_anymail_tracking(sender: Any, *, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    """An ESP's tracking webhook (through anymail) reported on an email: announce it as a delivery receipt."""
    receipt = anymail_receipt(event)
    if receipt is not None:
        delivery_reported.send(sender=Receipt, receipt=receipt)


def anonymise_erased_customer_logs(sender: type[Customer], *, customer_pk: int, **kwargs: Any) -> None:
    """The customer's personal data was erased: so are the messages rendered for them."""
    logs_anonymise(customer_pk=customer_pk)
