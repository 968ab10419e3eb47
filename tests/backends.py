"""Channel backends for tests, chosen through the channel settings exactly as an operator's custom class would be."""

from collections.abc import Sequence

from notifications.backends.base import ChannelBackend, Message, Result


class ExplodingBackend(ChannelBackend):
    """A provider that cannot send anything at all (e.g. its credentials were revoked)."""

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        raise RuntimeError("provider credentials rejected")


class RevokingBackend(ChannelBackend):
    """A provider answering that every recipient said STOP."""

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        return [Result(log_id=m.log_id, status="failed", error="recipient opted out", revoked=True) for m in messages]
