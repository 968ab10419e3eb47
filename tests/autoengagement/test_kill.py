"""Real `kill -9` of concurrent runs on PostgreSQL, round after round, against local provider stand-ins.

Each round starts WORKERS copies of the command at once over a fresh set of businesses (email to an SMTP stand-in,
SMS to a Twilio stand-in, both answering after a short delay), SIGKILLs one or more of them at a random moment after
a claim, checks in the database that each killed process really held a business when it died, then, once the
leases have expired, runs the command again until the day is done. The stand-ins count on their own side what
they delivered, so a message sent twice is seen there, whatever the log says.

Per round: no duplicate at the stand-ins; per crash, at most one send window per channel lost (rows `unknown`,
never re-sent); nothing left `pending` or `sending`; one row per customer and channel; the rows `sent` are exactly
the messages delivered, and a message delivered is `sent` or `unknown`. Over all rounds, most really interrupted a
run holding a business.
"""

import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.retries import INTERRUPTED
from engagement_site.secure_ids import IdKind, make_ids
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory
from tests.faults.smtp_faults import SmtpFault, SmtpFaultServer
from tests.faults.standins import TwilioStandIn
from tests.processes import database_url
from wallet.models import Customer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
PROJECT = Path(__file__).resolve().parents[2]
ROUNDS, MIN_INTERRUPTED = 20, 15
WORKERS, BUSINESSES, PER_BUSINESS = 4, 4, 80
CHANNELS = ("email", "sms")
LEASE_SECONDS = 2
# The lease is renewed between chunks only: a chunk (two send windows per channel here) must take well under
# LEASE_SECONDS, or another worker takes a live run's business over (counted below as LeaseLost).
SEND_WINDOW = 20
CHUNK_SIZE = 40
ANSWER_DELAY = 0.005  # seconds each stand-in takes to answer a message
# The kill comes after the round's first claim, once a share of the round's messages drawn in this range is sent:
# a random moment of the run, whatever the speed of the machine.
KILL_PROGRESS = (0.0, 0.85)
VICTIMS = (1, 1, 2, 3)  # how many workers to kill, drawn per round (at most those holding a business)
OWNER_PREFIX = socket.gethostname()[:30] + ":"  # lease_owner is "<hostname[:30]>:<pid>:<hex>"


class SlowTwilio(TwilioStandIn):
    """Twilio answering each message after ANSWER_DELAY (connections kept alive), so a run lasts long enough."""

    def _act(self, form: dict[str, str]) -> Any:
        time.sleep(ANSWER_DELAY)
        return super()._act(form)


@dataclass
class Crash:
    pid: int
    held: list[int]  # the config pks the dead process held (status running, its pid in lease_owner)
    after_claim: float  # seconds from the round's first claim to the kill
    progress: float  # the share of the round's messages sent when the kill came
    lost: Counter = field(default_factory=Counter)  # channel -> rows `unknown` with the interrupted reason
    lost_delivered: int = 0  # of those, messages the stand-ins did deliver


@dataclass
class Round:
    number: int
    crashes: list[Crash] = field(default_factory=list)  # every process killed, held something or not
    duplicates: int = 0
    delivered: int = 0  # deliveries the stand-ins counted for the round's customers
    lease_lost: int = 0  # businesses a live worker lost to another (its lease expired while it ran)
    unattributed_interrupted: int = 0  # interrupted rows of businesses no verified crash held
    reruns: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return any(crash.held for crash in self.crashes)


def command_env(twilio: TwilioStandIn, smtp: SmtpFaultServer) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "AUTO_ENGAGEMENT_LEASE_SECONDS": str(LEASE_SECONDS),
        "AUTO_ENGAGEMENT_CHUNK_SIZE": str(CHUNK_SIZE),
        "AUTO_ENGAGEMENT_SEND_WINDOW": str(SEND_WINDOW),
        "SMS_CHANNEL": "twilio",
        "TWILIO_API_BASE": twilio.base_url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": twilio.from_number,
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "TWILIO_RATE_LIMIT": "0",  # no client-side rate limit: the stand-in's delay paces the run
        "EMAIL_CHANNEL": "django",
        "EMAIL_URL": f"smtp://{smtp.host}:{smtp.port}",
        "PUBLIC_BASE_URL": "https://engage.example.com",
    }


