"""Events written by the daily run and by visits, in the transactions of what they report, then delivered."""

import datetime as dt
import json

import pytest
from django.core.management import CommandError
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from autoengagement.services import delivery
from notifications.models import NotificationLog
from tests.autoengagement.runs import NOW, inactive, make_config, run
from tests.webhooks.factories import endpoint_for
from tests.webhooks.test_delivery import deliver
from wallet.services import record_visits
from webhooks.models import WebhookMessage

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status


@pytest.fixture
def sms_refused(settings):
    """SMS answered "the recipient said STOP" for everyone: final failures (consent revoked)."""
    settings.SMS_CHANNEL = "tests.backends.RevokingBackend"


def events(event_type=None):
    messages = WebhookMessage.objects.order_by("pk")
    if event_type:
        messages = messages.filter(type=event_type)
    return [message.payload for message in messages]


def test_a_run_writes_its_events_and_they_are_delivered(receiver, sms_refused):
    config = make_config(channels=["wallet", "sms"])
    members = [inactive(config) for _ in range(3)]
    endpoint_for(config.business, receiver)
    run()
    sent = events("message.sent")
    failed = events("message.failed")
    completed = events("run.completed")
    logs = NotificationLog.objects.filter(business=config.business)
    assert {e["data"]["notification_id"] for e in sent} == set(
        logs.filter(status=Status.SENT).values_list("notification_id", flat=True)
    )
    assert len(sent) == 3 and {e["data"]["channel"] for e in sent} == {"wallet"}
    assert len(failed) == 3 and {e["data"]["error_code"] for e in failed} == {"consent_revoked"}
    assert {e["data"]["customer_id"] for e in failed} == {m.customer_id for m in members}
    assert sent[0]["data"] == {
        "business_id": config.business.business_id,
        "notification_id": sent[0]["data"]["notification_id"],
        "customer_id": sent[0]["data"]["customer_id"],
        "channel": "wallet",
        "step": 1,
        "variant": "",
        "status": "sent",
        "run_date": NOW.date().isoformat(),
    }
    assert sent[0]["type"] == "message.sent" and sent[0]["timestamp"] == NOW.isoformat()
    assert len(completed) == 1
    assert completed[0]["data"]["status"] == "success" and completed[0]["data"]["sent"] == 3
    assert completed[0]["data"]["failed"] == 3 and completed[0]["data"]["config_id"] == config.config_id

    # No personal data in any payload.
    text = json.dumps(events())
    for member in members:
        for value in (member.first_name, member.email, member.phone):
            assert value not in text
    assert config.business.name not in text

    summary = deliver()
    assert summary["delivered"] == 7
    assert len(receiver.accepted) == 7 and set(receiver.accepted.values()) == {1}
    assert all(request["verified"] for request in receiver.requests)


def test_no_endpoint_no_event_rows(sms_refused):
    config = make_config(channels=["wallet", "sms"])
    inactive(config)
    run()
    assert NotificationLog.objects.filter(status=Status.SENT).exists()
    assert not WebhookMessage.objects.exists()


def test_only_the_subscribed_events(receiver, sms_refused):
    config = make_config(channels=["wallet", "sms"])
    inactive(config)
    endpoint_for(config.business, receiver, events=("run.completed",))
    other = make_config(channels=["wallet"], name="Other")
    inactive(other)
    run()
    assert [e["type"] for e in events()] == ["run.completed"]
    assert events()[0]["data"]["business_id"] == config.business.business_id


def test_events_roll_back_with_the_outcomes(receiver, monkeypatch):
    """The outcomes and their events are one transaction: when it fails after the events were written, neither is
    there (the rows stay `sending`, and the next claim marks them unknown, as for any failed outcome write)."""
    config = make_config(channels=["wallet"])
    inactive(config)
    endpoint_for(config.business, receiver, events=("message.sent",))
    real = delivery.write_events

    def then_fail(**kwargs):
        assert real(**kwargs) > 0
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(delivery, "write_events", then_fail)
    with pytest.raises(CommandError):
        run()
    assert list(NotificationLog.objects.values_list("status", flat=True)) == [Status.SENDING]
    assert not WebhookMessage.objects.exists()


