"""Notifications' reactions to other libraries' signals, connected in NotificationsConfig.ready()."""

from typing import Any

from notifications.receipts import Receipt, anymail_receipt
from notifications.signals import delivery_reported


def report_anymail_tracking(sender: Any, *, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    """An ESP's tracking webhook (through anymail) reported on an email: announce it as a delivery receipt."""
    receipt = anymail_receipt(event)
    if receipt is not None:
        delivery_reported.send(sender=Receipt, receipt=receipt)
