"""The production path as an operator runs it: `collectstatic` with DEBUG off, then gunicorn with the project's
config, serving the admin's styles and the API docs by itself (WhiteNoise), checked in headless Chromium."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.autoengagement.test_results_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def production_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("production")
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "a-test-secret-key-that-is-long-enough-for-check-deploy-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "STATIC_ROOT": str(workdir / "static"),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(manage + command, cwd=PROJECT, env=env, check=True, timeout=120)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "-c", "deploy/gunicorn.conf.py", "engagement_site.wsgi"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            break
        except OSError:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
    yield base
    server.terminate()
    server.wait(timeout=10)


def test_static_files_are_served_hashed_and_compressed(production_server):
    page = urllib.request.urlopen(f"{production_server}/admin/login/").read().decode()
    [stylesheet] = [part.split('"')[0] for part in page.split('href="')[1:] if "/static/admin/css/base." in part]
    assert stylesheet != "/static/admin/css/base.css", "the manifest's hashed name"
    request = urllib.request.Request(f"{production_server}{stylesheet}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert "max-age=315360000" in response.headers["Cache-Control"]


def test_the_admin_is_styled_and_the_api_docs_render_in_a_browser(production_server, browser):  # noqa: F811
    browser.get(f"{production_server}/admin/login/")
    header = browser.find_element("id", "header")
    # Django's admin stylesheet gives the header its dark background; unstyled, it would be transparent.
    assert header.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    browser.get(f"{production_server}/api/docs/")
    deadline = time.monotonic() + 20
    while not browser.find_elements("css selector", ".opblock"):
        assert time.monotonic() < deadline, "Swagger UI rendered no operation"
        time.sleep(0.2)
    assert len(browser.find_elements("css selector", ".opblock")) > 10
