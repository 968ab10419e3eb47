import datetime as dt
import json
import os
import time
from contextlib import ExitStack
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from autoengagement.services.run import BusinessOutcome, RunSummary, UnknownBusinesses, run_due_configs
from engagement_site.commands import usage_error
from engagement_site.logging import terminal_lines_to

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


class TerminalProgress:
    """The run's progress on a terminal, one live line per process: businesses done of those due, the percentage,
    customers processed and notified, their rate and the time left. Log lines are printed above it, whole and in
    their usual format. Nothing is shown until the run has read its due configs (a disabled run shows none)."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False)
        self.stream = stream
        self._live = ExitStack()
        self._progress: Progress | None = None
        self._task = 0
        self._started_at = 0.0
        self._done = {"customers": 0, "notified": 0}

    def started(self, total: int) -> None:
        self._progress = Progress(
            TextColumn(f"run {os.getpid()}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("businesses"),
            TaskProgressColumn(),
            TextColumn(
                "{task.fields[customers]:,} customers, {task.fields[notified]:,} notified, {task.fields[rate]:,.0f}/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task("run", total=total, customers=0, notified=0, rate=0)
        self._started_at = time.monotonic()
        self._live.enter_context(self._progress)
        self._live.enter_context(terminal_lines_to(self._print_line, terminal=self.stream))

    def advanced(self, outcome: BusinessOutcome) -> None:
        # Drawn at once: a chunk is thousands of customers, and the counts of a long business are what one watches.
        self._show(outcome, refresh=True)

    def finished(self, outcome: BusinessOutcome | None) -> None:
        if outcome is not None:
            self._done["customers"] += outcome.audience
            self._done["notified"] += outcome.notified
        # Drawn by the display's own refresh (ten times a second): thousands of small businesses are done quickly.
        self._show(None, advance=1)

    def close(self) -> None:
        """Leaves the last state on its own line, so what follows starts on a fresh one."""
        self._live.close()

    def _show(self, running: BusinessOutcome | None, *, advance: int = 0, refresh: bool = False) -> None:
        if self._progress is None:
            return
        customers = self._done["customers"] + (running.audience if running else 0)
        notified = self._done["notified"] + (running.notified if running else 0)
        elapsed = max(time.monotonic() - self._started_at, 1e-3)
        self._progress.update(
            self._task,
            advance=advance,
            customers=customers,
            notified=notified,
            rate=customers / elapsed,
            refresh=refresh,
        )

    def _print_line(self, line: str) -> None:
        self.console.print(Text(line), soft_wrap=True)


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
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="No live progress display on a terminal (plain lines, as when the output is a file or a pipe).",
        )

    def handle(self, *args, **options):
        now = parse_now(options["now"]) if options["now"] else timezone.now()
        if abs(now - timezone.now()) > SKEW_WARNING and not options["dry_run"]:
            self.stderr.write(
                f"Warning: --now {now.isoformat()} is more than a day from the clock ({timezone.now():%Y-%m-%d}); "
                "messages are really sent and that date is recorded as the last run date."
            )
        show_progress = options["format"] == "text" and not options["no_progress"] and self.stdout.isatty()
        # Django's wrapper adds a newline to every write: the display writes to the stream it wraps.
        progress = TerminalProgress(getattr(self.stdout, "_out", self.stdout)) if show_progress else None
        try:
            summary = run_due_configs(
                now=now, business_ids=options["business"], dry_run=options["dry_run"], progress=progress
            )
        except UnknownBusinesses as exc:
            raise usage_error(f"--business: {exc}") from exc
        finally:
            if progress:
                progress.close()
        if options["format"] == "json":
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            self.stdout.write(format_text(summary))
        if summary.failed_businesses:
            raise CommandError(f"{summary.failed_businesses} business(es) failed", returncode=1)
