import datetime as dt

from django.utils import timezone

from webhooks import services
from webhooks.models import WebhookEndpoint


def endpoint_for(
    business,
    receiver,
    *,
    path="/hook",
    events=("message.sent", "message.failed", "run.completed", "customer.reactivated"),
) -> WebhookEndpoint:
    """An endpoint made by the service (its real secret), known to the receiver so it can verify signatures."""
    endpoint = services.endpoint_create(business=business, url=receiver.url(path), events=list(events))
    receiver.register(path, endpoint.secret)
    return endpoint


def enqueue(business, count=1, *, event_type="message.sent", at: dt.datetime | None = None) -> int:
    return services.enqueue_events(
        business_pk=business.pk,
        event_type=event_type,
        data=[{"business_id": business.business_id, "n": index} for index in range(count)],
        timestamp=at or timezone.now(),
    )
