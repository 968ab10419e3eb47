"""`Idempotency-Key` on a business's POSTs (the IETF draft "The Idempotency-Key HTTP Header Field").

The same key with the same request within IDEMPOTENCY_TTL gets the first answer again, marked with
`Idempotent-Replayed: true`, and the view does not run (nothing is written). The same key with another method, path
or body is a 422; a retry while the first request is still running is a 409. 2xx and 4xx answers are kept; a 5xx
(or an unexpected error) frees the key, so the retry runs again.

Race safety: the request first inserts its (business, key) row marked in flight, in a transaction of its own, before
the view runs; the unique constraint makes a concurrent twin fail at that insert and answer 409, so two requests
can never both write.

Every view built on wallet.authentication.BusinessSessionRequired gets this through IdempotentPostMixin: a new POST
endpoint needs nothing more. Login is not covered (no business yet, and a replay would hand out a session token).
"""

import datetime as dt
import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from wallet.models import Business, IdempotencyRecord

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255
PRUNE_BATCH_SIZE = 10_000


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        f"This {IDEMPOTENCY_HEADER} was already used with a different request (method, path or body); "
        "use a new key for a new request."
    )


class IdempotencyKeyInFlight(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_flight"
    default_detail = f"A request with this {IDEMPOTENCY_HEADER} is still being processed; retry later."


class _Replay(Exception):
    """Raised by the mixin's `initial` to answer with the stored response instead of running the view."""

    def __init__(self, record: IdempotencyRecord) -> None:
        self.record = record
        super().__init__(record.key)


def key_errors(key: str) -> list[str]:
    """What is wrong with an Idempotency-Key value (printable ASCII, 1 to MAX_KEY_LENGTH characters)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return [f"Must be 1 to {MAX_KEY_LENGTH} characters long."]
    if not all(" " <= char <= "~" for char in key):
        return ["Must contain printable ASCII characters only."]
    return []


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """SHA-256 of what makes two requests the same request."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def idempotency_claim(
    *, business: Business, key: str, fingerprint: str, now: dt.datetime | None = None
) -> tuple[IdempotencyRecord | None, IdempotencyRecord | None]:
    """Take the key for this request: (the new in-flight row, None), or (None, the finished first answer) to replay.

    Each write is its own short transaction (committed before the view runs), so a concurrent request sees the row.
    Raises IdempotencyKeyReused for another request under the key and IdempotencyKeyInFlight while it runs.
    """
    now = now or timezone.now()
    # A key older than the TTL starts afresh (the prune command may not have run yet).
    with transaction.atomic():
        IdempotencyRecord.objects.filter(business=business, key=key, created_at__lt=now - IDEMPOTENCY_TTL).delete()
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                business=business, key=key, fingerprint=fingerprint, created_at=now
            )
        return record, None
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.filter(business=business, key=key).first()
    if existing is None:  # the first request failed with a 5xx and freed the key a moment ago
        raise IdempotencyKeyInFlight()
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if existing.status_code is None:
        raise IdempotencyKeyInFlight()
    return None, existing


def idempotency_complete(record: IdempotencyRecord, response: HttpResponseBase) -> None:
    """Keep a 2xx or 4xx JSON answer for replays; free the key after anything else."""
    if response.status_code >= 500 or not isinstance(response, Response):
        idempotency_release(record)
        return
    content = response.rendered_content if response.data is not None else b""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response_body=content.decode()
    )


def idempotency_release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()


def idempotency_prune(*, now: dt.datetime | None = None, batch_size: int = PRUNE_BATCH_SIZE) -> int:
    """Delete the records older than IDEMPOTENCY_TTL, in batches of short transactions; returns how many."""
    cutoff = (now or timezone.now()) - IDEMPOTENCY_TTL
    deleted = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]


class IdempotentPostMixin:
    """Gives a DRF view's POSTs Idempotency-Key handling (see the module docstring); must come before the view
    class in the bases, and needs the business as `request.user` (authentication runs first)."""

    # False on a view whose answers must never be stored (a secret shown once): the header is then a 400.
    idempotent_posts = True
    _idempotency_record: IdempotencyRecord | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]  # authentication, permissions, throttles
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if request.method != "POST" or key is None:
            return
        if not self.idempotent_posts:
            raise serializers.ValidationError(
                {IDEMPOTENCY_HEADER: ["Not supported here: this answer holds a secret that is never stored."]}
            )
        if errors := key_errors(key):
            raise serializers.ValidationError({IDEMPOTENCY_HEADER: errors})
        fingerprint = request_fingerprint(method=request.method, path=request.path, body=request._request.body)
        record, stored = idempotency_claim(business=request.user, key=key, fingerprint=fingerprint)
        if stored is not None:
            logger.info("idempotent replay", extra={"business_id": request.user.business_id, "path": request.path})
            raise _Replay(stored)
        self._idempotency_record = record

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, _Replay):
            response = HttpResponse(
                exc.record.response_body,
                status=exc.record.status_code,
                content_type="application/json" if exc.record.response_body else None,
            )
            response[REPLAYED_HEADER] = "true"
            return response
        return super().handle_exception(exc)  # type: ignore[misc]

    def finalize_response(self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        record, self._idempotency_record = self._idempotency_record, None
        if record is not None:
            idempotency_complete(record, response)
        return response

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        finally:
            # An unexpected error skips finalize_response: the key is freed so a retry runs again.
            record, self._idempotency_record = self._idempotency_record, None
            if record is not None:
                idempotency_release(record)
