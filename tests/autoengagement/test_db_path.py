"""The daily run's database path: plans that hold with degenerate statistics, and the PostgreSQL fast paths writing
exactly what the generic ones write."""

import datetime as dt

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.audience import iter_audience_chunks
from autoengagement.services.delivery import RunContext, deliver_chunk, plan_chunk
from autoengagement.services.run import BackendPool, claim_config
from autoengagement.templating import render
from engagement_site.db import bulk_insert_rows
from notifications import consent
from notifications.backends import record
from notifications.models import NotificationLog
from tests.autoengagement.runs import NOW, Status, inactive, make_config, run
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, log_row, save_logs

DAY = dt.date(2026, 3, 2)


def _explain(sql: str, params=()) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _analysed_with_dead_rows_only(config) -> None:
    """The log as a benchmark's (or a full prune's) mass delete leaves it when ANALYZE runs before any VACUUM: pages
    but no live rows, so the planner takes every scan of it for one row and every index for as cheap as another."""
    customer = CustomerFactory(business=config.business)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_notificationlog (notification_id, business_id, customer_id, config_id, type,"
            " channel, status, header, body, error, provider_message_id, attempts, run_date, created_at)"
            " SELECT 'ntf_dead' || n, %s, %s, %s, 'auto_reengagement', 'wallet', 'sent', 'h', 'b', '', '', 1,"
            " DATE '2000-01-01' + n, TIMESTAMPTZ '2026-01-01'"
            " FROM generate_series(1, 60000) AS n",
            [config.business_id, customer.pk, config.pk],
        )
        cursor.execute("DELETE FROM notifications_notificationlog")
        cursor.execute("ANALYZE notifications_notificationlog")
        cursor.execute("SELECT reltuples, relpages FROM pg_class WHERE relname = 'notifications_notificationlog'")
        reltuples, relpages = cursor.fetchone()
    assert reltuples == 0 and relpages > 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_previous_days_use_the_customer_index_on_a_log_analysed_with_only_dead_rows():
    config = AutoEngagementConfigFactory()
    _analysed_with_dead_rows_only(config)
    customers = CustomerFactory.create_batch(40, business=config.business)
    save_logs([log_row(config, c, DAY - dt.timedelta(days=back)) for c in customers for back in range(0, 60, 3)])
    with CaptureQueriesContext(connection) as queries:
        results.cohorts_from_log(results.spans_of([(config.business_id, DAY)]))
        results.outcomes_from_log(results.spans_of([(config.business_id, DAY)]))
    [cohorts] = [q["sql"] for q in queries.captured_queries if "MAX(e.run_date)" in q["sql"]]
    [outcomes] = [q["sql"] for q in queries.captured_queries if "MAX(e.run_date)" not in q["sql"]]
    day_scan, *subplans = _explain(cohorts).split("SubPlan")
    # The per-customer probe: before, the history index scanned whole on `type`, once per customer and day.
    assert subplans and all("notification_once_per_business_day" in subplan for subplan in subplans), subplans
    # The day's rows themselves: the business's history index, never a whole scan of the customer-led index.
    assert "notification_history_idx" in day_scan, day_scan
    assert "notification_history_idx" in _explain(outcomes)


@pytest.mark.django_db
def test_values_shared_by_every_row_are_written_as_if_each_row_carried_them():
    """The run sends the columns its rows share once per chunk (`same`); the rows must be those a full insert writes."""
    config = AutoEngagementConfigFactory()
    customers = CustomerFactory.create_batch(3, business=config.business)
    created = dt.datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)
    shared = {
        "business_id": config.business_id,
        "config_id": config.pk,
        "type": "auto_reengagement",
        "provider_message_id": "",
        "attempts": 0,
        "run_date": DAY,
        "created_at": created,
    }
    varying = ("notification_id", "customer_id", "channel", "status", "header", "body", "error")

    def rows(prefix: str) -> list[tuple]:
        return [
            (
                f"ntf_{prefix}{n:019d}",
                c.pk,
                "email",
                "pending",
                "Hé 'x'",
                'b\\n"q"',
                "",
            )
            for n, c in enumerate(customers)
        ]

    full = [(*row, *shared.values()) for row in rows("a")]
    bulk_insert_rows(NotificationLog, (*varying, *shared), full)
    NotificationLog.objects.update(run_date=DAY - dt.timedelta(days=1))  # frees the once-per-day constraint
    returned = bulk_insert_rows(NotificationLog, varying, rows("b"), same=shared, returning=("notification_id",))
    assert sorted(returned) == [(f"ntf_b{n:019d}",) for n in range(3)]
    # A second attempt writes nothing: the shared run_date meets the once-per-day constraint.
    assert bulk_insert_rows(NotificationLog, varying, rows("c"), same=shared, returning=("pk",)) == []
    columns = [*varying[1:], "business_id", "config_id", "created_at", "type", "attempts", "provider_message_id"]
    written = {
        prefix: list(
            NotificationLog.objects.filter(notification_id__startswith=f"ntf_{prefix}")
            .order_by("notification_id")
            .values_list(*columns)
        )
        for prefix in "ab"
    }
    assert written["a"] == written["b"] and len(written["a"]) == 3
    assert set(
        NotificationLog.objects.filter(notification_id__startswith="ntf_b").values_list("run_date", flat=True)
    ) == {DAY}


def _claimed_chunk(config, now):
    claim = claim_config(config_pk=config.pk, now=now, owner="worker")
    members = next(iter_audience_chunks(config=config, now=now, chunk_size=100))
    context = RunContext(
        config=claim.config,
        business=config.business,
        now=now,
        run_date=now.date(),
        template=config.get_message_template(),
    )
    return context, members


