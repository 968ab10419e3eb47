import datetime as dt
import io
import json
import logging
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.models import AutoEngagementConfig, RunPart
from autoengagement.services.audience import in_holdout, iter_audience_chunks
from autoengagement.services.delivery import ACTIVE_AGAIN, RunContext, deliver_chunk
from autoengagement.services.retries import INTERRUPTED
from autoengagement.services.run import BackendPool, claim_config, run_due_configs
from notifications.backends import record
from notifications.models import NotificationLog
from tests.autoengagement.runs import DAY, NOW, Status, inactive, make_config, run

pytestmark = pytest.mark.django_db


def test_a_due_run_reaches_inactive_customers_on_every_channel():
    config = make_config()
    ana = inactive(config, first_name="Ana")
    unnamed = inactive(config, first_name="")
    inactive(config, days=3)  # still active enough
    summary = run()
    assert summary["total_processed"] == 1
    assert summary["total_notified"] == 2
    business = summary["businesses"][0]
    assert (business["status"], business["audience"], business["sent"], business["failed"]) == ("success", 2, 4, 0)

    rows = NotificationLog.objects.filter(customer=ana).order_by("channel")
    assert [(r.channel, r.status, r.header, r.body) for r in rows] == [
        ("email", "sent", "Hi Ana", "10 days at Bean Bar"),
        ("wallet", "sent", "Hi Ana", "10 days at Bean Bar"),
    ]
    assert all(r.run_date == NOW.date() and r.sent_at == NOW and r.provider_message_id for r in rows)
    assert NotificationLog.objects.get(customer=unnamed, channel="email").header == "Hi there"
    assert sorted((m.channel, m.message.recipient) for m in record.outbox) == sorted(
        [("email", ana.email), ("email", unnamed.email), ("wallet", ana.customer_id), ("wallet", unnamed.customer_id)]
    )
    config.refresh_from_db()
    assert (config.last_run_status, config.total_customers_notified, config.last_run_local_date) == (
        "success",
        2,
        NOW.date(),
    )


def test_not_due_before_the_send_time():
    config = make_config(run_time="10:00")
    inactive(config)
    assert run()["total_processed"] == 0
    assert not NotificationLog.objects.exists()


def test_a_second_invocation_the_same_day_and_business_reruns_never_double_send():
    config = make_config()
    inactive(config)
    inactive(config)
    assert run()["total_notified"] == 2
    rows = NotificationLog.objects.count()
    assert run(now=NOW + dt.timedelta(hours=1))["total_processed"] == 0
    rerun = run("--business", config.business.business_id, now=NOW + dt.timedelta(hours=2))
    assert rerun["total_processed"] == 1
    assert rerun["total_notified"] == 0
    assert run("--business", config.business.business_id, now=NOW + 2 * DAY)["total_notified"] == 0
    assert NotificationLog.objects.count() == rows
    assert len(record.outbox) == 4


def test_the_next_day_runs_again_for_newly_inactive_customers():
    config = make_config()
    inactive(config, days=10)
    later = inactive(config, days=6)
    run()
    summary = run(now=NOW + DAY)
    assert summary["total_notified"] == 1
    assert set(NotificationLog.objects.filter(run_date=(NOW + DAY).date()).values_list("customer", flat=True)) == {
        later.pk
    }


def test_skips_say_why():
    config = make_config(channels=["wallet", "email", "sms", "push"])
    member = inactive(config, with_pass=False, email="", sms_opt_out=True, push_token="")
    summary = run()
    statuses = dict(NotificationLog.objects.filter(customer=member).values_list("channel", "error"))
    assert statuses == {"wallet": "no pass", "email": "no address", "sms": "opted out", "push": "no address"}
    assert set(NotificationLog.objects.values_list("status", flat=True)) == {"skipped"}
    assert summary["total_notified"] == 0
    assert len(record.outbox) == 0


def test_holdout_members_get_holdout_rows_and_nothing_sent():
    config = make_config(holdout_percent=50)
    members = [inactive(config) for _ in range(40)]
    summary = run()["businesses"][0]
    held = set(NotificationLog.objects.filter(status=Status.HOLDOUT).values_list("customer", flat=True))
    assert 0 < len(held) < len(members)
    assert summary["holdout"] == len(held)
    assert NotificationLog.objects.filter(status=Status.HOLDOUT).count() == 2 * len(held)
    held_ids = {m.customer_id for m in members if m.pk in held}
    assert not [m for m in record.outbox if m.message.customer_id in held_ids]
    assert summary["notified"] == len(members) - len(held)


