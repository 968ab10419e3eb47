"""A provider's rate is one budget for every process: four processes taking tokens at once never exceed it,
through PostgreSQL (the default store) and through Redis (with REDIS_URL)."""

import json
import os
import subprocess
import sys

import pytest

from tests.engagement_site.conftest import PROJECT
from tests.engagement_site.test_redis_cache import REDIS, redis_answers
from tests.processes import database_url

RATE, PROCESSES, TOKENS = 40, 4, 30
TAKE_TOKENS = f"""
import json, time
from notifications.backends.http import shared_rate_limiter
limiter = shared_rate_limiter(provider="quota-test", rate={RATE})
assert type(limiter).__name__ == "SharedRateLimiter", type(limiter)
times = []
for _ in range({TOKENS}):
    time.sleep(limiter.reserve())
    times.append(time.time())
print(json.dumps(times))
"""


def token_times(env: dict[str, str]) -> list[float]:
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", TAKE_TOKENS],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    times = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr[-2000:]
        times += json.loads(stdout.strip().splitlines()[-1])
    return sorted(times)


def assert_within_rate(times: list[float]) -> None:
    assert len(times) == PROCESSES * TOKENS
    busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    assert busiest <= RATE * 1.05 + 1, f"{busiest} tokens in one second for a rate of {RATE}/s"
    # And the budget is used, not wasted: all of them within a little more than the rate allows.
    assert times[-1] - times[0] <= (len(times) / RATE) * 1.5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_processes_share_one_rate_through_postgresql():
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "true", "LOG_LEVEL": "WARNING", "REDIS_URL": ""}
    assert_within_rate(token_times(env))


@pytest.mark.skipif(not redis_answers(), reason="needs the local Redis server (127.0.0.1:6379)")
def test_four_processes_share_one_rate_through_redis():
    url = f"redis://{REDIS[0]}:{REDIS[1]}/14"
    subprocess.run([sys.executable, "-c", f"import redis; redis.Redis.from_url({url!r}).flushdb()"], check=True)
    env = {**os.environ, "DEBUG": "true", "LOG_LEVEL": "WARNING", "REDIS_URL": url}
    assert_within_rate(token_times(env))
