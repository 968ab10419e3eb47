"""The latency stand-ins (benchmarks/latency_standins.py) and the delivery benchmark that drives them."""

import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import requests

from benchmarks.latency_standins import (
    LatencyStandIn,
    make_certs,
    max_in_window,
    node_binary,
    per_second,
    write_service_account_key,
)

ROOT = Path(__file__).resolve().parents[2]
FCM_PATH = "/v1/projects/p/messages:send"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("bench-certs"))


def _trusting(certs, *, client_certificate: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    if client_certificate:
        context.load_cert_chain(str(certs.client_cert_file), str(certs.client_key_file))
    return context


async def _concurrent_pushes(url: str, context: ssl.SSLContext, count: int) -> tuple[float, list[httpx.Response]]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(http2=True, verify=context, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(
                client.post(url, json={"message": {"token": f"t{n}"}}, headers={"Authorization": "Bearer x"})
                for n in range(count)
            )
        )
        return time.perf_counter() - started, responses


def test_fcm_answers_concurrent_h2_requests_on_one_connection_without_serialising_them(certs):
    latency = 0.2
    with LatencyStandIn("fcm", latency=latency, certs=certs) as standin:
        elapsed, responses = asyncio.run(_concurrent_pushes(standin.base_url + FCM_PATH, _trusting(certs), 50))
        stats = standin.stats()

    assert [response.status_code for response in responses] == [200] * 50
    assert {response.http_version for response in responses} == {"HTTP/2"}
    assert sorted(int(r.json()["name"].rsplit("/", 1)[1]) for r in responses) == list(range(1, 51))
    assert stats["requests"] == 50
    assert stats["connections"] == 1
    assert stats["connections_by_protocol"] == {"h2": 1}
    assert stats["statuses"] == {"200": 50}
    assert stats["max_in_flight"] >= 10
    # One after another would take 50 x 0.2 s = 10 s; answered concurrently it is about one latency.
    assert elapsed < 25 * latency


def test_fcm_falls_back_to_http11_and_serves_the_oauth_token(certs, tmp_path):
    with LatencyStandIn("fcm", latency=0.01, certs=certs) as standin:
        key = json.loads(write_service_account_key(tmp_path, token_uri=standin.token_uri).read_text())
        assert key["token_uri"] == f"https://127.0.0.1:{standin.port}/token"
        verify = str(certs.ca_file)  # per request: REQUESTS_CA_BUNDLE in the environment would beat session.verify
        with requests.Session() as session:  # requests offers no ALPN h2: HTTP/1.1, one kept-alive connection
            token = session.post(standin.token_uri, data={"assertion": "jwt"}, verify=verify).json()
            sent = session.post(
                standin.base_url + FCM_PATH,
                json={"message": {"token": "abc"}},
                headers={"Authorization": f"Bearer {token['access_token']}"},
                verify=verify,
            )
            unauthorised = session.post(standin.base_url + FCM_PATH, json={"message": {"token": "abc"}}, verify=verify)
        stats = standin.stats()

    assert token["expires_in"] == 3600
    assert sent.status_code == 200
    assert sent.json() == {"name": "projects/p/messages/1"}
    assert unauthorised.status_code == 401
    assert stats["connections_by_protocol"] == {"http/1.1": 1}
    assert stats["requests_by_kind"] == {"token": 1, "api": 2}
    assert stats["statuses"] == {"200": 2, "401": 1}


def test_apns_requires_a_client_certificate_and_answers_an_apns_id(certs):
    with LatencyStandIn("apns", latency=0.01, certs=certs) as standin:
        with httpx.Client(http2=True, verify=_trusting(certs, client_certificate=True)) as client:
            response = client.post(
                f"{standin.base_url}/3/device/{'ab' * 32}", content=b"{}", headers={"apns-topic": "pass.x"}
            )
        with (
            httpx.Client(http2=True, verify=_trusting(certs)) as anonymous,
            pytest.raises(httpx.TransportError),
        ):
            anonymous.post(f"{standin.base_url}/3/device/{'cd' * 32}", content=b"{}", headers={"apns-topic": "pass.x"})
        stats = standin.stats()

    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    assert len(response.headers["apns-id"]) == 36
    assert stats["requests"] == 1


def test_twilio_checks_basic_auth_and_records_arrival_times(certs):
    sid = "AC" + "1" * 32
    url_path = f"/2010-04-01/Accounts/{sid}/Messages.json"
    auth = "Basic " + base64.b64encode(f"{sid}:secret".encode()).decode()
    with LatencyStandIn("twilio", latency=0.01, certs=None, tls=False) as standin:
        before = time.time()
        with requests.Session() as session:
            created = [
                session.post(
                    standin.base_url + url_path,
                    data={"To": f"+1555000000{n}", "Body": "hi"},
                    headers={"Authorization": auth},
                )
                for n in range(3)
            ]
            refused = session.post(standin.base_url + url_path, data={"To": "+15550000009", "Body": "hi"})
        timestamps = standin.timestamps()
        standin.reset()
        after_reset = standin.stats()

    assert [response.status_code for response in created] == [201, 201, 201]
    assert all(response.json()["sid"].startswith("SM") for response in created)
    assert refused.status_code == 401
    assert len(timestamps) == 4  # a refused call is a provider call too (it counts against a quota)
    assert all(before <= when <= time.time() for when in timestamps)
    assert after_reset["requests"] == after_reset["connections"] == 0


def test_the_google_wallet_client_multiplexes_a_batch_over_one_h2_connection(certs, tmp_path, monkeypatch):
    """Over HTTPS the Google Wallet client speaks HTTP/2: the batch's calls are streams in flight at once on one
    connection (the token comes over a connection of its own)."""
    from google.oauth2 import service_account

    from wallet.google_wallet import SCOPE, AddMessage, GoogleConfig, GoogleWalletClient

    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))  # what libcurl trusts (engagement_site.curl)
    latency = 0.2
    with LatencyStandIn("google", latency=latency, certs=certs) as standin:
        key = write_service_account_key(tmp_path, token_uri=standin.token_uri)
        config = GoogleConfig(
            issuer_id="3388",
            credentials=service_account.Credentials.from_service_account_file(str(key), scopes=[SCOPE]),
            api_base=standin.base_url,
            class_id="",
            timeout=10,
            notify_limit=3,
            over_limit="text",
        )
        client = GoogleWalletClient(config=config, max_retries=0, backoff=0.01, concurrency=100)
        client.open()
        try:
            started = time.perf_counter()
            outcomes = client.add_messages(
                [AddMessage(f"3388.p{n}", f"reengagement-{n}", "h", "b", notify=True) for n in range(50)]
            )
            elapsed = time.perf_counter() - started
        finally:
            client.close()
        stats = standin.stats()

    assert [outcome.ok for outcome in outcomes] == [True] * 50
    assert stats["connections_by_protocol"] == {"h2": 1, "http/1.1": 1}
    assert stats["requests_by_kind"] == {"token": 1, "api": 50}
    assert stats["max_in_flight"] >= 40
    # One after another would take 50 x 0.2 s = 10 s.
    assert elapsed < 10 * latency


