"""The platform API's ingest benchmark (`manage.py bench_ingest`): customer upserts and visits sent through the real
endpoints, POST /api/customers/bulk and POST /api/visits, in requests of up to 10,000 rows: in this process, one
request at a time (each request's rate and SQL statements), or over HTTP to a running server from concurrent
clients (the deployment's throughput)."""

import datetime as dt
import json
import statistics
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from devtools.benchmark import count_queries
from wallet.api_keys import api_key_create
from wallet.models import Business
from wallet.services import business_create, session_create


@dataclass
class Timing:
    """Rows per second of each request of one kind, and the SQL statements each took."""

    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float | list[int]]:
        return {
            "median_rows_per_second": round(statistics.median(self.rates)),
            "rows_per_second": [round(rate) for rate in self.rates],
            # Rows per CPU second of this process (the web process's share; the database's is not counted): what
            # the wall-clock rate tends to on an idle machine with the database on other cores.
            "median_rows_per_cpu_second": round(statistics.median(self.cpu_rates)),
            "sql_queries": sorted(set(self.queries)),
        }


def _client(business: Business) -> APIClient:
    _, token = session_create(business=business)
    client = APIClient(HTTP_HOST=(settings.ALLOWED_HOSTS or ["localhost"])[0].lstrip(".").replace("*", "localhost"))
    client.credentials(HTTP_X_SESSION_TOKEN=token, HTTP_X_BUSINESS_ID=business.business_id)
    return client


def _timed_post(client: APIClient, url: str, body: dict, rows: int, timing: Timing) -> dict:
    # The body is encoded before the clock starts: what is timed is the server's work (parse, check, write).
    payload = json.dumps(body)
    with count_queries() as queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.generic("POST", url, payload, content_type="application/json")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.content[:500]!r}")
    timing.rates.append(rows / elapsed)
    timing.cpu_rates.append(rows / max(cpu, 1e-6))
    timing.queries.append(queries[0])
    return response.json()


# One area code per block of 10,000 rows: every customer of a run has a phone number of their own.
AREA_CODES = ("415", "212", "312", "617", "206", "303", "512", "702", "808", "907")


def customer_rows(tag: str, start: int, count: int, version: int) -> list[dict]:
    """Rows as an import sends them: names, an address, a phone in a local style, attributes."""
    return [
        {
            "external_id": f"{tag}-{index}",
            "first_name": f"Member {index}",
            "last_name": f"v{version}",
            "email": f"member{index}@{tag}.bench.invalid",
            "phone": f"+1 {AREA_CODES[index // 10_000 % len(AREA_CODES)]} 555 {index % 10_000:04d}",
            "sms_opt_out": bool(version % 2),
            "attributes": {"tier": "gold" if index % 3 else "silver", "points": index * version},
        }
        for index in range(start, start + count)
    ]


@contextmanager
def _benchmark_business(keep: bool) -> Iterator[tuple[str, Business]]:
    """A new business for one benchmark, and the tag its customers' external_ids start with; deleted with its
    customers after, unless `keep`."""
    tag = f"ingest-{uuid.uuid4().hex[:10]}"
    business = business_create(name=tag, email=f"{tag}@bench.invalid", password=uuid.uuid4().hex)
    try:
        yield tag, business
    finally:
        if not keep:
            business.delete()


def visit_rows(tag: str, start: int, count: int, ids: dict[str, str], occurred_at: str) -> list[dict]:
    """A visit of each customer of customer_rows(tag, start, count): half named by customer_id (`ids`: external_id
    -> customer_id), half by external_id."""
    return [
        {"customer_id": ids[f"{tag}-{index}"], "occurred_at": occurred_at}
        if index % 2
        else {"external_id": f"{tag}-{index}", "occurred_at": occurred_at}
        for index in range(start, start + count)
    ]


def run_ingest_benchmark(*, rows: int, rounds: int, keep: bool = False) -> dict:
    """Per round: `rows` new customers (created), the same rows changed (updated), then one visit of each, half
    named by customer_id and half by external_id. Returns the figures; deletes its business unless `keep`."""
    with _benchmark_business(keep) as (tag, business):
        client = _client(business)
        created, updated, visits = Timing(), Timing(), Timing()
        for round_number in range(rounds):
            batch = customer_rows(tag, round_number * rows, rows, version=1)
            answer = _timed_post(client, "/api/customers/bulk", {"customers": batch}, rows, created)
            assert answer == {"created": rows, "updated": 0}, answer
            batch = customer_rows(tag, round_number * rows, rows, version=2)
            answer = _timed_post(client, "/api/customers/bulk", {"customers": batch}, rows, updated)
            assert answer == {"created": 0, "updated": rows}, answer
            ids = dict(
                business.customers.filter(external_id__in=[row["external_id"] for row in batch]).values_list(
                    "external_id", "customer_id"
                )
            )
            occurred_at = (timezone.now() - dt.timedelta(minutes=rounds - round_number)).isoformat()
            batch_visits = visit_rows(tag, round_number * rows, rows, ids, occurred_at)
            answer = _timed_post(client, "/api/visits", {"visits": batch_visits}, rows, visits)
            assert answer == {"recorded": rows, "credited": rows}, answer
        return {
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "rows_per_request": rows,
            "rounds": rounds,
            "customers_created": created.summary(),
            "customers_updated": updated.summary(),
            "visits": visits.summary(),
        }


def _post_all(url: str, key: str, bodies: list[bytes], clients: int) -> float:
    """POST every body to `url` from `clients` threads, each sending its share one request after another over HTTP
    with the API key; the wall-clock seconds it took. Any answer but 200 stops the benchmark."""

    def send(share: list[bytes]) -> None:
        for body in share:
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()

    shares = [bodies[index::clients] for index in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(send, share) for share in shares]:
            future.result()
    return time.perf_counter() - started


def run_http_ingest_benchmark(*, base_url: str, rows: int, rounds: int, clients: int, keep: bool = False) -> dict:
    """The server's ingest throughput: a running deployment at `base_url` (its database this command's) gets
    `clients` concurrent API-key clients sending `rounds` requests each of `rows` new customers, then the same rows
    changed, then a visit of each; rows per second over each phase's wall clock. Deletes its business unless
    `keep`."""
    with _benchmark_business(keep) as (tag, business):
        _, key = api_key_create(business=business, name="bench_ingest")
        requests = range(clients * rounds)
        phases: dict[str, float] = {}
        for kind, version in (("customers_created", 1), ("customers_updated", 2)):
            bodies = [
                json.dumps({"customers": customer_rows(tag, index * rows, rows, version=version)}).encode()
                for index in requests
            ]
            phases[kind] = _post_all(f"{base_url}/api/customers/bulk", key, bodies, clients)
        ids = dict(business.customers.values_list("external_id", "customer_id"))
        occurred_at = (timezone.now() - dt.timedelta(minutes=1)).isoformat()
        bodies = [
            json.dumps({"visits": visit_rows(tag, index * rows, rows, ids, occurred_at)}).encode() for index in requests
        ]
        phases["visits"] = _post_all(f"{base_url}/api/visits", key, bodies, clients)
        total = rows * len(requests)
        if business.customers.count() != total:
            raise RuntimeError(f"{business.customers.count()} customers stored, {total} sent")
        return {
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "server": base_url,
            "clients": clients,
            "rows_per_request": rows,
            "requests_per_client": rounds,
            **{
                kind: {"rows_per_second": round(total / seconds), "seconds": round(seconds, 2)}
                for kind, seconds in phases.items()
            },
        }
