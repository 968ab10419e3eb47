"""Webhook endpoints and the outbox: writes of what a business subscribes to and of the events it is sent.

Events are written by the code that makes them happen, in its own transaction (autoengagement's delivery, run and
reactivation services), so an event exists exactly when what it reports was committed. Writing costs nothing for a
business without endpoints: `subscriptions` answers with one indexed query per business run, and `write_events`
then does nothing at all; with endpoints it is one INSERT per batch of events, whatever their number.
"""

import base64
import datetime as dt
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from engagement_site.db import bulk_insert_rows
from engagement_site.exceptions import ObjectNotFound
from engagement_site.secure_ids import IdKind, make_ids
from wallet.models import Business
from webhooks.events import EVENT_TYPES, payload
from webhooks.models import WebhookEndpoint, WebhookMessage

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# Standard Webhooks: a secret of 24 to 64 random bytes, base64-encoded after the prefix.
SECRET_BYTES = 32

# Event type -> the pks of the business's endpoints that receive it.
Subscriptions = Mapping[str, tuple[int, ...]]
NO_SUBSCRIPTIONS: Subscriptions = {}


class WebhookNotFound(ObjectNotFound):
    default_message = "No such webhook."


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@transaction.atomic
def endpoint_create(*, business: Business, url: str, events: Sequence[str]) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret (the caller shows it once). `url` and `events` are validated by
    the caller (webhooks.addresses.url_errors, known event types); the database checks the ids and the secret."""
    endpoint = WebhookEndpoint.objects.create(
        business=business, url=url, events=list(dict.fromkeys(events)), secret=new_secret()
    )
    logger.info(
        "webhook endpoint created",
        extra={"business_id": business.business_id, "webhook_id": endpoint.webhook_id, "events": endpoint.events},
    )
    return endpoint


def endpoint_get(*, business: Business, webhook_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(business=business, webhook_id=webhook_id).first()
    if endpoint is None:
        raise WebhookNotFound()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Removes the endpoint and, with it, its messages not yet delivered: nothing more is sent to it."""
    endpoint.delete()
    logger.info(
        "webhook endpoint deleted", extra={"business_id": endpoint.business_id, "webhook_id": endpoint.webhook_id}
    )


def subscriptions(*, business_pk: int) -> Subscriptions:
    """Which of the business's live endpoints receive which event type: one indexed query. Empty for a business
    without endpoints (most of them), which is what keeps the daily run's cost unchanged for those."""
    found: dict[str, list[int]] = {}
    rows = WebhookEndpoint.objects.filter(business_id=business_pk, disabled_at__isnull=True).values_list("pk", "events")
    for pk, events in rows:
        for event in events:
            if event in EVENT_TYPES:
                found.setdefault(event, []).append(pk)
    return {event: tuple(pks) for event, pks in found.items()}


MESSAGE_FIELDS = ("event_id", "endpoint_id", "payload")


def write_events(
    *,
    subscribed: Subscriptions,
    business_pk: int,
    event_type: str,
    data: Iterable[dict[str, Any]],
    timestamp: dt.datetime,
) -> int:
    """Put one event per item of `data` in the outbox of each endpoint subscribed to `event_type`: one INSERT for
    the batch, none when no endpoint subscribes. Call it inside the transaction that writes what the events report.
    `timestamp` is when the events happened (the payloads'); they are due for delivery at once. Returns the
    messages written."""
    endpoints = subscribed.get(event_type)
    if not endpoints:
        return 0
    payloads = [payload(event_type, timestamp=timestamp, data=item) for item in data]
    if not payloads:
        return 0
    ids = iter(make_ids(IdKind.WEBHOOK_EVENT, len(payloads) * len(endpoints)))
    written_at = timezone.now()
    rows = [(next(ids), endpoint, body) for body in payloads for endpoint in endpoints]
    bulk_insert_rows(
        WebhookMessage,
        MESSAGE_FIELDS,
        rows,
        same={
            "business_id": business_pk,
            "type": event_type,
            "status": WebhookMessage.Status.PENDING.value,
            "attempts": 0,
            "next_attempt_at": written_at,
            "lease_owner": "",
            "last_error": "",
            "created_at": written_at,
        },
    )
    return len(rows)


def enqueue_events(*, business_pk: int, event_type: str, data: Iterable[dict[str, Any]], timestamp: dt.datetime) -> int:
    """`write_events` for a caller that has not looked the subscriptions up (a run's end, a visit): one query more."""
    subscribed = subscriptions(business_pk=business_pk)
    if event_type not in subscribed:
        return 0
    return write_events(
        subscribed=subscribed, business_pk=business_pk, event_type=event_type, data=data, timestamp=timestamp
    )
