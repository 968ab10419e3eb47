import contextlib
import datetime as dt
import functools
import json
import statistics
import time
import uuid
from unittest import mock

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from autoengagement import stats
from autoengagement.models import AutoEngagementConfig, ResultsCohort, ResultsDay
from autoengagement.services import results
from devtools import benchmark
from devtools.benchmark import build_stats_dataset, count_queries, delete_dataset
from engagement_site.commands import usage_error
from notifications.models import NotificationLog
from wallet.models import Business
from wallet.services import session_create

# The plain sources: the stats answered from the log alone by the statements of benchmark.plain_stats_queries.
# "log" bounds them by run date only (what the covering index serves); "log_created_at" also by the created_at range
# the existing history index (business, type, created_at) narrows, as the stale-day path does; "log_index_only" is
# "log" with sequential scans disabled, so the covering index is used even for a window that holds the whole table.
# Each: (created_at bounds, sequential scans allowed, the index states it is measured in).
PLAIN_SOURCES = {
    "log": (False, True, ("without_index", "with_index")),
    "log_created_at": (True, True, ("without_index",)),
    "log_index_only": (False, False, ("with_index",)),
}


class Command(BaseCommand):
    help = (
        "Benchmark GET /api/auto-engagement/stats: build one business with N log rows over D days in the "
        "configured database, summarise its days, time requests through the real view (authentication included) "
        "for the default 30-day window and the whole range, then for the 30 days with the latest day stale (a "
        "run in progress) and with every day stale (counted from the log); print median milliseconds and SQL "
        "queries, delete the data. With --plain, also time the same requests answered from the log alone (no "
        "summary) without and with a covering index created for the benchmark, the cost of recounting stale days, "
        "the index's size and its cost to the log's writers, and print the plain statements' plans."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=365, help="Days the rows spread over (at most 366).")
        parser.add_argument("--requests", type=int, default=15, help="Requests per window; the median is kept.")
        parser.add_argument(
            "--steps",
            type=int,
            default=0,
            help="Make the config a journey of this many steps (1..5), each re-engagement one of them (0: none, "
            "every row step 1 with no variant, as the seed's).",
        )
        parser.add_argument("--variants", type=int, default=1, help="With --steps: variants per step (1..4; 1: none).")
        parser.add_argument("--keep", action="store_true", help="Keep the synthetic data afterwards.")
        parser.add_argument(
            "--reuse",
            metavar="TAG",
            help="Use the data a run with --keep built (its tag is printed), the same day and with the same --days, "
            "instead of building it; --rows and --customers are then ignored. Deleted afterwards unless --keep.",
        )
        parser.add_argument(
            "--plain",
            action="store_true",
            help="Also measure the stats from the log alone, without and with a covering index (dropped afterwards).",
        )
        parser.add_argument(
            "--write-rows",
            type=int,
            default=100_000,
            help="With --plain: log rows inserted, and rows updated as a credit does, to time the index's cost to "
            "writers (in a transaction rolled back).",
        )

    def handle(self, *args, **options):
        if options["rows"] < 2 or options["customers"] < 1 or options["requests"] < 1 or options["write_rows"] < 1:
            raise usage_error("--rows must be at least 2, --customers, --requests and --write-rows at least 1")
        if not 1 <= options["days"] <= 366:
            raise usage_error("--days must be between 1 and 366")
        if not 0 <= options["steps"] <= 5 or not 1 <= options["variants"] <= 4:
            raise usage_error("--steps must be between 0 and 5, --variants between 1 and 4")
        tag = options["reuse"] or uuid.uuid4().hex[:8]
        now = timezone.now()
        started = time.perf_counter()
        plans: dict[str, dict[str, list[str]]] = {}
        try:
            if options["reuse"]:
                business = benchmark.stats_dataset_business(tag=tag)
                if business is None:
                    raise usage_error(f"no data kept under the tag {tag}")
            else:
                business = build_stats_dataset(
                    tag=tag,
                    rows=options["rows"],
                    customers=options["customers"],
                    days=options["days"],
                    now=now,
                    steps=options["steps"],
                    variants=options["variants"],
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
                "tag": tag,
                "rows": NotificationLog.objects.filter(business=business).count(),
                "build_seconds": round(build_seconds, 1),
                "summary_seconds": round(summary_seconds, 1),
                "summarised_days": summarised_days,
                "summary_ms_per_day": round(summary_seconds * 1000 / max(summarised_days, 1), 1),
                "journey": _journey_shape(business),
                "cohort_rows": ResultsCohort.objects.filter(day__business=business).count(),
                "requests": options["requests"],
            }
            bodies = {}
            for name, params in windows.items():
                figures[name] = self._measure(client, params, options["requests"])
                bodies[name] = self.last_body
            if options["plain"]:
                figures["plain"] = self._plain(client, business, windows, bodies, options, now, plans)
            # The 30 days again with the latest day stale, as while the business's run is in progress, then with
            # every day stale (a summary never refreshed, e.g. right after the upgrade that adds it).
            latest = ResultsDay.objects.filter(business=business).latest("run_date")
            ResultsDay.objects.filter(pk=latest.pk).update(stale=True)
            figures["last_30_days_one_stale"] = self._measure(client, windows["last_30_days"], options["requests"])
            ResultsDay.objects.filter(business=business).update(stale=True)
            figures["last_30_days_from_log"] = self._measure(client, windows["last_30_days"], options["requests"])
            windows = {**windows, "last_30_days_one_stale": {}, "last_30_days_from_log": {}}
        finally:
            if options["plain"]:
                benchmark.drop_plain_index()
            if not options["keep"]:
                delete_dataset(tag=tag)
        self._report(figures, windows, plans)

    def _plain(self, client, business, windows, bodies, options, now, plans) -> dict[str, object]:
        """The --plain measurements (see the help); the summary is fresh on entry and on return."""
        requests = options["requests"]
        benchmark.drop_plain_index()  # left by an interrupted run
        plain: dict[str, object] = {"matches_summary": True}
        plain["recount"] = self._recount(business, repeats=min(requests, 5))
        # Reads while the days a visit credit can reach are stale, as if credits only marked their days stale.
        attribution_days = AutoEngagementConfig.objects.get(business=business).attribution_days
        latest = ResultsDay.objects.filter(business=business).latest("run_date").run_date
        first = latest - dt.timedelta(days=attribution_days - 1)
        ResultsDay.objects.filter(business=business, run_date__gte=first).update(stale=True)
        plain["last_30_days_attribution_stale"] = {
            "stale_days": attribution_days,
            **self._measure(client, windows["last_30_days"], requests),
        }
        results.refresh_days(business_id=business.pk, run_dates=[first])

        for label in ("without_index", "with_index"):
            if label == "with_index":
                plain["index"] = self._create_index()
            measured: dict[str, object] = {}
            for source, (created_at_bounds, seq_scans, labels) in PLAIN_SOURCES.items():
                if label not in labels:
                    continue
                answer = functools.partial(benchmark.plain_engagement_stats, created_at_bounds=created_at_bounds)
                measured[source] = {}
                planner = contextlib.nullcontext() if seq_scans else benchmark.without_seq_scans()
                with planner, mock.patch.object(stats, "engagement_stats", answer):
                    for name, params in windows.items():
                        measured[source][name] = self._measure(client, params, requests)
                        if self.last_body != bodies[name]:
                            plain["matches_summary"] = False
                            self.stderr.write(f"{label} {source} {name}: the log's answer differs from the summary's")
                    plans[f"{source}_{label}"] = benchmark.explain_plain(
                        business_id=business.pk,
                        date_from=dt.date.fromisoformat(bodies["whole_range"]["date_from"]),
                        date_to=dt.date.fromisoformat(bodies["whole_range"]["date_to"]),
                        created_at_bounds=created_at_bounds,
                    )
            # The existing path with every day stale (the summary's log fallback), which the index may also serve.
            ResultsDay.objects.filter(business=business).update(stale=True)
            measured["from_log_path"] = {"last_30_days": self._measure(client, windows["last_30_days"], requests)}
            # Nothing was written since every day was summarised: their summaries are still exact.
            ResultsDay.objects.filter(business=business).update(stale=False)
            measured["writes"] = benchmark.time_log_writes(business=business, rows=options["write_rows"], now=now)
            benchmark.analyze_log(vacuum=True)
            plain[label] = measured
        return plain

    def _create_index(self) -> dict[str, object]:
        table = NotificationLog._meta.db_table
        return {
            "name": benchmark.PLAIN_INDEX,
            "definition": benchmark.plain_index_definition(),
            "create_seconds": round(benchmark.create_plain_index(), 1),
            "bytes": benchmark.relation_bytes(benchmark.PLAIN_INDEX),
            "table_bytes": benchmark.relation_bytes(table),
            "history_index_bytes": benchmark.relation_bytes("notification_history_idx"),
        }

    def _recount(self, business: Business, *, repeats: int) -> dict[str, object]:
        """Milliseconds to refresh a stale day: the latest (no later day), and the first of the days a visit credit
        can reach (refreshing a day recounts the business's later days too)."""
        attribution_days = AutoEngagementConfig.objects.get(business=business).attribution_days
        latest = ResultsDay.objects.filter(business=business).latest("run_date").run_date
        first = latest - dt.timedelta(attribution_days - 1)
        figures: dict[str, object] = {"attribution_days": attribution_days}
        # What the summary's incremental upkeep costs instead, per batch of credits (the days stay fresh).
        figures["count_credits_ms"] = benchmark.time_count_credits(
            business=business, since=first, sizes=(1, 100), repeats=repeats
        )
        for name, day in (("latest_day", latest), ("attribution_start", first)):
            timings, refreshed = [], 0
            for _ in range(repeats):
                results.mark_stale([(business.pk, day)])
                started = time.perf_counter()
                refreshed = results.refresh_days(business_id=business.pk, run_dates=[day])
                timings.append((time.perf_counter() - started) * 1000)
            figures[name] = {
                "run_date": day.isoformat(),
                "days_recounted": refreshed,
                "median_ms": round(statistics.median(timings), 1),
                "ms_per_day": round(statistics.median(timings) / max(refreshed, 1), 1),
            }
        return figures

    def _report(self, figures, windows, plans) -> None:
        prefix = f"database={figures['database']} rows={figures['rows']} journey={figures['journey']}"
        self.stdout.write(f"{prefix} summary_seconds={figures['summary_seconds']} cohort_rows={figures['cohort_rows']}")
        for name in windows:
            self._line(f"{prefix} window={name}", figures[name])
        plain = figures.get("plain")
        if plain:
            for name in ("last_30_days", "whole_range"):
                self._line(f"{prefix} window={name} source=summary", figures[name])
                for label in ("without_index", "with_index"):
                    for source in (*PLAIN_SOURCES, "from_log_path"):
                        if name in plain[label].get(source, {}):
                            self._line(f"{prefix} window={name} source={source}_{label}", plain[label][source][name])
            self._line(f"{prefix} window=last_30_days_attribution_stale", plain["last_30_days_attribution_stale"])
            for name in ("latest_day", "attribution_start"):
                recount = plain["recount"][name]
                self.stdout.write(
                    f"{prefix} recount={name} run_date={recount['run_date']} days={recount['days_recounted']} "
                    f"median_ms={recount['median_ms']} ms_per_day={recount['ms_per_day']}"
                )
            for size, ms in plain["recount"]["count_credits_ms"].items():
                self.stdout.write(f"{prefix} count_credits={size} median_ms={ms}")
            index = plain["index"]
            self.stdout.write(
                f"{prefix} index={index['name']} bytes={index['bytes']} table_bytes={index['table_bytes']} "
                f"create_seconds={index['create_seconds']}"
            )
            for label in ("without_index", "with_index"):
                writes = plain[label]["writes"]
                self.stdout.write(
                    f"{prefix} writes={label} insert_rows={writes['insert_rows']} insert_ms={writes['insert_ms']} "
                    f"update_rows={writes['update_rows']} update_ms={writes['update_ms']}"
                )
            for name, statements in plans.items():
                for statement, lines in statements.items():
                    self.stdout.write(f"-- plan {name} {statement} (whole range)")
                    for line in lines:
                        self.stdout.write(f"   {line}")
        self.stdout.write(json.dumps(figures))

    def _line(self, label: str, result: dict[str, object]) -> None:
        self.stdout.write(
            f"{label} rows_in_window={result['rows_in_window']} median_ms={result['median_ms']} "
            f"min_ms={result['min_ms']} max_ms={result['max_ms']} sql_queries={result['sql_queries']}"
        )

    def _measure(self, client: APIClient, params: dict[str, str], requests: int) -> dict[str, object]:
        response = client.get("/api/auto-engagement/stats", params)  # warm-up: connection, caches
        if response.status_code != 200:
            raise RuntimeError(f"stats answered {response.status_code}: {response.content[:200]!r}")
        body = response.json()
        self.last_body = body
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


def _journey_shape(business: Business) -> str:
    """The dataset's journey as steps x variants per step ("none" for a config without steps)."""
    steps = AutoEngagementConfig.objects.filter(business=business).values_list("steps", flat=True).first()
    if not steps:
        return "none"
    return f"{len(steps)}x{max(len(step.get('variants') or ()) for step in steps) or 1}"
