"""Many HTTP requests in flight from synchronous code, through libcurl's multi interface (pycurl).

Every provider client (the channel backends, APNs, Google Wallet) sends its batches through a `CurlPool`: one
libcurl multi handle for the whole invocation, whose connections are kept and reused from batch to batch. Over
HTTPS to a provider that speaks HTTP/2, requests are multiplexed as streams over a few connections (PIPEWAIT: a
request waits for a stream on an open connection rather than opening its own); otherwise (HTTP/1.1) a bounded pool
of connections. libcurl does the protocol work in C: a request costs a fraction of a millisecond of CPU where a
pure-Python client spends several (see the README's benchmark section).

A transfer that got no answer is a `TransferError` that says whether any of the request could have reached the
provider (`written`): a refused or unresolved connection, a failed TLS handshake, or a timeout before any byte of the
request was sent prove it did not; a reset, a closed stream or a timeout while waiting for the answer leave it open.
"""

import email.message
import heapq
import itertools
import json as json_module
import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Protocol, TypeVar

import certifi
import pycurl

T = TypeVar("T")
USER_AGENT = "auto-engagement/1.0"
# Longest wait on the transfers in flight before the scheduler looks at its queue again.
POLL_SECONDS = 0.05
# What `settle` returns for an item to start again ahead of every other (not behind the items already waiting).
AT_ONCE = float("-inf")
# How long a kept connection may sit idle and still be reused (libcurl's default is 118 s).
MAX_IDLE_SECONDS = 30
# Streams one HTTP/2 connection carries at once: what Google's front ends advertise (SETTINGS_MAX_CONCURRENT_STREAMS),
# and a share of APNs' 1,000. More requests in flight open another connection rather than queue behind one.
STREAMS_PER_CONNECTION = 100
# libcurl codes that say the request never left this host: no connection, or a TLS handshake that failed.
NOT_WRITTEN = frozenset(
    {
        pycurl.E_COULDNT_RESOLVE_PROXY,
        pycurl.E_COULDNT_RESOLVE_HOST,
        pycurl.E_COULDNT_CONNECT,
        pycurl.E_SSL_CONNECT_ERROR,
        pycurl.E_PEER_FAILED_VERIFICATION,
    }
)
# Codes that come from our own configuration (a malformed URL, an unreadable certificate): every request would fail.
CONFIGURATION = frozenset(
    {
        pycurl.E_UNSUPPORTED_PROTOCOL,
        pycurl.E_URL_MALFORMAT,
        pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CACERT_BADFILE,
        pycurl.E_BAD_FUNCTION_ARGUMENT,
    }
)


