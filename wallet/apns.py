"""APNs pushes that tell Wallet to fetch an updated pass.

A pass update push is authenticated with the Pass Type ID certificate as the TLS client certificate, its topic
is the pass type identifier and its payload is empty ("{}"): the text the lock screen shows comes only from the
changeMessage of the field that changed in the updated pass. One HTTP/2 connection (httpx + h2) carries the
whole batch: the first push opens it, the rest are multiplexed over it from a small thread pool.

A pass-update push is idempotent: its payload is empty and the device only fetches the pass, whose lock-screen text
shows once, when the `message` field changes value. So every transient failure (429, 5xx, a timeout or a reset) is
retried, even one after which Apple may have delivered the push. 410 Unregistered, and 400 BadDeviceToken or
DeviceTokenNotForTopic (a token that can never succeed for this pass type), remove the device's registration.
"""

import logging
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from engagement_site.logging import carry_context
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


def apns_ssl_context(*, cert_file: str, key_file: str, key_password: str, ca_file: str) -> ssl.SSLContext:
    """One TLS context holding the client certificate and, when given, the extra CA to trust for the APNs host."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.load_cert_chain(certfile=cert_file, keyfile=key_file, password=key_password or None)
    return context


class ApnsClient:
    """Sends pass-update pushes over one reused HTTP/2 connection, retrying 429, 5xx and network errors."""

    def __init__(
        self,
        *,
        host: str,
        topic: str,
        ssl_context: ssl.SSLContext,
        timeout: float,
        concurrency: int,
        max_retries: int,
        backoff: float,
    ) -> None:
        self.host = host
        self.topic = topic
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        # The run's circuit breaker for the wallet channel, when set: consulted before, and told of, every push.
        self.breaker = None
        self.client: httpx.Client | None = None

    def open(self) -> None:
        self.client = httpx.Client(
            base_url=f"https://{self.host}",
            http2=True,
            verify=self.ssl_context,
            timeout=self.timeout,
            # One connection: HTTP/2 multiplexes every push of the batch over it.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def push_many(self, *, tokens: Sequence[str]) -> dict[str, PushOutcome]:
        """Push to every distinct token; the first push alone opens the connection the others then share."""
        unique = list(dict.fromkeys(tokens))
        if not unique:
            return {}
        outcomes = {unique[0]: self.push(token=unique[0])}
        if len(unique) > 1:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="apns") as pool:
                for outcome in pool.map(carry_context(lambda token: self.push(token=token)), unique[1:]):
                    outcomes[outcome.token] = outcome
        return outcomes

    def push(self, *, token: str) -> PushOutcome:
        """One push; 410 means the device unregistered, other 4xx are final."""
        outcome = PushOutcome(token=token, ok=False, error="not attempted", retryable=True)
        for attempt in range(self.max_retries + 1):
            if self.breaker is not None and not self.breaker.allow():
                if attempt == 0:
                    error = f"not attempted: {self.breaker.reason}"
                    return PushOutcome(token=token, ok=False, error=error, retryable=True, attempted=False)
                return outcome
            retry_after = None
            try:
                response = self.client.post(
                    f"/3/device/{quote(token, safe='')}",
                    content=PAYLOAD,
                    headers={"apns-topic": self.topic, "content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                outcome = PushOutcome(
                    token=token, ok=False, error=f"APNs unreachable: {type(exc).__name__}", retryable=True
                )
            else:
                outcome = _outcome(token=token, response=response)
                retry_after = response.headers.get("retry-after")
            if self.breaker is not None:
                self.breaker.record(ok=not outcome.retryable, error=outcome.error)
            if outcome.ok or not outcome.retryable or attempt == self.max_retries:
                break
            logger.info("apns push retried", extra={"attempt": attempt + 1, "error": outcome.error})
            time.sleep(retry_delay(attempt=attempt, backoff=self.backoff, retry_after=retry_after))
        return outcome


def _outcome(*, token: str, response: httpx.Response) -> PushOutcome:
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
