"""What a failed httpx request says about whether the provider could have acted on it (Google Wallet's client; the
others are on engagement_site.curl, which says it itself), and google-auth's token transport over libcurl."""

import google.auth.exceptions
import google.auth.transport
import httpx

from engagement_site.curl import Answer, HttpRequest, TransferError, perform


def httpx_request_not_written(exc: httpx.HTTPError) -> bool:
    """Whether an httpx call failed in its connect phase (TCP, then the TLS handshake): connection refused, a connect
    timeout, a failed handshake, or no pooled connection free in time. A write or read error, a read timeout, or the
    peer closing or resetting a stream after the request went out leave it open."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ProxyError)


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
