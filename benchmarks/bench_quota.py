"""Does the shared provider quota hold across processes? N processes (4) send SMS through TwilioSmsBackend at once,
each with TWILIO_RATE_LIMIT=R, to the Twilio latency stand-in; the stand-in's own request timestamps say how many
requests arrived in any 10-second window.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python -m benchmarks.bench_quota --rate 50
        [--processes 4] [--seconds 20] [--latency-ms 50] [--window 10] [--migrate] [--code DIR]

The budget is shared only through PostgreSQL (the notifications_providerquota table: migrate the database first,
or pass --migrate) or Redis (REDIS_URL); on SQLite each process would have its own, so the benchmark refuses to run.
Each process sends R * seconds / processes messages, so the whole run lasts about `seconds` when the quota holds.

Prints one JSON line: the most requests in any `window`-second sliding window divided by the window (max_window_rate)
against R, their ratio, within_5_percent (|ratio - 1| <= 0.05: the budget is used and not exceeded) and
exceeds_limit (ratio > 1.05, exit status 1), the mean rate, requests per second, and each worker's statuses.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.bench_delivery import BODY, HEADER, provider_environment
from benchmarks.latency_standins import DEFAULT_LATENCY, LatencyStandIn, make_certs, max_in_window, per_second

TOLERANCE = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="TWILIO_RATE_LIMIT, messages a second (R)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the run should last at R")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY * 1000)
    parser.add_argument("--window", type=float, default=10.0, help="sliding window, seconds")
    parser.add_argument("--database-url", help="default: DATABASE_URL")
    parser.add_argument("--migrate", action="store_true", help="migrate the database first")
    parser.add_argument("--code", metavar="DIR", help="import the project from DIR (see bench_delivery)")
    # Internal: one sending process.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _setup_django(code: str | None) -> None:
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_site.settings")
    if code:
        sys.path.insert(0, str(Path(code).resolve()))
    import django

    django.setup()


def worker(args: argparse.Namespace) -> None:
    """One process: open the backend, say "ready", wait for "go" on stdin, send, print its JSON line."""
    _setup_django(args.code)
    from django.conf import settings

    from notifications.backends import get_backend
    from notifications.backends.base import Message

    messages = [
        Message(
            log_id=index + 1,
            recipient=f"+1555{args.worker:02d}{index:05d}",
            header=HEADER,
            body=BODY,
            extra={"run_date": time.strftime("%Y-%m-%d")},
        )
        for index in range(args.messages)
    ]
    chunk = max(1, settings.AUTO_ENGAGEMENT_SEND_WINDOW)
    backend = get_backend("sms")
    backend.open()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    results: list[Any] = []
    try:
        for start in range(0, len(messages), chunk):
            results.extend(backend.send_batch(messages[start : start + chunk]))
    finally:
        backend.close()
    report = {
        "worker": args.worker,
        "seconds": round(time.perf_counter() - started, 3),
        "statuses": dict(Counter(result.status for result in results)),
        "limiter": type(backend.delivery.limiter).__name__ if hasattr(backend, "delivery") else "",
    }
    print(json.dumps(report), flush=True)


def check_store(args: argparse.Namespace) -> str:
    """The shared store the workers will use (postgresql or redis), after an optional migrate; exits when none."""
    _setup_django(args.code)
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if args.migrate:
        call_command("migrate", verbosity=0, interactive=False)
    if settings.REDIS_URL:
        store = "redis"
    elif connection.vendor == "postgresql":
        if "notifications_providerquota" not in connection.introspection.table_names():
            raise SystemExit("The database has no notifications_providerquota table: migrate it (or pass --migrate).")
        store = "postgresql"
    else:
        raise SystemExit(
            "The shared quota needs PostgreSQL (DATABASE_URL=postgres://...) or Redis (REDIS_URL); "
            f"the database is {connection.vendor}, where each process has its own budget."
        )
    connection.close()
    return store


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return {}
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    workdir = Path(tempfile.mkdtemp(prefix="bench-quota-"))
    processes: list[subprocess.Popen] = []
    try:
        certs = make_certs(workdir / "certs")
        with LatencyStandIn("twilio", latency=args.latency_ms / 1000, certs=certs) as standin:
            os.environ.update(
                provider_environment(
                    "twilio", standin, certs=certs, workdir=workdir, rate_limit=args.rate, concurrency=None
                )
            )
            store = check_store(args)
            per_process = math.ceil(args.rate * args.seconds / args.processes)
            command = [sys.executable, "-m", "benchmarks.bench_quota", "--messages", str(per_process)]
            if args.code:
                command += ["--code", args.code]
            for index in range(args.processes):
                processes.append(
                    subprocess.Popen(
                        [*command, "--worker", str(index)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=os.environ.copy(),
                    )
                )
            for process in processes:
                line = process.stdout.readline().strip()
                if line != "ready":
                    raise SystemExit(f"a worker failed to start (exit {process.wait()}): {line!r}")
            standin.reset()
            started = time.perf_counter()
            for process in processes:
                process.stdin.write("go\n")
                process.stdin.flush()
            workers = []
            for process in processes:
                out, _ = process.communicate(timeout=max(600.0, args.seconds * 10))
                workers.append(json.loads(out.strip().splitlines()[-1]))
            seconds = time.perf_counter() - started
            timestamps = standin.timestamps()
            stats = standin.stats()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    most = max_in_window(timestamps, args.window)
    window_rate = most / args.window
    ratio = window_rate / args.rate
    span = (max(timestamps) - min(timestamps)) if len(timestamps) > 1 else 0.0
    report = {
        "store": store,
        "processes": args.processes,
        "rate_limit": args.rate,
        "messages": per_process * args.processes,
        "requests": len(timestamps),
        "seconds": round(seconds, 3),
        "window_seconds": args.window,
        "max_requests_in_window": most,
        "max_window_rate": round(window_rate, 2),
        "ratio": round(ratio, 3),
        "within_5_percent": abs(ratio - 1) <= TOLERANCE,
        "exceeds_limit": ratio > 1 + TOLERANCE,
        "mean_rate": round((len(timestamps) - 1) / span, 2) if span else None,
        "per_second": per_second(timestamps),
        "connections": stats["connections"],
        "statuses": dict(sum((Counter(w["statuses"]) for w in workers), Counter())),
        "workers": workers,
    }
    if span and span < args.window:
        report["warning"] = f"the run lasted {span:.1f}s, less than the {args.window:.0f}s window: raise --seconds"
    print(json.dumps(report), flush=True)
    if report["exceeds_limit"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
