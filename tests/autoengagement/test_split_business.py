"""One big business shared by several workers (services.parts): key ranges of its customers claimed under leases,
every eligible customer attempted exactly once, holdout and results as one worker would have them."""

import datetime as dt
from collections import Counter

import pytest
from django.test import override_settings
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig, ResultsCohort, ResultsDay, ResultsOutcome, RunPart
from autoengagement.services import parts, run
from autoengagement.services.audience import in_holdout
from autoengagement.services.run import run_due_configs
from notifications.models import NotificationLog
from tests.autoengagement.runs import NOW
from tests.factories import AutoEngagementConfigFactory, CustomerFactory
from tests.faults.standins import Fault, TwilioStandIn
from tests.processes import run_command_workers, twilio_environment

INACTIVE, ACTIVE, PART_SIZE = 1000, 200, 100


def big_business(holdout_percent: int = 20) -> tuple[AutoEngagementConfig, dict[str, bool]]:
    config = AutoEngagementConfigFactory(channels=["sms"], holdout_percent=holdout_percent)
    quiet = CustomerFactory.create_batch(
        INACTIVE,
        business=config.business,
        created_at=NOW - dt.timedelta(days=300),
        last_activity_at=NOW - dt.timedelta(days=30),
    )
    CustomerFactory.create_batch(
        ACTIVE, business=config.business, created_at=NOW - dt.timedelta(days=300), last_activity_at=NOW
    )
    expected = {
        member.customer_id: in_holdout(
            config_id=config.config_id,
            customer_id=member.customer_id,
            spell_start=member.last_activity_at,
            holdout_percent=holdout_percent,
        )
        for member in quiet
    }
    return config, expected


def assigned() -> dict[str, str]:
    return dict(NotificationLog.objects.values_list("customer__customer_id", "status"))


def results_rows() -> list[tuple]:
    outcomes = sorted(ResultsOutcome.objects.values_list("day__run_date", "channel", "status", "rows", "delivered"))
    cohorts = sorted(tuple(row.values()) for row in ResultsCohort.objects.values().order_by())
    return [outcomes, [row[2:] for row in cohorts]]


