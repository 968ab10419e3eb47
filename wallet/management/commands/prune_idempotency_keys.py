from django.core.management.base import BaseCommand
from django.utils import timezone

from wallet.idempotency import IDEMPOTENCY_TTL, idempotency_prune


class Command(BaseCommand):
    # Cron runs this hourly (or daily): system-check warnings belong to `check` and the web start, not each tick.
    requires_system_checks: list[str] = []
    help = f"Delete the Idempotency-Key records older than {IDEMPOTENCY_TTL} (their keys can no longer be replayed)."

    def handle(self, *args, **options):
        deleted = idempotency_prune(now=timezone.now())
        self.stdout.write(f"{deleted} idempotency record(s) older than {IDEMPOTENCY_TTL} deleted.")
