import datetime as dt

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length, Substr
from django.db.models.lookups import Exact, In, LessThanOrEqual
from django.utils import timezone

from autoengagement import journeys, validation
from engagement_site import secure_ids
from engagement_site.db import prefix_check
from engagement_site.secure_ids import IdKind
from engagement_site.validation import timezone_errors
from notifications.channels import Channel
from notifications.models import NotificationLog

DEFAULT_MESSAGE_TEMPLATE = {
    "header": "We miss you, {first_name}!",
    "body": "It has been {days_inactive} days since your last visit to {business_name}. Come back soon!",
}

_DIGITS = list("0123456789")


def default_message_template() -> dict[str, str]:
    return dict(DEFAULT_MESSAGE_TEMPLATE)


def default_channels() -> list[str]:
    return ["wallet"]


def _run_time_format_check() -> Q:
    """HH:MM from 00:00 to 23:59, written without REGEXP so every database (and sqlite3 shell) can check it."""
    hour = Substr("run_time", 1, 2)
    return Q(
        Exact(Length("run_time"), 5),
        In(Substr("run_time", 1, 1), ["0", "1", "2"]),
        In(Substr("run_time", 2, 1), _DIGITS),
        LessThanOrEqual(hour, "23"),
        Exact(Substr("run_time", 3, 1), ":"),
        In(Substr("run_time", 4, 1), list("012345")),
        In(Substr("run_time", 5, 1), _DIGITS),
    )


