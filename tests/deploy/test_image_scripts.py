"""The container image's build and start logic, without a container engine: deploy/image/build.sh builds a fresh venv
from a copy of the Docker build context (the tree filtered by .dockerignore), exactly as the Dockerfile's builder
stage RUNs it, and deploy/image/entrypoint.sh then starts each role from that venv, as the image does
(PATH=<venv>/bin first, DEBUG=false, PYTHONDONTWRITEBYTECODE=1)."""

import fnmatch
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BUILD = "deploy/image/build.sh"
ENTRYPOINT = "deploy/image/entrypoint.sh"
SECRET_KEY = "image-test-Lw0ZtXc9Hn4Jp7Ks1Md6Fb3Gy5Ue8Ai0Oo2Ti4Rn6Sm9Wd1Xf3Ce5Bg7Hj"


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(excluded?, pattern) in file order; the last matching pattern wins, as in Docker."""
    patterns = []
    for line in (PROJECT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((not line.startswith("!"), line.lstrip("!").strip("/")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    result = False
    for excluded, pattern in patterns:
        candidates = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        parts = relative.split("/")
        # A pattern matches the path or one of its parent directories; `**/x` matches x at any depth.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates) or any(
            pattern.startswith("**/") and fnmatch.fnmatchcase(part, candidates[1]) for part in parts
        ):
            result = excluded
    return result


def copy_build_context(destination: Path) -> None:
    patterns = dockerignore_patterns()
    for root, directories, files in os.walk(PROJECT):
        relative_root = Path(root).relative_to(PROJECT)
        directories[:] = [d for d in directories if not ignored((relative_root / d).as_posix(), patterns)]
        for name in files:
            relative = (relative_root / name).as_posix()
            if not ignored(relative, patterns):
                (destination / relative_root).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / name, destination / relative)


def settings_free_environ() -> dict[str, str]:
    """The caller's environment without anything that would pick settings (DATABASE_URL, DEBUG, ...)."""
    names = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (PROJECT / ".env.example").read_text(), re.MULTILINE))
    names |= {"DATABASE_URL", "DEBUG", "SECRET_KEY", "VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"}
    return {key: value for key, value in os.environ.items() if key not in names}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict[str, Path]:
    """The Dockerfile's builder stage, in a temporary directory: the build context and the venv build.sh makes."""
    app = tmp_path_factory.mktemp("app")
    venv = tmp_path_factory.mktemp("venv") / "venv"
    copy_build_context(app)
    started = time.monotonic()
    result = subprocess.run(
        ["sh", str(app / BUILD), str(venv)],
        env=settings_free_environ(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"build.sh took {time.monotonic() - started:.0f}s")
    return {"app": app, "venv": venv, "data": tmp_path_factory.mktemp("data"), "build_output": result.stdout}


def role_environ(image, **overrides: str) -> dict[str, str]:
    """What the image's final stage sets (Dockerfile ENV), plus the settings a Kubernetes pod would get."""
    env = settings_free_environ()
    env.update(
        {
            "PATH": f"{image['venv'] / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "false",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "testserver.example",
            "DATABASE_URL": f"sqlite:///{image['data'] / 'db.sqlite3'}",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


def entrypoint(image, *args: str, timeout: float = 300, **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(image["app"] / ENTRYPOINT), *args],
        cwd="/",  # the entrypoint finds the app itself, whatever the working directory
        env=role_environ(image, **overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files_under(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def test_scripts_are_posix_shell():
    for script in (BUILD, ENTRYPOINT):
        subprocess.run(["sh", "-n", str(PROJECT / script)], check=True)


def test_dockerfile_runs_the_scripts():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", dockerfile, re.MULTILINE)
    assert stages == [("${PYTHON_IMAGE}", "builder"), ("${PYTHON_IMAGE}", "")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert "RUN sh deploy/image/build.sh /opt/venv" in dockerfile
    final = dockerfile.split("AS builder", 1)[1].split("\nFROM ", 1)[1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "COPY --from=builder /src/staticfiles /app/staticfiles" in final
    assert "PATH=/opt/venv/bin:$PATH" in final
    assert re.search(r"^USER\s+[1-9]\d*:[1-9]\d*$", final, re.MULTILINE), "a numeric non-root user"
    assert 'ENTRYPOINT ["/bin/sh", "/app/deploy/image/entrypoint.sh"]' in final
    assert 'CMD ["web"]' in final


def test_build_context_leaves_out_local_state(tmp_path):
    patterns = dockerignore_patterns()
    left_out = [
        ".git/HEAD",
        ".venv/bin/python",
        "db.sqlite3",
        ".env",
        "staticfiles/x.css",
        "tests/conftest.py",
        "wallet/__pycache__/models.cpython-311.pyc",
        "auto_engagement.egg-info/PKG-INFO",
    ]
    for path in left_out:
        assert ignored(path, patterns), path
    kept = ["manage.py", "pyproject.toml", "deploy/gunicorn.conf.py", BUILD, ENTRYPOINT, ".env.example"]
    for path in [*kept, "engagement_site/settings.py", "wallet/models.py"]:
        assert not ignored(path, patterns), path


@pytest.mark.slow
def test_build_installs_the_runtime_only_and_collects_static_files(image):
    installed = subprocess.run(
        [str(image["venv"] / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packages = {package["name"].lower() for package in json.loads(installed)}
    assert {"auto-engagement", "django", "gunicorn", "psycopg"} <= packages
    assert not packages & {"pytest", "ruff", "selenium", "schemathesis", "factory-boy"}, "no dev dependencies"
    static = image["app"] / "staticfiles"
    assert (static / "admin" / "css" / "base.css").is_file()
    manifest = static / "staticfiles.json"  # DEBUG=false: hashed names (the production storage)
    assert manifest.is_file(), image["build_output"]
    assert "admin/css/base.css" in json.loads(manifest.read_text())["paths"]


@pytest.mark.slow
def test_entrypoint_roles(image):
    before = files_under(image["app"])

    migrate = entrypoint(image, "migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with sqlite3.connect(image["data"] / "db.sqlite3") as db:
        applied = {app for (app,) in db.execute("SELECT app FROM django_migrations")}
    assert {"autoengagement", "wallet", "webhooks", "notifications", "auth"} <= applied

    run = entrypoint(image, "run", "--dry-run", "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["dry_run"] is True

    prune = entrypoint(image, "prune", "--older-than", "458", "--dry-run", "--format", "json")
    assert prune.returncode == 0, prune.stdout + prune.stderr

    webhooks = entrypoint(image, "webhooks", "--format", "json")
    assert webhooks.returncode == 0, webhooks.stdout + webhooks.stderr
    assert json.loads(webhooks.stdout.strip().splitlines()[-1])["claimed"] == 0
    pruned = entrypoint(image, "prune-idempotency")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "idempotency record(s)" in pruned.stdout

    passthrough = entrypoint(image, "python", "-c", "import sys; print(sys.prefix)")
    assert passthrough.returncode == 0, passthrough.stderr
    assert Path(passthrough.stdout.strip()) == image["venv"], "the venv's python is first on PATH"

    usage = entrypoint(image, "run", "--now", "not-a-date")
    assert usage.returncode == 2, "the command's exit code reaches the caller (exec, no wrapper)"

    # Nothing was written into the application directory: it can be a read-only root filesystem.
    assert files_under(image["app"]) == before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET to the local server, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_web_role_serves_probes_the_api_and_static_files(image):
    migrate = entrypoint(image, "migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    env = role_environ(
        image,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    server = subprocess.Popen(
        ["sh", str(image["app"] / ENTRYPOINT), "web"],
        cwd="/",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                status, _, _ = get(port, "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.25)
        # Probes as the kubelet sends them: the pod IP as host, plain HTTP.
        assert status == 200
        status, _, body = get(port, "/readyz")
        assert status == 200, body
        # Through the Ingress: the public host, TLS ended by the proxy.
        proxied = {"Host": "testserver.example", "X-Forwarded-Proto": "https"}
        status, _, body = get(port, "/api/schema/", proxied)
        assert status == 200, body[:500]
        hashed = json.loads((image["app"] / "staticfiles" / "staticfiles.json").read_text())["paths"][
            "admin/css/base.css"
        ]
        status, headers, body = get(port, f"/static/{hashed}", proxied)
        assert status == 200
        assert body == (image["app"] / "staticfiles" / hashed).read_bytes()
        assert "immutable" in headers.get("Cache-Control", ""), headers
        # Not behind the proxy, the app insists on HTTPS.
        status, headers, _ = get(port, "/api/schema/", {"Host": "testserver.example"})
        assert status == 301 and headers["Location"].startswith("https://")
    finally:
        # gunicorn is the process the entrypoint exec'd: SIGTERM (what Kubernetes sends) stops it cleanly.
        server.send_signal(signal.SIGTERM)
        try:
            output = server.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert server.returncode == 0, output
