"""The channel-backend interface: a batch of messages in, one result per message out.

Modelled on Django's email backends: a backend is chosen per channel by a setting, opened once, used for
whole batches, then closed. A bad recipient is a result, never an exception; a backend raises only when
nothing at all can be sent (e.g. missing credentials).

Every result says what the provider did: `sent`; `failed` with `retryable` when the provider provably did not act
(the request never reached it, or it answered that it did not process it), without when it refused; `unknown` when
the request may have been acted on (a timeout or a reset after the request was written, a 500 from an API without
idempotency). An unknown message is never sent again: a logged gap is better than a duplicate.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

ResultStatus = Literal["sent", "failed", "skipped", "unknown"]


@dataclass(frozen=True)
class Message:
    """One message to one customer on one channel.

    recipient: the email address, E.164 phone number or push token; for the wallet channel, the customer's
    public customer_id (the wallet backend finds the customer's passes itself).
    header, body: the email's subject and text, the push title and body, the pass's header and text; an SMS is
    the header and body on separate lines (the body alone when the header is empty).
    extra: channel-specific context; the run always sets "run_date" (the business's local date, ISO format).
    html: an email's own HTML part, rendered (empty: the backend's built-in layout of header and body).
    notification_id: the log row's public id, for receipts that hand it back (Twilio's StatusCallback URL).
    """

    log_id: int
    recipient: str
    header: str
    body: str
    customer_id: str = ""
    business_id: str = ""
    business_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    html: str = ""
    notification_id: str = ""


@dataclass(frozen=True)
class Result:
    log_id: int
    status: ResultStatus
    provider_message_id: str = ""
    error: str = ""
    retryable: bool = False
    # The provider says this recipient refused or no longer exists on this channel (Twilio 21610 STOP, FCM
    # UNREGISTERED): the run opts the customer out / clears the address so it is never tried again.
    revoked: bool = False
    # False when the provider was never called for it (circuit breaker open): the attempt does not count.
    attempted: bool = True


class CircuitBreaker:
    """Stops calling a provider that keeps failing: after `threshold` consecutive attempts that failed retryably or
    with an unknown outcome, `allow()` is False for the rest of the invocation. Thread-safe (senders share it)."""

    def __init__(self, *, threshold: int) -> None:
        self.threshold = max(1, threshold)
        self.consecutive_failures = 0
        self.last_error = ""
        self.tripped = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        return not self.tripped

    def record(self, *, ok: bool, error: str = "") -> None:
        """One attempt's outcome: ok (the provider answered: sent, refused or a consent answer) or not."""
        with self._lock:
            if ok:
                self.consecutive_failures = 0
                return
            self.consecutive_failures += 1
            self.last_error = error or self.last_error
            if self.consecutive_failures >= self.threshold:
                self.tripped = True

    @property
    def reason(self) -> str:
        return f"provider unavailable: {self.consecutive_failures} consecutive failures (last: {self.last_error})"


def not_attempted(message: "Message", breaker: CircuitBreaker) -> "Result":
    """The result of a message not sent because the breaker is open: retryable, the provider never saw it."""
    return Result(
        log_id=message.log_id,
        status="failed",
        error=f"not attempted: {breaker.reason}",
        retryable=True,
        attempted=False,
    )


class ChannelBackend:
    """A channel's provider behind one interface. Like Django's email backends, it owns "open if needed, close what
    you opened": a batch sent while it is closed opens it for that batch and closes it after, and `with backend:`
    closes it even when open() fails half-way. A subclass gives `_send` (the batch, once open) and, when open() takes
    anything, `is_open`; a custom backend may override `send_batch` instead.

    Every backend is built the same way, with keyword arguments only: `channel` (empty: the class's own), then its
    own options, each with a default (get_backend passes `channel` alone).
    """

    channel: str = ""
    # Set by the run for the whole invocation; backends consult it before each provider call.
    breaker: CircuitBreaker | None = None

    def __init__(self, *, channel: str = "") -> None:
        self.channel = channel or self.channel

    @property
    def is_open(self) -> bool:
        """Between open() and close(): batches use what open() took. A backend that takes nothing is never open."""
        return False

    def open(self) -> None:
        """Open connections and fetch tokens once for the batches that follow; nothing when already open."""

    def close(self) -> None:
        """Release what open() took, also when it failed half-way; nothing when already closed."""

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        """One result per message, in order; a closed backend is opened for the batch (unless it is empty)."""
        if self.is_open:
            return self._send(messages)
        if not messages:
            return []
        with self:
            return self._send(messages)

    def _send(self, messages: Sequence[Message]) -> list[Result]:
        """The batch, through what open() took."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.open()
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
