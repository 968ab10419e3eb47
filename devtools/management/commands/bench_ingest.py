import json

from django.core.management.base import BaseCommand

from devtools.ingest import run_ingest_benchmark
from engagement_site.commands import usage_error
from wallet.bulk import MAX_ROWS


class Command(BaseCommand):
    help = (
        "Benchmark the platform API's ingest through the real endpoints (authentication included) in the configured "
        "database: per round, POST /api/customers/bulk with --rows new customers, again with the same rows changed, "
        "then POST /api/visits with a visit of each; print rows per second per request (median and each round) and "
        "the SQL statements per request as JSON, then delete the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=MAX_ROWS, help=f"Rows per request, 1..{MAX_ROWS}.")
        parser.add_argument("--rounds", type=int, default=5)
        parser.add_argument("--keep", action="store_true", help="Keep the business and its customers.")

    def handle(self, *args, **options):
        if not 1 <= options["rows"] <= MAX_ROWS or options["rounds"] < 1:
            raise usage_error(f"--rows must be between 1 and {MAX_ROWS}, --rounds at least 1")
        figures = run_ingest_benchmark(rows=options["rows"], rounds=options["rounds"], keep=options["keep"])
        self.stdout.write(json.dumps(figures))
