"""Mutation score of the services, per module, and a floor on it: `make mutation` (every module of
autoengagement/services/, scores printed) and CI's floor (.ci/run: the audience and scheduling modules, at least 95%
of their mutants killed by the tests named with --test).

mutmut is configured in pyproject.toml ([tool.mutmut]); this runs it from a clean mutants/ each time (`mutmut run`
never re-tests a survivor it has cached, even against new tests), optionally on fewer modules and tests than the
configuration names, on SQLite. With --postgres the survivors are then run again on that PostgreSQL database, one at
a time: the PostgreSQL-only paths (the audience's epoch read) are killed there. A mutant counts as killed when a test
failed or it timed out; a survivor, and a mutant that no test reached, count against the score and are listed with
their diff. A mutant truly equivalent to the code is excluded at its line with `# pragma: no mutate`.

    .venv/bin/python scripts/mutation.py                      # all services, every test in [tool.mutmut]
    .venv/bin/python scripts/mutation.py --floor 95 --test tests/autoengagement/test_scheduling.py \\
        autoengagement/services/scheduling.py                 # exits 1 below 95%

After a run, `.venv/bin/mutmut show NAME` shows one mutant and `.venv/bin/mutmut browse` all of them.
"""

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = Path("autoengagement/services")
KILLED = {"killed", "timeout", "caught by type check"}
LOG = Path("mutants/mutmut-run.log")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: every one under {SERVICES}/)")
    parser.add_argument("--floor", type=float, help="exit 1 when a module's killed share (percent) is below this")
    parser.add_argument(
        "--test",
        action="append",
        dest="tests",
        metavar="PATH",
        help="a test file or node mutmut may run; repeat for more (default: [tool.mutmut]'s selection)",
    )
    parser.add_argument("--postgres", metavar="URL", help="run the survivors again on this PostgreSQL database")
    # Internal: the second pass, in a process of its own so that Django connects to PostgreSQL.
    parser.add_argument("--rerun-survivors", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def modules_to_mutate(named: list[str]) -> list[Path]:
    modules = [Path(name) for name in named] or sorted(
        path for path in SERVICES.glob("*.py") if path.name != "__init__.py"
    )
    for module in modules:
        if module.parent != SERVICES or not module.is_file():
            raise SystemExit(f"{module}: not a module of {SERVICES}/")
    return modules


@contextlib.contextmanager
def output_to_log(enabled: bool, mode: str) -> Iterator[None]:
    """mutmut redraws a progress line (on the real stdout) ten times a second: fine on a terminal, megabytes of
    carriage returns in a CI log. Off a terminal its output goes to mutants/mutmut-run.log instead."""
    if not enabled:
        yield
        return
    LOG.parent.mkdir(exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with LOG.open(mode) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def log_tail(lines: int = 60) -> str:
    """The end of mutmut's output without its progress line's redraws."""
    text = LOG.read_text(errors="replace").replace("\r", "\n").splitlines()
    return "\n".join([line for line in text if line.strip() and line[0] not in SPINNER][-lines:])


def run_mutmut(modules: list[Path], tests: list[str] | None, *mutmut_args: str) -> int:
    """`mutmut run` in this process, with [tool.mutmut]'s modules and tests narrowed as asked."""
    # mutmut.__main__ picks the fork start method when imported; imported here, never run as __main__.
    from mutmut.__main__ import cli
    from mutmut.configuration import config

    settings = config()
    settings.only_mutate = [str(module) for module in modules]
    if tests:
        settings.pytest_add_cli_args_test_selection = list(tests)
    try:
        cli.main(["run", *mutmut_args], prog_name="mutmut", standalone_mode=False)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def statuses(module: Path) -> dict[str, str]:
    """Each mutant of the module and what became of it, as mutmut recorded it in mutants/."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    data = SourceFileMutationData(path=module)
    data.load()
    return {name: status_by_exit_code[code] for name, code in sorted(data.exit_code_by_key.items())}


def survivors(modules: list[Path]) -> list[str]:
    return [name for module in modules for name, status in statuses(module).items() if status == "survived"]


def report(modules: list[Path], floor: float | None) -> bool:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    passed = True
    print(f"{'module':<44} {'killed':>7} {'total':>6} {'score':>7}")
    lacking: list[tuple[Path, str, str]] = []
    for module in modules:
        of_module = statuses(module)
        killed = sum(status in KILLED for status in of_module.values())
        total = len(of_module)
        if not total:  # nothing mutmut mutates (only decorated functions, say)
            print(f"{module!s:<44} {'-':>7} {'-':>6} {'-':>7}")
            continue
        score = 100.0 * killed / total
        below = floor is not None and score < floor
        passed = passed and not below
        mark = f"  below the {floor:g}% floor" if below else ""
        print(f"{module!s:<44} {killed:>7} {total:>6} {score:>6.1f}%{mark}")
        lacking += [(module, name, status) for name, status in of_module.items() if status not in KILLED]
    if lacking:
        print(f"\nNot killed ({len(lacking)}):")
        for module, name, status in lacking:
            print(f"\n{name}: {status}")
            print(get_diff_for_mutant(name, path=module))
    return passed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    modules = modules_to_mutate(args.modules)
    quiet = not sys.stdout.isatty()
    if args.rerun_survivors:
        # One mutant at a time: every pytest run creates and drops the same test database.
        with output_to_log(quiet, "a"):
            return run_mutmut(modules, args.tests, "--max-children", "1", *survivors(modules))

    # The first pass is on SQLite (an in-memory test database per mutant), whatever the environment says.
    os.environ.pop("DATABASE_URL", None)
    shutil.rmtree("mutants", ignore_errors=True)
    started = time.monotonic()
    with output_to_log(quiet, "w"):
        code = run_mutmut(modules, args.tests)
    print(f"mutmut ran on SQLite in {time.monotonic() - started:.0f}s" + (f" (its output: {LOG})" if quiet else ""))
    left = survivors(modules) if code == 0 else []
    if code == 0 and args.postgres and left:
        again = time.monotonic()
        command = [sys.executable, __file__, "--rerun-survivors", *(f"--test={test}" for test in args.tests or ())]
        on_postgres = {**os.environ, "DATABASE_URL": args.postgres}
        code = subprocess.run([*command, *map(str, modules)], env=on_postgres, check=False).returncode
        print(f"{len(left)} survivors ran again on PostgreSQL in {time.monotonic() - again:.0f}s")
    if code != 0:
        if quiet:
            print(log_tail())
        print(f"mutmut run failed (exit {code})", file=sys.stderr)
        return 2
    print(f"mutation testing took {time.monotonic() - started:.0f}s in all")
    return 0 if report(modules, args.floor) else 1


if __name__ == "__main__":
    sys.exit(main())
