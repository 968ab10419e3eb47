"""Webhook endpoints, the outbox of events to deliver to them, and every delivery attempt."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from engagement_site import secure_ids
from engagement_site.db import prefix_check
from engagement_site.secure_ids import IdKind


class WebhookEndpoint(models.Model):
    """Where a business wants its events: an https URL and the event types it subscribes to.

    The signing secret is kept as given out ("whsec_" + base64): signing needs the secret itself, so it cannot be
    stored hashed like a session token. The API shows it once, at creation; the admin never shows it."""

    webhook_id = models.CharField(max_length=secure_ids.MAX_LENGTH, default=secure_ids.new_webhook_id, editable=False)
    business = models.ForeignKey("wallet.Business", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(help_text="The event types delivered to this endpoint.")
    secret = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the endpoint answered 410 Gone: nothing more is sent to it."
    )

    class Meta:
        ordering = ("-created_at", "-pk")
        constraints = [
            models.UniqueConstraint(fields=["webhook_id"], name="webhook_endpoint_id_unique"),
            models.CheckConstraint(
                condition=prefix_check("webhook_id", IdKind.WEBHOOK.prefix), name="webhook_id_prefix"
            ),
            models.CheckConstraint(condition=Q(secret__startswith="whsec_"), name="webhook_secret_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} -> {self.url}"


class WebhookMessage(models.Model):
    """The outbox: one event for one endpoint, written in the transaction of what it reports, delivered at least
    once by `deliver_webhooks`. `event_id` is the Standard Webhooks message id (the webhook-id header), the same on
    every retry so that receivers can drop a duplicate."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, default=secure_ids.new_webhook_event_id, editable=False
    )
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages", db_index=False)
    business = models.ForeignKey("wallet.Business", on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next attempt is due.")
    # A deliverer's claim: it owns the message until then; a crashed deliverer's claims come back when it passes.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-pk")
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="webhook_message_event_id_unique"),
            models.CheckConstraint(
                condition=prefix_check("event_id", IdKind.WEBHOOK_EVENT.prefix), name="webhook_event_id_prefix"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]), name="webhook_message_status_valid"
            ),
            # Only a pending message waits for an attempt.
            models.CheckConstraint(
                condition=Q(status="pending") | Q(next_attempt_at__isnull=True),
                name="webhook_message_done_not_scheduled",
            ),
        ]
        indexes = [
            # The deliverers' claims: due pending messages, oldest due first.
            models.Index(fields=["next_attempt_at"], name="webhook_message_due", condition=Q(status="pending")),
            # An endpoint's deliveries, newest first (the API), and the pruning of old finished ones.
            models.Index(fields=["endpoint", "created_at"], name="webhook_message_endpoint"),
            models.Index(fields=["business", "created_at"], name="webhook_message_business"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"


class WebhookAttempt(models.Model):
    """One attempt to deliver a message: what the endpoint answered (or why there was no answer), how long it took,
    and when the next attempt is due (null: none, the message is delivered or failed)."""

    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempt_log", db_index=False)
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("message", "number")
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="webhook_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"
