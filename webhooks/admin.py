from django.contrib import admin
from django.http import HttpRequest

from engagement_site.admin_mixins import ReadOnlyAdminMixin
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints are registered through the API (which shows the signing secret once); staff may look at them and
    delete one, never see the secret."""

    list_display = ("webhook_id", "business", "url", "events", "created_at", "disabled_at")
    list_filter = ("disabled_at",)
    search_fields = ("webhook_id", "url", "business__business_id", "business__name")
    list_select_related = ("business",)
    fields = ("webhook_id", "business", "url", "events", "created_at", "disabled_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class WebhookAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookAttempt
    fields = ("number", "attempted_at", "status_code", "duration_ms", "error", "next_attempt_at")
    readonly_fields = fields
    extra = 0


@admin.register(WebhookMessage)
class WebhookMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "type")
    search_fields = ("event_id", "endpoint__webhook_id", "business__business_id")
    list_select_related = ("endpoint",)
    exclude = ("lease_owner",)
    inlines = (WebhookAttemptInline,)
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("message", "number", "attempted_at", "status_code", "duration_ms", "error", "next_attempt_at")
    list_filter = ("status_code",)
    search_fields = ("message__event_id",)
    list_select_related = ("message",)
