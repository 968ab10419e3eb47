"""The events a business can subscribe an endpoint to, and the Standard Webhooks payload that carries one.

A payload is `{"type": ..., "timestamp": ..., "data": {...}}` (https://www.standardwebhooks.com/): `timestamp` is
when the event happened (ISO 8601, UTC); `data` holds public IDs, counts and codes only, never personal data (no
names, addresses, phone numbers or message text), so a receiver's logs hold nothing that an erasure must reach.
"""

import datetime as dt
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    MESSAGE_SENT = "message.sent"
    MESSAGE_FAILED = "message.failed"
    CUSTOMER_REACTIVATED = "customer.reactivated"
    RUN_COMPLETED = "run.completed"


EVENT_TYPES = tuple(event.value for event in EventType)


class FailureCode(StrEnum):
    """Why a message failed for good, as `data.error_code` of message.failed (the log row's `error` text may quote
    the provider, and with it an address: it is not sent)."""

    PROVIDER_REJECTED = "provider_rejected"
    CONSENT_REVOKED = "consent_revoked"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NOT_RESUMED = "not_resumed"


def events_errors(value: Any) -> list[str]:
    """What is wrong with a list of event types (empty: nothing): a non-empty list of distinct known types."""
    if not isinstance(value, list) or not value:
        return ["Expected a non-empty list of event types."]
    errors = []
    unknown = [item for item in value if not isinstance(item, str) or item not in EVENT_TYPES]
    if unknown:
        errors.append(f"Unknown event types: {', '.join(map(repr, unknown))[:500]}; known: {', '.join(EVENT_TYPES)}.")
    elif len(set(value)) != len(value):
        errors.append("Each event type may be listed once.")
    return errors


def payload(event_type: str, *, timestamp: dt.datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": timestamp.astimezone(dt.UTC).isoformat(), "data": data}
