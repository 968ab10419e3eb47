"""The history's filters (customer, channel, status), unknown query parameters refused, and the CSV export."""

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory

pytestmark = pytest.mark.django_db

URL = "/api/auto-engagement/history"
CSV_URL = "/api/auto-engagement/history.csv"


@pytest.fixture
def config(business):
    return AutoEngagementConfigFactory(business=business)


def _log(config, day: int, **fields) -> NotificationLog:
    at = dt.datetime(2026, 3, day, 9, tzinfo=dt.UTC)
    return NotificationLogFactory(config=config, created_at=at, run_date=at.date(), **fields)


def _ids(response) -> list[str]:
    return [item["notification_id"] for item in response.json()["results"]]


def _csv(response) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_history_filters_by_customer_channel_and_status(api, config):
    ana, bo = CustomerFactory(business=config.business), CustomerFactory(business=config.business)
    sms_failed = _log(config, 1, customer=ana, channel="sms", status="failed")
    email_sent = _log(config, 2, customer=ana, channel="email", status="sent")
    bo_sms = _log(config, 3, customer=bo, channel="sms", status="sent")

    assert _ids(api.get(URL, {"customer_id": ana.customer_id})) == [
        email_sent.notification_id,
        sms_failed.notification_id,
    ]
    assert _ids(api.get(URL, {"channel": "sms"})) == [bo_sms.notification_id, sms_failed.notification_id]
    assert _ids(api.get(URL, {"status": "failed"})) == [sms_failed.notification_id]
    assert _ids(api.get(URL, {"channel": "sms", "status": "sent", "date_from": "2026-03-02"})) == [
        bo_sms.notification_id
    ]
    assert _ids(api.get(URL, {"customer_id": "cust_" + "A" * 20})) == []


def test_another_business_customer_filter_finds_nothing(api, config, other_business):
    theirs = CustomerFactory(business=other_business)
    NotificationLogFactory(config=AutoEngagementConfigFactory(business=other_business), customer=theirs)
    assert api.get(URL, {"customer_id": theirs.customer_id}).json()["count"] == 0
    assert _csv(api.get(CSV_URL, {"customer_id": theirs.customer_id})) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"customer_id": "bob"}, "customer_id"),
        ({"channel": "fax"}, "channel"),
        ({"status": "lost"}, "status"),
        ({"customer": "cust_x"}, "customer"),
        ({"email": "a@b.c"}, "email"),
    ],
)
def test_bad_filters_and_unknown_parameters_are_a_400_naming_them(api, config, query, field):
    for url in (URL, CSV_URL):
        response = api.get(url, query)
        assert response.status_code == 400, url
        assert field in response.json(), url


def test_the_format_override_and_paging_stay_allowed(api, config):
    _log(config, 1)
    assert api.get(URL, {"format": "json", "page": 1, "limit": 5}).status_code == 200
    assert api.get("/api/auto-engagement/stats", {"format": "json"}).status_code == 200
    assert api.get("/api/auto-engagement/stats", {"unknown": "1"}).status_code == 400


def test_the_csv_has_the_history_items_columns_and_values(api, config):
    customer = CustomerFactory(business=config.business)
    log = _log(
        config,
        4,
        customer=customer,
        channel="email",
        status="sent",
        header='=HYPERLINK("http://x")',
        body='Line one\nsaid "hi", @you',
        sent_at=dt.datetime(2026, 3, 4, 9, 0, 5, tzinfo=dt.UTC),
        step=2,
        variant="offer",
    )
    response = api.get(CSV_URL, {"date_from": "2026-03-01", "date_to": "2026-03-31"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="history-{config.business.business_id}.csv"'
    [row] = _csv(response)
    assert row == {
        "notification_id": log.notification_id,
        "customer_id": customer.customer_id,
        "channel": "email",
        "status": "sent",
        "header": '\'=HYPERLINK("http://x")',
        "body": 'Line one\nsaid "hi", @you',
        "error": "",
        "created_at": "2026-03-04T09:00:00Z",
        "sent_at": "2026-03-04T09:00:05Z",
        "delivered_at": "",
        "delivery_error": "",
        "step": "2",
        "variant": "offer",
    }
    assert list(row) == list(api.get(URL).json()["results"][0])


def test_the_csv_streams_in_one_read_whatever_the_row_count(api, config):
    def queries_for_export() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            rows = _csv(api.get(CSV_URL))
        return len(captured.captured_queries), len(rows)

    customer = CustomerFactory(business=config.business)
    NotificationLog.objects.bulk_create([_unsaved(config, customer, index) for index in range(10)])
    few = queries_for_export()
    NotificationLog.objects.bulk_create([_unsaved(config, customer, index) for index in range(10, 4510)])
    many = queries_for_export()
    assert (few[1], many[1]) == (10, 4510)
    assert many[0] == few[0]


def _unsaved(config, customer, index: int) -> NotificationLog:
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=index)
    return NotificationLog(
        business=config.business,
        config=config,
        customer=customer,
        channel="wallet",
        status="sent",
        created_at=at,
        run_date=at.date() + dt.timedelta(days=index),
    )


def test_the_csv_takes_an_api_key(config):
    from rest_framework.test import APIClient

    from wallet.api_keys import api_key_create

    _log(config, 1)
    _, key = api_key_create(business=config.business, name="export")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert len(_csv(client.get(CSV_URL))) == 1
    assert APIClient().get(CSV_URL).status_code == 401
