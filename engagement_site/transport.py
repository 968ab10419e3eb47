"""What a failed HTTP request says about whether the provider could have acted on it, for the clients not on
engagement_site.curl (which says it itself), and google-auth's token transport over libcurl."""

import ssl

import google.auth.exceptions
import google.auth.transport
import httpx
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import SSLError as Urllib3SSLError

from engagement_site.curl import STREAMS_PER_CONNECTION, Answer, HttpRequest, TransferError, http2_connections, perform

__all__ = ["STREAMS_PER_CONNECTION", "http2_connections"]


def request_not_written(exc: requests.RequestException) -> bool:
    """Did a requests call fail before any of the request reached the provider? Connection refused, name
    resolution, a connect timeout or a failed TLS handshake say so; a read timeout, a reset after writing, or a TLS
    error that may have come while reading the answer do not."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NewConnectionError | ConnectTimeoutError):
        return True
    return isinstance(reason, Urllib3SSLError) and tls_handshake_failure(reason)


def httpx_request_not_written(exc: httpx.HTTPError) -> bool:
    """The same for httpx, where the connect phase (TCP, then the TLS handshake) has its own errors: connection
    refused, a connect timeout, a failed handshake, or no pooled connection free in time. A write or read error, a
    read timeout, or the peer closing or resetting a stream after the request went out leave it open."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ProxyError)


# OpenSSL reasons that only a handshake produces (the certificate, the protocol version, the peer's alert).
HANDSHAKE_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "WRONG_VERSION_NUMBER",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
    }
)


def tls_handshake_failure(exc: BaseException) -> bool:
    """A TLS error from the handshake (before any request byte was sent), not one while reading an answer."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        if isinstance(error, ssl.SSLError) and getattr(error, "reason", None) in HANDSHAKE_REASONS:
            return True
        pending.extend([*error.args, error.__cause__, error.__context__])
    return False


class _GoogleAuthResponse(google.auth.transport.Response):
    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status_code

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._answer.headers.items())

    @property
    def data(self) -> bytes:
        return self._answer.content


class GoogleAuthRequest(google.auth.transport.Request):
    """google-auth's transport over libcurl (engagement_site.curl), so OAuth2 tokens come through the same HTTP
    library as the calls they authorise, with our timeout instead of google-auth's two-minute default."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs) -> _GoogleAuthResponse:
        if isinstance(body, str):
            body = body.encode()
        request = HttpRequest(method, url, dict(headers or {}), body or b"")
        try:
            answer = perform(request, timeout=timeout or self.timeout)
        except TransferError as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc
        return _GoogleAuthResponse(answer)
