"""The Apple part of a wallet batch: passes read as rows and written in one set-based UPDATE."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.backends.base import Message
from notifications.backends.wallet import WalletBackend
from tests.factories import AppleDeviceRegistrationFactory, WalletPassFactory
from wallet import passes
from wallet.models import WalletPass

pytestmark = pytest.mark.django_db

TEXT = "We miss you — Come back"


def _message(customer_id: str, log_id: int) -> Message:
    return Message(
        log_id=log_id, recipient=customer_id, header="We miss you", body="Come back", extra={"run_date": "2026-11-25"}
    )


def test_two_messages_to_one_pass_in_a_batch_take_it_in_turn_and_push_each_device_once(apns_server):
    wallet_pass = WalletPassFactory(platform="apple")
    AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token="a1" * 32)
    AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token="a2" * 32)
    customer_id = wallet_pass.customer.customer_id
    with WalletBackend() as backend:
        first, second = backend.send_batch([_message(customer_id, 1), _message(customer_id, 2)])
    assert (first.status, second.status) == ("sent", "sent")
    assert first.provider_message_id.count("apns") == second.provider_message_id.count("apns") == 2
    wallet_pass.refresh_from_db()
    # The second message saw the first one's text, so it made the value differ again.
    assert wallet_pass.message_text == f"{TEXT} (2026-11-25)"
    assert sorted(push.path.rsplit("/", 1)[1] for push in apns_server.pushes) == ["a1" * 32, "a2" * 32]


def test_the_new_modification_time_is_in_a_later_whole_second_for_each_pass(apns_server):
    ahead = timezone.now().replace(microsecond=700_000) + dt.timedelta(seconds=30)
    in_the_future = WalletPassFactory(platform="apple")
    past = WalletPassFactory(platform="apple")
    WalletPass.objects.filter(pk=in_the_future.pk).update(updated_at=ahead)
    WalletPass.objects.filter(pk=past.pk).update(updated_at=ahead - dt.timedelta(days=1))
    for index, wallet_pass in enumerate((in_the_future, past)):
        AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token=f"{index:064x}")
    before = timezone.now()
    with WalletBackend() as backend:
        results = backend.send_batch(
            [_message(in_the_future.customer.customer_id, 1), _message(past.customer.customer_id, 2)]
        )
    after = timezone.now()
    assert [result.status for result in results] == ["sent", "sent"]
    in_the_future.refresh_from_db()
    past.refresh_from_db()
    assert in_the_future.updated_at == ahead.replace(microsecond=0) + dt.timedelta(seconds=1)
    assert before <= past.updated_at <= after
    assert in_the_future.message_text == past.message_text == TEXT
    assert passes.next_modified(current=ahead, now=before) == in_the_future.updated_at


def test_a_batch_reads_its_passes_in_one_query_and_writes_them_in_one_update(apns_server):
    def batch(count: int, offset: int) -> list[Message]:
        messages = []
        for n in range(count):
            wallet_pass = WalletPassFactory(platform="apple")
            AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token=f"{offset + n:064x}")
            messages.append(_message(wallet_pass.customer.customer_id, offset + n))
        return messages

    small, large = batch(2, 100), batch(30, 200)
    with WalletBackend() as backend:
        with CaptureQueriesContext(connection) as small_queries:
            backend.send_batch(small)
        with CaptureQueriesContext(connection) as large_queries:
            results = backend.send_batch(large)
    assert [result.status for result in results] == ["sent"] * 30
    assert len(large_queries) == len(small_queries)
    statements = [query["sql"].lstrip().split(None, 1)[0].upper() for query in large_queries]
    assert statements.count("SELECT") == 1
    assert statements.count("UPDATE") == 1
    assert set(
        WalletPass.objects.filter(customer__customer_id__in=[m.recipient for m in large]).values_list(
            "message_text", flat=True
        )
    ) == {TEXT}
