from django.contrib import admin, messages
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.preview import config_preview
from autoengagement.services.run import run_due_configs


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
    actions = ("preview_audience", "run_now")
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

    @admin.action(description="Preview audience (sends nothing)")
    def preview_audience(self, request, queryset):
        now = timezone.now()
        for config in queryset.select_related("business"):
            preview = config_preview(config=config, now=now)
            reach = ", ".join(f"{channel}: {count}" for channel, count in preview.reachable.items())
            text = f"{config.business.name}: {preview.audience} customer(s) would be reached now ({reach})."
            if preview.sample:
                text += f' Sample: "{preview.sample["header"]}" / "{preview.sample["body"]}".'
            if preview.left_out_by_max_inactivity_days:
                text += f" {preview.left_out_by_max_inactivity_days} left out as inactive for too long."
            for warning in preview.warnings:
                text += f" Warning ({warning['channel']}): {warning['message']}"
            self.message_user(request, text, messages.INFO)

    @admin.action(description="Run now (never sends twice)")
    def run_now(self, request, queryset):
        business_ids = list(queryset.values_list("business__business_id", flat=True))
        summary = run_due_configs(now=timezone.now(), business_ids=business_ids)
        for outcome in summary.outcomes:
            level = messages.ERROR if outcome.status == "failed" else messages.SUCCESS
            detail = f" ({outcome.error})" if outcome.error else ""
            self.message_user(
                request,
                f"Business {outcome.business_id}: {outcome.status}, {outcome.notified} notified, "
                f"{outcome.holdout} in holdout, {outcome.failed} failed, {outcome.skipped} skipped{detail}.",
                level,
            )
