from django.db import models
from django.db.models import Q
from django.utils import timezone

from engagement_site import secure_ids
from engagement_site.db import prefix_check
from engagement_site.secure_ids import IdKind
from notifications.channels import Channel


class NotificationLog(models.Model):
    """One attempt to reach one customer on one channel; written as pending before anything is sent."""

    class Type(models.TextChoices):
        AUTO_REENGAGEMENT = "auto_reengagement", "Auto re-engagement"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown (may have been sent)"
        SKIPPED = "skipped", "Skipped"
        HOLDOUT = "holdout", "Holdout"

    # Every index here slows the daily run's inserts: the foreign keys are covered by the composite indexes
    # below, and the ID's uniqueness is a constraint (a unique=True CharField would add a LIKE index on PostgreSQL).
    notification_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, default=secure_ids.new_notification_id, editable=False
    )
    business = models.ForeignKey(
        "wallet.Business", on_delete=models.CASCADE, related_name="notification_logs", db_index=False
    )
    customer = models.ForeignKey(
        "wallet.Customer", on_delete=models.CASCADE, related_name="notification_logs", db_index=False
    )
    config = models.ForeignKey(
        "autoengagement.AutoEngagementConfig",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notification_logs",
        db_index=False,
    )
    type = models.CharField(max_length=32, choices=Type.choices, default=Type.AUTO_REENGAGEMENT)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    header = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, db_default=0, help_text="Send attempts made for this row.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="A failed row the provider provably did not act on is tried again then."
    )
    run_date = models.DateField(help_text="The business's local date of the run.")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="A receipt says the message arrived (wallet: the device fetched the pass)."
    )
    # A receipt says the message did not arrive: the provider's code and message (Twilio "30003: Unreachable
    # destination handset", an email bounce). Empty while nothing said so; cleared by a later delivered receipt.
    delivery_error = models.TextField(blank=True, default="", db_default="")
    reactivated_at = models.DateTimeField(null=True, blank=True)
    # The journey step (1-based) and its variant (empty when the step has none) this row's message came from.
    step = models.PositiveSmallIntegerField(default=1, db_default=1)
    variant = models.CharField(max_length=40, blank=True, default="", db_default="")
    # An email's own HTML part (the step's `email.html`, rendered), sent instead of the built-in layout.
    html = models.TextField(blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification_id"], name="notification_id_unique"),
            # Per business, not per config: a config deleted and created again cannot message anyone twice a day. It
            # leads with the customer so it also serves every lookup by customer (reminders, credits, receipts and
            # the foreign-key check when customers are deleted), whatever the planner's statistics say.
            models.UniqueConstraint(
                fields=["customer", "business", "channel", "run_date"], name="notification_once_per_business_day"
            ),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="notification_channel_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed", "unknown", "skipped", "holdout"]),
                name="notification_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(next_attempt_at__isnull=True) | Q(status="failed"), name="notification_retry_only_failed"
            ),
            models.CheckConstraint(
                condition=prefix_check("notification_id", IdKind.NOTIFICATION.prefix), name="notification_id_prefix"
            ),
            models.CheckConstraint(condition=Q(step__gte=1, step__lte=5), name="notification_step_range"),
        ]
        indexes = [
            models.Index(fields=["business", "type", "created_at"], name="notification_history_idx"),
            # Deleting a config sets its rows' config to NULL and checks the foreign key: without this index each
            # would scan the whole log (the unique constraint used to lead with config).
            models.Index(fields=["config"], name="notification_config_idx"),
            # Email receipts find their row by the provider's message id. Partial: the run inserts rows without one,
            # so only the outcome update (which already rewrites the row) adds an entry.
            models.Index(
                fields=["provider_message_id"],
                name="notification_provider_id_idx",
                condition=~Q(provider_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return self.notification_id


# Rows a run is still working on: written, or handed to a provider, with no outcome yet.
IN_FLIGHT_STATUSES = (NotificationLog.Status.PENDING, NotificationLog.Status.SENDING)


class LogRetention(models.Model):
    """How far `prune_notification_logs` has deleted (one row). The results summary of a day whose customers'
    previous days may lie before it can no longer be recomputed from the log, so it is final from then on."""

    pruned_before = models.DateTimeField(help_text="Rows created before this may have been deleted.")
    summaries_final_before = models.DateField(
        help_text="Results days before this date are final: refreshes and rebuilds leave them as they are."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "log retention"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="log_retention_single_row")]

    def __str__(self) -> str:
        return f"pruned before {self.pruned_before:%Y-%m-%d}"


class ProviderQuota(models.Model):
    """A provider's rate budget shared by every process on every host (notifications.backends.quota): the instant
    the provider's next message may go out (GCRA's theoretical arrival time), moved on by each block of tokens."""

    provider = models.CharField(max_length=64, unique=True)
    next_free = models.DateTimeField()

    class Meta:
        verbose_name = "provider quota"

    def __str__(self) -> str:
        return self.provider
