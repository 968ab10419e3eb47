"""With REDIS_URL set, the throttles count in Redis: two separate processes share one login budget."""

import os
import socket
import subprocess
import sys

import pytest

from tests.engagement_site.conftest import PROJECT

REDIS = ("127.0.0.1", 6379)


def redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not redis_answers(), reason="needs the local Redis server (127.0.0.1:6379)")

ATTEMPTS = """
from django.conf import settings
from django.test import RequestFactory
from wallet.throttling import LoginRateThrottle
assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache"), settings.CACHES
request = RequestFactory().post("/api/auth/login", REMOTE_ADDR="203.0.113.7")
print(sum(LoginRateThrottle().allow_request(request, None) for _ in range(7)))
"""


def test_two_processes_share_one_login_budget_in_redis():
    env = {
        **os.environ,
        "DEBUG": "true",
        "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/15",
        "LOGIN_THROTTLE_RATE": "10/min",
    }
    subprocess.run(
        [sys.executable, "-c", "import redis; redis.Redis(db=15).flushdb()"], check=True, cwd=PROJECT, env=env
    )
    allowed = [
        int(
            subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", ATTEMPTS],
                cwd=PROJECT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
        )
        for _ in range(2)
    ]
    assert allowed == [7, 3], "the second process sees the first one's attempts"
