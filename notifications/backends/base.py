"""The channel-backend interface: a batch of messages in, one result per message out.

Modelled on Django's email backends: a backend is chosen per channel by a setting, opened once, used for
whole batches, then closed. A bad recipient is a result, never an exception; a backend raises only when
nothing at all can be sent (e.g. missing credentials).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ResultStatus = Literal["sent", "failed", "skipped"]


@dataclass(frozen=True)
class Message:
    """One message to one customer on one channel.

    recipient: the email address, E.164 phone number or push token; for the wallet channel, the customer's
    public customer_id (the wallet backend finds the customer's passes itself).
    extra: channel-specific context; the run always sets "run_date" (the business's local date, ISO format).
    """

    log_id: int
    recipient: str
    header: str
    body: str
    customer_id: str = ""
    business_id: str = ""
    business_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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


class ChannelBackend:
    channel: str = ""

    def open(self) -> None:
        """Open connections and fetch tokens once for the batches that follow."""

    def close(self) -> None:
        """Release what open() took."""

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        raise NotImplementedError

    def __enter__(self) -> "ChannelBackend":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
