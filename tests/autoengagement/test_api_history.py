import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory

pytestmark = pytest.mark.django_db

URL = "/api/auto-engagement/history"
ITEM_KEYS = {
    "notification_id",
    "customer_id",
    "channel",
    "status",
    "header",
    "body",
    "error",
    "created_at",
    "sent_at",
    "delivered_at",
    "delivery_error",
    "step",
    "variant",
}


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def config(business):
    return AutoEngagementConfigFactory(business=business)


def _log(config, created_at: dt.datetime, **fields) -> NotificationLog:
    return NotificationLogFactory(config=config, created_at=created_at, run_date=created_at.date(), **fields)


def _ids(response) -> list[str]:
    return [item["notification_id"] for item in response.json()["results"]]


def test_history_items_have_the_contract_fields(api, config):
    customer = CustomerFactory(business=config.business)
    log = _log(
        config,
        _utc(2026, 3, 1, 9),
        customer=customer,
        channel="email",
        status="failed",
        header="Hi Ana",
        body="Come back",
        error="mailbox full",
        sent_at=None,
        step=2,
        variant="B",
    )
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "notification_id": log.notification_id,
                "customer_id": customer.customer_id,
                "channel": "email",
                "status": "failed",
                "header": "Hi Ana",
                "body": "Come back",
                "error": "mailbox full",
                "created_at": "2026-03-01T09:00:00Z",
                "sent_at": None,
                "delivered_at": None,
                "delivery_error": "",
                "step": 2,
                "variant": "B",
            }
        ],
    }
    assert set(body["results"][0]) == ITEM_KEYS


def test_history_is_newest_first_with_ties_broken_by_insertion(api, config):
    old = _log(config, _utc(2026, 3, 1, 9))
    tie_first = _log(config, _utc(2026, 3, 2, 9), channel="wallet")
    tie_second = _log(config, _utc(2026, 3, 2, 9), channel="email")
    new = _log(config, _utc(2026, 3, 3, 9))
    assert _ids(api.get(URL)) == [
        new.notification_id,
        tie_second.notification_id,
        tie_first.notification_id,
        old.notification_id,
    ]


def test_history_holds_only_auto_reengagement_rows_of_this_business(api, config, other_business):
    mine = _log(config, _utc(2026, 3, 1, 9))
    _log(config, _utc(2026, 3, 1, 10), type="something_else")
    _log(AutoEngagementConfigFactory(business=other_business), _utc(2026, 3, 1, 11))
    assert _ids(api.get(URL)) == [mine.notification_id]


def test_history_outlives_a_deleted_config(api, config):
    log = _log(config, _utc(2026, 3, 1, 9))
    assert api.delete("/api/auto-engagement/config").status_code == 204
    assert _ids(api.get(URL)) == [log.notification_id]


def test_empty_history(api):
    assert api.get(URL).json() == {"count": 0, "next": None, "previous": None, "results": []}


# --- pagination ---


def test_limit_defaults_to_50_and_pages_link_to_each_other(api, config):
    start = _utc(2026, 3, 1)
    logs = [_log(config, start + dt.timedelta(minutes=i)) for i in range(51)]
    first = api.get(URL).json()
    assert (first["count"], len(first["results"])) == (51, 50)
    assert first["previous"] is None
    assert first["next"].endswith(f"{URL}?page=2")
    second = api.get(URL, {"page": 2}).json()
    assert [item["notification_id"] for item in second["results"]] == [logs[0].notification_id]
    assert second["next"] is None
    assert second["previous"].endswith(URL)


def test_limit_and_page_select_a_slice(api, config):
    start = _utc(2026, 3, 1)
    logs = [_log(config, start + dt.timedelta(minutes=i)) for i in range(5)]
    response = api.get(URL, {"limit": 2, "page": 2})
    assert response.status_code == 200
    assert _ids(response) == [logs[2].notification_id, logs[1].notification_id]
    assert "limit=2" in response.json()["next"]
    assert "page=3" in response.json()["next"]


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(api, config, limit):
    start = _utc(2026, 3, 1)
    for i in range(101):
        _log(config, start + dt.timedelta(minutes=i))
    assert len(api.get(URL, {"limit": limit}).json()["results"]) == int(limit)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
    ],
)
def test_bad_limit_or_page_is_a_400(api, config, params, field):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_an_empty_parameter_counts_as_absent(api, config):
    log = _log(config, _utc(2026, 3, 1))
    response = api.get(URL, {"limit": "", "page": "", "date_from": "", "date_to": ""})
    assert response.status_code == 200
    assert _ids(response) == [log.notification_id]