def start_run(env: dict[str, str], output: Path) -> subprocess.Popen:
    """The command in its own process, its output in files (a pipe nobody reads could block it)."""
    with open(output.with_suffix(".out"), "w") as stdout, open(output.with_suffix(".err"), "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "manage.py", "run_auto_engagement", "--now", NOW.isoformat(), "--format", "json"],
            cwd=PROJECT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )


def finished_run(process: subprocess.Popen, output: Path) -> tuple[dict[str, Any], str]:
    process.wait(timeout=120)
    stdout = output.with_suffix(".out").read_text()
    stderr = output.with_suffix(".err").read_text()
    lines = stdout.strip().splitlines()
    assert lines, f"no summary (exit {process.returncode}): {stderr[-3000:]}"
    return json.loads(lines[-1]), stderr


def make_businesses(number: int) -> list[int]:
    """BUSINESSES new businesses of PER_BUSINESS quiet customers each, addresses unique across rounds."""
    config_pks = []
    for b in range(BUSINESSES):
        config = AutoEngagementConfigFactory(channels=list(CHANNELS))
        config_pks.append(config.pk)
        Customer.objects.bulk_create(
            [
                Customer(
                    customer_id=customer_id,
                    business_id=config.business_id,
                    first_name="Ana",
                    email=f"r{number}b{b}c{n}@example.com",
                    phone=f"+1555{number:02d}{b}{n:05d}",
                    created_at=NOW - dt.timedelta(days=300),
                    last_activity_at=NOW - dt.timedelta(days=30),
                )
                for n, customer_id in enumerate(make_ids(IdKind.CUSTOMER, PER_BUSINESS))
            ],
            batch_size=5000,
        )
    return config_pks


def holders(config_pks: list[int], pids: set[int]) -> dict[int, list[int]]:
    """pid -> the configs it holds now: running, its pid in the lease owner (committed state)."""
    held: dict[int, list[int]] = defaultdict(list)
    running = AutoEngagementConfig.objects.filter(pk__in=config_pks, last_run_status="running")
    for pk, owner in running.values_list("pk", "lease_owner"):
        if owner.startswith(OWNER_PREFIX):
            pid = int(owner[len(OWNER_PREFIX) :].split(":", 1)[0])
            if pid in pids:
                held[pid].append(pk)
    return held


def kill_at_random(workers: list[subprocess.Popen], config_pks: list[int], rng: random.Random) -> list[Crash]:
    """Wait for the round's first claim, then, at a random moment of the run, SIGKILL 1 to 3 workers drawn among
    those holding a business then (any live one if none does); return what each dead process held, read once dead."""
    pids = {worker.pid for worker in workers}
    total = len(config_pks) * PER_BUSINESS * len(CHANNELS)
    target = rng.uniform(*KILL_PROGRESS) * total
    sent = NotificationLog.objects.filter(config_id__in=config_pks, status="sent")
    deadline = time.monotonic() + 60
    first_claim = None
    while True:
        alive = [worker for worker in workers if worker.poll() is None]
        now = time.monotonic()
        if first_claim is None and holders(config_pks, pids):
            first_claim = now
        if not alive or (first_claim is not None and sent.count() >= target):
            break
        assert now < deadline, "no worker claimed a business within a minute"
        time.sleep(0.02)
    if not alive:
        return []
    holding = holders(config_pks, {worker.pid for worker in alive})
    candidates = [worker for worker in alive if worker.pid in holding] or alive
    victims = rng.sample(candidates, min(rng.choice(VICTIMS), len(candidates)))
    for victim in victims:
        os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    progress = sent.count() / total
    for victim in victims:
        victim.wait(timeout=30)
    time.sleep(0.1)  # a statement a victim sent just before dying is finished by PostgreSQL all the same
    # Dead now: whatever the database says a victim holds, it held when it died (a takeover needs its lease to
    # expire first, LEASE_SECONDS after its last renewal; an owner changed since is simply not counted).
    dead = {victim.pid for victim in victims if victim.returncode == -signal.SIGKILL}
    held = holders(config_pks, dead)
    return [
        Crash(pid=pid, held=held.get(pid, []), after_claim=killed_at - first_claim, progress=progress)
        for pid in sorted(dead)
    ]


