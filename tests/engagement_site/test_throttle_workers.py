"""Across gunicorn workers: the login limits hold (every worker counts in the shared cache, the database here) and
the request metrics add up (every worker writes to PROMETHEUS_MULTIPROC_DIR)."""

import re
from collections import Counter

import requests


def test_the_api_login_limit_holds_across_workers(production_server):
    statuses = Counter()
    for _ in range(15):
        # A new connection each time, so the attempts spread over the three workers.
        response = requests.post(
            f"{production_server}/api/auth/login",
            json={"email": "nobody@example.com", "password": "wrong-password"},
            headers={"Connection": "close"},
            timeout=10,
        )
        statuses[response.status_code] += 1
    assert statuses == {401: 10, 429: 5}, "LOGIN_THROTTLE_RATE is 10/min for all workers together"


def test_the_admin_login_is_throttled_too(production_server):
    statuses = Counter()
    for _ in range(12):
        with requests.Session() as session:
            page = session.get(f"{production_server}/admin/login/", timeout=10).text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            response = session.post(
                f"{production_server}/admin/login/",
                data={"username": "admin", "password": "wrong", "csrfmiddlewaretoken": token},
                headers={"Referer": f"{production_server}/admin/login/"},
                timeout=10,
            )
        statuses[response.status_code] += 1
    assert statuses == {200: 10, 429: 2}, "ten wrong passwords are checked, then the admin login answers 429"


def test_request_metrics_add_up_over_every_worker(production_server):
    for _ in range(9):
        assert requests.get(f"{production_server}/api/schema/", headers={"Connection": "close"}, timeout=10).ok
    text = requests.get(f"{production_server}/metrics", timeout=10).text
    samples = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'route="api/schema/"' in line and 'status="200"' in line
    ]
    assert sum(samples) == 9, samples
