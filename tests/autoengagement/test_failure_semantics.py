"""The daily run's promise across invocations: retryable failures retried on their own rows the same day (never past
the attempts or the lateness bound), unknown outcomes never re-sent, outages loud, the clock unable to silence a
business, the once-per-spell guard held by the business."""

import datetime as dt
import io
import json
import time
from collections.abc import Sequence

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import delivery
from autoengagement.services.delivery import ChunkTally, Outgoing, RunContext, send_outgoing
from autoengagement.services.run import claim_config, due_config_pks
from notifications.backends import record
from notifications.backends.base import ChannelBackend, CircuitBreaker, Message, Result
from notifications.backends.record import RecordBackend
from notifications.models import NotificationLog
from tests.backends import OutageBackend
from tests.factories import AutoEngagementConfigFactory, CustomerFactory
from wallet.models import Customer

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
S = NotificationLog.Status


@pytest.fixture
def outage(settings):
    settings.SMS_CHANNEL = "tests.backends.OutageBackend"
    OutageBackend.down = True
    OutageBackend.sent = []
    yield OutageBackend
    OutageBackend.down = True
    OutageBackend.sent = []


def sms_config(customers: int = 3, **fields):
    config = AutoEngagementConfigFactory(channels=["sms"], **fields)
    for n in range(customers):
        CustomerFactory(
            business=config.business,
            phone=f"+1415555{n:04d}",
            created_at=NOW - 400 * DAY,
            last_activity_at=NOW - 10 * DAY,
        )
    return config