def wait_for_leases(config_pks: list[int], live_pids: set[int]) -> None:
    """Sleep until no config of the round is held under an unexpired lease by a process not in `live_pids` (wall
    clock, as the runs set it): the leases of the dead runs have expired."""
    while True:
        running = AutoEngagementConfig.objects.filter(
            pk__in=config_pks, last_run_status="running", lease_expires_at__gt=timezone.now()
        )
        leases = [
            expires_at
            for owner, expires_at in running.values_list("lease_owner", "lease_expires_at")
            if not any(owner.startswith(f"{OWNER_PREFIX}{pid}:") for pid in live_pids)
        ]
        if not leases:
            return
        time.sleep((max(leases) - timezone.now()).total_seconds() + 0.05)


def check_worker(result: Round, worker: subprocess.Popen, output: Path) -> None:
    """A worker that was not killed ends normally; a business it ran fails only if another run took it over
    (its lease expired while it ran: LeaseLost), which is counted."""
    summary, stderr = finished_run(worker, output)
    failures = [b for b in summary["businesses"] if b["status"] == "failed"]
    result.lease_lost += sum(b["error"].startswith("LeaseLost") for b in failures)
    if any(not b["error"].startswith("LeaseLost") for b in failures) or worker.returncode not in (0, 1):
        result.problems.append(f"worker {worker.pid} exit {worker.returncode}: {failures} {stderr[-2000:]}")
    elif worker.returncode == 1 and not failures:
        result.problems.append(f"worker {worker.pid} exit 1 without a failed business: {stderr[-2000:]}")


def run_round(number: int, env: dict[str, str], twilio, smtp, output: Path, rng: random.Random) -> Round:
    started = time.monotonic()
    result = Round(number)
    config_pks = make_businesses(number)
    outputs = [output / f"r{number:02d}-w{index}" for index in range(WORKERS)]
    workers = [start_run(env, path) for path in outputs]
    try:
        result.crashes = kill_at_random(workers, config_pks, rng)
        killed = {crash.pid for crash in result.crashes}
        survivors = [(worker, path) for worker, path in zip(workers, outputs, strict=True) if worker.pid not in killed]

        # The next runs, as soon as the dead runs' leases have expired (the survivors may still be running, as
        # when the next scheduled invocation overlaps), until every business is done.
        while True:
            wait_for_leases(config_pks, {worker.pid for worker, _ in survivors if worker.poll() is None})
            result.reruns += 1
            path = output / f"r{number:02d}-rerun{result.reruns}"
            rerun = start_run(env, path)
            summary, stderr = finished_run(rerun, path)
            if summary["total_failed"] or rerun.returncode:
                result.problems.append(f"rerun {result.reruns} failed: {summary['businesses']} {stderr[-2000:]}")
            statuses = set(
                AutoEngagementConfig.objects.filter(pk__in=config_pks).values_list("last_run_status", flat=True)
            )
            if statuses == {"success"}:
                break
            assert result.reruns < 10, f"round {number}: the day is still not done after 10 runs: {statuses}"
            for worker, _ in survivors:
                worker.wait(timeout=120)  # what they hold now is theirs to finish, or expires with them
        for worker, path in survivors:
            check_worker(result, worker, path)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    check_round(result, config_pks, twilio, smtp)
    result.seconds = time.monotonic() - started
    return result


