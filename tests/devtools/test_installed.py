"""The development tools are installed with DEBUG (or DEVTOOLS=true), never by default in production."""

import os
import subprocess
import sys

import pytest

from tests.processes import PROJECT

PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "a-production-secret-key-of-enough-length-9f8e7d6c5b4a3210fedcba"}


def _commands(**environment: str) -> str:
    inherited = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "DEVTOOLS")}
    finished = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=PROJECT,
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return finished.stdout


@pytest.mark.parametrize(
    ("environment", "installed"),
    [
        ({"DEBUG": "true"}, True),
        (PRODUCTION, False),
        ({**PRODUCTION, "DEVTOOLS": "true"}, True),
        ({"DEBUG": "true", "DEVTOOLS": "false"}, False),
    ],
)
def test_the_tools_are_commands_only_where_installed(environment, installed):
    commands = set(_commands(**environment).split())
    assert {"run_auto_engagement", "engagement_stats", "create_business"} <= commands
    assert ({"bench_auto_engagement", "bench_stats", "seed_demo"} <= commands) is installed
    assert ({"bench_auto_engagement", "bench_stats", "seed_demo"} & commands == set()) is not installed
