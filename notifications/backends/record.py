"""The default backend for every channel: sends nothing and records what it would have sent.

Like Django's locmem email backend, it keeps an outbox in memory that tests and the demo read. The outbox
is bounded (RECORD_OUTBOX_SIZE, newest kept) so a large run keeps flat memory.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from notifications.backends.base import ChannelBackend, Message, Result


@dataclass(frozen=True)
class RecordedMessage:
    channel: str
    message: Message


outbox: deque[RecordedMessage] = deque(maxlen=settings.RECORD_OUTBOX_SIZE)


class RecordBackend(ChannelBackend):
    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        outbox.extend(RecordedMessage(self.channel, message) for message in messages)
        return [
            Result(log_id=message.log_id, status="sent", provider_message_id=f"record-{message.log_id}")
            for message in messages
        ]
