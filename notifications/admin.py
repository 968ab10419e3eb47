from django.contrib import admin

from engagement_site.admin_mixins import ReadOnlyAdminMixin, compact_time, truncate_text, truncated
from notifications.consent import PROVIDER_REVOKED
from notifications.models import LogRetention, NotificationLog


class ConsentAnswerFilter(admin.SimpleListFilter):
    """Rows where the provider answered that the customer said no (STOP, dead push token, pass removed)."""

    title = "provider answer"
    parameter_name = "provider_answer"

    def lookups(self, request, model_admin):
        return [("consent_revoked", "Consent revoked")]

    def queryset(self, request, queryset):
        if self.value() == "consent_revoked":
            return queryset.filter(error__startswith=PROVIDER_REVOKED)
        return queryset


class RetryFilter(admin.SimpleListFilter):
    """Failed rows still waiting for another attempt today (the provider provably did not act)."""

    title = "retry"
    parameter_name = "retry"

    def lookups(self, request, model_admin):
        return [("waiting", "Waiting for a retry")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(next_attempt_at__isnull=False)
        return queryset


class ReceiptFilter(admin.SimpleListFilter):
    """What delivery receipts said: delivered, or undelivered (delivery_error set: a bounce, Twilio 30003...)."""

    title = "receipt"
    parameter_name = "receipt"

    def lookups(self, request, model_admin):
        return [("delivered", "Delivered"), ("undelivered", "Undelivered")]

    def queryset(self, request, queryset):
        if self.value() == "delivered":
            return queryset.filter(delivered_at__isnull=False)
        if self.value() == "undelivered":
            return queryset.exclude(delivery_error="")
        return queryset


@admin.register(NotificationLog)
class NotificationLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Fits 1280 px: the business, the content, the run date and the other timestamps are on the change page.
    list_display = (
        truncated("notification_id", chars=16, description="notification"),
        truncated("customer__customer_id", chars=20, description="customer"),
        "channel",
        "status",
        "journey_step",
        "problem",
        compact_time("created_at", description="created"),
    )
    list_filter = ("status", "channel", ConsentAnswerFilter, RetryFilter, ReceiptFilter, "type", "run_date")
    search_fields = (
        "notification_id",
        "customer__customer_id",
        "business__business_id",
        "business__name",
        "provider_message_id",
    )
    list_select_related = ("business", "customer")
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="step", ordering="step")
    def journey_step(self, log: NotificationLog) -> str:
        return f"{log.step} {log.variant}".strip()

    @admin.display(description="error / reason / receipt", ordering="error")
    def problem(self, log: NotificationLog) -> str:
        """Why the row failed or was skipped, else what a delivery receipt reported (whole in the tooltip)."""
        return truncate_text(log.error or log.delivery_error, 28)


@admin.register(LogRetention)
class LogRetentionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("pruned_before", "summaries_final_before", "updated_at")
