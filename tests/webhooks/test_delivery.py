"""Delivering the outbox to a real local receiver that verifies signatures with the reference library."""

import datetime as dt
import io
import json
import socket

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.factories import BusinessFactory
from tests.webhooks.factories import endpoint_for, enqueue
from webhooks.delivery import MAX_ATTEMPTS, SCHEDULE, deliver_due
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

pytestmark = pytest.mark.django_db

Status = WebhookMessage.Status
# After the real clock, so events enqueued now are due when a test travels there.
START = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)


def deliver(**options):
    out = io.StringIO()
    call_command("deliver_webhooks", "--format", "json", *options.get("args", ()), stdout=out)
    return json.loads(out.getvalue())


def test_every_event_delivered_once_signed(receiver):
    business = BusinessFactory()
    endpoint_for(business, receiver)
    assert enqueue(business, 25) == 25
    summary = deliver()
    assert summary["delivered"] == 25 and summary["claimed"] == 25
    assert len(receiver.requests) == 25
    assert all(request["verified"] for request in receiver.requests)
    assert receiver.bad_signatures == 0
    ids = set(WebhookMessage.objects.values_list("event_id", flat=True))
    assert set(receiver.accepted) == ids and set(receiver.accepted.values()) == {1}
    # Standard Webhooks headers and body.
    headers = receiver.requests[0]["headers"]
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-id"].startswith("evt_")
    assert abs(int(headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    body = receiver.bodies()[0]
    assert set(body) == {"type", "timestamp", "data"} and body["type"] == "message.sent"
    assert not WebhookMessage.objects.exclude(status=Status.DELIVERED).exists()
    attempt = WebhookAttempt.objects.first()
    assert attempt.status_code == 200 and attempt.next_attempt_at is None and attempt.error == ""
    # Nothing due: a second invocation sends nothing.
    assert deliver()["claimed"] == 0
    assert len(receiver.requests) == 25


def test_a_wrong_secret_fails_verification(receiver):
    """The receiver's check can fail: a delivery signed with another secret is refused (and retried)."""
    business = BusinessFactory()
    endpoint = endpoint_for(business, receiver)
    receiver.register("/hook", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    enqueue(business, 1)
    summary = deliver()
    assert summary["delivered"] == 0 and summary["retrying"] == 1
    assert receiver.bad_signatures == 1
    message = WebhookMessage.objects.get(endpoint=endpoint)
    assert message.status == Status.PENDING and message.last_status_code == 400


def test_retries_follow_the_schedule_then_fail():
    business = BusinessFactory()
    from tests.webhooks.receiver import Receiver

    with Receiver() as receiver, time_machine.travel(START, tick=False) as clock:
        endpoint_for(business, receiver)
        enqueue(business, 1)
        receiver.fail_next(*([500] * MAX_ATTEMPTS))
        attempts_at = []
        for _ in range(MAX_ATTEMPTS):
            before = len(receiver.requests)
            summary = deliver()
            assert len(receiver.requests) == before + 1, summary
            attempts_at.append(timezone.now())
            message = WebhookMessage.objects.get()
            if message.status == Status.FAILED:
                break
            wait = message.next_attempt_at - timezone.now()
            expected = SCHEDULE[message.attempts]
            assert expected <= wait <= expected * 1.1 + dt.timedelta(microseconds=1)
            # Not due a moment before: nothing is sent.
            clock.move_to(message.next_attempt_at - dt.timedelta(seconds=1))
            assert deliver()["claimed"] == 0
            clock.move_to(message.next_attempt_at)
        message = WebhookMessage.objects.get()
        assert message.status == Status.FAILED and message.attempts == MAX_ATTEMPTS
        assert message.next_attempt_at is None
        assert attempts_at[-1] - attempts_at[0] >= dt.timedelta(hours=24)
        log = list(WebhookAttempt.objects.order_by("number"))
        assert [a.number for a in log] == list(range(1, MAX_ATTEMPTS + 1))
        assert {a.status_code for a in log} == {500}
        assert log[-1].next_attempt_at is None
        assert receiver.accepted == {}


def test_failures_then_success_delivers_once(receiver):
    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 3)
    receiver.fail_next(500, 503, "hang")
    with time_machine.travel(START, tick=True) as clock:
        first = deliver()
        assert first["retrying"] == 3 and first["delivered"] == 0
        clock.shift(dt.timedelta(seconds=6))
        second = deliver()
        assert second["delivered"] == 3
    assert set(receiver.accepted.values()) == {1} and len(receiver.accepted) == 3
    errors = set(WebhookAttempt.objects.filter(number=1).values_list("error", flat=True))
    assert any("timeout" in error for error in errors)
    assert any(error.startswith("HTTP 500") for error in errors)


def test_gone_disables_the_endpoint(receiver):
    business = BusinessFactory()
    endpoint = endpoint_for(business, receiver)
    enqueue(business, 1)
    receiver.fail_next(410)
    with time_machine.travel(START, tick=True):
        summary = deliver()
    assert summary["disabled_endpoints"] == [endpoint.webhook_id]
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None
    assert WebhookMessage.objects.get().status == Status.FAILED
    # No new event is written for a disabled endpoint.
    assert enqueue(business, 1) == 0


def test_rebinding_to_a_private_address_is_refused_at_delivery(receiver, settings, monkeypatch):
    """Registered while the name resolved to a public address; at delivery time it resolves to loopback: nothing is
    sent, the attempt is recorded as refused and retried."""
    business = BusinessFactory()
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    endpoint = WebhookEndpoint.objects.create(
        business=business, url="https://rebind.example.com/hook", events=["message.sent"], secret="whsec_QUJD"
    )
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    enqueue(business, 2)
    summary = deliver()
    assert summary["retrying"] == 2 and summary["delivered"] == 0
    assert receiver.requests == []
    attempt = WebhookAttempt.objects.filter(message__endpoint=endpoint).first()
    assert attempt.status_code is None and "address refused" in attempt.error and "127.0.0.1" in attempt.error


def test_deleted_endpoint_gets_nothing(receiver):
    business = BusinessFactory()
    endpoint = endpoint_for(business, receiver)
    enqueue(business, 2)
    endpoint.delete()
    assert deliver()["claimed"] == 0
    assert receiver.requests == []


def test_a_crashed_deliverers_claims_come_back(receiver, settings):
    from webhooks.delivery import claim_due

    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 2)
    with time_machine.travel(START, tick=False) as clock:
        assert len(claim_due(now=timezone.now(), owner="crashed", limit=10)) == 2
        assert deliver()["claimed"] == 0  # leased
        clock.shift(dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS))
    with time_machine.travel(START + dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS + 1), tick=True):
        assert deliver()["delivered"] == 2
    assert len(receiver.accepted) == 2