def run_workers(standin: TwilioStandIn, count: int, *, part_size: int) -> list[dict]:
    return run_command_workers(
        count, now=NOW, environment={**twilio_environment(standin), "AUTO_ENGAGEMENT_PART_SIZE": str(part_size)}
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_workers_share_one_business_and_match_one_worker():
    config, expected = big_business()
    # Each answer takes a moment, as a real provider's does: one worker alone would take several seconds, so the
    # others, starting a second later, find parts left to take.
    with TwilioStandIn(fault=Fault.ACCEPT_THEN_TIMEOUT, slow_seconds=0.3) as twilio:
        outputs = run_workers(twilio, 4, part_size=PART_SIZE)
        split_deliveries = Counter(twilio.deliveries)

    statuses = Counter(b["status"] for out in outputs for b in out["businesses"])
    assert statuses["success"] == 1
    assert statuses["helped"] >= 1
    part_rows = list(RunPart.objects.filter(config=config).values_list("owner", "done_at"))
    assert len(part_rows) == (INACTIVE + ACTIVE) // PART_SIZE
    assert all(done_at is not None for _, done_at in part_rows)
    assert len({owner for owner, _ in part_rows}) > 1
    # Exactly once: one log row per eligible customer, one delivery per reached phone at the provider.
    logged = Counter(NotificationLog.objects.values_list("customer__customer_id", flat=True))
    assert set(logged) == set(expected)
    assert set(logged.values()) == {1}
    assert {customer for customer, status in assigned().items() if status == "holdout"} == {
        customer for customer, held in expected.items() if held
    }
    assert set(split_deliveries.values()) == {1}
    assert sum(split_deliveries.values()) == INACTIVE - sum(expected.values())
    config.refresh_from_db()
    assert config.last_run_status == "success"
    assert config.total_customers_notified == INACTIVE - sum(expected.values())
    split_assigned, split_results = assigned(), results_rows()

    # The same data, run again from scratch by one worker that does not split: the same log and the same results.
    NotificationLog.objects.all().delete()
    RunPart.objects.all().delete()
    ResultsDay.objects.all().delete()
    AutoEngagementConfig.objects.update(last_run_local_date=None, last_run_status=None, total_customers_notified=0)
    with TwilioStandIn() as twilio:
        run_workers(twilio, 1, part_size=10**6)
    assert not RunPart.objects.exists()
    assert assigned() == split_assigned
    assert results_rows() == split_results


@pytest.mark.django_db
@override_settings(AUTO_ENGAGEMENT_PART_SIZE=PART_SIZE)
def test_parts_cover_every_key_and_a_dead_workers_part_is_taken_over():
    config, expected = big_business(holdout_percent=0)
    local_date = NOW.date()
    assert parts.plan_parts(config=config, run_date=local_date, resume=False) == (INACTIVE + ACTIVE) // PART_SIZE
    ranges = list(RunPart.objects.order_by("number").values_list("first_customer", "last_customer"))
    assert ranges[0][0] == 0
    assert ranges[-1][1] == parts.LAST_KEY
    assert all(ranges[n][1] + 1 == ranges[n + 1][0] for n in range(len(ranges) - 1))
    # A resumed day keeps its parts.
    assert parts.plan_parts(config=config, run_date=local_date, resume=True) == len(ranges)

    # A worker took part 0 and died: its lease ran out. The coordinator's run takes it over like any other part.
    RunPart.objects.filter(number=0).update(owner="dead-worker", lease_expires_at=timezone.now() - dt.timedelta(1))
    summary = run_due_configs(now=NOW, business_ids=[config.business.business_id])
    [outcome] = summary.outcomes
    assert outcome.status == "success"
    assert outcome.notified == INACTIVE
    assert not RunPart.objects.filter(done_at__isnull=True).exists()
    owners = set(RunPart.objects.values_list("owner", flat=True))
    assert len(owners) == 1
    assert "dead-worker" not in owners
    assert Counter(NotificationLog.objects.values_list("customer__customer_id", flat=True)) == dict.fromkeys(
        expected, 1
    )

    # The same day run again (forced): fresh parts, nobody new to reach, nothing counted twice.
    config.refresh_from_db()
    total = config.total_customers_notified
    [again] = run_due_configs(now=NOW, business_ids=[config.business.business_id]).outcomes
    assert (again.status, again.notified, again.audience) == ("success", 0, 0)
    config.refresh_from_db()
    assert config.total_customers_notified == total == INACTIVE
    assert NotificationLog.objects.count() == INACTIVE


@pytest.mark.django_db
@override_settings(AUTO_ENGAGEMENT_PART_SIZE=PART_SIZE)
def test_a_split_day_resumed_for_its_retries_counts_only_what_the_resume_sends():
    config, _ = big_business(holdout_percent=0)
    [first] = run_due_configs(now=NOW, business_ids=[config.business.business_id]).outcomes
    assert first.notified == INACTIVE
    # Messages left to retry are due: the next invocation resumes the day with the parts it already has.
    AutoEngagementConfig.objects.filter(pk=config.pk).update(retry_at=NOW)
    [resumed] = run_due_configs(now=NOW + dt.timedelta(minutes=1)).outcomes
    assert (resumed.status, resumed.notified) == ("success", 0)
    config.refresh_from_db()
    assert config.total_customers_notified == INACTIVE
    assert config.retry_at is None


class WorkerDied(Exception):
    """The worker's process ends here, as after kill -9: nothing of its own cleanup runs."""


def claimed(config: AutoEngagementConfig) -> run.Claim:
    claim = run.claim_config(config_pk=config.pk, now=NOW, owner="coordinator")
    assert (claim.status, claim.parts) == ("claimed", (INACTIVE + ACTIVE) // PART_SIZE)
    return claim


@pytest.mark.django_db
@override_settings(AUTO_ENGAGEMENT_PART_SIZE=PART_SIZE, AUTO_ENGAGEMENT_CHUNK_SIZE=25)
def test_what_a_dead_worker_sent_of_its_part_is_counted_by_the_run_that_takes_it_over():
    config, _ = big_business(holdout_percent=0)
    claim = claimed(config)
    part, _ = parts.claim_part(config=claim.config, run_date=claim.local_date, owner="dying-worker")
    context = run._context(claim.config, NOW, claim.local_date, claim.send_at)

    def die() -> None:
        raise WorkerDied

    backends = run.BackendPool()
    with pytest.raises(WorkerDied):
        parts.run_part(part, context=context, backends=backends, taken_over=False, after_chunk=die)
    assert NotificationLog.objects.filter(status="sent").count() == 25
    RunPart.objects.filter(pk=part.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))

    outcome = run.run_config(claim=claim, now=NOW, backends=backends)
    backends.close()
    assert (outcome.status, outcome.notified, outcome.channels["sms"]["sent"]) == ("success", INACTIVE, INACTIVE)
    config.refresh_from_db()
    assert config.total_customers_notified == INACTIVE == NotificationLog.objects.filter(status="sent").count()


@pytest.mark.django_db
@override_settings(AUTO_ENGAGEMENT_PART_SIZE=PART_SIZE)
def test_a_helper_sends_with_the_coordinators_clock():
    """A worker that joins later still sends as of the claim's `now`: the same audience cut-off and sent_at."""
    config, _ = big_business(holdout_percent=0)
    claim = claimed(config)
    backends = run.BackendPool()
    helped = run.help_run(config_pk=config.pk, now=NOW + dt.timedelta(hours=1), owner="helper", backends=backends)
    backends.close()
    assert (helped.status, helped.notified) == ("helped", INACTIVE)
    assert set(NotificationLog.objects.values_list("sent_at", flat=True)) == {NOW}
    assert not RunPart.objects.filter(config=config, run_date=claim.local_date, done_at__isnull=True).exists()


@pytest.mark.django_db
@override_settings(AUTO_ENGAGEMENT_PART_SIZE=PART_SIZE)
def test_no_worker_takes_or_keeps_sending_a_part_once_its_day_is_closed():
    config, _ = big_business(holdout_percent=0)
    claim = claimed(config)
    part, _ = parts.claim_part(config=claim.config, run_date=claim.local_date, owner="helper")
    assert parts.helpable_config_pks() == {config.pk}
    # Staff disable the business: no new worker joins the day (the ones at work finish their parts).
    AutoEngagementConfig.objects.filter(pk=config.pk).update(enabled=False)
    assert parts.helpable_config_pks() == set()
    # The day is closed (its run failed and a later claim gave it up): nothing left to take, nothing kept.
    AutoEngagementConfig.objects.filter(pk=config.pk).update(
        enabled=True, last_run_status=AutoEngagementConfig.RunStatus.FAILED
    )
    assert parts.helpable_config_pks() == set()
    assert parts.claim_part(config=claim.config, run_date=claim.local_date, owner="late") == (None, False)
    with pytest.raises(parts.PartLost):
        parts.renew_part(part)
    assert not NotificationLog.objects.exists()