ALL_CHANNELS = ["wallet", "email", "sms", "push"]


def reachable_everywhere(config, count):
    return [inactive(config, push_token=f"token-{config.pk}-{index}") for index in range(count)]


def groups(config) -> dict[str, str]:
    """customer_id -> "holdout" or "reached", asserting every row of a customer says the same."""
    statuses: dict[str, set[str]] = {}
    for customer_id, status in NotificationLog.objects.filter(config=config).values_list(
        "customer__customer_id", "status"
    ):
        statuses.setdefault(customer_id, set()).add(status)
    assert all(s == {"holdout"} or "holdout" not in s for s in statuses.values())
    return {c: "holdout" if s == {"holdout"} else "reached" for c, s in statuses.items()}


def expected_groups(config, members) -> dict[str, str]:
    return {
        m.customer_id: "holdout"
        if in_holdout(
            config_id=config.config_id,
            customer_id=m.customer_id,
            spell_start=m.last_activity_at,
            holdout_percent=config.holdout_percent,
        )
        else "reached"
        for m in members
    }


def test_nothing_is_sent_to_a_holdout_customer_on_any_channel():
    config = make_config(holdout_percent=30, channels=ALL_CHANNELS)
    members = reachable_everywhere(config, 40)
    summary = run()
    assigned = groups(config)
    held = {c for c, group in assigned.items() if group == "holdout"}
    reached = {c for c, group in assigned.items() if group == "reached"}
    assert held and reached and len(assigned) == len(members)
    assert (summary["total_holdout"], summary["total_notified"]) == (len(held), len(reached))
    for channel in ALL_CHANNELS:
        recipients = {m.message.customer_id for m in record.outbox if m.channel == channel}
        assert recipients == reached, channel
    assert NotificationLog.objects.filter(status=Status.HOLDOUT).count() == 4 * len(held)
    assert not NotificationLog.objects.filter(status=Status.HOLDOUT, sent_at__isnull=False).exists()
    assert set(NotificationLog.objects.filter(status=Status.HOLDOUT).values_list("header", "body")) == {("", "")}


def test_holdout_groups_are_the_same_on_reruns_business_reruns_and_the_next_day():
    config = make_config(holdout_percent=30)
    members = reachable_everywhere(config, 40)
    run()
    first = groups(config)
    assert first == expected_groups(config, members)
    assert "holdout" in first.values() and "reached" in first.values()
    # A --business rerun the same day writes nothing new: the groups stand.
    assert run("--business", config.business.business_id, now=NOW + dt.timedelta(hours=2))["total_holdout"] == 0
    assert groups(config) == first
    # Even with the rows gone, a --business rerun and the next day's run assign the same groups in the same spell.
    for again in (
        lambda: run("--business", config.business.business_id, now=NOW + dt.timedelta(hours=3)),
        lambda: run(now=NOW + DAY),
    ):
        NotificationLog.objects.all().delete()
        summary = again()
        assert groups(config) == first
        assert summary["total_holdout"] == list(first.values()).count("holdout")


def test_a_holdout_member_is_not_picked_again_in_that_spell():
    config = make_config(holdout_percent=50)
    reachable_everywhere(config, 20)
    run()
    rows = NotificationLog.objects.count()
    for day in (1, 7, 30):
        assert run(now=NOW + day * DAY)["total_holdout"] == 0
    assert NotificationLog.objects.count() == rows


def test_with_several_reminders_a_holdout_member_stays_held_out_for_each_of_them():
    # The holdout row counts as the spell's re-engagement, exactly like a sent one: with max_reminders 3 the
    # control group gets its (silent) reminders at the same times as the reached group, keeping them comparable.
    config = make_config(holdout_percent=50, max_reminders=3, inactivity_days=7)
    members = reachable_everywhere(config, 20)
    run()
    held = {c for c, group in groups(config).items() if group == "holdout"}
    for day in (7, 14, 30):
        run(now=NOW + day * DAY)
    for member in members:
        rows = NotificationLog.objects.filter(customer=member)
        if member.customer_id in held:
            assert set(rows.values_list("status", flat=True)) == {"holdout"}
        else:
            assert "holdout" not in set(rows.values_list("status", flat=True))