def http2_connections(concurrency: int) -> int:
    """How many HTTP/2 connections carry `concurrency` requests in flight."""
    return max(1, -(-concurrency // STREAMS_PER_CONNECTION))


def default_ca_file() -> str:
    """SSL_CERT_FILE when the environment sets one (as OpenSSL and Python honour it), else certifi's bundle."""
    return os.environ.get("SSL_CERT_FILE") or certifi.where()


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # libcurl RESOLVE entries ("host:port:address[,address]"): connect to these addresses, not what DNS says at
    # connect time (webhooks resolve and check a host's addresses first, then pin them).
    resolve: tuple[str, ...] = ()

    @classmethod
    def json(cls, method: str, url: str, payload: Any, headers: Mapping[str, str] | None = None) -> "HttpRequest":
        body = json_module.dumps(payload, separators=(",", ":")).encode()
        return cls(method, url, {**(headers or {}), "Content-Type": "application/json"}, body)


class Answer:
    """A provider's answer: status, headers (case-insensitive), body."""

    def __init__(self, *, status_code: int, reason_phrase: str, headers: email.message.Message, content: bytes):
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json_module.loads(self.content)

    def __repr__(self) -> str:
        return f"<Answer {self.status_code}>"


class TransferError(Exception):
    """No answer: libcurl's code and message, whether the request may have been written, and whether the cause is
    our own configuration (every other request would fail the same way)."""

    def __init__(self, code: int, message: str, *, written: bool) -> None:
        super().__init__(f"{message} (curl {code})")
        self.code = code
        self.written = written
        self.configuration = code in CONFIGURATION

    @property
    def kind(self) -> str:
        """A short name for logs and errors."""
        if self.code == pycurl.E_OPERATION_TIMEDOUT:
            return "timeout"
        if self.code in NOT_WRITTEN:
            return "connect error"
        return "connection error"


@dataclass(frozen=True)
class ClientCertificate:
    cert_file: str
    key_file: str
    password: str = ""


class _Transfer:
    """One easy handle and the buffers of the request it carries; handles are reused from request to request."""

    def __init__(self) -> None:
        self.handle = pycurl.Curl()
        self.body = BytesIO()
        self.header_lines: list[bytes] = []
        self.key: Any = None

    def reset(self) -> None:
        self.handle.reset()
        self.body = BytesIO()
        self.header_lines = []
        self.key = None


class CurlPool:
    """Requests in flight at once over kept connections. `submit()` starts one, `wait()` returns those finished.

    libcurl sends a request again on its own, on a fresh connection, when the one it went out on ends before any
    answer (an HTTP/1.1 connection kept from an earlier request, an HTTP/2 connection that dies) or the server
    refuses its HTTP/2 stream. Only the refusal proves the provider did not act, and libcurl does not tell us which
    it was, so by default it cannot: the body cannot be rewound, the transfer fails with E_SEND_FAIL_REWIND, and the
    request counts as written (unknown). `resend_unanswered` lets it, for requests a provider may receive twice
    without harm (APNs pass-update pushes: the device fetches the pass again).
    """

    def __init__(
        self,
        *,
        http2: bool,
        max_connections: int,
        timeout: float,
        connect_timeout: float | None = None,
        ca_file: str = "",
        client_certificate: ClientCertificate | None = None,
        basic_auth: tuple[str, str] | None = None,
        resend_unanswered: bool = False,
    ) -> None:
        self.http2 = http2
        self.resend_unanswered = resend_unanswered
        self.timeout_ms = max(1, round(timeout * 1000))
        self.connect_timeout_ms = max(1, round((connect_timeout or timeout) * 1000))
        self.ca_file = ca_file or default_ca_file()
        self.client_certificate = client_certificate
        self.basic_auth = basic_auth
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX if http2 else pycurl.PIPE_NOTHING)
        self.multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_connections)
        self.multi.setopt(pycurl.M_MAXCONNECTS, max_connections)
        if http2:
            self.multi.setopt(pycurl.M_MAX_CONCURRENT_STREAMS, STREAMS_PER_CONNECTION)
        self._idle: list[_Transfer] = []
        self._active: dict[pycurl.Curl, _Transfer] = {}
        self._keys = itertools.count()
        self.connections_opened = 0

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def submit(self, request: HttpRequest) -> int:
        """Start `request`; `wait()` hands back the key returned here with its answer or TransferError. Keys are
        unique for the pool's life, so an answer can never be taken for another request's."""
        transfer = self._idle.pop() if self._idle else _Transfer()
        try:
            self._configure(transfer, request)
        except pycurl.error:
            transfer.reset()
            self._idle.append(transfer)
            raise
        transfer.key = next(self._keys)
        self._active[transfer.handle] = transfer
        self.multi.add_handle(transfer.handle)
        return transfer.key

    def cancel_all(self) -> None:
        """Drop every transfer in flight (the batch that started them stopped on an error): nothing of theirs is
        handed to a later batch."""
        for handle, transfer in list(self._active.items()):
            self.multi.remove_handle(handle)
            transfer.reset()
            self._idle.append(transfer)
        self._active.clear()

    def wait(self, timeout: float) -> list[tuple[Any, "Answer | TransferError"]]:
        """Drive the transfers for up to `timeout` seconds; return the ones that finished (maybe none)."""
        self._perform()
        finished = self._collect()
        if finished or not self._active:
            return finished
        if self.multi.select(max(0.0, timeout)) == -1:
            # No socket to wait on yet (a connection being set up): wait as long as libcurl asks, at most `timeout`.
            curl_ms = self.multi.timeout()
            time.sleep(max(0.0, timeout if curl_ms < 0 else min(timeout, curl_ms / 1000)))
        self._perform()
        return self._collect()

    def close(self) -> None:
        for handle in list(self._active):
            self.multi.remove_handle(handle)
            handle.close()
        self._active.clear()
        for transfer in self._idle:
            transfer.handle.close()
        self._idle.clear()
        self.multi.close()

    def _perform(self) -> None:
        while True:
            code, _ = self.multi.perform()
            if code != pycurl.E_CALL_MULTI_PERFORM:
                return

    def _collect(self) -> list[tuple[Any, "Answer | TransferError"]]:
        finished: list[tuple[Any, Answer | TransferError]] = []
        while True:
            queued, succeeded, failed = self.multi.info_read()
            for handle in succeeded:
                finished.append(self._finish(handle, None))
            for handle, code, message in failed:
                finished.append(self._finish(handle, (code, message)))
            if not queued:
                return finished

    def _finish(self, handle: pycurl.Curl, error: tuple[int, str] | None) -> tuple[Any, "Answer | TransferError"]:
        transfer = self._active.pop(handle)
        self.multi.remove_handle(handle)
        self.connections_opened += handle.getinfo(pycurl.NUM_CONNECTS)
        if error is None:
            outcome: Answer | TransferError = _answer(transfer)
        else:
            code, message = error
            # REQUEST_SIZE counts the request bytes libcurl sent: none when the connection or the TLS handshake
            # never completed (a connect timeout, say), whatever the code.
            sent = handle.getinfo(pycurl.REQUEST_SIZE) > 0 or code == pycurl.E_SEND_FAIL_REWIND
            written = sent and code not in NOT_WRITTEN and code not in CONFIGURATION
            outcome = TransferError(code, message, written=written)
        key = transfer.key
        transfer.reset()
        self._idle.append(transfer)
        return key, outcome

    def _set_method_and_body(self, handle: pycurl.Curl, request: HttpRequest) -> None:
        if request.method == "GET":
            handle.setopt(pycurl.HTTPGET, 1)
            return
        handle.setopt(pycurl.POST, 1)
        handle.setopt(pycurl.POSTFIELDSIZE, len(request.body))
        if self.resend_unanswered:
            handle.setopt(pycurl.COPYPOSTFIELDS, request.body)
        else:
            # A body libcurl cannot rewind: a request it would send again fails instead (E_SEND_FAIL_REWIND).
            handle.setopt(pycurl.READFUNCTION, BytesIO(request.body).read)
        if request.method != "POST":
            handle.setopt(pycurl.CUSTOMREQUEST, request.method)

    def _configure(self, transfer: _Transfer, request: HttpRequest) -> None:
        handle = transfer.handle
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.USERAGENT, USER_AGENT)
        handle.setopt(pycurl.TIMEOUT_MS, self.timeout_ms)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, self.connect_timeout_ms)
        handle.setopt(pycurl.CAINFO, self.ca_file)
        # A connection idle longer than this is not reused: servers close idle ones (commonly after 60 s or more),
        # and one closing just as a request is written to it leaves that request's outcome unknown.
        handle.setopt(pycurl.MAXAGE_CONN, MAX_IDLE_SECONDS)
        if self.http2:
            handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
            handle.setopt(pycurl.PIPEWAIT, 1)
        else:
            handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if self.client_certificate is not None:
            handle.setopt(pycurl.SSLCERT, self.client_certificate.cert_file)
            handle.setopt(pycurl.SSLKEY, self.client_certificate.key_file)
            if self.client_certificate.password:
                handle.setopt(pycurl.KEYPASSWD, self.client_certificate.password)
        if self.basic_auth is not None:
            handle.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
            handle.setopt(pycurl.USERPWD, f"{self.basic_auth[0]}:{self.basic_auth[1]}")
        if request.resolve:
            handle.setopt(pycurl.RESOLVE, list(request.resolve))
        self._set_method_and_body(handle, request)
        # "Expect:" keeps libcurl from waiting for a 100 Continue before larger HTTP/1.1 bodies.
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in request.headers.items()] + ["Expect:"])
        handle.setopt(pycurl.WRITEDATA, transfer.body)
        handle.setopt(pycurl.HEADERFUNCTION, transfer.header_lines.append)


