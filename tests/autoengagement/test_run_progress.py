"""The command's progress display, in a real process: on a pseudo-terminal a live line with the total, the percentage,
the rate and the time left, log lines printed whole above it and the summary once; plain lines into a pipe."""

import fcntl
import os
import pty
import re
import sqlite3
import struct
import subprocess
import sys
import termios
import time

import pytest
from django.db import connection

from tests.autoengagement.runs import NOW, inactive, make_config
from tests.processes import PROJECT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

BUSINESSES, CUSTOMERS = 3, 5
# Cursor moves, erasures, colours and the cursor's visibility: what a terminal acts on without printing it.
CONTROL_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ ")
SUMMARY = f"{BUSINESSES} business(es) processed, {BUSINESSES * CUSTOMERS} customer(s) notified"


@pytest.fixture
def command_env(tmp_path) -> dict[str, str]:
    """Three due businesses of five inactive customers each, in a database a process of its own can open: the
    test database itself on PostgreSQL, a copy of it in a file on SQLite (whose test database is in memory)."""
    for _ in range(BUSINESSES):
        config = make_config()
        for _ in range(CUSTOMERS):
            inactive(config)
    if connection.vendor == "postgresql":
        url = database_url()
    else:
        path = tmp_path / "run.sqlite3"
        copy = sqlite3.connect(path)
        connection.ensure_connection()
        connection.connection.backup(copy)
        copy.close()
        url = f"sqlite:///{path}"
    # Chunks of two: each business shows its counts growing before it is done.
    return {**os.environ, "DATABASE_URL": url, "DEBUG": "true", "LOG_LEVEL": "INFO", "AUTO_ENGAGEMENT_CHUNK_SIZE": "2"}


def command(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "run_auto_engagement", "--now", NOW.isoformat(), *args]


def run_on_terminal(args: list[str], env: dict[str, str], stderr=None) -> tuple[int, str]:
    """The command with a pseudo-terminal of 160 columns as its stdout and stderr (unless `stderr` is given); its
    exit code and all it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""}
    process = subprocess.Popen(
        args,
        cwd=PROJECT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower if stderr is None else stderr,
        close_fds=True,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=30), output.decode()


def screen_lines(output: str) -> list[str]:
    """What starts at the left margin: the output without control sequences, cut at each carriage return and
    newline (a live display rewrites its line from the margin)."""
    return [line for line in re.split(r"[\r\n]+", CONTROL_SEQUENCE.sub("", output)) if line.strip()]


def test_on_a_terminal_progress_is_live_logs_go_above_it_and_the_summary_is_printed_once(command_env):
    code, output = run_on_terminal(command(), command_env)
    assert code == 0, output
    assert "\x1b[" in output  # a live display: it moves the cursor
    lines = screen_lines(output)

    progress = [line for line in lines if line.startswith("run ")]
    assert progress, lines
    assert all("businesses" in line and "ETA" in line and "/s" in line for line in progress)
    last = progress[-1]
    assert f"{BUSINESSES}/{BUSINESSES} businesses" in last
    assert "100%" in last
    assert f"{BUSINESSES * CUSTOMERS} customers, {BUSINESSES * CUSTOMERS} notified" in last
    # The counts grow while a business runs (after each chunk of two), not only when it is done.
    assert any(re.search(r"0/3 businesses +0% +[1-9]\d* customers", line) for line in progress), progress

    records = [line for line in lines if LOG_RECORD.search(line)]
    assert [LOG_RECORD.search(line).start() for line in records] == [0] * len(records), records
    messages = [LOG_RECORD.sub("", line) for line in records]
    assert sum(message.startswith("business run completed") for message in messages) == BUSINESSES
    assert sum(message.startswith("run started") for message in messages) == 1
    assert sum(message.startswith("run finished") for message in messages) == 1

    assert sum(SUMMARY in line for line in lines) == 1
    assert lines[-1].startswith(SUMMARY)


def test_a_log_sent_to_a_file_stays_there_while_the_terminal_shows_progress(command_env, tmp_path):
    with open(tmp_path / "run.log", "w") as log:
        code, output = run_on_terminal(command(), command_env, stderr=log)
    assert code == 0, output
    assert "businesses" in output
    assert not LOG_RECORD.search(output)
    warning, *records = (tmp_path / "run.log").read_text().splitlines()
    assert warning.startswith("Warning: --now")
    assert len(records) == BUSINESSES + 2 and all(LOG_RECORD.match(line) for line in records), records


def test_no_progress_on_a_terminal_prints_the_plain_lines(command_env):
    code, output = run_on_terminal(command("--no-progress"), command_env)
    assert code == 0, output
    # Django's red warning about --now aside (--no-color is Django's option for that), no cursor moves or erasures.
    assert not re.search(r"\x1b\[[0-9;]*[ABCDGHJK]|\x1b\[\?25[lh]|\r(?!\n)", output), output
    assert "businesses" not in output
    assert output.count(SUMMARY) == 1


def test_into_a_pipe_the_output_is_plain_lines(command_env):
    done = subprocess.run(command(), cwd=PROJECT, env=command_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr
    assert "\r" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == BUSINESSES + 1
    assert lines[-1].startswith(SUMMARY)
    warning, *records = done.stderr.splitlines()
    assert warning.startswith("Warning: --now")
    assert records and all(LOG_RECORD.match(line) for line in records), records