def test_a_page_past_the_end_is_a_404(api, config):
    _log(config, _utc(2026, 3, 1))
    assert api.get(URL, {"page": 2}).status_code == 404


def test_the_number_of_queries_does_not_grow_with_the_page_size(api, config):
    start = _utc(2026, 3, 1)
    for i in range(60):
        _log(config, start + dt.timedelta(minutes=i), customer=CustomerFactory(business=config.business))
    counts = []
    for limit in (1, 60):
        with CaptureQueriesContext(connection) as queries:
            response = api.get(URL, {"limit": limit})
        assert len(response.json()["results"]) == limit
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert counts[0] <= 3  # the session, the count, the page


# --- dates, inclusive, in the business's time zone ---


@pytest.fixture
def paris_config(business):
    business.timezone = "Europe/Paris"
    business.save()
    return AutoEngagementConfigFactory(business=business)


def test_dates_are_inclusive_local_days_of_the_business(api, paris_config):
    # Paris is UTC+1 in March before the DST change: 1 March local is [28 Feb 23:00Z, 1 Mar 23:00Z).
    before = _log(paris_config, _utc(2026, 2, 28, 22, 59, 59))
    first = _log(paris_config, _utc(2026, 2, 28, 23, 0))
    last = _log(paris_config, _utc(2026, 3, 1, 22, 59, 59))
    after = _log(paris_config, _utc(2026, 3, 1, 23, 0))
    response = api.get(URL, {"date_from": "2026-03-01", "date_to": "2026-03-01"})
    assert response.status_code == 200
    assert _ids(response) == [last.notification_id, first.notification_id]
    assert _ids(api.get(URL, {"date_from": "2026-03-02"})) == [after.notification_id]
    assert _ids(api.get(URL, {"date_to": "2026-02-28"})) == [before.notification_id]


def test_a_date_range_across_a_dst_change(api, paris_config):
    # Paris moves to UTC+2 on 29 March 2026: that local day ends at 29 Mar 22:00Z.
    inside = _log(paris_config, _utc(2026, 3, 29, 21, 59, 59))
    outside = _log(paris_config, _utc(2026, 3, 29, 22, 0))
    assert _ids(api.get(URL, {"date_from": "2026-03-29", "date_to": "2026-03-29"})) == [inside.notification_id]
    assert _ids(api.get(URL, {"date_from": "2026-03-30"})) == [outside.notification_id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "01/03/2026"}, "date_to"),
        ({"date_to": "2026-03-01T00:00:00"}, "date_to"),
        ({"date_from": "2026-03-02", "date_to": "2026-03-01"}, "date_to"),
    ],
)
def test_bad_dates_are_a_400(api, config, params, field):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_extreme_dates_do_not_break(api, config):
    log = _log(config, _utc(2026, 3, 1))
    response = api.get(URL, {"date_from": "0001-01-01", "date_to": "9999-12-31"})
    assert response.status_code == 200
    assert _ids(response) == [log.notification_id]


def test_a_business_with_an_unknown_zone_reads_its_days_in_utc(api, business, caplog):
    business.timezone = "Mars/Olympus_Mons"
    business.save()
    config = AutoEngagementConfigFactory(business=business)
    inside = _log(config, _utc(2026, 3, 1, 23, 59))
    _log(config, _utc(2026, 3, 2, 0, 0))
    response = api.get(URL, {"date_from": "2026-03-01", "date_to": "2026-03-01"})
    assert _ids(response) == [inside.notification_id]
    assert "unknown business time zone; using UTC" in caplog.messages


def test_another_business_sees_none_of_this_history(api, config, other_api):
    _log(config, _utc(2026, 3, 1))
    assert other_api.get(URL).json()["count"] == 0