def test_reactivation_event(receiver):
    config = make_config(channels=["wallet", "email"], attribution_days=14)
    member = inactive(config)
    endpoint_for(config.business, receiver, events=("customer.reactivated",))
    run()
    record_visits(business=config.business, visits=[(member, NOW + dt.timedelta(days=2))])
    (event,) = events("customer.reactivated")
    data = event["data"]
    assert data["customer_id"] == member.customer_id and data["group"] == "reached"
    assert data["config_id"] == config.config_id and data["run_date"] == NOW.date().isoformat()
    assert sorted(data["notification_ids"]) == sorted(
        NotificationLog.objects.filter(customer=member).values_list("notification_id", flat=True)
    )
    assert data["reactivated_at"] == (NOW + dt.timedelta(days=2)).isoformat()


def test_a_rolled_back_visit_writes_no_event(receiver):
    config = make_config(channels=["wallet"])
    member = inactive(config)
    endpoint_for(config.business, receiver, events=("customer.reactivated",))
    run()
    with pytest.raises(RuntimeError), transaction.atomic():
        record_visits(business=config.business, visits=[(member, NOW + dt.timedelta(days=1))])
        assert WebhookMessage.objects.count() == 1
        raise RuntimeError("the caller's transaction fails")
    assert not WebhookMessage.objects.exists()


def _run_queries(config) -> int:
    """The run's statements, savepoints aside (the test's transaction turns each atomic block into a pair of them;
    in production they are a BEGIN and a COMMIT on the same connection)."""
    with CaptureQueriesContext(connection) as queries:
        run("--business", config.business.business_id)
    return sum("SAVEPOINT" not in query["sql"] for query in queries)


def test_run_queries_do_not_grow_with_customers_with_webhooks_on(receiver, sms_refused):
    counts = []
    for size in (2, 40):
        config = make_config(channels=["wallet", "sms"], name=f"Size {size}")
        for _ in range(size):
            inactive(config)
        endpoint_for(config.business, receiver, path=f"/{size}")
        counts.append(_run_queries(config))
    assert WebhookMessage.objects.filter(type="message.sent").count() == 42
    assert counts[0] == counts[1]


def test_webhooks_cost_the_run_one_query_when_none_is_registered(receiver, sms_refused):
    """Without endpoints, the run's only extra work is the one subscription lookup per business run."""
    plain = make_config(channels=["wallet", "sms"], name="Plain")
    inactive(plain)
    subscribed = make_config(channels=["wallet", "sms"], name="Subscribed")
    inactive(subscribed)
    endpoint_for(subscribed.business, receiver)
    without, with_events = _run_queries(plain), _run_queries(subscribed)
    # Subscribed: one INSERT per event type (sent, failed, run.completed).
    assert with_events == without + 3
    plain_again = make_config(channels=["wallet"], name="Plain again")
    inactive(plain_again)
    with CaptureQueriesContext(connection) as queries:
        run("--business", plain_again.business.business_id)
    webhook_queries = [q["sql"] for q in queries if "webhooks_" in q["sql"]]
    assert len(webhook_queries) == 1 and webhook_queries[0].startswith("SELECT")


def test_a_day_closed_with_retries_left_reports_them_failed(receiver, settings):
    """A provider down all day: the retryable failures are no event; when the day closes (the next day's claim),
    each becomes message.failed with retries_exhausted, in the claim's transaction."""
    from tests.backends import OutageBackend

    settings.SMS_CHANNEL = "tests.backends.OutageBackend"
    OutageBackend.down, OutageBackend.sent = True, []
    config = make_config(channels=["sms"])
    members = [inactive(config, with_pass=False) for _ in range(2)]
    endpoint_for(config.business, receiver, events=("message.failed",))
    with pytest.raises(CommandError):
        run()
    assert NotificationLog.objects.filter(status=Status.FAILED, next_attempt_at__isnull=False).count() == 2
    assert not WebhookMessage.objects.exists()
    run(now=NOW + dt.timedelta(days=1))  # the same spell: nobody to message on the new day
    closed = [e["data"] for e in events("message.failed") if e["data"]["run_date"] == NOW.date().isoformat()]
    assert sorted(e["customer_id"] for e in closed) == sorted(m.customer_id for m in members)
    assert {e["error_code"] for e in closed} == {"retries_exhausted"}
