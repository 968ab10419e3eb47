"""What a failed HTTP request says about whether the provider could have acted on it (shared by the clients over
requests: the channel backends and Google Wallet; APNs retries every failure, its pushes being idempotent)."""

import ssl

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import SSLError as Urllib3SSLError


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