@pytest.mark.django_db
def test_a_chunks_rows_are_written_then_sent_each_once():
    """PostgreSQL streams the chunk's rows in with COPY (keys drawn first), SQLite inserts them: either way every
    row is as planned, sent through the send windows (pending, sending, sent) and each message goes out once."""
    config = make_config(channels=["wallet", "email"])
    ana, bea = inactive(config, first_name="Ana"), inactive(config, first_name="Bea", email="")
    context, members = _claimed_chunk(config, NOW)
    pool = BackendPool()
    tally = deliver_chunk(context, members, pool)
    pool.close()
    assert (tally.sent, tally.notified, tally.skipped, tally.channels["wallet"]["sent"]) == (3, 2, 1, 2)
    sent = NotificationLog.objects.filter(status=Status.SENT).order_by("pk")
    assert [(row.provider_message_id, row.attempts, row.sent_at) for row in sent] == [
        (f"record-{row.pk}", 1, NOW) for row in sent
    ]
    assert NotificationLog.objects.get(customer=bea, channel="email").error == "no address"
    assert sorted((m.channel, m.message.log_id) for m in record.outbox) == sorted((row.channel, row.pk) for row in sent)
    assert {m.message.customer_id for m in record.outbox} == {ana.customer_id, bea.customer_id}


@pytest.mark.django_db
def test_a_chunk_meeting_rows_already_written_writes_and_records_only_the_others():
    """A second run of the same chunk (a run that outlived its lease, say) meets the once-per-day constraint: on
    PostgreSQL its COPY fails whole and the chunk is inserted skipping those rows; only new rows are recorded."""
    config = make_config(channels=["wallet"])
    first, second = inactive(config), inactive(config)
    context, members = _claimed_chunk(config, NOW)
    pool = BackendPool()
    deliver_chunk(context, members, pool)
    NotificationLog.objects.filter(customer=second).delete()
    record.outbox.clear()
    tally = deliver_chunk(context, members, pool)
    pool.close()
    assert (tally.sent, tally.notified) == (1, 1)
    assert sorted(NotificationLog.objects.values_list("customer_id", "status")) == sorted(
        [(first.pk, Status.SENT), (second.pk, Status.SENT)]
    )
    assert [m.message.customer_id for m in record.outbox] == [second.customer_id]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rows_that_fail_to_be_written_are_neither_logged_nor_sent():
    """A chunk's rows are written before anything is sent, in one transaction: a database error leaves no row and
    an empty outbox, and the next invocation sends each message once."""
    config = make_config(channels=["wallet", "email"])
    AutoEngagementConfig.objects.filter(pk=config.pk).update(message_template={"header": "x" * 300, "body": "b"})
    inactive(config), inactive(config)
    with pytest.raises(CommandError):  # the header is longer than its column
        run()
    assert not NotificationLog.objects.exists()
    assert not record.outbox
    AutoEngagementConfig.objects.filter(pk=config.pk).update(message_template={"header": "h", "body": "b"})
    assert run(now=NOW + dt.timedelta(minutes=15))["total_notified"] == 2
    assert len(record.outbox) == 4
    assert set(NotificationLog.objects.values_list("status", flat=True)) == {Status.SENT}


@pytest.mark.django_db
def test_planned_rows_render_and_skip_as_the_one_rule_does():
    """plan_chunk looks the templates and consent fields up once per chunk: its texts and reasons are those of
    templating.render and consent.skip_reason, braces and all."""
    template = {"header": "{{first_name}} {x} {days_inactive}}", "body": "{business_name}: {first_name}{"}
    config = make_config(channels=["wallet", "email", "sms", "push"], message_template=template)
    members = [
        inactive(config, first_name="", email="", with_pass=False),
        inactive(config, first_name="A{b}", sms_opt_out=True, phone=""),
        inactive(config, days=40, push_token=""),
    ]
    context, chunk = _claimed_chunk(config, NOW)
    rows, _ = plan_chunk(context, chunk)
    expected = []
    for member in sorted(members, key=lambda m: m.pk):
        values = {
            "first_name": member.first_name or "there",
            "business_name": config.business.name,
            "days_inactive": (NOW - member.last_activity_at).days,
        }
        for channel in config.channels:
            reason = consent.skip_reason(channel=channel, customer=member)
            if channel == "wallet" and not member.wallet_passes.exists():
                reason = consent.NO_PASS
            header, body = render(template["header"], values), render(template["body"], values)
            status = "skipped" if reason else "pending"
            # A config without steps: step 1, no variant, no HTML of its own.
            expected.append((member.pk, channel, status, header, body, reason or "", 1, "", ""))
    assert [row[1:] for row in rows] == expected


@pytest.mark.django_db
def test_the_audience_reads_each_spell_start_to_the_microsecond():
    """PostgreSQL reads the spell's start as integer microseconds since the epoch: the same instant, exactly."""
    config = make_config(channels=["wallet"])
    seen, never = inactive(config), inactive(config)
    seen.last_activity_at = dt.datetime(2026, 5, 1, 7, 8, 9, 123457, tzinfo=dt.UTC)
    never.last_activity_at, never.created_at = None, dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    seen.save(), never.save()
    members = {member["pk"]: member for member in next(iter_audience_chunks(config=config, now=NOW, chunk_size=10))}
    assert members[seen.pk]["quiet_since"] == seen.last_activity_at
    assert members[never.pk]["quiet_since"] == never.created_at
