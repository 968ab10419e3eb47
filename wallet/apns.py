"""APNs pushes that tell Wallet to fetch an updated pass.

A pass update push is authenticated with the Pass Type ID certificate as the TLS client certificate, its topic
is the pass type identifier and its payload is empty ("{}"): the text the lock screen shows comes only from the
changeMessage of the field that changed in the updated pass. The pushes of a batch are multiplexed as HTTP/2
streams over kept connections, one per STREAMS_PER_CONNECTION pushes in flight (libcurl, engagement_site.curl).

A pass-update push is idempotent: its payload is empty and the device only fetches the pass, whose lock-screen text
shows once, when the `message` field changes value. So every transient failure (429, 5xx, a timeout or a reset) is
retried, even one after which Apple may have delivered the push. 410 Unregistered, and 400 BadDeviceToken or
DeviceTokenNotForTopic (a token that can never succeed for this pass type), remove the device's registration.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from engagement_site.curl import (
    Answer,
    ClientCertificate,
    CurlPool,
    HttpRequest,
    TransferError,
    http2_connections,
    run_transfers,
)
from wallet.retry import retry_delay

logger = logging.getLogger(__name__)

PAYLOAD = b"{}"
# 400 reasons that mean the token will never work for this topic: the registration is removed like a 410.
DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})


@dataclass(frozen=True)
class PushOutcome:
    token: str
    ok: bool
    apns_id: str = ""
    unregistered: bool = False
    error: str = ""
    retryable: bool = False
    # False when the run's circuit breaker kept the push from being made at all.
    attempted: bool = True


@dataclass(frozen=True)
class ApnsTls:
    """The Pass Type ID certificate (the TLS client certificate APNs authenticates) and, when given, the CA bundle
    to trust for the APNs host instead of the default one (tests point it at a stand-in's CA)."""

    cert_file: str
    key_file: str
    key_password: str = ""
    ca_file: str = ""


class ApnsClient:
    """Sends pass-update pushes over reused HTTP/2 connections, up to `concurrency` in flight, retrying 429, 5xx
    and network errors (a pass-update push is idempotent)."""

    def __init__(
        self,
        *,
        host: str,
        topic: str,
        tls: ApnsTls,
        timeout: float,
        concurrency: int,
        max_retries: int,
        backoff: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.topic = topic
        self.tls = tls
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        self._clock = clock
        self._sleep = sleep
        # The run's circuit breaker for the wallet channel, when set: consulted before, and told of, every push.
        self.breaker = None
        self.pool: CurlPool | None = None

    def open(self) -> None:
        self.pool = CurlPool(
            http2=True,
            max_connections=http2_connections(self.concurrency),
            timeout=self.timeout,
            ca_file=self.tls.ca_file,
            client_certificate=ClientCertificate(self.tls.cert_file, self.tls.key_file, self.tls.key_password),
            # A pass-update push received twice costs the device one more fetch of its pass: libcurl may resend one.
            resend_unanswered=True,
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def push_many(self, *, tokens: Sequence[str]) -> dict[str, PushOutcome]:
        """Push to every distinct token; 410 means the device unregistered, other 4xx are final."""
        pushes = [_Push(token) for token in dict.fromkeys(tokens)]
        run_transfers(
            self.pool,
            pushes,
            start=self._start,
            settle=self._settle,
            concurrency=self.concurrency,
            clock=self._clock,
            sleep=self._sleep,
        )
        return {push.token: push.outcome for push in pushes}

    def push(self, *, token: str) -> PushOutcome:
        return self.push_many(tokens=[token])[token]

    def _start(self, push: "_Push") -> HttpRequest | None:
        if self.breaker is not None and not self.breaker.allow():
            if push.attempts == 0:
                error = f"not attempted: {self.breaker.reason}"
                push.outcome = PushOutcome(token=push.token, ok=False, error=error, retryable=True, attempted=False)
            return None
        push.attempts += 1
        headers = {"apns-topic": self.topic, "content-type": "application/json"}
        return HttpRequest("POST", f"https://{self.host}/3/device/{quote(push.token, safe='')}", headers, PAYLOAD)

    def _settle(self, push: "_Push", answer: Answer | TransferError) -> float | None:
        retry_after = None
        if isinstance(answer, TransferError):
            error = f"APNs unreachable: {answer.kind}"
            push.outcome = PushOutcome(token=push.token, ok=False, error=error, retryable=True)
        else:
            push.outcome = _outcome(token=push.token, response=answer)
            retry_after = answer.headers.get("retry-after")
        outcome = push.outcome
        if self.breaker is not None:
            self.breaker.record(ok=not outcome.retryable, error=outcome.error)
        if outcome.ok or not outcome.retryable or push.attempts > self.max_retries:
            return None
        logger.info("apns push retried", extra={"attempt": push.attempts, "error": outcome.error})
        return retry_delay(attempt=push.attempts - 1, backoff=self.backoff, retry_after=retry_after)


class _Push:
    def __init__(self, token: str) -> None:
        self.token = token
        self.attempts = 0
        self.outcome = PushOutcome(token=token, ok=False, error="not attempted", retryable=True)


def _outcome(*, token: str, response: Answer) -> PushOutcome:
    apns_id = response.headers.get("apns-id", "")
    status = response.status_code
    if status == 200:
        return PushOutcome(token=token, ok=True, apns_id=apns_id)
    try:
        reason = response.json().get("reason", "")
    except ValueError:
        reason = ""
    if status == 410:
        return PushOutcome(token=token, ok=False, apns_id=apns_id, unregistered=True, error="APNs 410 Unregistered")
    if status == 400 and reason in DEAD_TOKEN_REASONS:
        return PushOutcome(token=token, ok=False, apns_id=apns_id, unregistered=True, error=f"APNs 400 {reason}")
    return PushOutcome(
        token=token,
        ok=False,
        apns_id=apns_id,
        error=f"APNs {status} {reason}".strip(),
        retryable=status == 429 or status >= 500,
    )