def _answer(transfer: _Transfer) -> Answer:
    status_code = transfer.handle.getinfo(pycurl.RESPONSE_CODE)
    reason, headers = _parse_headers(transfer.header_lines)
    return Answer(status_code=status_code, reason_phrase=reason, headers=headers, content=transfer.body.getvalue())


def _parse_headers(lines: Iterable[bytes]) -> tuple[str, email.message.Message]:
    """The last response's reason phrase and headers (libcurl reports every response, 100 Continue included)."""
    reason, headers = "", email.message.Message()
    for raw in lines:
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            reason, headers = (line.split(" ", 2)[2:] or [""])[0], email.message.Message()
        elif ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return reason, headers


def perform(request: HttpRequest, *, timeout: float, ca_file: str = "") -> Answer:
    """One request, synchronously, on a connection of its own (OAuth2 token fetches: rare, outside the batches)."""
    pool = CurlPool(http2=False, max_connections=1, timeout=timeout, ca_file=ca_file)
    try:
        pool.submit(request)
        while True:
            for _, outcome in pool.wait(timeout):
                if isinstance(outcome, TransferError):
                    raise outcome
                return outcome
    finally:
        pool.close()


class RateLimit(Protocol):
    """What a batch needs of a rate limiter (notifications.backends.http.RateLimiter, or the budget every process
    shares): seconds between two slots (0: no limit), booking the next slot (how long to wait for it), and holding
    every sender back (a 429's Retry-After)."""

    @property
    def interval(self) -> float: ...

    def reserve(self) -> float: ...

    def pause(self, seconds: float) -> None: ...