class AutoEngagementConfig(models.Model):
    class RunStatus(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILED = "failed", "Failed"
        RUNNING = "running", "Running"
        MISSED = "missed", "Missed (too late to send)"

    config_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, unique=True, default=secure_ids.new_config_id, editable=False
    )
    business = models.OneToOneField("wallet.Business", on_delete=models.CASCADE, related_name="auto_engagement_config")
    enabled = models.BooleanField(default=True, db_index=True)
    inactivity_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    message_template = models.JSONField(default=default_message_template)
    # A journey (autoengagement.journeys): null for one message repeated max_reminders times, or 1..5 steps.
    steps = models.JSONField(null=True, blank=True)
    channels = models.JSONField(default=default_channels)
    run_time = models.CharField(max_length=5, default="09:00", help_text="Local send time, HH:MM (24-hour).")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone, e.g. Europe/Paris.")
    max_reminders = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Messages per inactivity spell, spaced inactivity_days apart.",
    )
    max_inactivity_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Leave alone customers inactive for longer than this (empty: no limit)."
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="Share of the audience kept as an untouched control group, to measure uplift.",
    )
    attribution_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text="A visit within this many days of a message counts as a reactivation.",
    )
    last_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_status = models.CharField(  # noqa: DJ001 - the contract says null before the first run
        max_length=10, choices=RunStatus.choices, null=True, blank=True
    )
    last_run_error = models.TextField(blank=True)
    last_run_local_date = models.DateField(null=True, blank=True, help_text="The local date of the last run.")
    last_success_at = models.DateTimeField(
        null=True, blank=True, help_text="When a run last finished successfully (wall-clock time; for monitoring)."
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, help_text="The run holding the lease.")
    run_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Staff asked for a run now: the next run_auto_engagement invocation does it."
    )
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="The last run left messages to retry (same local day) from this instant."
    )
    total_customers_notified = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto-engagement config"
        constraints = [
            models.CheckConstraint(condition=prefix_check("config_id", IdKind.CONFIG.prefix), name="config_id_prefix"),
            models.CheckConstraint(
                condition=Q(inactivity_days__gte=1, inactivity_days__lte=365), name="config_inactivity_days_range"
            ),
            models.CheckConstraint(condition=_run_time_format_check(), name="config_run_time_format"),
            models.CheckConstraint(
                condition=Q(last_run_status__isnull=True)
                | Q(last_run_status__in=["success", "failed", "running", "missed"]),
                name="config_last_run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(max_reminders__gte=1, max_reminders__lte=10), name="config_max_reminders_range"
            ),
            models.CheckConstraint(
                condition=Q(max_inactivity_days__isnull=True)
                | Q(max_inactivity_days__gt=models.F("inactivity_days"), max_inactivity_days__lte=3650),
                name="config_max_inactivity_days_range",
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lte=50), name="config_holdout_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(attribution_days__gte=1, attribution_days__lte=90), name="config_attribution_days_range"
            ),
            models.CheckConstraint(condition=Q(total_customers_notified__gte=0), name="config_total_notified_positive"),
        ]

    def __str__(self) -> str:
        return self.config_id

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for field, messages in (
            ("message_template", validation.message_template_errors(self.message_template)),
            ("steps", journeys.steps_errors(self.steps)),
            ("channels", validation.channels_errors(self.channels)),
            ("run_time", validation.run_time_errors(self.run_time)),
            ("timezone", timezone_errors(self.timezone)),
            (
                "max_inactivity_days",
                validation.max_inactivity_days_errors(self.max_inactivity_days, self.inactivity_days),
            ),
        ):
            if messages:
                errors[field] = messages
        if errors:
            raise ValidationError(errors)

    def get_message_template(self) -> dict[str, str]:
        """The header and body to render, falling back to the defaults for anything missing."""
        template = self.message_template if isinstance(self.message_template, dict) else {}
        return {key: template.get(key) or default for key, default in DEFAULT_MESSAGE_TEMPLATE.items()}

    def is_leased(self, now: dt.datetime) -> bool:
        return (
            self.last_run_status == self.RunStatus.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def can_run(self, now: dt.datetime) -> bool:
        """Enabled and not held by a live run; whether it is due today is the scheduler's question."""
        return self.enabled and not self.is_leased(now)

    def mark_as_running(
        self, *, now: dt.datetime, local_date: dt.date, lease_expires_at: dt.datetime, owner: str = ""
    ) -> None:
        """Taken by a run until `lease_expires_at` (wall-clock time, even when `now` is simulated)."""
        self.last_run_status = self.RunStatus.RUNNING
        self.last_run_at = now
        self.last_run_error = ""
        self.last_run_local_date = local_date
        self.lease_expires_at = lease_expires_at
        self.lease_owner = owner
        self.run_requested_at = None
        self.save(
            update_fields=[
                "run_requested_at",
                "last_run_status",
                "last_run_at",
                "last_run_error",
                "last_run_local_date",
                "lease_expires_at",
                "lease_owner",
                "updated_at",
            ]
        )

    def mark_as_completed(self, count: int, *, retry_at: dt.datetime | None = None, error: str = "") -> bool:
        """Record success and add `count` to the total, unless another run has taken the lease over. `retry_at`:
        messages were left to retry from then; `error` notes what the run reported without failing."""
        return self._finish(
            last_run_status=self.RunStatus.SUCCESS,
            last_success_at=timezone.now(),
            last_run_error=error,
            retry_at=retry_at,
            total_customers_notified=models.F("total_customers_notified") + count,
        )

    def mark_as_failed(self, error: str, *, count: int = 0, retry_at: dt.datetime | None = None) -> bool:
        return self._finish(
            last_run_status=self.RunStatus.FAILED,
            last_run_error=error,
            retry_at=retry_at,
            total_customers_notified=models.F("total_customers_notified") + count,
        )

    def _finish(self, **fields: object) -> bool:
        updated = (
            type(self)
            .objects.filter(pk=self.pk, lease_owner=self.lease_owner)
            .update(lease_expires_at=None, lease_owner="", updated_at=timezone.now(), **fields)
        )
        self.refresh_from_db()
        return bool(updated)


class RunPart(models.Model):
    """One key range of a big business's customers for one run day (AUTO_ENGAGEMENT_PART_SIZE customers or so):
    claimed by one worker at a time under a lease, so several processes share one business. The run that claimed
    the config planned the parts and finishes the day once every part is done."""

    config = models.ForeignKey(AutoEngagementConfig, on_delete=models.CASCADE, related_name="parts")
    run_date = models.DateField()
    number = models.PositiveIntegerField()
    first_customer = models.BigIntegerField(help_text="Customer primary keys from this one...")
    last_customer = models.BigIntegerField(help_text="...to this one, inclusive.")
    owner = models.CharField(max_length=64, blank=True, help_text="The run working on this part.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    tally = models.JSONField(default=dict, blank=True, help_text="The part's counts once done.")

    class Meta:
        ordering = ["config", "run_date", "number"]
        constraints = [
            models.UniqueConstraint(fields=["config", "run_date", "number"], name="run_part_unique"),
            models.CheckConstraint(
                condition=Q(first_customer__lte=models.F("last_customer")), name="run_part_range_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.config_id} {self.run_date} part {self.number}"


class ResultsDay(models.Model):
    """One business's results for one run date, summarised so the stats read a few rows per day instead of the
    log (autoengagement/services/results.py). The project's writers of log rows create it (others must call
    `mark_stale`); a `stale` day is counted from the log until it is refreshed."""

    business = models.ForeignKey("wallet.Business", on_delete=models.CASCADE, related_name="+", db_index=False)
    run_date = models.DateField(help_text="The business's local date of the run.")
    stale = models.BooleanField(default=True, help_text="Its log rows changed since the summary was computed.")
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "results day"
        constraints = [models.UniqueConstraint(fields=["business", "run_date"], name="results_day_unique")]
        indexes = [models.Index(fields=["run_date"], name="results_day_run_date_idx")]  # all businesses' results

    def __str__(self) -> str:
        return f"{self.business_id} {self.run_date}"


class ResultsOutcome(models.Model):
    """Log rows of a results day per channel and status (and how many wallet rows were delivered)."""

    day = models.ForeignKey(ResultsDay, on_delete=models.CASCADE, related_name="outcomes", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=NotificationLog.Status.choices)
    rows = models.PositiveIntegerField()
    delivered = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "channel", "status"], name="results_outcome_unique"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="results_outcome_channel_valid"),
            models.CheckConstraint(
                condition=Q(status__in=NotificationLog.Status.values), name="results_outcome_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(rows__gte=1, delivered__gte=0, delivered__lte=models.F("rows")),
                name="results_outcome_counts_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status}: {self.rows}"


class CohortMeasure(models.TextChoices):
    REACHED = "reached", "Reached (at least one channel sent)"
    HOLDOUT = "holdout", "Held out"
    REACHED_BACK = "reached_back", "Reached and came back"
    HOLDOUT_BACK = "holdout_back", "Held out and came back"


# ResultsCohort.step of the cohorts that count a whole group (every step): the day's reached / held-out customers.
EVERY_STEP = 0
# The measures a (step, variant) cohort counts: the customers that step's variant reached, and those who came back.
VARIANT_MEASURES = (CohortMeasure.REACHED, CohortMeasure.REACHED_BACK)


class ResultsCohort(models.Model):
    """Distinct customers of a results day in one measure, by the date of their previous day in that measure.

    A window counts a customer once, on the first of its days they appear on: those whose previous date is
    before the window (or who have none). Summing these rows over any range of days is therefore exact, though
    distinct counts do not add up day by day.

    `step` 0 counts the whole group (the top-level stats); step k with its `variant` counts the customers reached by
    that step's variant (a `sent` row of it), and those of them whose re-engagement was credited, each by their
    previous day in the same step, variant and measure (docs/results.md, "Results per step and variant")."""

    day = models.ForeignKey(ResultsDay, on_delete=models.CASCADE, related_name="cohorts")
    measure = models.CharField(max_length=12, choices=CohortMeasure.choices)
    previous_date = models.DateField(null=True, blank=True, help_text="The customer's previous day in this measure.")
    customers = models.PositiveIntegerField()
    step = models.PositiveSmallIntegerField(
        default=EVERY_STEP, db_default=EVERY_STEP, help_text="0: every step (the group); k: journey step k."
    )
    variant = models.CharField(max_length=40, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "measure", "step", "variant", "previous_date"],
                condition=Q(previous_date__isnull=False),
                name="results_cohort_unique",
            ),
            models.UniqueConstraint(
                fields=["day", "measure", "step", "variant"],
                condition=Q(previous_date__isnull=True),
                name="results_cohort_first_unique",
            ),
            models.CheckConstraint(condition=Q(measure__in=CohortMeasure.values), name="results_cohort_measure_valid"),
            models.CheckConstraint(condition=Q(customers__gte=1), name="results_cohort_customers_positive"),
            models.CheckConstraint(
                condition=Q(step=EVERY_STEP, variant="")
                | Q(step__gte=1, step__lte=5, measure__in=[measure.value for measure in VARIANT_MEASURES]),
                name="results_cohort_step_valid",
            ),
        ]

    def __str__(self) -> str:
        of = f" step {self.step} {self.variant or '(no variant)'}" if self.step else ""
        return f"{self.measure}{of} after {self.previous_date or 'none'}: {self.customers}"
