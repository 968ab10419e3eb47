import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from django.core.validators import URLValidator

from devtools.ingest import run_http_ingest_benchmark, run_ingest_benchmark
from engagement_site.commands import usage_error
from wallet.bulk import MAX_ROWS


class Command(BaseCommand):
    help = (
        "Benchmark the platform API's ingest through the real endpoints in the configured database. By default, in "
        "this process, one request at a time: per round, POST /api/customers/bulk with --rows new customers, again "
        "with the same rows changed, then POST /api/visits with a visit of each; prints rows per second per request "
        "(median and each round) and the SQL statements per request. With --url, over HTTP to a running server using "
        "this database, from --clients concurrent clients with an API key, --rounds requests each: prints rows per "
        "second over each phase. Output is JSON; the data is deleted after."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=MAX_ROWS, help=f"Rows per request, 1..{MAX_ROWS}.")
        parser.add_argument("--rounds", type=int, default=5)
        parser.add_argument("--url", help="A running server's base URL (e.g. http://127.0.0.1:8000).")
        parser.add_argument("--clients", type=int, default=4, help="Concurrent clients with --url, 1..64.")
        parser.add_argument("--keep", action="store_true", help="Keep the business and its customers.")

    def handle(self, *args, **options):
        if not 1 <= options["rows"] <= MAX_ROWS or options["rounds"] < 1:
            raise usage_error(f"--rows must be between 1 and {MAX_ROWS}, --rounds at least 1")
        if options["url"] is None:
            figures = run_ingest_benchmark(rows=options["rows"], rounds=options["rounds"], keep=options["keep"])
        else:
            try:
                URLValidator(schemes=["http", "https"])(options["url"])
            except ValidationError:
                raise usage_error("--url must be an http(s) URL, such as http://127.0.0.1:8000") from None
            if not 1 <= options["clients"] <= 64:
                raise usage_error("--clients must be between 1 and 64")
            figures = run_http_ingest_benchmark(
                base_url=options["url"].rstrip("/"),
                rows=options["rows"],
                rounds=options["rounds"],
                clients=options["clients"],
                keep=options["keep"],
            )
        self.stdout.write(json.dumps(figures))