def test_text_summary_reports_reached_and_holdout_per_business_and_in_total():
    config = make_config(holdout_percent=50)
    reachable_everywhere(config, 20)
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", NOW.isoformat(), stdout=out)
    held = NotificationLog.objects.filter(status=Status.HOLDOUT).values("customer").distinct().count()
    assert 0 < held < 20
    text = out.getvalue()
    assert f"notified={20 - held} holdout={held} " in text
    assert f"{20 - held} customer(s) notified" in text and f"{held} in holdout" in text


def test_holdout_percent_zero_holds_nobody_out():
    config = make_config(holdout_percent=0)
    members = reachable_everywhere(config, 30)
    summary = run()
    assert summary["total_holdout"] == 0
    assert summary["total_notified"] == len(members)
    assert not NotificationLog.objects.filter(status=Status.HOLDOUT).exists()


def test_dry_run_writes_and_sends_nothing():
    config = make_config()
    inactive(config)
    before = AutoEngagementConfig.objects.values().get(pk=config.pk)
    summary = run("--dry-run")
    assert summary["dry_run"] is True
    assert summary["total_notified"] == 1
    assert not NotificationLog.objects.exists()
    assert AutoEngagementConfig.objects.values().get(pk=config.pk) == before
    assert len(record.outbox) == 0


def test_disabled_by_setting_does_nothing(settings, caplog):
    settings.DISABLE_AUTO_ENGAGEMENT = True
    config = make_config()
    inactive(config)
    with caplog.at_level(logging.WARNING):
        summary = run()
    assert summary["disabled"] is True
    assert not NotificationLog.objects.exists()
    assert "disabled" in caplog.text


def test_bad_usage_exits_2():
    with pytest.raises(CommandError) as excinfo:
        call_command("run_auto_engagement", "--now", "yesterday-ish")
    assert excinfo.value.returncode == 2
    assert "--now" in str(excinfo.value)
    with pytest.raises(CommandError) as excinfo:
        call_command("run_auto_engagement", "--business", "biz_unknown0000000000000")
    assert excinfo.value.returncode == 2
    assert "biz_unknown0000000000000" in str(excinfo.value)


def test_a_failing_business_does_not_stop_the_others(settings):
    settings.EMAIL_CHANNEL = "tests.backends.ExplodingBackend"
    broken = make_config(channels=["email"], name="Broken")
    fine = make_config(channels=["wallet"], name="Fine")
    broken_member = inactive(broken)
    inactive(fine)
    out = io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("run_auto_engagement", "--now", NOW.isoformat(), "--format", "json", stdout=out)
    assert excinfo.value.returncode == 1
    summary = json.loads(out.getvalue().strip())
    outcomes = {b["business_id"]: b for b in summary["businesses"]}
    assert outcomes[fine.business.business_id]["status"] == "success"
    assert outcomes[fine.business.business_id]["notified"] == 1
    assert outcomes[broken.business.business_id]["status"] == "failed"
    assert summary["total_failed"] == 1
    broken.refresh_from_db()
    assert broken.last_run_status == "failed"
    assert "provider credentials rejected" in broken.last_run_error
    row = NotificationLog.objects.get(customer=broken_member)
    # The backend raised with the message in its hands: whether it went out is unknown, so it is never resent.
    assert (row.status, "provider credentials rejected" in row.error) == ("unknown", True)


def test_provider_revocations_update_consent(settings):
    settings.SMS_CHANNEL = "tests.backends.RevokingBackend"
    settings.PUSH_CHANNEL = "tests.backends.RevokingBackend"
    config = make_config(channels=["sms", "push"])
    member = inactive(config, push_token="tok-1")
    run()
    member.refresh_from_db()
    assert member.sms_opt_out is True
    assert member.push_token == ""
    assert set(NotificationLog.objects.values_list("status", flat=True)) == {"failed"}


