"""The HTTP backends under concurrency, against the protocol stand-ins that count deliveries on their side: many
requests in flight at once, connections reused across batches, and every outcome class still mapped to the right
message when answers arrive out of order."""

import time

import pytest

from notifications.backends.base import Message
from notifications.backends.fcm import FcmPushBackend
from notifications.backends.twilio import TwilioSmsBackend
from tests.faults.conftest import service_account_key
from tests.faults.standins import Fault, FcmStandIn, Reply, TwilioStandIn, fcm_error

SLOW = 0.4


def sms(numbers: list[str], *, first_id: int = 1) -> list[Message]:
    return [
        Message(log_id=first_id + n, recipient=number, header="We miss you", body="Come back")
        for n, number in enumerate(numbers)
    ]


def numbers(count: int, *, start: int = 0) -> list[str]:
    return [f"+1555{start + n:07d}" for n in range(count)]


@pytest.fixture
def twilio(settings):
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_BACKOFF_BASE = 0.01
    settings.CHANNEL_HTTP_BACKOFF_MAX = 0.02
    settings.TWILIO_RATE_LIMIT = 0
    with TwilioStandIn(slow_seconds=SLOW) as standin:
        standin.configure(settings)
        yield standin


@pytest.fixture
def fcm(settings, tmp_path):
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_BACKOFF_BASE = 0.01
    settings.CHANNEL_HTTP_BACKOFF_MAX = 0.02
    settings.FCM_RATE_LIMIT = 0
    with FcmStandIn(slow_seconds=SLOW) as standin:
        standin.configure(settings, service_account_key(tmp_path, token_uri=standin.token_uri))
        yield standin


def test_slow_answers_overlap(twilio):
    """40 answers that each take SLOW seconds: one at a time that would be 16 s; in flight together, about SLOW."""
    twilio.fault = Fault.ACCEPT_THEN_TIMEOUT
    started = time.monotonic()
    results = TwilioSmsBackend().send_batch(sms(numbers(40)))
    elapsed = time.monotonic() - started
    assert [result.status for result in results] == ["sent"] * 40
    assert elapsed < 40 * SLOW / 4
    assert sorted(twilio.deliveries.values()) == [1] * 40


def test_connections_are_reused_across_the_batches_of_an_invocation(twilio):
    backend = TwilioSmsBackend()
    backend.open()
    try:
        first = backend.send_batch(sms(numbers(40)))
        opened = twilio.connections
        second = backend.send_batch(sms(numbers(40, start=40), first_id=41))
        third = backend.send_batch(sms(numbers(40, start=80), first_id=81))
    finally:
        backend.close()
    assert [result.status for result in first + second + third] == ["sent"] * 120
    assert 1 <= opened <= 40
    assert twilio.connections == opened
    assert sorted(twilio.deliveries.values()) == [1] * 120


def test_every_outcome_class_reaches_its_own_message_when_answers_interleave(twilio):
    """Ten recipients per class in one concurrent batch, the slow ones answering last: each result is its own."""
    twilio.fault = Fault.OK
    recipients = numbers(50)
    plan = {
        "sent": recipients[0:10],
        "slow": recipients[10:20],
        "retried": recipients[20:30],
        "unknown_500": recipients[30:40],
        "unknown_reset": recipients[40:50],
    }
    for number in plan["slow"]:
        twilio.script(number, [Fault.ACCEPT_THEN_TIMEOUT])
    for number in plan["retried"]:
        twilio.script(number, [Fault.HTTP_429, Fault.OK])
    for number in plan["unknown_500"]:
        twilio.script(number, [Fault.HTTP_500])
    for number in plan["unknown_reset"]:
        twilio.script(number, [Fault.RESET_AFTER_RECEIPT])

    results = TwilioSmsBackend().send_batch(sms(recipients))

    by_number = dict(zip(recipients, results, strict=True))
    assert [result.log_id for result in results] == list(range(1, 51))
    assert {by_number[n].status for n in plan["sent"] + plan["slow"] + plan["retried"]} == {"sent"}
    assert {by_number[n].status for n in plan["unknown_500"] + plan["unknown_reset"]} == {"unknown"}
    assert {twilio.requests[n] for n in plan["retried"]} == {2}
    assert {twilio.requests[n] for n in plan["unknown_500"] + plan["unknown_reset"]} == {1}
    # The stand-in counts what it acted on: nobody twice, and the provider message id is the one it answered with.
    assert max(twilio.deliveries.values()) == 1
    sids = {message["To"]: message["Sid"] for message in twilio.messages}
    delivered = plan["sent"] + plan["slow"] + plan["retried"]
    assert [by_number[n].provider_message_id for n in delivered] == [sids[n] for n in delivered]


def test_fcm_outcomes_under_concurrency_dead_tokens_revoked_and_one_token_refresh(fcm):
    tokens = [f"token-{n:03d}" for n in range(60)]
    fcm.fault = Fault.OK
    unregistered = tokens[:10]
    for token in unregistered:
        fcm.unregistered(token)
    for token in tokens[10:20]:
        fcm.script(token, [Fault.ACCEPT_THEN_TIMEOUT])
    for token in tokens[20:30]:
        fcm.script(token, [Fault.HTTP_503, Fault.OK])
    for token in tokens[30:35]:
        fcm.script(token, [Reply(400, fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload"))])
    messages = [Message(log_id=n, recipient=token, header="Hi", body="Come back") for n, token in enumerate(tokens)]

    backend = FcmPushBackend()
    backend.open()
    try:
        started = time.monotonic()
        results = backend.send_batch(messages)
        elapsed = time.monotonic() - started
    finally:
        backend.close()

    statuses = [(result.status, result.revoked) for result in results]
    assert statuses[:10] == [("failed", True)] * 10
    assert statuses[10:30] == [("sent", False)] * 20
    assert statuses[30:35] == [("failed", False)] * 5
    assert statuses[35:] == [("sent", False)] * 25
    assert [result.log_id for result in results] == list(range(60))
    assert {fcm.requests[token] for token in tokens[20:30]} == {2}
    assert max(fcm.deliveries.values()) == 1
    assert fcm.token_requests == 1
    assert elapsed < 10 * SLOW
