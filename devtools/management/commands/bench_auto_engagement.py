import cProfile
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from autoengagement.journeys import MAX_STEPS
from autoengagement.services.run import run_due_configs
from devtools.benchmark import (
    bench_business_ids,
    build_dataset,
    count_queries,
    delete_dataset,
    run_node_loop,
)
from engagement_site.commands import usage_error
from notifications.channels import Channel


def peak_rss_kib() -> int:
    """This process's own peak resident memory. Linux's ru_maxrss also counts the parent's memory at fork
    time (the parent built the dataset), so VmHWM from /proc is preferred where it exists."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Command(BaseCommand):
    help = (
        "Benchmark the daily run: build B businesses x C customers in the configured database, time one full run "
        "with the configured (by default record) backends in a fresh process, print the figures, delete the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--businesses", type=int, default=100)
        parser.add_argument("--customers", type=int, default=2000, help="Customers per business.")
        parser.add_argument("--inactive-share", type=float, default=0.5)
        parser.add_argument("--channels", default="wallet", help="Comma-separated, e.g. wallet,email.")
        parser.add_argument(
            "--steps",
            type=int,
            default=0,
            help=f"Give the configs a journey of this many steps (1-{MAX_STEPS}; 0: none, the seed's one message).",
        )
        parser.add_argument(
            "--variants", type=int, default=0, help="Variants per journey step (2-4; 0: none). Needs --steps."
        )
        parser.add_argument("--keep", action="store_true", help="Keep the synthetic data afterwards.")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="Run processes at once, each taking its share of the businesses (like CronJob parallelism).",
        )
        parser.add_argument(
            "--shared",
            action="store_true",
            help="Every worker runs every business, sharing them through the claims (and a business bigger than "
            "AUTO_ENGAGEMENT_PART_SIZE through its parts), as CronJob parallelism does.",
        )
        parser.add_argument(
            "--measure-run",
            metavar="TAG",
            help="(internal) run the businesses of an existing dataset and print JSON figures",
        )
        parser.add_argument("--worker", type=int, default=0, help="(internal) which share --measure-run takes")
        parser.add_argument(
            "--node-loop",
            action="store_true",
            help="Time the literal port of the original Node loop (one INSERT per log row) instead of the run.",
        )
        parser.add_argument(
            "--profile",
            metavar="DIR",
            help="Write each worker's cProfile of the timed run to DIR/worker-N.prof (read with pstats).",
        )

    def handle(self, *args, **options):
        if options["measure_run"]:
            worker, workers = (0, 1) if options["shared"] else (options["worker"], options["workers"])
            profiler = cProfile.Profile() if options["profile"] else None
            figures = self._measure(options["measure_run"], worker, workers, options["node_loop"], profiler)
            if profiler is not None:
                profiler.dump_stats(Path(options["profile"]) / f"worker-{options['worker']}.prof")
            self.stdout.write(json.dumps(figures))
            return
        channels = [c.strip() for c in options["channels"].split(",") if c.strip()]
        if not channels or any(c not in Channel.values for c in channels):
            raise usage_error(f"--channels: use a comma-separated subset of {', '.join(Channel.values)}")
        if options["businesses"] < 1 or options["customers"] < 1:
            raise usage_error("--businesses and --customers must be at least 1")
        if not 0 <= options["inactive_share"] <= 1:
            raise usage_error("--inactive-share must be between 0 and 1")
        if not 1 <= options["workers"] <= 32:
            raise usage_error("--workers must be between 1 and 32")
        if not 0 <= options["steps"] <= MAX_STEPS:
            raise usage_error(f"--steps must be between 0 and {MAX_STEPS}")
        if options["variants"] and (not options["steps"] or not 2 <= options["variants"] <= 4):
            raise usage_error("--variants must be between 2 and 4, with --steps")
        if options["steps"] and options["node_loop"]:
            raise usage_error("--node-loop ports the original loop, which knows no journeys: drop --steps")

        tag = uuid.uuid4().hex[:8]
        built = time.perf_counter()
        build_dataset(
            tag=tag,
            businesses=options["businesses"],
            customers=options["customers"],
            inactive_share=options["inactive_share"],
            channels=channels,
            now=timezone.now(),
            steps=options["steps"],
            variants=options["variants"],
        )
        build_seconds = time.perf_counter() - built
        try:
            figures = _run_workers(
                tag=tag,
                workers=options["workers"],
                shared=options["shared"],
                profile=options["profile"],
                node_loop=options["node_loop"],
            )
        finally:
            if not options["keep"]:
                delete_dataset(tag=tag)
        figures.update(
            database=connection.vendor,
            channels=channels,
            steps=options["steps"],
            variants=options["variants"],
            customers=options["businesses"] * options["customers"],
            build_seconds=round(build_seconds, 1),
        )
        self.stdout.write(
            f"database={figures['database']} workers={figures['workers']} businesses={figures['businesses']} "
            f"customers={figures['customers']} "
            f"channels={','.join(channels)} steps={options['steps']} variants={options['variants']} "
            f"notifications={figures['notifications']} seconds={figures['seconds']} "
            f"us_per_notification={figures['us_per_notification']} "
            f"notifications_per_second={figures['notifications_per_second']} sql_queries={figures['sql_queries']} "
            f"cpu_seconds={figures['cpu_seconds']} peak_rss_mb={figures['peak_rss_mb']} "
            f"send_window={figures['send_window']}"
        )
        self.stdout.write(json.dumps(figures))

    def _measure(
        self, tag: str, worker: int, workers: int, node_loop: bool, profiler: cProfile.Profile | None
    ) -> dict[str, object]:
        business_ids = bench_business_ids(tag)[worker::workers]
        now = timezone.now() + dt.timedelta(seconds=1)
        started_at = time.time()
        started = time.perf_counter()
        cpu_started = time.process_time()
        with count_queries() as queries:
            if profiler is not None:
                profiler.enable()
            if node_loop:
                totals = run_node_loop(business_ids=business_ids, now=now)
            else:
                summary = run_due_configs(now=now, business_ids=business_ids)
            if profiler is not None:
                profiler.disable()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        if node_loop:
            return {
                "businesses": len(business_ids),
                **totals,
                "started_at": started_at,
                "finished_at": started_at + seconds,
                "sql_queries": queries[0],
                "cpu_seconds": round(cpu_seconds, 2),
                "peak_rss_mb": round(peak_rss_kib() / 1024, 1),
            }
        # The run that claimed a split business reports the whole day: the parts other workers ran are in it.
        summary.outcomes = [outcome for outcome in summary.outcomes if outcome.status != "helped"]
        totals = summary.as_dict()
        return {
            "businesses": len(business_ids),
            "notifications": totals["notifications_sent"]
            + totals["notifications_failed"]
            + totals["notifications_skipped"],
            "customers_notified": totals["total_notified"],
            "started_at": started_at,
            "finished_at": started_at + seconds,
            "sql_queries": queries[0],
            "cpu_seconds": round(cpu_seconds, 2),
            "peak_rss_mb": round(peak_rss_kib() / 1024, 1),
        }


def _run_workers(
    *, tag: str, workers: int, shared: bool, profile: str | None = None, node_loop: bool = False
) -> dict[str, object]:
    """Time the run in fresh production processes (DEBUG off: Django would otherwise keep every statement),
    from the first worker's start to the last one's end."""
    # DEBUG off leaves the devtools app (this command) out unless DEVTOOLS says otherwise.
    env = {**os.environ, "DEBUG": "false", "DEVTOOLS": "true", "SECRET_KEY": settings.SECRET_KEY}
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", "bench_auto_engagement", "--measure-run", tag, "--worker", str(worker),
             "--workers", str(workers), *(["--shared"] if shared else []),
             *(["--profile", str(Path(profile).resolve())] if profile else []),
             *(["--node-loop"] if node_loop else [])],
            cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for worker in range(workers)
    ]  # fmt: skip
    reports = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise CommandError(f"a benchmark worker failed: {stderr.strip()[-2000:]}")
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    seconds = max(r["finished_at"] for r in reports) - min(r["started_at"] for r in reports)
    notifications = sum(r["notifications"] for r in reports)
    return {
        "businesses": reports[0]["businesses"] if shared else sum(r["businesses"] for r in reports),
        "workers": workers,
        "notifications": notifications,
        "customers_notified": sum(r["customers_notified"] for r in reports),
        "seconds": round(seconds, 2),
        "notifications_per_second": round(notifications / seconds) if seconds else None,
        # Per log row: the run's wall-clock time, and its CPU time (the workers' own, the database's not counted).
        "us_per_notification": round(seconds / notifications * 1e6, 1) if notifications else None,
        "cpu_us_per_notification": round(sum(r["cpu_seconds"] for r in reports) / notifications * 1e6, 1)
        if notifications
        else None,
        "sql_queries": sum(r["sql_queries"] for r in reports),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in reports), 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
        "chunk_size": settings.AUTO_ENGAGEMENT_CHUNK_SIZE,
        "send_window": settings.AUTO_ENGAGEMENT_SEND_WINDOW,
    }
