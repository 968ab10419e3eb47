"""What a failed HTTP request says about whether the provider could have acted on it (shared by every provider
client: the channel backends over requests, Google Wallet, APNs over httpx)."""

import httpx
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import SSLError as Urllib3SSLError


def request_not_written(exc: requests.RequestException) -> bool:
    """Did a requests call fail before any of the request reached the provider? Connection refused, name
    resolution, a connect timeout or a TLS handshake failure say so; a read timeout or a reset after writing do not."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError | Urllib3SSLError)


def httpx_request_not_written(exc: httpx.HTTPError) -> bool:
    """The same for httpx: a failure to connect (refused, TLS, connect timeout) or to get a pooled connection."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