def test_a_crashed_run_is_completed_after_its_lease_expires_sending_pending_rows_but_never_sending_rows():
    config = make_config(channels=["wallet"])
    members = [inactive(config) for _ in range(6)]
    # A run claimed the config, wrote rows for three customers, handed one to the provider, then died.
    claim = claim_config(config_pk=config.pk, now=NOW, owner="dead-worker")
    assert claim.status == "claimed"
    for member, status in zip(members[:3], [Status.SENDING, Status.PENDING, Status.PENDING], strict=True):
        NotificationLog.objects.create(
            business=config.business,
            customer=member,
            config=config,
            channel="wallet",
            status=status,
            attempts=1 if status == Status.SENDING else 0,
            header="Hi",
            body="Come back",
            run_date=NOW.date(),
            created_at=NOW,
        )
    AutoEngagementConfig.objects.filter(pk=config.pk).update(lease_expires_at=NOW - DAY)

    summary = run(now=NOW + dt.timedelta(minutes=15))
    assert summary["total_processed"] == 1
    assert summary["total_notified"] == 5
    in_flight = NotificationLog.objects.get(customer=members[0])
    assert (in_flight.status, in_flight.error) == ("unknown", INTERRUPTED)
    assert {m.message.customer_id for m in record.outbox} == {m.customer_id for m in members[1:]}
    resumed = NotificationLog.objects.filter(customer__in=members[1:3])
    assert {(r.status, r.attempts, r.header) for r in resumed} == {("sent", 1, "Hi")}
    assert not NotificationLog.objects.filter(status__in=[Status.PENDING, Status.SENDING]).exists()
    assert NotificationLog.objects.count() == 6


def test_a_live_lease_keeps_other_runs_off_the_business():
    config = make_config()
    inactive(config)
    assert claim_config(config_pk=config.pk, now=NOW, owner="worker-1").status == "claimed"
    summary = run("--business", config.business.business_id)
    assert summary["businesses"][0]["status"] == "busy"
    assert not NotificationLog.objects.exists()


def test_missed_send_time_is_reported_and_the_next_day_runs(settings):
    config = make_config()
    inactive(config)
    summary = run(now=NOW + dt.timedelta(hours=3, minutes=1))
    assert summary["total_missed"] == 1
    assert summary["businesses"][0]["status"] == "missed"
    assert not NotificationLog.objects.exists()
    config.refresh_from_db()
    assert config.last_run_status == "missed"
    assert "nothing sent today" in config.last_run_error
    assert run(now=NOW + dt.timedelta(hours=3, minutes=16))["businesses"] == []
    assert run(now=NOW + DAY)["total_notified"] == 1


def test_just_within_lateness_still_runs():
    config = make_config()
    inactive(config)
    assert run(now=NOW + dt.timedelta(hours=2, minutes=59))["total_notified"] == 1


def test_a_visit_after_the_claim_cancels_that_customers_message():
    config = make_config(channels=["wallet"])
    visitor, other = inactive(config), inactive(config)
    claim = claim_config(config_pk=config.pk, now=NOW, owner="worker")
    members = next(iter_audience_chunks(config=config, now=NOW, chunk_size=100))
    visitor.last_activity_at = NOW + dt.timedelta(minutes=1)
    visitor.save()
    context = RunContext(
        config=claim.config,
        business=config.business,
        now=NOW,
        run_date=NOW.date(),
        template=config.get_message_template(),
    )
    pool = BackendPool()
    tally = deliver_chunk(context, members, pool)
    pool.close()
    assert (tally.sent, tally.notified, tally.skipped) == (1, 1, 1)
    assert NotificationLog.objects.get(customer=visitor).error == ACTIVE_AGAIN
    assert NotificationLog.objects.get(customer=other).status == "sent"
    assert [m.message.customer_id for m in record.outbox] == [other.customer_id]


def test_text_output_is_readable():
    config = make_config()
    inactive(config)
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", NOW.isoformat(), stdout=out)
    text = out.getvalue()
    assert config.business.business_id in text
    assert "1 customer(s) notified" in text


