"""Deliver the webhook outbox: every message due, signed, many in flight; run it every minute (cron / CronJob)."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from engagement_site.commands import usage_error
from webhooks.delivery import deliver_due

INFRASTRUCTURE_ERROR = 1


class Command(BaseCommand):
    help = (
        "Send the webhook messages that are due (Standard Webhooks signatures), retrying failures for 27 hours. "
        "Exit 0 when it ran (endpoints that failed are retried later: their failures are theirs), 1 when it could "
        "not (the database failed, or a request failed for a reason on this side, e.g. an unreadable CA bundle), "
        "2 on bad usage. Copies may run at once: messages are claimed with row locks and leases."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Messages claimed at a time (default 500).")
        parser.add_argument("--concurrency", type=int, default=50, help="Requests in flight at once (default 50).")
        parser.add_argument("--no-prune", action="store_true", help="Keep old delivered and failed messages.")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args, **options):
        if options["batch_size"] < 1:
            raise usage_error("--batch-size: must be at least 1.")
        if not 1 <= options["concurrency"] <= 1000:
            raise usage_error("--concurrency: must be between 1 and 1000.")
        try:
            summary = deliver_due(
                batch_size=options["batch_size"], concurrency=options["concurrency"], prune=not options["no_prune"]
            )
        except DatabaseError as exc:
            raise CommandError(f"database error: {exc}", returncode=INFRASTRUCTURE_ERROR) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            self.stdout.write(
                f"claimed {summary.claimed}, delivered {summary.delivered}, retrying {summary.retrying}, "
                f"failed {summary.failed}, pruned {summary.pruned}"
            )
            for webhook_id in summary.disabled_endpoints:
                self.stdout.write(f"disabled {webhook_id}: it answered 410 Gone")
        if summary.local_errors:
            raise CommandError(
                f"{summary.local_errors} attempt(s) failed for a reason on this side (see the logs)",
                returncode=INFRASTRUCTURE_ERROR,
            )
