import datetime as dt
import json
import statistics
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from autoengagement.models import ResultsDay
from autoengagement.services import results
from autoengagement.services.benchmark import build_stats_dataset, count_queries, delete_dataset
from engagement_site.commands import usage_error
from notifications.models import NotificationLog
from wallet.services import session_create


class Command(BaseCommand):
    help = (
        "Benchmark GET /api/auto-engagement/stats: build one business with N log rows over D days in the "
        "configured database, summarise its days, time requests through the real view (authentication included) "
        "for the default 30-day window and the whole range, then for the 30 days with the latest day stale (a "
        "run in progress) and with every day stale (counted from the log); print median milliseconds and SQL "
        "queries, delete the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=365, help="Days the rows spread over (at most 366).")
        parser.add_argument("--requests", type=int, default=15, help="Requests per window; the median is kept.")
        parser.add_argument("--keep", action="store_true", help="Keep the synthetic data afterwards.")

    def handle(self, *args, **options):
        if options["rows"] < 2 or options["customers"] < 1 or options["requests"] < 1:
            raise usage_error("--rows must be at least 2, --customers and --requests at least 1")
        if not 1 <= options["days"] <= 366:
            raise usage_error("--days must be between 1 and 366")
        tag = uuid.uuid4().hex[:8]
        now = timezone.now()
        started = time.perf_counter()
        try:
            business = build_stats_dataset(
                tag=tag, rows=options["rows"], customers=options["customers"], days=options["days"], now=now
            )
            build_seconds = time.perf_counter() - started
            started = time.perf_counter()
            summarised_days = results.rebuild_results(business_ids=[business.pk])
            summary_seconds = time.perf_counter() - started
            _, token = session_create(business=business)
            client = APIClient(
                HTTP_HOST=(settings.ALLOWED_HOSTS or ["localhost"])[0].lstrip(".").replace("*", "localhost")
            )
            client.credentials(HTTP_X_SESSION_TOKEN=token, HTTP_X_BUSINESS_ID=business.business_id)
            today = now.date()
            windows = {
                "last_30_days": {},
                "whole_range": {
                    "date_from": (today - dt.timedelta(days=options["days"])).isoformat(),
                    "date_to": today.isoformat(),
                },
            }
            if options["days"] == 366:
                windows["whole_range"]["date_from"] = (today - dt.timedelta(days=365)).isoformat()
            figures = {
                "database": connection.vendor,
                "rows": NotificationLog.objects.filter(business=business).count(),
                "build_seconds": round(build_seconds, 1),
                "summary_seconds": round(summary_seconds, 1),
                "summarised_days": summarised_days,
                "requests": options["requests"],
            }
            for name, params in windows.items():
                figures[name] = self._measure(client, params, options["requests"])
            # The 30 days again with the latest day stale, as while the business's run is in progress, then with
            # every day stale (a summary never refreshed, e.g. right after the upgrade that adds it).
            latest = ResultsDay.objects.filter(business=business).latest("run_date")
            ResultsDay.objects.filter(pk=latest.pk).update(stale=True)
            figures["last_30_days_one_stale"] = self._measure(client, windows["last_30_days"], options["requests"])
            ResultsDay.objects.filter(business=business).update(stale=True)
            figures["last_30_days_from_log"] = self._measure(client, windows["last_30_days"], options["requests"])
            windows = {**windows, "last_30_days_one_stale": {}, "last_30_days_from_log": {}}
        finally:
            if not options["keep"]:
                delete_dataset(tag=tag)
        for name in windows:
            result = figures[name]
            self.stdout.write(
                f"database={figures['database']} rows={figures['rows']} window={name} "
                f"rows_in_window={result['rows_in_window']} median_ms={result['median_ms']} "
                f"min_ms={result['min_ms']} max_ms={result['max_ms']} sql_queries={result['sql_queries']}"
            )
        self.stdout.write(json.dumps(figures))

    def _measure(self, client: APIClient, params: dict[str, str], requests: int) -> dict[str, object]:
        response = client.get("/api/auto-engagement/stats", params)  # warm-up: connection, caches
        if response.status_code != 200:
            raise RuntimeError(f"stats answered {response.status_code}: {response.content[:200]!r}")
        body = response.json()
        timings = []
        for _ in range(requests):
            with count_queries() as queries:
                started = time.perf_counter()
                client.get("/api/auto-engagement/stats", params)
                timings.append((time.perf_counter() - started) * 1000)
        return {
            "date_from": body["date_from"],
            "date_to": body["date_to"],
            "rows_in_window": sum(sum(statuses.values()) for statuses in body["channels"].values()),
            "median_ms": round(statistics.median(timings), 1),
            "min_ms": round(min(timings), 1),
            "max_ms": round(max(timings), 1),
            "sql_queries": queries[0],
        }
