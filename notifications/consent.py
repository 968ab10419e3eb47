"""Who may be reached on which channel: the address a channel needs, and the customer's consent."""

from collections.abc import Mapping
from typing import Any

from notifications.channels import Channel

NO_ADDRESS = "no address"
OPTED_OUT = "opted out"
NO_PASS = "no pass"

# channel -> (the customer field holding its address, the opt-out flag)
ADDRESS_FIELDS = {Channel.EMAIL: "email", Channel.SMS: "phone", Channel.PUSH: "push_token"}
OPT_OUT_FIELDS = {Channel.EMAIL: "email_opt_out", Channel.SMS: "sms_opt_out", Channel.PUSH: "push_opt_out"}


def skip_reason(channel: str, customer: Mapping[str, Any]) -> str | None:
    """Why this customer must not be sent to on `channel`, or None when they may be.

    `customer` holds the customer's address fields and opt-outs; for the wallet channel, `has_wallet_pass`.
    """
    if channel == Channel.WALLET:
        return None if customer["has_wallet_pass"] else NO_PASS
    if customer[OPT_OUT_FIELDS[channel]]:
        return OPTED_OUT
    if not customer[ADDRESS_FIELDS[channel]]:
        return NO_ADDRESS
    return None


def recipient_for(channel: str, customer: Mapping[str, Any]) -> str:
    """What the channel's backend addresses: the email, phone or push token; the customer_id for wallet."""
    if channel == Channel.WALLET:
        return customer["customer_id"]
    return customer[ADDRESS_FIELDS[channel]]
