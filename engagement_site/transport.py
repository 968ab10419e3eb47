"""google-auth's token transport over libcurl (engagement_site.curl), for FCM and Google Wallet."""

import google.auth.exceptions
import google.auth.transport

from engagement_site.curl import Answer, HttpRequest, TransferError, perform


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