def queries_for_run(settings, customers, chunk_size, progress=None):
    settings.AUTO_ENGAGEMENT_CHUNK_SIZE = chunk_size
    config = make_config(channels=["wallet", "email"], name=f"Shop {customers}")
    for _ in range(customers):
        inactive(config)
    with CaptureQueriesContext(connection) as queries:
        summary = run_due_configs(now=NOW, business_ids=[config.business.business_id], progress=progress)
    assert summary.outcomes[0].notified == customers
    return len(queries)


def test_queries_grow_with_chunks_not_customers(settings):
    small = queries_for_run(settings, customers=10, chunk_size=5)
    large = queries_for_run(settings, customers=40, chunk_size=20)
    assert small == large
    more_chunks = queries_for_run(settings, customers=40, chunk_size=5)
    per_chunk = (more_chunks - large) / 6
    # Reads, the visits check, the rows written (on PostgreSQL: their keys, then COPY in a savepoint), one statement
    # per send window (two channels), the last outcomes, the results mark and the lease renewal.
    assert 3 <= per_chunk <= 13
    # The claim, the webhook subscriptions (one lookup per business run), two chunks, completion, the results day's
    # refresh and the stale-day sweep.
    assert large <= 63


def test_run_due_configs_service_reports_per_business():
    config = make_config()
    inactive(config)
    summary = run_due_configs(now=NOW)
    assert [(o.business_id, o.status, o.notified) for o in summary.outcomes] == [
        (config.business.business_id, "success", 1)
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only():
    config = make_config()
    inactive(config)
    terminal = Terminal()
    call_command("run_auto_engagement", "--now", NOW.isoformat(), stdout=terminal)
    shown = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", terminal.getvalue())
    assert "1/1 businesses" in shown and "100%" in shown and "1 customers, 1 notified" in shown
    assert shown.count("1 business(es) processed") == 1
    piped = io.StringIO()
    call_command("run_auto_engagement", "--business", config.business.business_id, stdout=piped)
    assert "\r" not in piped.getvalue() and "\x1b" not in piped.getvalue()
    quiet = Terminal()
    call_command("run_auto_engagement", "--business", config.business.business_id, "--no-progress", stdout=quiet)
    assert "\x1b" not in quiet.getvalue() and "businesses" not in quiet.getvalue()


class RecordedProgress:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, total):
        self.events.append(("started", total))

    def advanced(self, outcome):
        self.events.append(("advanced", outcome.business_id, outcome.audience, outcome.notified))

    def finished(self, outcome):
        self.events.append(("finished", outcome.business_id if outcome else None))


def test_a_run_reports_its_total_first_then_each_chunk_and_each_business(settings):
    settings.AUTO_ENGAGEMENT_CHUNK_SIZE = 2
    first, second = make_config(name="First"), make_config(name="Second")
    for _ in range(3):
        inactive(first)
    inactive(second)
    progress = RecordedProgress()
    run_due_configs(now=NOW, progress=progress)
    a, b = first.business.business_id, second.business.business_id
    assert progress.events == [
        ("started", 2),
        ("advanced", a, 2, 2),
        ("advanced", a, 3, 3),
        ("finished", a),
        ("advanced", b, 1, 1),
        ("finished", b),
    ]


def test_progress_costs_no_queries(settings):
    assert queries_for_run(settings, customers=10, chunk_size=5, progress=RecordedProgress()) == queries_for_run(
        settings, customers=10, chunk_size=5
    )


def test_a_split_business_reports_its_counts_after_each_chunk_of_its_parts(settings):
    settings.AUTO_ENGAGEMENT_CHUNK_SIZE = 2
    settings.AUTO_ENGAGEMENT_PART_SIZE = 3
    config = make_config()
    for _ in range(6):
        inactive(config)
    progress = RecordedProgress()
    summary = run_due_configs(now=NOW, progress=progress)
    assert summary.outcomes[0].audience == 6
    assert RunPart.objects.filter(config=config).count() == 2
    business = config.business.business_id
    assert progress.events[0] == ("started", 1)
    assert progress.events[-1] == ("finished", business)
    shown = progress.events[1:-1]
    assert len(shown) >= 3  # two parts of three customers: at least two chunks each, minus an empty last one
    assert [event[:2] for event in shown] == [("advanced", business)] * len(shown)
    audiences = [event[2] for event in shown]
    assert audiences == sorted(audiences) and audiences[-1] == 6
    assert [event[3] for event in shown][-1] == 6
