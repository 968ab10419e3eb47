"""The record backend (notifications/backends/record.py): its outbox is made on first use, not at import."""

from notifications.backends import record
from notifications.backends.base import Message
from notifications.backends.record import RecordBackend


def messages(count: int) -> list[Message]:
    return [Message(log_id=n, recipient=f"r{n}", header="Hi", body="Come back") for n in range(count)]


def test_the_outbox_is_made_on_first_use_with_the_size_set_then(settings, monkeypatch):
    monkeypatch.delattr(record, "outbox")  # as if nothing had used it since the import
    settings.RECORD_OUTBOX_SIZE = 2
    results = RecordBackend(channel="sms").send_batch(messages(3))
    assert [result.provider_message_id for result in results] == ["record-0", "record-1", "record-2"]
    assert [(m.channel, m.message.log_id) for m in record.outbox] == [("sms", 1), ("sms", 2)]


def test_the_outbox_read_before_any_batch_is_the_one_the_batches_fill(monkeypatch):
    monkeypatch.delattr(record, "outbox")
    outbox = record.outbox
    assert not outbox
    RecordBackend(channel="email").send_batch(messages(1))
    assert [m.message.log_id for m in outbox] == [0]
    assert record.outbox is outbox
