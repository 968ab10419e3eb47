from django.contrib import admin

from engagement_site.admin_mixins import ReadOnlyAdminMixin
from notifications.models import NotificationLog


@admin.register(NotificationLog)
class NotificationLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "notification_id",
        "business",
        "customer",
        "channel",
        "status",
        "run_date",
        "created_at",
        "sent_at",
        "delivered_at",
    )
    list_filter = ("status", "channel", "type", "run_date")
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
