"""Log lines: ISO 8601 UTC times, the run id on every line of a run (threads included), client text escaped."""

import io
import json
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command

from engagement_site.logging import ContextFilter, ContextFormatter, JsonFormatter, carry_context, log_context
from tests.engagement_site.conftest import free_port, start_gunicorn
from tests.factories import AutoEngagementConfigFactory, CustomerFactory


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_have_an_iso_utc_time_and_the_context_of_the_run_in_every_thread():
    logger, stream = capture(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    with log_context(run_id="host:1:abc"), ThreadPoolExecutor(2) as pool:
        logger.info("in the run")
        list(pool.map(carry_context(lambda n: logger.info("sent", extra={"n": n})), range(3)))
    logger.info("after the run")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("run_id") for line in lines] == ["host:1:abc"] * 4 + [None]
    assert all(line["asctime"].endswith("Z") and "T" in line["asctime"] for line in lines)


def test_text_lines_escape_control_characters_so_client_text_cannot_forge_lines():
    logger, stream = capture(ContextFormatter())
    logger.warning("device says %s", "ok\n2026-01-01T00:00:00.000Z ERROR forged", extra={"detail": "a\rb"})
    [line] = stream.getvalue().splitlines()
    assert "ok\\n2026-01-01T00:00:00.000Z ERROR forged" in line and "detail=a\\rb" in line


@pytest.mark.django_db
def test_every_line_of_a_run_carries_its_run_id(caplog):
    config = AutoEngagementConfigFactory(channels=["email"])
    CustomerFactory(business=config.business, email="a@example.com")
    with caplog.at_level(logging.INFO):
        call_command("run_auto_engagement", "--business", config.business.business_id, stdout=io.StringIO())
    run_ids = {getattr(record, "run_id", None) for record in caplog.records if record.name.startswith("autoengagement")}
    assert len(run_ids) == 1 and None not in run_ids


def test_gunicorn_access_lines_are_json_in_the_same_format(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "LOG_FORMAT": "json",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    server = start_gunicorn(env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.terminate()
    output, _ = server.communicate(timeout=10)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(lines) == len(output.splitlines()), "every line is JSON"
    # start_gunicorn polls /healthz until it answers: on a busy machine more than one probe may get through.
    access_lines = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert access_lines
    access = access_lines[-1]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/healthz", "200")
    assert access["time"].endswith("Z")
