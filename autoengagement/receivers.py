"""Win-back's reactions to what the wallet app announces (wallet.signals), connected in AutoengagementConfig.ready().

Thin: each calls the service that owns the rule, in the sender's transaction when the sender holds one."""

from typing import Any

from autoengagement.services.reactivation import attribute_visits
from autoengagement.services.receipts import record_delivery, record_receipt
from notifications.receipts import Receipt
from wallet.models import Business, WalletPass
from wallet.signals import Visit


def credit_recorded_visits(sender: type[Business], *, visits: list[Visit], **kwargs: Any) -> None:
    """Visits that end inactivity spells are credited to the spells' re-engagements (attribution_days)."""
    attribute_visits(visits=visits)


def mark_fetched_pass_delivered(sender: type[WalletPass], *, wallet_pass: WalletPass, **kwargs: Any) -> None:
    """The device has the updated pass: its wallet message is delivered."""
    record_delivery(wallet_pass=wallet_pass)


def record_reported_delivery(sender: type[Receipt], *, receipt: Receipt, **kwargs: Any) -> None:
    """A provider reported on a message (Twilio StatusCallback, an email tracking event): record it."""
    record_receipt(receipt=receipt)
