from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from autoengagement import charts, stats
from autoengagement.admin_forms import ConfigAdminForm
from autoengagement.api import StatsQuerySerializer
from autoengagement.content_preview import journey_preview
from autoengagement.models import AutoEngagementConfig, ResultsCohort, ResultsDay, ResultsOutcome, RunPart
from autoengagement.services import results
from autoengagement.services.config import config_upsert
from autoengagement.services.preview import config_preview
from autoengagement.services.run import request_runs
from engagement_site.admin_mixins import ReadOnlyAdminMixin, compact_time, truncated

STATUSES = ("sent", "failed", "unknown", "skipped", "holdout", "pending", "sending")


@admin.register(AutoEngagementConfig)
class AutoEngagementConfigAdmin(admin.ModelAdmin):
    form = ConfigAdminForm
    # The Journey and Preview sections follow Policy (admin_forms, content_preview).
    change_form_template = "admin/autoengagement/autoengagementconfig/change_form.html"
    # Fits 1280 px: the schedule and the last run are one column each; the rest is on the change page.
    list_display = (
        "config_id",
        truncated("business__name", chars=28, description="business"),
        "enabled",
        "policy",
        "channel_list",
        "schedule",
        "last_run",
        "total_customers_notified",
    )
    list_filter = ("enabled", "last_run_status")
    search_fields = ("config_id", "business__business_id", "business__name")
    list_select_related = ("business",)
    autocomplete_fields = ("business",)
    change_list_template = "admin/autoengagement/autoengagementconfig/change_list.html"
    readonly_fields = (
        "results_link",
        "config_id",
        "last_run_at",
        "last_run_status",
        "last_run_error",
        "last_run_local_date",
        "lease_expires_at",
        "run_requested_at",
        "retry_at",
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
        ("Results", {"fields": ("holdout_percent", "attribution_days", "results_link")}),
        (
            "Last run",
            {
                "fields": (
                    "last_run_at",
                    "last_run_status",
                    "last_run_error",
                    "last_run_local_date",
                    "lease_expires_at",
                    "run_requested_at",
                    "retry_at",
                    "total_customers_notified",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    @admin.display(description="policy")
    def policy(self, obj: AutoEngagementConfig) -> str:
        if obj.steps:
            days = ", ".join(str(step["after_days"]) for step in obj.steps)
            return f"{len(obj.steps)} steps: days {days}"
        return f"after {obj.inactivity_days} days" + (f", {obj.max_reminders} times" if obj.max_reminders > 1 else "")

    @admin.display(description="channels")
    def channel_list(self, obj: AutoEngagementConfig) -> str:
        return ", ".join(obj.channels)

    @admin.display(description="sends at", ordering="run_time")
    def schedule(self, obj: AutoEngagementConfig) -> str:
        return f"{obj.run_time} {obj.timezone}"

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: AutoEngagementConfig) -> str:
        if obj.last_run_at is None:
            return "never"
        when = timezone.localtime(obj.last_run_at).strftime("%Y-%m-%d %H:%M")
        return f"{obj.last_run_status or '-'}, {when}"

    def get_readonly_fields(self, request, obj=None):
        # A config belongs to its business for good (one per business; config_upsert finds it by its business).
        return (*self.readonly_fields, "business") if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        """Saved through the service the API uses, so the admin applies the same rules (the journey's mirrored
        fields, a new config's time zone) and logs the save the same way."""
        saved, _ = config_upsert(business=obj.business, data=form.config_data())
        obj.pk = saved.pk
        obj.refresh_from_db()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        if form.previewed:  # the values typed, checked and not saved ("Preview changes")
            preview = journey_preview(config=form.instance)
            context.update(journey_preview=preview, preview_config=form.instance, preview_unsaved=True)
            messages.info(request, "This is a preview of your changes below; nothing has been saved yet.")
        elif obj is not None:
            # The saved config's (the form's object may hold the rejected values of this request).
            saved = AutoEngagementConfig.objects.select_related("business").filter(pk=obj.pk).first()
            if saved is not None:
                context.update(journey_preview=journey_preview(config=saved), preview_config=saved)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    @admin.action(description="Preview audience (sends nothing)")
    def preview_audience(self, request, queryset):
        now = timezone.now()
        for config in queryset.select_related("business"):
            self._announce_preview(request, config, now)

    def _announce_preview(self, request: HttpRequest, config: AutoEngagementConfig, now) -> None:
        """The audience, reach and sample as an info message; each warning as a warning message of its own."""
        preview = config_preview(config=config, now=now)
        reach = ", ".join(f"{channel}: {count}" for channel, count in preview.reachable.items())
        text = f"{config.business.name}: {preview.audience} customer(s) would be reached now ({reach})."
        if config.steps:
            text += " By step: " + ", ".join(f"{step}: {count}" for step, count in preview.steps.items()) + "."
        if preview.sample:
            text += f' Sample: "{preview.sample["header"]}" / "{preview.sample["body"]}".'
        if preview.left_out_by_max_inactivity_days:
            text += f" {preview.left_out_by_max_inactivity_days} left out as inactive for too long."
        self.message_user(request, text, messages.INFO)
        for warning in preview.warnings:
            where = warning["channel"] or "all channels"
            self.message_user(request, f"{config.business.name}, {where}: {warning['message']}", messages.WARNING)

    @admin.action(description="Run now (by the next run_auto_engagement invocation; never sends twice)")
    def run_now(self, request, queryset):
        self._request_runs(request, queryset.values_list("pk", flat=True))

    def _request_runs(self, request: HttpRequest, config_pks) -> None:
        requested = request_runs(config_pks=config_pks, now=timezone.now())
        self.message_user(
            request,
            f"Run requested for {requested} business(es): the next run_auto_engagement invocation (every 15 minutes "
            "by cron or the CronJob) runs them, whatever their send time; their Last run fields show the outcome.",
            messages.SUCCESS,
        )

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Preview audience" button (POST): the action's messages, back on the page."""
        config = self._config_for(request, object_id, self.has_view_permission)
        self._announce_preview(request, config, timezone.now())
        return redirect(reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk]))

    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Run now" button (POST)."""
        config = self._config_for(request, object_id, self.has_change_permission)
        self._request_runs(request, [config.pk])
        return redirect(reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk]))

    def _config_for(self, request: HttpRequest, object_id: str, permission) -> AutoEngagementConfig:
        if request.method != "POST":
            raise PermissionDenied  # the buttons post (with the CSRF token); a link must not run anything
        config = self.get_object(request, unquote(object_id))
        if config is None:
            raise Http404("No such auto-engagement config.")
        if not permission(request, config):
            raise PermissionDenied
        return config

    # --- results pages: thin views over autoengagement.stats, charts drawn server-side (autoengagement.charts) ---

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("results/", self.admin_site.admin_view(self.all_results_view), name=f"{info}_results_all"),
            path(
                "<path:object_id>/preview-audience/",
                self.admin_site.admin_view(self.preview_view),
                name=f"{info}_preview_audience",
            ),
            path("<path:object_id>/run-now/", self.admin_site.admin_view(self.run_now_view), name=f"{info}_run_now"),
            path(
                "<path:object_id>/results/",
                self.admin_site.admin_view(self.results_view),
                name=f"{info}_results",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Results")
    def results_link(self, obj: AutoEngagementConfig) -> str:
        if obj.pk is None:
            return "Available once the config is saved."
        url = reverse("admin:autoengagement_autoengagementconfig_results", args=[obj.pk])
        return format_html('<a href="{}">Reactivation and uplift results</a>', url)

    def results_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        config = self.get_object(request, unquote(object_id))
        if config is None:
            raise Http404("No such auto-engagement config.")
        if not self.has_view_permission(request, config):
            raise PermissionDenied
        title = f"Results: {config.business.name} ({config.business.business_id})"
        return self._results_response(request, business=config.business, title=title, config=config)

    def all_results_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self._results_response(request, business=None, title="Results: all businesses", config=None)

    def _results_response(self, request, *, business, title, config) -> TemplateResponse:
        query = StatsQuerySerializer(data=request.GET)
        errors = {} if query.is_valid() else query.errors
        dates = query.validated_data if not errors else {}
        result = stats.engagement_stats(
            business=business, date_from=dates.get("date_from"), date_to=dates.get("date_to")
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "config": config,
            "stats": result,
            "errors": errors,
            "statuses": STATUSES,
            "channel_rows": [
                (channel, [counts.get(status, 0) for status in STATUSES], result.delivered.get(channel))
                for channel, counts in sorted(result.channels.items())
            ],
            "daily_chart": mark_safe(charts.daily_chart_svg(result.daily)),  # built from numbers and escaped text
            "uplift_chart": mark_safe(charts.uplift_chart_svg(result.uplift)),
            "step_tables": _step_tables(result.steps or []),
            "uplift_points": _uplift_points(result.uplift),
        }
        return TemplateResponse(request, "admin/autoengagement/autoengagementconfig/results.html", context)


def _step_tables(steps: list[stats.StepResult]) -> list[dict]:
    """Per step, its variants as table rows: counts, rate, and both differences in percentage points with their
    intervals; the best variant marked (stats.best_variant)."""
    tables = []
    for step in steps:
        best = stats.best_variant(step)
        first = step.variants[0].name if step.variants else ""
        tables.append(
            {
                "step": step.step,
                "first": _variant_label(first),
                "best": None if best is None else _variant_label(best),
                "rows": [
                    {
                        "name": _variant_label(variant.name),
                        "reached": variant.reached,
                        "reactivated": variant.reactivated,
                        "rate": "n/a" if variant.rate is None else f"{variant.rate * 100:.1f}%",
                        "uplift": _points(variant.uplift),
                        "vs_first": "first variant" if index == 0 else _points(variant.vs_first),
                        "best": variant.name == best,
                    }
                    for index, variant in enumerate(step.variants)
                ],
            }
        )
    return tables


def _variant_label(name: str) -> str:
    return name or "(no variant)"


def _points(difference: stats.Uplift | None) -> str:
    """A difference of rates in percentage points with its 95% interval, e.g. "+20.0 pts (95% CI +5.2 to +33.4)"."""
    if difference is None:
        return "n/a"
    return (
        f"{difference.estimate * 100:+.1f} pts (95% CI {difference.ci95_low * 100:+.1f} to "
        f"{difference.ci95_high * 100:+.1f})"
    )


def _uplift_points(uplift: stats.Uplift | None) -> dict[str, str]:
    """The summary card's uplift in percentage points, as the chart and the step tables give it."""
    if uplift is None:
        return {"estimate": "n/a"}
    return {
        "estimate": f"{uplift.estimate * 100:+.1f} pts",
        "low": f"{uplift.ci95_low * 100:+.1f}",
        "high": f"{uplift.ci95_high * 100:+.1f} pts",
    }


class ResultsOutcomeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ResultsOutcome
    fields = ("channel", "status", "rows", "delivered")
    extra = 0


class ResultsCohortInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ResultsCohort
    fields = ("measure", "step", "variant", "previous_date", "customers")
    extra = 0


@admin.register(ResultsDay)
class ResultsDayAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stats summary, one row per business and run date: written by the run and refreshed from the log."""

    list_display = (truncated("business__name", chars=40, description="business"), "run_date", "stale", "refreshed_at")
    list_filter = ("stale", "run_date")
    search_fields = ("business__business_id", "business__name")
    list_select_related = ("business",)
    inlines = (ResultsOutcomeInline, ResultsCohortInline)
    actions = ("refresh",)
    show_full_result_count = False

    @admin.action(description="Refresh the selected days from the log", permissions=["view"])
    def refresh(self, request: HttpRequest, queryset) -> None:
        days = results.refresh_day_keys(queryset.values_list("business_id", "run_date"))
        self.message_user(request, f"{days} day(s) refreshed.", messages.SUCCESS)


@admin.register(RunPart)
class RunPartAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The parts of big businesses' current days (services.parts): who works on each, and when it was done."""

    list_display = ("config", "run_date", "number", "customers", truncated("owner", chars=20), compact_time("done_at"))
    list_filter = ("run_date",)
    search_fields = ("config__config_id", "config__business__business_id")
    list_select_related = ("config",)

    @admin.display(description="customers (primary keys)", ordering="first_customer")
    def customers(self, part: RunPart) -> str:
        return f"{part.first_customer:,}-{part.last_customer:,}"