class RateSlots:
    """The rate-limit slots one batch on `run_transfers` has booked ahead, from a limiter every sender shares.

    An item due to start asks `wait(item)`: 0 when it may start now (the slot it booked has come, or there is no
    limit), else the seconds to wait, for the slot it just booked, or POLL_SECONDS when the batch holds its share.
    An item that ends without starting gives its slot back with `drop(item)`.

    The cap: an item books a slot only while the batch's booked slots and requests in flight together are fewer than
    `concurrency`. Each booked slot becomes a request, and no more than `concurrency` can be in flight, so a batch
    never books further ahead than it can use: the rest of the budget stays with the other senders (and is not
    wasted should the breaker open). Capping the booked slots alone would let a batch hold `concurrency` slots on top
    of `concurrency` requests in flight, twice its share. It costs no throughput: the rate is reached whenever
    `concurrency` covers the requests the rate keeps in flight.

    A slot passed by more than one interval (every request place was taken meanwhile) is not used late: late slots
    would bunch with the ones after them, above the rate; the item books another.
    """

    def __init__(
        self, limiter: RateLimit | None, *, pool: CurlPool, concurrency: int, clock: Callable[[], float]
    ) -> None:
        self.limiter = limiter
        self.pool = pool
        self.concurrency = concurrency
        self._clock = clock
        self._booked: dict[Hashable, float] = {}  # item -> when its slot comes

    def wait(self, item: Hashable) -> float:
        """Seconds before `item` may start (0: now); it gives up the slot it held either way."""
        slot_at = self._booked.pop(item, None)
        if self.limiter is None:
            return 0.0
        now = self._clock()
        if slot_at is not None and now - slot_at <= self.limiter.interval:
            return 0.0
        if len(self._booked) + self.pool.in_flight >= self.concurrency:
            return POLL_SECONDS
        wait = self.limiter.reserve()
        if wait > 0:
            self._booked[item] = now + wait
        return wait

    def drop(self, item: Hashable) -> None:
        """`item` ends without starting: its slot, if it booked one, no longer counts against the batch."""
        self._booked.pop(item, None)


Start = Callable[[T], "HttpRequest | float | None"]
Settle = Callable[[T, "Answer | TransferError"], "float | None"]


def run_transfers(
    pool: CurlPool,
    items: Sequence[T],
    *,
    start: Start[T],
    settle: Settle[T],
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run one request per item, and again while its outcome asks, with up to `concurrency` in flight.

    `start(item)` says what to do when an item is due: a request to send, a number of seconds to wait first (a rate
    limit's slot), or None when the item is finished without a request. `settle(item, outcome)` gets the answer (or
    TransferError) and returns None when the item is finished, or the seconds after which to start it again (a
    retry's backoff; AT_ONCE to go ahead of the queue). Items start in order; waiting happens on the transfers in
    flight, or through `sleep` when there are none (tests pass a fake clock and sleep).
    """
    order = itertools.count()
    queue: list[tuple[float, int, T]] = []
    now = clock()
    for item in items:
        heapq.heappush(queue, (now, next(order), item))
    in_flight: dict[int, T] = {}
    try:
        while queue or in_flight:
            now = clock()
            while queue and queue[0][0] <= now and len(in_flight) < concurrency:
                _, _, item = heapq.heappop(queue)
                action = start(item)
                if isinstance(action, HttpRequest):
                    in_flight[pool.submit(action)] = item
                elif action is not None:
                    heapq.heappush(queue, (now + action, next(order), item))
            if in_flight:
                can_start = queue and len(in_flight) < concurrency
                timeout = min(POLL_SECONDS, max(0.0, queue[0][0] - now)) if can_start else POLL_SECONDS
                for key, outcome in pool.wait(timeout):
                    item = in_flight.pop(key)
                    delay = settle(item, outcome)
                    if delay is not None:
                        heapq.heappush(queue, (clock() + delay, next(order), item))
            elif queue and queue[0][0] > now:
                sleep(queue[0][0] - now)
    finally:
        if in_flight:
            pool.cancel_all()