def test_old_finished_messages_are_pruned(receiver, settings):
    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 3)
    assert deliver(args=["--no-prune"])["delivered"] == 3
    with time_machine.travel(timezone.now() + dt.timedelta(days=settings.WEBHOOK_RETENTION_DAYS, hours=1)):
        enqueue(business, 1)
        receiver.fail_next(500)
        summary = deliver()
    assert summary["pruned"] == 3
    assert WebhookMessage.objects.count() == 1 and WebhookAttempt.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "option"), [(["--batch-size", "0"], "--batch-size"), (["--concurrency", "0"], "--concurrency")]
)
def test_bad_arguments_exit_2(args, option):
    with pytest.raises(CommandError) as raised:
        call_command("deliver_webhooks", *args)
    assert raised.value.returncode == 2 and option in str(raised.value)


def test_many_in_flight(receiver):
    """Requests overlap: the receiver hangs each one briefly and 40 of them take far less than 40 times that."""
    import time

    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 40)
    receiver.hang_seconds = 0.3
    receiver.fail_next(*(["hang"] * 40))
    started = time.monotonic()
    summary = deliver_due(batch_size=100, concurrency=40)
    assert summary.claimed == 40
    assert time.monotonic() - started < 0.3 * 40 / 4


def test_a_batch_that_lost_its_lease_records_nothing(receiver, settings):
    """A deliverer too slow for its lease: another claims the message and delivers it; the first one's late answer
    (a 500 here) changes nothing and logs no attempt over the second's."""
    from webhooks.delivery import DeliverySummary, Outcome, claim_due, record_outcomes

    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 1)
    with time_machine.travel(START, tick=True) as clock:
        (slow,) = claim_due(now=timezone.now(), owner="slow", limit=10)
        clock.shift(dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS + 1))
        assert deliver()["delivered"] == 1
        record_outcomes(
            [Outcome(slow, timezone.now(), status_code=500, error="HTTP 500")], owner="slow", summary=DeliverySummary()
        )
    message = WebhookMessage.objects.get()
    assert message.status == Status.DELIVERED and message.attempts == 1
    assert list(WebhookAttempt.objects.values_list("status_code", flat=True)) == [200]
