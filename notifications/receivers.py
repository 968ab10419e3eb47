"""Notifications' reactions to what the wallet app announces (wallet.signals), connected in
NotificationsConfig.ready(). Thin: each calls the service that owns the rule, in the sender's transaction."""

from typing import Any

from notifications.services import logs_anonymise
from wallet.models import Customer


def anonymise_erased_customer_logs(sender: type[Customer], *, customer_pk: int, **kwargs: Any) -> None:
    """The customer's personal data was erased: so are the messages rendered for them."""
    logs_anonymise(customer_pk=customer_pk)
