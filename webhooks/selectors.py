"""Reads of a business's webhook endpoints and of an endpoint's deliveries (always scoped to one business)."""

from django.db.models import Prefetch, QuerySet

from wallet.models import Business
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage


def endpoint_list(*, business: Business) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(business=business).order_by("-created_at", "-pk")


def delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookMessage]:
    """The endpoint's messages, newest first, each with its attempts (one more query per page, not per row)."""
    return (
        WebhookMessage.objects.filter(endpoint=endpoint)
        .order_by("-created_at", "-pk")
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number")))
    )
