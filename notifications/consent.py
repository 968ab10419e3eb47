"""Who may be sent what: a customer opted out of a channel, or without its address, is skipped with a reason.

One rule in three shapes so every caller agrees: `skip_reason` for one customer (a model instance or a row
from `.values()`), `sendable_q` to filter a queryset in the database, and `annotate_skip_reasons` to label a
whole chunk of customers per channel in one query (the daily run splits a chunk with it, never a query per
customer). The wallet channel has no address or opt-out on the customer: whether a pass exists is the
wallet backend's business, so consent never skips it.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Case, CharField, F, Q, QuerySet, Value, When
from django.db.models.functions import Concat

from notifications.channels import Channel

OPTED_OUT = "opted out"
NO_ADDRESS = "no address"
# Not consent but reach: the daily run records it itself when a customer has no wallet pass at all.
NO_PASS = "no pass"
# Starts the `error` of a log row whose provider answered that the customer said no (Twilio 21610, FCM UNREGISTERED /
# INVALID_ARGUMENT on the token, APNs 410): an answer about consent, not a fault; admin filters on it.
PROVIDER_REVOKED = "consent revoked by the provider"

# Starts the `error` of an SMS row skipped because a receipt said the customer's number cannot receive texts; the
# receipt's code follows ("undeliverable number: Twilio 30003 Unreachable destination handset").
UNDELIVERABLE = "undeliverable number"
UNDELIVERABLE_PHONE_FIELD = "sms_undeliverable_phone"
UNDELIVERABLE_REASON_FIELD = "sms_undeliverable_reason"

ADDRESS_FIELDS = {Channel.EMAIL: "email", Channel.SMS: "phone", Channel.PUSH: "push_token"}
OPT_OUT_FIELDS = {Channel.EMAIL: "email_opt_out", Channel.SMS: "sms_opt_out", Channel.PUSH: "push_opt_out"}


def consent_fields(*, channel: str) -> tuple[str, ...]:
    """The customer fields `skip_reason` reads for `channel` (to pass to `.values()` / `.only()`)."""
    channel = Channel(channel)
    if channel not in ADDRESS_FIELDS:
        return ()
    if channel == Channel.SMS:
        return (ADDRESS_FIELDS[channel], OPT_OUT_FIELDS[channel], UNDELIVERABLE_PHONE_FIELD, UNDELIVERABLE_REASON_FIELD)
    return (ADDRESS_FIELDS[channel], OPT_OUT_FIELDS[channel])


def undeliverable_reason(reason: str) -> str:
    """The `error` of an SMS row skipped for an undeliverable number, from the receipt's reason on the customer."""
    return f"{UNDELIVERABLE}: {reason}" if reason else UNDELIVERABLE


def skip_reason(*, channel: str, customer: Any) -> str | None:
    """None when `customer` may be sent on `channel`, else why not ("opted out" wins over "no address")."""
    channel = Channel(channel)
    if channel not in ADDRESS_FIELDS:
        return None

    def field(name: str) -> Any:
        return customer[name] if isinstance(customer, Mapping) else getattr(customer, name)

    if field(OPT_OUT_FIELDS[channel]):
        return OPTED_OUT
    address = field(ADDRESS_FIELDS[channel])
    if not address:
        return NO_ADDRESS
    if channel == Channel.SMS and field(UNDELIVERABLE_PHONE_FIELD) == address:
        return undeliverable_reason(field(UNDELIVERABLE_REASON_FIELD))
    return None


def _opted_out_q(channel: Channel) -> Q:
    return Q(**{OPT_OUT_FIELDS[channel]: True})


def _no_address_q(channel: Channel) -> Q:
    return Q(**{ADDRESS_FIELDS[channel]: ""})


def _undeliverable_q() -> Q:
    # The phone is not empty wherever this is asked (no address is tested first), so equality alone decides.
    return Q(**{UNDELIVERABLE_PHONE_FIELD: F(ADDRESS_FIELDS[Channel.SMS])})


def sendable_q(*, channel: str) -> Q:
    """A filter on Customer matching exactly the customers `skip_reason` lets through on `channel`."""
    channel = Channel(channel)
    if channel not in ADDRESS_FIELDS:
        return Q()
    sendable = ~_opted_out_q(channel) & ~_no_address_q(channel)
    if channel == Channel.SMS:
        sendable &= ~_undeliverable_q()
    return sendable


def skip_reason_expression(*, channel: str) -> Case | Value:
    """A database expression giving `skip_reason` for each Customer row (NULL = send)."""
    channel = Channel(channel)
    if channel not in ADDRESS_FIELDS:
        return Value(None, output_field=CharField())
    whens = [When(_opted_out_q(channel), then=Value(OPTED_OUT)), When(_no_address_q(channel), then=Value(NO_ADDRESS))]
    if channel == Channel.SMS:
        reason = Concat(Value(f"{UNDELIVERABLE}: "), F(UNDELIVERABLE_REASON_FIELD), output_field=CharField())
        whens += [
            When(_undeliverable_q() & Q(**{UNDELIVERABLE_REASON_FIELD: ""}), then=Value(UNDELIVERABLE)),
            When(_undeliverable_q(), then=reason),
        ]
    return Case(*whens, default=Value(None), output_field=CharField())


def annotate_skip_reasons(queryset: QuerySet, *, channels: Iterable[str]) -> QuerySet:
    """Add `skip_<channel>` to each customer: NULL to send, else the reason to record on the skipped log."""
    return queryset.annotate(
        **{f"skip_{Channel(channel).value}": skip_reason_expression(channel=channel) for channel in channels}
    )


def recipient_for(channel: str, customer: Mapping[str, Any]) -> str:
    """What the channel's backend addresses: the email, phone or push token; the customer_id for wallet."""
    if channel == Channel.WALLET:
        return customer["customer_id"]
    return customer[ADDRESS_FIELDS[Channel(channel)]]
