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


class OutageBackend(ChannelBackend):
    """A provider that is down while `OutageBackend.down` is true (its answers say it did not process anything:
    a refused connection, a 429) and sends otherwise; `sent` keeps what it delivered, like a provider's own log."""

    down = True
    sent: list[Message] = []  # shared on purpose: the run opens its own instance

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        if OutageBackend.down:
            return [
                Result(log_id=m.log_id, status="failed", error="connection refused", retryable=True) for m in messages
            ]
        OutageBackend.sent.extend(messages)
        return [Result(log_id=m.log_id, status="sent", provider_message_id=f"id-{m.log_id}") for m in messages]


class UnknownOutcomeBackend(ChannelBackend):
    """A provider that takes every request and never answers in time (the message may have gone out)."""

    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        return [
            Result(log_id=m.log_id, status="unknown", error="no answer after the request was sent") for m in messages
        ]
