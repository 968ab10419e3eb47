import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from autoengagement.services.run import BusinessOutcome, RunSummary, UnknownBusinesses, run_due_configs
from engagement_site.commands import usage_error

# The run reaches up to ten years back (max_inactivity_days) and some days ahead (retries, leases, zones) of --now.
EARLIEST_NOW = dt.datetime(1, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=3660 + 2)
LATEST_NOW = dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - dt.timedelta(days=400)
SKEW_WARNING = dt.timedelta(days=1)


def parse_now(value: str) -> dt.datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise usage_error(f"--now: {value!r} is not an ISO-8601 date-time (e.g. 2026-03-01T09:00:00+01:00)")
    try:
        parsed = parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)
        in_range = EARLIEST_NOW <= parsed <= LATEST_NOW
    except OverflowError:
        in_range = False
    if not in_range:
        raise usage_error(
            f"--now: {value!r} is outside the instants a run can handle "
            f"({EARLIEST_NOW.date().isoformat()} to {LATEST_NOW.date().isoformat()})"
        )
    return parsed


def format_outcome(outcome: BusinessOutcome, dry_run: bool) -> str:
    sent = "would send" if dry_run else "sent"
    line = (
        f"{outcome.business_id}  {outcome.status:<8} audience={outcome.audience} notified={outcome.notified} "
        f"holdout={outcome.holdout} {sent}={outcome.sent} failed={outcome.failed} skipped={outcome.skipped}"
    )
    if outcome.retryable or outcome.unknown:
        line += f" retryable={outcome.retryable} unknown={outcome.unknown}"
    if outcome.skip_reasons:
        line += " (" + ", ".join(f"{reason}: {count}" for reason, count in sorted(outcome.skip_reasons.items())) + ")"
    if outcome.steps and set(outcome.steps) != {"1"}:
        # A journey's customers per step (a config without steps sends step 1 only: nothing to say).
        line += " steps: " + ", ".join(f"{step}={count}" for step, count in sorted(outcome.steps.items(), key=_step))
    if outcome.error:
        line += f"  [{outcome.error}]"
    for warning in outcome.warnings:
        line += f"\n  warning: {warning}"
    return line


def _step(item: tuple[str, int]) -> int:
    return int(item[0])


def format_text(summary: RunSummary) -> str:
    if summary.disabled:
        return "Auto-engagement is disabled (DISABLE_AUTO_ENGAGEMENT=true); nothing done."
    totals = summary.as_dict()
    lines = [format_outcome(outcome, summary.dry_run) for outcome in summary.outcomes]
    if summary.dry_run:
        lines.append(
            f"Dry run: {totals['total_processed']} business(es), {totals['total_notified']} customer(s) would be "
            f"notified with {totals['notifications_sent']} message(s); {totals['notifications_skipped']} skipped, "
            f"{totals['total_holdout']} in holdout. Nothing was written or sent."
        )
    else:
        lines.append(
            f"{totals['total_processed']} business(es) processed, {totals['total_notified']} customer(s) notified, "
            f"{totals['total_failed']} business(es) failed, {totals['total_missed']} missed; "
            f"{totals['notifications_sent']} sent, {totals['notifications_failed']} failed, "
            f"{totals['notifications_retryable']} to retry, {totals['notifications_unknown']} unknown, "
            f"{totals['notifications_skipped']} skipped, {totals['total_holdout']} in holdout."
        )
    return "\n".join(lines)


class Command(BaseCommand):
    # Cron runs this every few minutes: system-check warnings belong to `check` and the web start, not each tick.
    requires_system_checks: list[str] = []
    help = (
        "Re-engage inactive customers of every business whose local send time has come. Meant to run every "
        "15 minutes; safe to run as many copies at once as you like."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", type=str, help="Pretend the time is this ISO-8601 instant (naive means UTC).")
        parser.add_argument(
            "--business",
            action="append",
            metavar="BUSINESS_ID",
            help="Only this business (repeatable); ignores the send time but never sends twice.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report who would be reached; write nothing.")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args, **options):
        now = parse_now(options["now"]) if options["now"] else timezone.now()
        if abs(now - timezone.now()) > SKEW_WARNING and not options["dry_run"]:
            self.stderr.write(
                f"Warning: --now {now.isoformat()} is more than a day from the clock ({timezone.now():%Y-%m-%d}); "
                "messages are really sent and that date is recorded as the last run date."
            )
        show_progress = options["format"] == "text" and self.stdout.isatty()
        try:
            summary = run_due_configs(
                now=now,
                business_ids=options["business"],
                dry_run=options["dry_run"],
                progress=self._progress if show_progress else None,
            )
        except UnknownBusinesses as exc:
            raise usage_error(f"--business: {exc}") from exc
        if show_progress:
            self.stdout.write("\r\033[K", ending="")
        if options["format"] == "json":
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            self.stdout.write(format_text(summary))
        if summary.failed_businesses:
            raise CommandError(f"{summary.failed_businesses} business(es) failed", returncode=1)

    def _progress(self, outcome: BusinessOutcome, customers: int) -> None:
        self.stdout.write(
            f"\r\033[K{outcome.business_id}: {customers} customers, {outcome.notified} notified", ending=""
        )
        self.stdout.flush()
