"""Throughput of one channel backend against a latency stand-in, through the backend's public interface only.

    .venv/bin/python -m benchmarks.bench_delivery --provider fcm|apns|twilio|google --messages N --latency-ms 50
        [--concurrency K] [--chunk 500] [--rate-limit 0] [--no-tls] [--standin python|node] [--database-url URL]
        [--env NAME=VALUE ...]

Starts the provider's stand-in in a process of its own (benchmarks.latency_standins; with --standin node, for fcm and
apns, benchmarks/node_standin.mjs on Node's native HTTP/2 server, which costs far less CPU per request), points the
settings at it through environment variables set before django.setup(), builds N messages (for the wallet channel:
N customers, each with one pass, and for Apple one registered device, created in bulk), then does what a run does:
`backend = get_backend(channel)`, a circuit breaker, `backend.open()`, `backend.send_batch(chunk)` for each chunk of
AUTO_ENGAGEMENT_SEND_WINDOW messages (500), `backend.close()`. Prints one JSON line on stdout (logs go to stderr).

Measured from backend.open() to the end of the last send_batch (`seconds`; `open_seconds` is the open() part);
`cpu_ms_per_message` is the client process's user+system CPU over the same span (every thread), `peak_rss_mib` its
peak resident memory over the whole process life (including the messages built beforehand). `connections` and
`requests` are counted by the stand-in (requests: provider calls only; token fetches and Google GET/PATCH are in
`requests_by_kind`); `standin_cpu_seconds` shows whether the stand-in, not the client, was the limit.

Database: the wallet channel reads customers, passes and registrations from the database, so it needs one: with
--database-url or DATABASE_URL (migrated; rows created for the benchmark are deleted afterwards) or, by default, a
fresh SQLite file in a temporary directory, migrated here. Push and SMS do not touch the database unless a rate limit
is set on PostgreSQL or with REDIS_URL (then the shared quota is used, as in production).
"""

import argparse
import gc
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.latency_standins import (
    DEFAULT_LATENCY,
    NODE_PROVIDERS,
    PROVIDERS,
    Certs,
    LatencyStandIn,
    NodeLatencyStandIn,
    make_certs,
    node_binary,
    write_service_account_key,
)

CHANNELS = {"fcm": "push", "twilio": "sms", "apns": "wallet", "google": "wallet"}
PASS_TYPE_ID = "pass.com.example.benchmark"
TEAM_ID = "BENCH12345"
GOOGLE_ISSUER_ID = "3388000000099999999"
TWILIO_ACCOUNT_SID = "AC" + "b" * 32
HEADER = "We miss you"
BODY = "Come back this week: your next coffee is on us."


def provider_environment(
    provider: str,
    standin: LatencyStandIn,
    *,
    certs: Certs | None,
    workdir: Path,
    rate_limit: float,
    concurrency: int | None,
) -> dict[str, str]:
    """The settings (environment variables, read by engagement_site.settings) that point `provider` at `standin`."""
    env: dict[str, str] = {}
    if certs is not None:
        # libcurl (engagement_site.curl: every provider) trusts SSL_CERT_FILE; the APNs client also loads APNS_CA_FILE;
        # REQUESTS_CA_BUNDLE is for older trees (--code) that still send through requests.
        env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"] = str(certs.ca_file)
    if concurrency is not None:
        env["CHANNEL_HTTP_CONCURRENCY"] = env["APNS_CONCURRENCY"] = env["GOOGLE_WALLET_CONCURRENCY"] = str(concurrency)
    if provider == "fcm":
        key = write_service_account_key(workdir, token_uri=standin.token_uri, project_id="bench-project")
        env |= {
            "PUSH_CHANNEL": "fcm",
            "FCM_API_BASE": standin.base_url,
            "FCM_CREDENTIALS": str(key),
            "FCM_PROJECT_ID": "bench-project",
            "FCM_RATE_LIMIT": str(rate_limit),
        }
    elif provider == "twilio":
        env |= {
            "SMS_CHANNEL": "twilio",
            "TWILIO_API_BASE": standin.base_url,
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": "bench-auth-token",
            "TWILIO_FROM_NUMBER": "+15550100000",
            "TWILIO_MESSAGING_SERVICE_SID": "",
            "TWILIO_RATE_LIMIT": str(rate_limit),
        }
    elif provider == "apns":
        if certs is None:
            raise SystemExit("APNs is HTTP/2 over TLS only: drop --no-tls.")
        env |= {
            "WALLET_CHANNEL": "live",
            "APPLE_PASS_TYPE_ID": PASS_TYPE_ID,
            "APPLE_TEAM_ID": TEAM_ID,
            "APPLE_PASS_CERT_FILE": str(certs.client_cert_file),
            "APPLE_PASS_KEY_FILE": str(certs.client_key_file),
            "APPLE_PASS_KEY_PASSWORD": "",
            "APPLE_WWDR_CERT_FILE": str(certs.ca_file),
            "WALLET_WEB_SERVICE_URL": "https://wallet.example.com/wallet/apple",
            "APNS_HOST": standin.address,
            "APNS_CA_FILE": str(certs.ca_file),
            "GOOGLE_WALLET_ISSUER_ID": "",
        }
    elif provider == "google":
        key = write_service_account_key(workdir, token_uri=standin.token_uri, project_id="bench-wallet")
        env |= {
            "WALLET_CHANNEL": "live",
            "APPLE_PASS_TYPE_ID": "",
            "GOOGLE_WALLET_ISSUER_ID": GOOGLE_ISSUER_ID,
            "GOOGLE_WALLET_CREDENTIALS": str(key),
            "GOOGLE_WALLET_API_BASE": standin.base_url,
            "GOOGLE_WALLET_CLASS_ID": "bench",
        }
    return env


