"""Backoff shared by the wallet providers' clients (APNs, Google Wallet API)."""

MAX_RETRY_AFTER_SECONDS = 30.0


def retry_delay(*, attempt: int, backoff: float, retry_after: str | None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): Retry-After when given in seconds, else doubling."""
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
    return backoff * (2**attempt)