def run(now: dt.datetime, *args: str) -> tuple[int, dict]:
    """The command's exit code and its JSON summary."""
    out = io.StringIO()
    try:
        call_command("run_auto_engagement", "--now", now.isoformat(), "--format", "json", *args, stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def rows(config) -> list[tuple[str, int]]:
    return sorted(NotificationLog.objects.filter(business=config.business).values_list("status", "attempts"))


def test_an_outage_is_loud_and_its_messages_are_retried_on_the_same_rows_once_the_provider_is_back(outage):
    config = sms_config()
    code, summary = run(NOW)
    assert code == 1, "an outage fails the command so cron mail and job alerts fire"
    [business] = summary["businesses"]
    assert business["status"] == "failed"
    assert "sms: provider unavailable" in business["error"]
    assert business["channels"]["sms"] == {"sent": 0, "failed": 0, "retryable": 3, "unknown": 0}
    assert summary["notifications_retryable"] == 3
    config.refresh_from_db()
    assert (config.last_run_status, config.retry_at) == ("failed", NOW + 15 * MINUTE)
    assert rows(config) == [("failed", 1)] * 3
    assert set(NotificationLog.objects.values_list("next_attempt_at", flat=True)) == {NOW + 15 * MINUTE}

    assert run(NOW + 10 * MINUTE)[1]["businesses"] == [], "not before the retry time"
    assert rows(config) == [("failed", 1)] * 3
    outage.down = False
    code, summary = run(NOW + 15 * MINUTE)
    assert (code, summary["businesses"][0]["status"], summary["notifications_sent"]) == (0, "success", 3)
    assert rows(config) == [("sent", 2)] * 3, "the same rows, one more attempt each"
    assert sorted(m.recipient for m in outage.sent) == ["+14155550000", "+14155550001", "+14155550002"]
    config.refresh_from_db()
    assert (config.last_run_status, config.retry_at) == ("success", None)
    assert run(NOW + 45 * MINUTE)[1]["businesses"] == []
    assert run(NOW + DAY)[1]["total_notified"] == 0, "the spell was used by the retried messages"
    assert len(outage.sent) == 3


def test_retries_stop_after_the_attempts_and_the_row_is_a_final_failure(outage, settings):
    settings.AUTO_ENGAGEMENT_MAX_ATTEMPTS = 3
    config = sms_config(customers=1)
    assert run(NOW)[0] == 1
    assert run(NOW + 15 * MINUTE)[0] == 1
    assert rows(config) == [("failed", 2)]
    assert NotificationLog.objects.get().next_attempt_at == NOW + 45 * MINUTE, "backoff doubles"
    assert run(NOW + 44 * MINUTE)[1]["businesses"] == []
    code, summary = run(NOW + 45 * MINUTE)
    assert code == 1
    assert "no attempts left today" in summary["businesses"][0]["error"]
    row = NotificationLog.objects.get()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert "no attempts left today" in row.error
    config.refresh_from_db()
    assert config.retry_at is None
    assert run(NOW + 2 * 60 * MINUTE)[1]["businesses"] == []
    outage.down = False
    run(NOW + DAY)
    assert outage.sent == [], "a final failure counts for the spell, like any attempt"


def test_no_retry_is_planned_past_the_lateness_bound(outage, settings):
    settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES = 20
    config = sms_config(customers=1)
    run(NOW + 10 * MINUTE)  # the first attempt 10 minutes late; a retry at +25 would be past the bound
    row = NotificationLog.objects.get()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    config.refresh_from_db()
    assert config.retry_at is None


def test_retries_left_when_the_day_ends_are_closed_by_the_next_claim(outage, settings):
    config = sms_config(customers=1)
    run(NOW)
    AutoEngagementConfig.objects.filter(pk=config.pk).update(retry_at=NOW + 15 * MINUTE)
    # No invocation came within the lateness bound; the next day's claim closes the old day first.
    outage.down = False
    run(NOW + DAY)
    row = NotificationLog.objects.get(run_date=NOW.date())
    assert (row.status, row.next_attempt_at) == ("failed", None)
    assert outage.sent == []


def test_an_unknown_outcome_is_never_sent_again(settings):
    settings.SMS_CHANNEL = "tests.backends.UnknownOutcomeBackend"
    config = sms_config(customers=2)
    code, summary = run(NOW)
    assert (code, summary["businesses"][0]["status"]) == (1, "failed"), "a provider that never answers is loud"
    assert summary["notifications_unknown"] == 2
    assert summary["businesses"][0]["channels"]["sms"]["unknown"] == 2
    assert rows(config) == [("unknown", 1)] * 2
    settings.SMS_CHANNEL = "record"
    for later in (NOW + 15 * MINUTE, NOW + DAY, NOW + 30 * DAY):
        run(later, "--business", config.business.business_id)
    assert not [m for m in record.outbox if m.channel == "sms"]
    assert rows(config) == [("unknown", 1)] * 2


def test_the_once_per_spell_guard_survives_deleting_and_recreating_the_config():
    config = sms_config(customers=4)
    assert run(NOW)[1]["total_notified"] == 4
    business = config.business
    config.delete()
    AutoEngagementConfigFactory(business=business, channels=["sms", "email"], timezone="Pacific/Kiritimati")
    assert run(NOW + DAY)[1]["total_notified"] == 0
    assert run(NOW + DAY, "--business", business.business_id)[1]["total_notified"] == 0
    assert NotificationLog.objects.filter(business=business).count() == 4


def test_max_reminders_sends_spaced_reminders_then_stops():
    config = sms_config(customers=1, max_reminders=2, inactivity_days=7)
    sent = []
    for day in range(0, 22):
        sent.append(run(NOW + day * DAY)[1]["notifications_sent"])
    assert [day for day, count in enumerate(sent) if count] == [0, 7], "two reminders, seven days apart, then none"
    assert sorted(NotificationLog.objects.values_list("run_date", flat=True)) == [NOW.date(), (NOW + 7 * DAY).date()]
    assert rows(config) == [("sent", 1)] * 2


def test_a_last_run_date_in_the_future_never_silences_the_business():
    config = sms_config(customers=2)
    typo = dt.datetime(2027, 11, 2, 9, 0, tzinfo=dt.UTC)
    assert run(typo)[1]["total_notified"] == 2  # a mistyped --now sends for real and records 2027-11-02
    config.refresh_from_db()
    assert config.last_run_local_date == typo.date()
    CustomerFactory(business=config.business, created_at=NOW - 400 * DAY, phone="+14155559999")
    code, summary = run(NOW)
    [business] = summary["businesses"]
    assert (code, business["status"], business["notified"]) == (0, "success", 1)
    assert "last run date 2027-11-02 is after local today 2026-06-01" in business["warnings"][0]
    assert summary["warnings"] == [f"{config.business.business_id}: {business['warnings'][0]}"]
    config.refresh_from_db()
    assert config.last_run_local_date == NOW.date()
    assert run(NOW + 15 * MINUTE)[1]["businesses"] == [], "and once a day only, as usual"


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0005-06-01T00:00:00-12:00"])
def test_a_now_outside_what_a_run_can_represent_is_a_usage_error(now):
    config = sms_config(customers=1)
    with pytest.raises(CommandError) as excinfo:
        call_command("run_auto_engagement", "--now", now, stdout=io.StringIO())
    assert excinfo.value.returncode == 2
    assert "--now" in str(excinfo.value) and "outside" in str(excinfo.value)
    assert not NotificationLog.objects.exists()
    config.refresh_from_db()
    assert config.last_run_local_date is None


def test_a_now_far_from_the_clock_warns_before_sending_but_not_in_a_dry_run():
    sms_config(customers=1)
    err = io.StringIO()
    call_command("run_auto_engagement", "--now", NOW.isoformat(), "--dry-run", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""
    call_command("run_auto_engagement", "--now", NOW.isoformat(), stdout=io.StringIO(), stderr=err)
    assert "more than a day from the clock" in err.getvalue()


def test_a_forced_run_before_the_retries_are_due_keeps_them(outage):
    config = sms_config(customers=2)
    run(NOW)
    run(NOW + 5 * MINUTE, "--business", config.business.business_id)
    config.refresh_from_db()
    assert config.retry_at == NOW + 15 * MINUTE, "the rows waiting for 09:15 still have their time"
    outage.down = False
    run(NOW + 15 * MINUTE)
    assert len(outage.sent) == 2
    assert rows(config) == [("sent", 2)] * 2


def test_an_invocation_that_reaches_a_config_after_another_ran_it_leaves_its_retries_alone(outage):
    config = sms_config(customers=2)
    assert config.pk in due_config_pks(now=NOW)  # one invocation lists it...
    run(NOW)  # ...another runs it first and plans retries for 09:15
    claim = claim_config(config_pk=config.pk, now=NOW, owner="late-invocation")
    assert claim.status == "not_due"
    config.refresh_from_db()
    assert config.retry_at == NOW + 15 * MINUTE
    outage.down = False
    run(NOW + 15 * MINUTE)
    assert len(outage.sent) == 2


class CrashingOnItsSecondWindow(ChannelBackend):
    """Fails its first window retryably, dies (like a kill) on its second, sends from then on."""

    windows = 0

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        CrashingOnItsSecondWindow.windows += 1
        if CrashingOnItsSecondWindow.windows == 1:
            return [Result(log_id=m.log_id, status="failed", error="429", retryable=True) for m in messages]
        if CrashingOnItsSecondWindow.windows == 2:
            raise SystemExit("killed")
        return [Result(log_id=m.log_id, status="sent") for m in messages]


def test_a_resumed_crash_keeps_the_retries_its_first_windows_planned(settings):
    settings.SMS_CHANNEL = f"{__name__}.CrashingOnItsSecondWindow"
    settings.AUTO_ENGAGEMENT_SEND_WINDOW = 1
    CrashingOnItsSecondWindow.windows = 0
    config = sms_config(customers=3)
    with pytest.raises(SystemExit):
        run(NOW)
    AutoEngagementConfig.objects.filter(pk=config.pk).update(lease_expires_at=NOW - DAY)
    run(NOW + 2 * MINUTE)  # the resume: the row in flight is unknown, the untouched one is sent
    config.refresh_from_db()
    assert config.retry_at == NOW + 15 * MINUTE, "the first window's retry is still planned"
    run(NOW + 15 * MINUTE)
    assert rows(config) == [("sent", 1), ("sent", 2), ("unknown", 1)]


def test_a_run_that_outlived_its_lease_never_overwrites_rows_another_run_took(settings):
    """Its breaker open, a stale run records its window as not attempted only where the rows are still as it read
    them: rows the run that took over has sent stay sent (else they would be retried, and sent twice)."""
    config = sms_config(customers=2)
    customers = list(Customer.objects.filter(business=config.business).order_by("pk"))
    logs = [
        NotificationLog.objects.create(
            business=config.business, customer=c, config=config, channel="sms", run_date=NOW.date(), created_at=NOW
        )
        for c in customers
    ]
    stale_view = [
        Outgoing(log.pk, "sms", log.customer_id, S.PENDING, 0, c.phone, "h", "b", c.customer_id)
        for log, c in zip(logs, customers, strict=True)
    ]
    NotificationLog.objects.filter(pk__in=[log.pk for log in logs]).update(status=S.SENT, attempts=1)
    backend = RecordBackend(channel="sms")
    backend.breaker = CircuitBreaker(threshold=1)
    backend.breaker.record(ok=False, error="down")
    context = RunContext(config=config, business=config.business, now=NOW, run_date=NOW.date(), template={})
    send_outgoing(context, stale_view, lambda channel: backend, ChunkTally())
    assert rows(config) == [("sent", 1)] * 2


def test_rows_left_sending_by_a_failed_outcome_write_become_unknown(settings, monkeypatch):
    """The provider took the messages, then the database went away before their outcomes were written: the next
    claim marks them unknown (never sent again), whatever status the failed run left on the config."""
    config = sms_config(customers=2)
    real_write = delivery._write

    def database_gone(recorded, *, taking, **kwargs):
        if not taking:
            raise OperationalError("server closed the connection unexpectedly")
        return real_write(recorded, taking=taking, **kwargs)

    monkeypatch.setattr(delivery, "_write", database_gone)
    assert run(NOW)[0] == 1
    monkeypatch.undo()
    assert rows(config) == [("sending", 1)] * 2
    run(NOW + 15 * MINUTE)
    assert rows(config) == [("unknown", 1)] * 2
    assert not [m for m in record.outbox if m.channel == "sms"][2:], "sent once, never again"


def test_admin_lists_the_rows_waiting_for_a_retry(admin_client, outage):
    waiting = sms_config(customers=1)
    run(NOW)
    AutoEngagementConfigFactory(channels=["sms"])
    url = reverse("admin:notifications_notificationlog_changelist")
    page = admin_client.get(url, {"retry": "waiting"}).content.decode()
    [row] = NotificationLog.objects.filter(business=waiting.business)
    assert "Waiting for a retry" in page
    assert row.notification_id in page
    outage.down = False
    run(NOW + 15 * MINUTE)
    assert row.notification_id not in admin_client.get(url, {"retry": "waiting"}).content.decode()
    detail = admin_client.get(reverse("admin:notifications_notificationlog_change", args=[row.pk])).content.decode()
    assert "Attempts" in detail


class SlowProvider(ChannelBackend):
    """Takes 0.3 s per send window and notes, each time, how long the business's lease still has to run."""

    lease_left: list[float] = []  # shared on purpose: the run opens its own instance

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        time.sleep(0.3)
        expires = AutoEngagementConfig.objects.values_list("lease_expires_at", flat=True).get()
        SlowProvider.lease_left.append((expires - timezone.now()).total_seconds())
        return [Result(log_id=m.log_id, status="sent") for m in messages]


def test_the_lease_is_renewed_while_a_slow_provider_drains_a_chunk(settings):
    """One chunk outlasting the lease: renewed between send windows, it never expires under the run (so no other
    worker may take the business over), and the run completes as the lease's owner."""
    settings.SMS_CHANNEL = f"{__name__}.SlowProvider"
    settings.AUTO_ENGAGEMENT_LEASE_SECONDS = 1
    settings.AUTO_ENGAGEMENT_SEND_WINDOW = 1
    SlowProvider.lease_left = []
    config = sms_config(customers=8)  # one chunk, eight windows: about 2.4 s against a 1 s lease
    code, summary = run(NOW)
    assert (code, summary["notifications_sent"]) == (0, 8)
    assert len(SlowProvider.lease_left) == 8
    assert min(SlowProvider.lease_left) > 0, SlowProvider.lease_left
    config.refresh_from_db()
    assert config.last_run_status == "success"