def test_window_arithmetic():
    assert max_in_window([0.0, 0.5, 9.9, 10.0, 10.1, 25.0], 10) == 4  # (0.1, 10.1]: 0.5, 9.9, 10.0, 10.1
    assert max_in_window([], 10) == 0
    assert per_second([100.0, 100.2, 101.5, 103.0]) == [2, 1, 0, 1]


@pytest.mark.parametrize("provider", ["fcm", "apns"])
def test_bench_delivery_prints_one_json_line_with_every_message_sent(provider):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}  # its own temporary SQLite
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_delivery", "--provider", provider, "--messages", "50"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout
    report = json.loads(lines[0])
    assert report["provider"] == provider
    assert report["messages"] == 50
    assert report["statuses"] == {"sent": 50}, report
    assert report["requests"] >= 50
    assert report["connections"] >= 1
    assert report["messages_per_second"] > 0
    assert report["cpu_ms_per_message"] > 0


@pytest.mark.skipif(node_binary() is None, reason="the Node stand-in needs `node` on PATH")
@pytest.mark.parametrize("provider", ["fcm", "apns"])
def test_bench_delivery_through_the_node_standin_sends_every_message_and_the_standin_counts_them(provider):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}  # its own temporary SQLite
    command = [sys.executable, "-m", "benchmarks.bench_delivery", "--provider", provider, "--messages", "50"]
    completed = subprocess.run(
        [*command, "--standin", "node", "--concurrency", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout
    report = json.loads(lines[0])
    assert report["standin"] == "node"
    assert report["statuses"] == {"sent": 50}, report
    # Counted by node_standin.mjs: every message exactly once (it never fails, so no retries), over HTTP/2, with
    # 20 in flight at once (a serialising stand-in would hold 1), and its own CPU time.
    assert report["requests"] == 50, report
    expected_kinds = {"api": 50, "token": 1} if provider == "fcm" else {"api": 50}
    assert report["requests_by_kind"] == expected_kinds
    assert report["connections_by_protocol"].get("h2", 0) >= 1
    assert 10 <= report["max_in_flight"] <= 20
    assert report["standin_cpu_seconds"] > 0
    assert not report["standin_errors"].keys() - {"goaways"}, report["standin_errors"]  # the client's GOAWAY at close


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_processes_sending_through_twilio_stay_within_the_shared_rate_at_the_standin():
    """Counted on the stand-in's side: four processes, each allowed the whole rate on its own, share one budget."""
    from tests.processes import database_url

    # In a process of its own: the benchmark points SSL_CERT_FILE at its throw-away CA for its own workers.
    command = [sys.executable, "-m", "benchmarks.bench_quota", "--rate", "40", "--seconds", "12", "--window", "10"]
    finished = subprocess.run(
        [*command, "--database-url", database_url()], capture_output=True, text=True, timeout=300, check=False
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    assert figures["requests"] == figures["messages"] == 480
    assert figures["statuses"] == {"sent": 480}
    # The bound: never more than 5% above the rate over any 10-second window.
    assert not figures["exceeds_limit"], figures["per_second"]
    assert figures["mean_rate"] <= 40 * 1.05