def check_round(result: Round, config_pks: list[int], twilio: TwilioStandIn, smtp: SmtpFaultServer) -> None:
    problems = result.problems
    rows = list(
        NotificationLog.objects.filter(config_id__in=config_pks).values_list(
            "config_id", "customer_id", "customer__email", "customer__phone", "channel", "status", "error"
        )
    )
    customers = Customer.objects.filter(business__auto_engagement_config__pk__in=config_pks).count()
    per_customer_channel = Counter((customer, channel) for _, customer, _, _, channel, _, _ in rows)
    if len(per_customer_channel) != customers * len(CHANNELS) or set(per_customer_channel.values()) != {1}:
        problems.append(f"not one row per customer and channel: {len(rows)} rows for {customers} customers")
    statuses = Counter(status for *_, status, _ in rows)
    if statuses["pending"] or statuses["sending"]:
        problems.append(f"rows left behind: {dict(statuses)}")
    if set(statuses) - {"sent", "unknown"}:
        problems.append(f"unexpected statuses: {dict(statuses)}")

    delivered = {"email": smtp.deliveries, "sms": twilio.deliveries}
    interrupted: dict[int, Counter] = defaultdict(Counter)
    interrupted_delivered: Counter = Counter()
    for config_pk, _, email, phone, channel, status, error in rows:
        count = delivered[channel][email if channel == "email" else phone]
        result.delivered += count
        result.duplicates += count > 1
        if status == "sent" and count != 1:
            problems.append(f"{channel} row sent, delivered {count} times")
        if count and status not in ("sent", "unknown"):
            problems.append(f"{channel} delivered {count} times but its row is {status}")
        if status == "unknown":
            if error != INTERRUPTED:
                problems.append(f"{channel} row unknown for another reason: {error}")
            interrupted[config_pk][channel] += 1
            interrupted_delivered[config_pk] += count
    if result.duplicates:
        problems.append(f"{result.duplicates} messages delivered more than once")

    attributed = set()
    for crash in result.crashes:
        for config_pk in crash.held:
            attributed.add(config_pk)
            crash.lost.update(interrupted[config_pk])
            crash.lost_delivered += interrupted_delivered[config_pk]
        if any(count > SEND_WINDOW for count in crash.lost.values()):
            problems.append(f"crash of {crash.pid} lost more than a window on a channel: {dict(crash.lost)}")
    for config_pk, lost in interrupted.items():
        if config_pk not in attributed:
            result.unattributed_interrupted += sum(lost.values())
        if any(count > SEND_WINDOW for count in lost.values()):
            problems.append(f"config {config_pk}: more than a window interrupted on a channel: {dict(lost)}")


def test_workers_killed_at_random_moments_lose_at_most_a_window_and_send_nothing_twice(tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    started = time.monotonic()
    rounds: list[Round] = []
    with (
        SlowTwilio() as twilio,
        SmtpFaultServer(fault=SmtpFault.ACCEPT_THEN_TIMEOUT, slow_seconds=ANSWER_DELAY) as smtp,
    ):
        env = command_env(twilio, smtp)
        for number in range(ROUNDS):
            rounds.append(run_round(number, env, twilio, smtp, tmp_path, rng))
    elapsed = time.monotonic() - started

    crashes = [crash for r in rounds for crash in r.crashes if crash.held]
    lost = [sum(crash.lost.values()) for crash in crashes]
    lost_per_channel = [count for crash in crashes for count in crash.lost.values()]
    interrupted = sum(r.interrupted for r in rounds)
    print(
        f"\nkill -9 rounds: {ROUNDS} ({WORKERS} workers, {BUSINESSES} businesses x {PER_BUSINESS} customers x "
        f"{len(CHANNELS)} channels each), seed {seed}, {elapsed:.0f} s\n"
        f"  really interrupted (a killed worker held a business): {interrupted}/{ROUNDS}; "
        f"workers killed: {sum(len(r.crashes) for r in rounds)}, holding a business: {len(crashes)}\n"
        f"  duplicates at the stand-ins: {sum(r.duplicates for r in rounds)}\n"
        f"  send window: {SEND_WINDOW}; lost per crash (unknown, interrupted): max {max(lost, default=0)}, "
        f"total {sum(lost)}, max per channel {max(lost_per_channel, default=0)}; "
        f"of those, delivered anyway: {sum(crash.lost_delivered for crash in crashes)} "
        f"(out of {PER_BUSINESS} messages per business and channel)\n"
        f"  interrupted rows not held by a verified crash: {sum(r.unattributed_interrupted for r in rounds)}; "
        f"businesses a live worker lost to another (LeaseLost): {sum(r.lease_lost for r in rounds)}; "
        f"reruns: {sum(r.reruns for r in rounds)}"
    )
    for r in rounds:
        kills = ", ".join(
            f"pid {c.pid} at +{c.after_claim:.2f}s ({c.progress:.0%} sent) held {len(c.held)} lost {dict(c.lost)}"
            for c in r.crashes
        )
        print(f"  round {r.number:2d}: {r.seconds:4.1f} s, reruns {r.reruns}, {kills or 'no kill'}")

    problems = [f"round {r.number}: {problem}" for r in rounds for problem in r.problems]
    assert not problems, "\n".join(problems)
    # Nothing went anywhere else: every delivery the stand-ins counted is one of the rounds' customers'.
    assert sum(twilio.deliveries.values()) + sum(smtp.deliveries.values()) == sum(r.delivered for r in rounds)
    assert interrupted >= MIN_INTERRUPTED, f"only {interrupted} of {ROUNDS} rounds killed a run holding a business"
