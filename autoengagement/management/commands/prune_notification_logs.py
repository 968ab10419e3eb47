import argparse
import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from autoengagement.services.retention import DEFAULT_BATCH_SIZE, STATS_WINDOW_DAYS, prune_notification_logs

MAX_VALUE = 36_500  # a hundred years of days; beyond it dates overflow


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_VALUE:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to {MAX_VALUE}")
    return number


class Command(BaseCommand):
    # Cron runs this every few minutes: system-check warnings belong to `check` and the web start, not each tick.
    requires_system_checks: list[str] = []
    help = (
        "Delete notification log rows older than --older-than DAYS (at least "
        f"{STATS_WINDOW_DAYS}, the stats window) that no pending delivery and no once-per-spell rule still "
        "needs, in batches of short transactions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=positive_int, required=True, metavar="DAYS")
        parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="IDS")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args, **options):
        result = prune_notification_logs(
            older_than_days=options["older_than"],
            now=timezone.now(),
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
        )
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(
                    {
                        "deleted": 0 if result.dry_run else result.deleted,
                        "would_delete": result.deleted if result.dry_run else 0,
                        "batches": result.batches,
                        "retention_days": result.retention_days,
                        "cutoff": result.cutoff.isoformat(),
                        "dry_run": result.dry_run,
                    }
                )
            )
            return
        verb = "would be deleted" if result.dry_run else f"deleted in {result.batches} batch(es)"
        self.stdout.write(
            f"{result.deleted} notification log row(s) older than {result.retention_days} days "
            f"(before {result.cutoff:%Y-%m-%d %H:%M} UTC) {verb}."
        )
