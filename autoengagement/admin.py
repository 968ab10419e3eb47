from django.contrib import admin

from autoengagement.models import AutoEngagementConfig


@admin.register(AutoEngagementConfig)
class AutoEngagementConfigAdmin(admin.ModelAdmin):
    list_display = (
        "config_id",
        "business",
        "enabled",
        "inactivity_days",
        "channels",
        "run_time",
        "timezone",
        "last_run_at",
        "last_run_status",
        "total_customers_notified",
    )
    list_filter = ("enabled", "last_run_status")
    search_fields = ("config_id", "business__business_id", "business__name")
    list_select_related = ("business",)
    autocomplete_fields = ("business",)
    readonly_fields = (
        "config_id",
        "last_run_at",
        "last_run_status",
        "last_run_error",
        "last_run_local_date",
        "lease_expires_at",
        "total_customers_notified",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("config_id", "business", "enabled")}),
        (
            "Policy",
            {
                "fields": (
                    "inactivity_days",
                    "max_reminders",
                    "max_inactivity_days",
                    "message_template",
                    "channels",
                    "run_time",
                    "timezone",
                )
            },
        ),
        ("Results", {"fields": ("holdout_percent", "attribution_days")}),
        (
            "Last run",
            {
                "fields": (
                    "last_run_at",
                    "last_run_status",
                    "last_run_error",
                    "last_run_local_date",
                    "lease_expires_at",
                    "total_customers_notified",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