def build_messages(provider: str, count: int) -> tuple[list[Any], Any]:
    """`count` messages for `provider`; for the wallet channel also the customers, passes and devices they reach
    (returns the Business owning them, to delete afterwards)."""
    from notifications.backends.base import Message

    run_date = time.strftime("%Y-%m-%d")
    extra = {"run_date": run_date, "attempt": 1}
    if provider == "fcm":
        recipients = [f"{index:08x}:APA91b" + secrets.token_urlsafe(105)[:140] for index in range(count)]
    elif provider == "twilio":
        recipients = [f"+1555{index:07d}" for index in range(count)]
    else:
        return _wallet_messages(provider, count, extra)
    messages = [
        Message(log_id=index + 1, recipient=recipient, header=HEADER, body=BODY, extra=dict(extra))
        for index, recipient in enumerate(recipients)
    ]
    return messages, None


def _wallet_messages(provider: str, count: int, extra: dict[str, Any]) -> tuple[list[Any], Any]:
    from notifications.backends.base import Message
    from wallet.models import AppleDeviceRegistration, Business, Customer, WalletPass

    business = Business.objects.create(name="Benchmark", email=f"bench-{uuid.uuid4().hex}@example.com", password="!")
    customers = Customer.objects.bulk_create(
        [Customer(business=business, first_name="Bench", last_name=str(index)) for index in range(count)],
        batch_size=1000,
    )
    platform = WalletPass.Platform.APPLE if provider == "apns" else WalletPass.Platform.GOOGLE
    wallet_passes = WalletPass.objects.bulk_create(
        [WalletPass(customer=customer, platform=platform) for customer in customers], batch_size=1000
    )
    if provider == "apns":
        AppleDeviceRegistration.objects.bulk_create(
            [
                AppleDeviceRegistration(
                    wallet_pass=wallet_pass,
                    device_library_identifier=f"bench-device-{index}",
                    push_token=secrets.token_hex(32),
                )
                for index, wallet_pass in enumerate(wallet_passes)
            ],
            batch_size=1000,
        )
    messages = [
        Message(
            log_id=index + 1,
            recipient=customer.customer_id,
            header=HEADER,
            body=BODY,
            customer_id=customer.customer_id,
            business_id=business.business_id,
            business_name=business.name,
            extra=dict(extra),
        )
        for index, customer in enumerate(customers)
    ]
    return messages, business


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=PROVIDERS, required=True)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY * 1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        help="sets CHANNEL_HTTP_CONCURRENCY, APNS_CONCURRENCY and GOOGLE_WALLET_CONCURRENCY (default: the settings')",
    )
    parser.add_argument("--chunk", type=int, help="messages per send_batch (default AUTO_ENGAGEMENT_SEND_WINDOW)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="FCM_RATE_LIMIT / TWILIO_RATE_LIMIT (default 0: no limit, to measure the backend, not the quota)",
    )
    parser.add_argument(
        "--standin",
        choices=("python", "node"),
        default="python",
        help="the stand-in: python (benchmarks.latency_standins, every provider) or node (benchmarks/node_standin.mjs, "
        "Node's native HTTP/2 server: far less CPU per request; fcm and apns, TLS only)",
    )
    parser.add_argument("--no-tls", action="store_true", help="plain http:// stand-in (not for APNs)")
    parser.add_argument("--alpn", help="the stand-in's ALPN list, e.g. http/1.1 to refuse h2 (default per provider)")
    parser.add_argument("--database-url", help="default: DATABASE_URL, else a temporary SQLite database")
    parser.add_argument("--migrate", action="store_true", help="migrate the --database-url/DATABASE_URL database")
    parser.add_argument(
        "--code",
        metavar="DIR",
        help="import the project from DIR instead (e.g. another commit: git archive REV | tar -x -C DIR)",
    )
    parser.add_argument("--no-breaker", action="store_true", help="do not set the run's circuit breaker")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="any other setting, applied last"
    )
    args = parser.parse_args(argv)
    if args.standin == "node":
        if args.provider not in NODE_PROVIDERS:
            parser.error(f"--standin node serves only {' and '.join(NODE_PROVIDERS)}, not {args.provider}")
        if args.no_tls or args.alpn:
            parser.error("--standin node speaks only TLS with its own ALPN: drop --no-tls and --alpn")
        if not node_binary():
            parser.error("--standin node needs Node.js: no `node` on PATH (or set NODE=/path/to/node)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.messages < 1:
        raise SystemExit("--messages must be at least 1")
    provider = args.provider
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{provider}-"))
    standin = None
    try:
        certs = None if args.no_tls else make_certs(workdir / "certs", client_uid=PASS_TYPE_ID)
        alpn = args.alpn.split(",") if args.alpn else None
        standin_class = NodeLatencyStandIn if args.standin == "node" else LatencyStandIn
        standin = standin_class(provider, latency=args.latency_ms / 1000, certs=certs, tls=not args.no_tls, alpn=alpn)
        standin.start()
        environment = provider_environment(
            provider, standin, certs=certs, workdir=workdir, rate_limit=args.rate_limit, concurrency=args.concurrency
        )
        database_url = args.database_url or os.environ.get("DATABASE_URL")
        temporary_database = not database_url
        if temporary_database:
            database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        environment["DATABASE_URL"] = database_url
        for item in args.env:
            name, _, value = item.partition("=")
            environment[name] = value
        os.environ.setdefault("DEBUG", "true")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_site.settings")
        os.environ.update(environment)
        if args.code:
            sys.path.insert(0, str(Path(args.code).resolve()))
        report = run(args, standin, migrate=temporary_database or args.migrate, temporary_database=temporary_database)
    finally:
        if standin is not None:
            standin.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if "crash" in report or "error" in report:
        raise SystemExit(1)
    return report


def run(args: argparse.Namespace, standin: LatencyStandIn, *, migrate: bool, temporary_database: bool) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from notifications.backends import backend_path, get_backend
    from notifications.backends.base import CircuitBreaker

    provider, channel = args.provider, CHANNELS[args.provider]
    wallet = channel == "wallet"
    setup_started = time.perf_counter()
    if wallet and migrate:
        call_command("migrate", verbosity=0, interactive=False)
    messages, business = build_messages(provider, args.messages)
    setup_seconds = time.perf_counter() - setup_started
    chunk = max(1, args.chunk or settings.AUTO_ENGAGEMENT_SEND_WINDOW)
    chunks = [messages[start : start + chunk] for start in range(0, len(messages), chunk)]
    gc.collect()
    standin.reset()

    backend = get_backend(channel)
    if not args.no_breaker:
        backend.breaker = CircuitBreaker(threshold=settings.AUTO_ENGAGEMENT_BREAKER_THRESHOLD)
    results: list[Any] = []
    crash = ""
    cpu_started = _cpu_seconds()
    started = opened = time.perf_counter()
    try:
        backend.open()
        opened = time.perf_counter()
        for part in chunks:
            results.extend(backend.send_batch(part))
    except Exception as exc:  # send_batch should never raise for a message: report it, with what was sent so far
        crash = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finished = time.perf_counter()
    cpu = _cpu_seconds() - cpu_started
    closing = time.perf_counter()
    try:
        backend.close()
    except Exception as exc:
        crash = crash or f"close(): {type(exc).__name__}: {exc}"
        traceback.print_exc()
    close_seconds = time.perf_counter() - closing
    stats = standin.stats()
    if business is not None and not temporary_database:
        business.delete()
    seconds = finished - started
    statuses = Counter(result.status for result in results)
    errors = Counter(result.error for result in results if result.status != "sent")
    report = {
        "provider": provider,
        "channel": channel,
        "backend": backend_path(channel),
        "messages": len(messages),
        "latency_ms": args.latency_ms,
        "concurrency": {"apns": settings.APNS_CONCURRENCY, "google": settings.GOOGLE_WALLET_CONCURRENCY}.get(
            provider, settings.CHANNEL_HTTP_CONCURRENCY
        ),
        "chunk": chunk,
        "tls": not args.no_tls,
        "database": connection.vendor,
        "standin": args.standin,
        "seconds": round(seconds, 3),
        "messages_per_second": round(len(messages) / seconds, 1) if seconds > 0 else None,
        "cpu_ms_per_message": round(cpu * 1000 / len(messages), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "statuses": dict(statuses),
        "connections": stats["connections"],
        "connections_by_protocol": stats["connections_by_protocol"],
        "requests": stats["requests"],
        "requests_by_kind": stats["requests_by_kind"],
        "max_in_flight": stats["max_in_flight"],
        "standin_cpu_seconds": stats["cpu_seconds"],
        "standin_errors": {
            key: stats[key]
            for key in ("protocol_errors", "goaways", "stream_resets", "handshake_failures")
            if stats[key]
        },
        "open_seconds": round(opened - started, 3),
        "close_seconds": round(close_seconds, 3),
        "setup_seconds": round(setup_seconds, 3),
    }
    if errors:
        report["errors"] = dict(errors.most_common(3))
    if crash:
        report["crash"] = crash[:500]
    if len(results) != len(messages):
        report["error"] = f"{len(results)} results for {len(messages)} messages"
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
