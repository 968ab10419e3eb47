"""The default backend for every channel: sends nothing and records what it would have sent.

Like Django's locmem email backend, it keeps an outbox in memory that tests and the demo read (`record.outbox`).
The outbox is made on first use, not at import, so importing this module reads no setting; it is bounded
(RECORD_OUTBOX_SIZE, read then, newest kept) so a large run keeps flat memory.
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


# Made on first use (`_outbox`): reading `record.outbox` before any batch makes it too (PEP 562 `__getattr__`).
outbox: deque[RecordedMessage]


def _outbox() -> deque[RecordedMessage]:
    """The outbox, made the first time it is needed (setdefault: two threads at once still share one)."""
    made = globals().get("outbox")
    if made is None:
        made = globals().setdefault("outbox", deque(maxlen=settings.RECORD_OUTBOX_SIZE))
    return made


def __getattr__(name: str) -> deque[RecordedMessage]:
    if name == "outbox":
        return _outbox()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RecordBackend(ChannelBackend):
    def _send(self, messages: Sequence[Message]) -> list[Result]:
        _outbox().extend(RecordedMessage(self.channel, message) for message in messages)
        return [
            Result(log_id=message.log_id, status="sent", provider_message_id=f"record-{message.log_id}")
            for message in messages
        ]
