"""Health, readiness and metrics endpoints for orchestrators and Prometheus.

`/healthz`: the process answers. `/readyz`: the database answers, every migration is applied and each live channel's
settings are usable (the system checks' errors), else 503 naming what is wrong. `/metrics`: Prometheus text format;
the process's own metrics plus gauges read from the database that a cron-driven system needs (per business, the last
run's status and the seconds since its last successful run; messages by channel and status over the last two local
days, from the results summary so a scrape never scans the log). Set METRICS_TOKEN to require
`Authorization: Bearer <token>`, or keep the path off the public Ingress.

The web process's own metrics: `RequestMetricsMiddleware` counts requests by route, method and status and times
them. gunicorn runs several worker processes, so with PROMETHEUS_MULTIPROC_DIR set (deploy/gunicorn.conf.py
prepares it) every worker writes its samples there and a scrape answered by any worker sums them all.

Kubelet probes and Prometheus call the pod by its IP, over plain HTTP: `ProbeMiddleware`, first in MIDDLEWARE,
answers these three paths before the host check (ALLOWED_HOSTS) and the HTTPS redirect, which would otherwise turn
every probe into a 400 or a 301 (and Kubernetes counts a 301 as healthy).
"""

import datetime as dt
import hmac
import os
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.checks import ERROR, run_checks
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autoengagement.models import AutoEngagementConfig, ResultsOutcome

# Registered in a registry of their own: in multiprocess mode the samples are read back from the files instead.
REQUEST_REGISTRY = CollectorRegistry(auto_describe=False)
REQUESTS = Counter("http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=REQUEST_REGISTRY)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds", "Time to answer HTTP requests.", ["route", "method"], registry=REQUEST_REGISTRY
)

# The system checks that decide whether the channels can deliver (tagged by notifications.checks).
READINESS_CHECK_IDS = ("notifications.E001", "notifications.E002", "notifications.E003", "autoengagement.E001")


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readiness_problems() -> list[str]:
    """What keeps this process from serving and running: empty when ready."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return [f"database unreachable: {type(exc).__name__}"]
    problems = [f"{len(unapplied)} migration(s) not applied"] if unapplied else []
    problems += [
        f"{message.id}: {message.msg}"
        for message in run_checks(include_deployment_checks=False)
        if message.level >= ERROR and message.id in READINESS_CHECK_IDS
    ]
    return problems


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    problems = readiness_problems()
    if problems:
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ready"})


class RunCollector(Collector):
    """Gauges read from the database at each scrape: a handful of indexed queries whatever the log's size."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        status = GaugeMetricFamily(
            "autoengagement_last_run_status",
            "1 for the status of each enabled business's last run.",
            labels=["business_id", "status"],
        )
        since = GaugeMetricFamily(
            "autoengagement_seconds_since_last_success",
            "Seconds since each enabled business's last successful run (absent: never succeeded).",
            labels=["business_id"],
        )
        retries = GaugeMetricFamily(
            "autoengagement_retry_pending",
            "1 when a business has messages waiting for a retry.",
            labels=["business_id"],
        )
        configs = AutoEngagementConfig.objects.filter(enabled=True).values_list(
            "business__business_id", "last_run_status", "last_success_at", "retry_at"
        )
        for business_id, run_status, last_success_at, retry_at in configs.iterator(2000):
            status.add_metric([business_id, run_status or "never"], 1)
            if last_success_at is not None:
                since.add_metric([business_id], (now - last_success_at).total_seconds())
            retries.add_metric([business_id], int(retry_at is not None))
        yield from (status, since, retries)
        yield self._messages(now)

    @staticmethod
    def _messages(now: dt.datetime) -> GaugeMetricFamily:
        messages = GaugeMetricFamily(
            "autoengagement_messages",
            "Messages by channel and status, over the run dates of the last two days (results summary).",
            labels=["channel", "status"],
        )
        rows = (
            ResultsOutcome.objects.filter(day__run_date__gte=(now - dt.timedelta(days=1)).date())
            .values_list("channel", "status")
            .annotate(total=Sum("rows"))
            .order_by()
        )
        for channel, message_status, total in rows:
            messages.add_metric([channel, message_status], total)
        return messages


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_REGISTRY)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, RunCollector()):
        registry.register(collector)
    return registry


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics token required\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class ProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        return probe(request) if probe else self.get_response(request)


class RequestMetricsMiddleware:
    """Counts and times every request by its URL route (a bounded set of labels, never the raw path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
        return response


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
