"""POST /api/visits: up to 10,000 visits, all or nothing, credited exactly as the single activity endpoint does."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import NotificationLog
from tests.api import client_for
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory
from wallet.models import Customer
from wallet.services import record_visits

pytestmark = pytest.mark.django_db

URL = "/api/visits"
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
# Per customer of the scenario, the visits reported (days after the run): inside the window, just outside it, one
# older than the last activity on record, two in a row, one at the window's edge, none.
SCENARIO = [[3], [15], [-20], [2, 5], [14], []]


def _business_with_a_run(holdout_percent: int = 0):
    config = AutoEngagementConfigFactory(
        business=BusinessFactory(), channels=["wallet", "email"], attribution_days=14, holdout_percent=holdout_percent
    )
    members = []
    for index in range(len(SCENARIO) * 4):
        member = CustomerFactory(
            business=config.business,
            last_activity_at=NOW - 10 * DAY,
            created_at=NOW - 400 * DAY,
            external_id=f"crm-{index}",
        )
        WalletPassFactory(customer=member)
        members.append(member)
    return config.business, members


def _run():
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", NOW.isoformat(), "--format", "json", stdout=out)


def _visits(members):
    for index, member in enumerate(members):
        for days in SCENARIO[index % len(SCENARIO)]:
            yield member, NOW + days * DAY


def _outcome(business, members):
    api = client_for(business)
    stats = api.get("/api/auto-engagement/stats", {"date_from": "2026-05-25", "date_to": "2026-06-10"}).json()
    credits = [
        sorted(
            (row.channel, row.status, row.reactivated_at)
            for row in NotificationLog.objects.filter(customer=member).order_by("channel")
        )
        for member in members
    ]
    activity = list(
        Customer.objects.filter(pk__in=[m.pk for m in members])
        .order_by("pk")
        .values_list("last_activity_at", flat=True)
    )
    return stats, credits, activity


class _Undo(Exception):
    pass


@pytest.mark.parametrize("holdout_percent", [0, 50])
def test_bulk_visits_are_credited_exactly_as_single_ones(holdout_percent):
    """The same visits of the same customers after the same run, reported one by one (then undone) and in bulk."""
    business, members = _business_with_a_run(holdout_percent)
    _run()
    api = client_for(business)
    with pytest.raises(_Undo), transaction.atomic():
        for member, at in _visits(members):
            response = api.post(
                f"/api/customers/{member.customer_id}/activity", {"occurred_at": at.isoformat()}, format="json"
            )
            assert response.status_code == 200
        single_outcome = _outcome(business, members)
        raise _Undo
    assert _outcome(business, members) != single_outcome  # undone
    rows = [
        {"customer_id": member.customer_id, "occurred_at": at.isoformat()}
        if index % 2
        else {"external_id": member.external_id, "occurred_at": at.isoformat()}
        for index, (member, at) in enumerate(_visits(members))
    ]
    response = api.post(URL, {"visits": rows}, format="json")
    assert response.status_code == 200
    moved = sum(1 for index in range(len(members)) if SCENARIO[index % len(SCENARIO)] not in ([], [-20]))
    assert response.json() == {"recorded": len(rows), "credited": moved}
    bulk_outcome = _outcome(business, members)
    assert bulk_outcome == single_outcome
    stats = bulk_outcome[0]
    assert stats["reactivated"]["reached"] > 0
    if holdout_percent:
        assert stats["reactivated"]["holdout"] > 0


def test_occurred_at_defaults_to_now(business, api):
    customer = CustomerFactory(business=business)
    before = timezone.now()
    assert api.post(URL, {"visits": [{"customer_id": customer.customer_id}]}, format="json").json() == {
        "recorded": 1,
        "credited": 1,
    }
    customer.refresh_from_db()
    assert before <= customer.last_activity_at <= timezone.now()


def test_one_bad_row_records_nothing(api, business, other_business):
    mine = [CustomerFactory(business=business, external_id=f"e{index}") for index in range(3)]
    theirs = CustomerFactory(business=other_business, external_id="theirs")
    erased = CustomerFactory(business=business)
    assert api.delete(f"/api/customers/{erased.customer_id}").status_code == 204
    future = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    rows = [
        {"customer_id": mine[0].customer_id},
        {"customer_id": theirs.customer_id},
        {"external_id": "theirs"},
        {"external_id": "e1", "occurred_at": future},
        {"customer_id": erased.customer_id},
        {"external_id": "e2"},
    ]
    response = api.post(URL, {"visits": rows}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"index": 1, "errors": {"customer_id": ["No such customer."]}},
            {"index": 2, "errors": {"external_id": ["No such customer."]}},
            {"index": 3, "errors": {"occurred_at": ["May not be in the future."]}},
            {"index": 4, "errors": {"customer_id": ["No such customer."]}},
        ]
    }
    assert not Customer.objects.filter(last_activity_at__isnull=False).exists()


def test_malformed_rows_are_reported_by_index(api, business):
    customer = CustomerFactory(business=business)
    rows = [
        {"customer_id": customer.customer_id, "external_id": "x"},
        {},
        {"customer_id": "nope"},
        {"external_id": ""},
        {"customer_id": customer.customer_id, "occurred_at": "2026-01-01T10:00:00"},
        {"customer_id": customer.customer_id, "when": "now"},
        "row",
    ]
    response = api.post(URL, {"visits": rows}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"index": 0, "errors": {"non_field_errors": ["Give exactly one of customer_id or external_id."]}},
            {"index": 1, "errors": {"non_field_errors": ["Give exactly one of customer_id or external_id."]}},
            {"index": 2, "errors": {"customer_id": ["No such customer."]}},
            {"index": 3, "errors": {"external_id": ["Must be a non-empty string of at most 255 characters."]}},
            {
                "index": 4,
                "errors": {"occurred_at": ["Must include a UTC offset (Z or +01:00), e.g. 2026-03-01T09:30:00+01:00."]},
            },
            {"index": 5, "errors": {"when": ["Unknown field."]}},
            {"index": 6, "errors": {"non_field_errors": ["Must be an object, not str."]}},
        ]
    }
    customer.refresh_from_db()
    assert customer.last_activity_at is None


def test_more_than_ten_thousand_visits_are_a_400(api, business):
    customer = CustomerFactory(business=business)
    response = api.post(URL, {"visits": [{"customer_id": customer.customer_id}] * 10_001}, format="json")
    assert response.status_code == 400
    assert response.json() == {"visits": ["At most 10000 rows per request (there are 10001)."]}


def _customers(business, count: int) -> list[Customer]:
    Customer.objects.bulk_create(
        Customer(business=business, external_id=f"c{index}", created_at=NOW - 400 * DAY) for index in range(count)
    )
    return list(Customer.objects.filter(business=business).order_by("pk"))


def _post(api, rows) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, {"visits": rows}, format="json")
    assert response.status_code == 200, response.json()
    return len(queries)


def test_ten_thousand_visits_with_a_fixed_number_of_queries(api, business):
    customers = _customers(business, 10_000)

    def rows(chosen, at):
        return [
            {"external_id": c.external_id, "occurred_at": at.isoformat()}
            if index % 2
            else {"customer_id": c.customer_id, "occurred_at": at.isoformat()}
            for index, c in enumerate(chosen)
        ]

    small = _post(api, rows(customers[:100], NOW))
    large = _post(api, rows(customers, NOW + DAY))
    if connection.vendor == "postgresql":
        assert small == large
    else:
        assert large - small <= 10  # SQLite writes the new last activity 1,000 rows an UPDATE
    assert Customer.objects.filter(business=business, last_activity_at=NOW + DAY).count() == 10_000


def test_record_visits_leaves_another_businesss_customers_alone():
    # The service locks by primary key alone and drops other businesses' rows itself (wallet.services).
    mine, theirs = CustomerFactory(last_activity_at=None), CustomerFactory(last_activity_at=None)
    visited_at = timezone.now() - dt.timedelta(minutes=1)
    moved = record_visits(business=mine.business, visits=[(mine.pk, visited_at), (theirs.pk, visited_at)])
    assert moved == 1
    assert Customer.objects.get(pk=mine.pk).last_activity_at == visited_at
    assert Customer.objects.get(pk=theirs.pk).last_activity_at is None
