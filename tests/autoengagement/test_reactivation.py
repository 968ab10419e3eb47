"""Visits credited to re-engagements: window edges, visits before any send, spells in a row, bulk visits."""

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory
from wallet.services import customer_record_activity, record_visits

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)
LATER = NOW + 365 * DAY  # when the visits are reported: after all of them


def make_config(**fields):
    fields.setdefault("channels", ["wallet", "email"])
    fields.setdefault("attribution_days", 14)
    return AutoEngagementConfigFactory(business=BusinessFactory(), **fields)


def inactive(config, days=10):
    member = CustomerFactory(business=config.business, last_activity_at=NOW - days * DAY, created_at=NOW - 400 * DAY)
    WalletPassFactory(customer=member)
    return member


def run(now=NOW, *business_ids):
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", now.isoformat(), "--format", "json", *business_ids, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def credits(member) -> dict[tuple[str, dt.date], dt.datetime | None]:
    return {(row.channel, row.run_date): row.reactivated_at for row in NotificationLog.objects.filter(customer=member)}


def visit(member, at):
    return customer_record_activity(customer=member, occurred_at=at, now=LATER)


def test_a_visit_one_second_inside_the_window_is_credited_to_every_channel_row():
    config = make_config()
    member = inactive(config)
    run()
    assert set(NotificationLog.objects.filter(customer=member).values_list("status", flat=True)) == {"sent"}
    visit(member, NOW + 14 * DAY - SECOND)
    assert credits(member) == {
        ("wallet", NOW.date()): NOW + 14 * DAY - SECOND,
        ("email", NOW.date()): NOW + 14 * DAY - SECOND,
    }


def test_a_visit_one_second_outside_the_window_is_not_credited():
    config = make_config()
    member = inactive(config)
    run()
    visit(member, NOW + 14 * DAY + SECOND)
    assert set(credits(member).values()) == {None}
    member.refresh_from_db()
    assert member.last_activity_at == NOW + 14 * DAY + SECOND


def test_the_window_follows_the_configs_attribution_days():
    config = make_config(attribution_days=1)
    member = inactive(config)
    run()
    visit(member, NOW + DAY + SECOND)
    assert set(credits(member).values()) == {None}


def test_holdout_members_are_credited_the_same_way():
    config = make_config(holdout_percent=50)
    members = [inactive(config) for _ in range(30)]
    run()
    held = set(NotificationLog.objects.filter(status="holdout").values_list("customer", flat=True))
    assert held and len(held) < len(members)
    for member in members:
        visit(member, NOW + 2 * DAY)
    assert NotificationLog.objects.filter(status="holdout", reactivated_at=NOW + 2 * DAY).count() == 2 * len(held)
    assert NotificationLog.objects.filter(status="sent", reactivated_at=NOW + 2 * DAY).count() == 2 * (
        len(members) - len(held)
    )


def test_a_visit_before_any_send_is_not_credited():
    config = make_config()
    member = inactive(config)
    early = inactive(config)
    visit(early, NOW - DAY)  # came back before the run: never in the audience
    run()
    assert not NotificationLog.objects.filter(customer=early).exists()
    visit(member, NOW - SECOND)  # reported late: the visit happened before the message went out
    assert set(credits(member).values()) == {None}


def test_only_the_first_visit_after_a_re_engagement_counts():
    config = make_config()
    member = inactive(config)
    run()
    visit(member, NOW + 2 * DAY)
    visit(member, NOW + 3 * DAY)
    assert set(credits(member).values()) == {NOW + 2 * DAY}


def test_two_spells_in_a_row_are_credited_each_to_its_own_re_engagement():
    config = make_config(inactivity_days=7)
    member = inactive(config)
    run()
    visit(member, NOW + 2 * DAY)  # ends spell 1
    second_run = NOW + 10 * DAY  # 8 days quiet again: spell 2
    run(second_run)
    assert NotificationLog.objects.filter(customer=member, run_date=second_run.date()).count() == 2
    visit(member, second_run + 3 * DAY)
    assert credits(member) == {
        ("wallet", NOW.date()): NOW + 2 * DAY,
        ("email", NOW.date()): NOW + 2 * DAY,
        ("wallet", second_run.date()): second_run + 3 * DAY,
        ("email", second_run.date()): second_run + 3 * DAY,
    }


def test_the_visit_is_credited_to_the_latest_re_engagement_of_the_spell():
    config = make_config(inactivity_days=7, max_reminders=2, channels=["wallet"])
    member = inactive(config)
    run()
    run(NOW + 7 * DAY)
    visit(member, NOW + 8 * DAY)
    assert credits(member) == {("wallet", NOW.date()): None, ("wallet", (NOW + 7 * DAY).date()): NOW + 8 * DAY}


def test_a_re_engagement_that_reached_nobody_is_not_credited():
    config = make_config(channels=["wallet"])
    member = CustomerFactory(business=config.business, last_activity_at=NOW - 10 * DAY, created_at=NOW - 400 * DAY)
    run()  # no pass: skipped
    visit(member, NOW + DAY)
    assert credits(member) == {("wallet", NOW.date()): None}


def _bulk(config, members, at):
    with CaptureQueriesContext(connection) as queries:
        moved = record_visits(business=config.business, visits=[(m, at) for m in members], now=LATER)
    return moved, len(queries)


def test_bulk_visits_take_a_fixed_number_of_queries_and_credit_like_single_ones():
    config = make_config()
    few = [inactive(config) for _ in range(3)]
    many = [inactive(config) for _ in range(40)]
    run()
    moved_few, queries_few = _bulk(config, few, NOW + DAY)
    moved_many, queries_many = _bulk(config, many, NOW + DAY)
    assert (moved_few, moved_many) == (3, 40)
    assert queries_few == queries_many
    assert NotificationLog.objects.filter(reactivated_at=NOW + DAY).count() == 2 * 43


def test_bulk_visits_of_one_customer_credit_only_the_first_and_keep_the_latest_activity():
    config = make_config()
    member = inactive(config)
    run()
    record_visits(
        business=config.business,
        visits=[(member, NOW + 5 * DAY), (member, NOW + 2 * DAY), (member.pk, NOW + 3 * DAY)],
        now=LATER,
    )
    assert set(credits(member).values()) == {NOW + 2 * DAY}
    member.refresh_from_db()
    assert member.last_activity_at == NOW + 5 * DAY


def test_bulk_visits_ignore_other_businesses_customers():
    config = make_config()
    other = make_config()
    mine, theirs = inactive(config), inactive(other)
    run()
    assert record_visits(business=config.business, visits=[(mine, NOW + DAY), (theirs, NOW + DAY)], now=LATER) == 1
    theirs.refresh_from_db()
    assert theirs.last_activity_at == NOW - 10 * DAY
    assert set(credits(theirs).values()) == {None}


def test_the_activity_endpoint_credits_the_visit(api, business):
    config = AutoEngagementConfigFactory(business=business, channels=["wallet"])
    member = CustomerFactory(business=business, last_activity_at=NOW - 10 * DAY, created_at=NOW - 400 * DAY)
    WalletPassFactory(customer=member)
    run(NOW, "--business", business.business_id)
    assert config.notification_logs.get().status == "sent"
    response = api.post(
        f"/api/customers/{member.customer_id}/activity", {"occurred_at": (NOW + DAY).isoformat()}, format="json"
    )
    assert response.status_code == 200
    assert config.notification_logs.get().reactivated_at == NOW + DAY
