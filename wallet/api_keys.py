"""API keys: long-lived credentials a business gives its server integrations (`Authorization: Bearer <key>`).

A key is shown once, when it is created; only its SHA-256 is kept, so a database leak reveals no usable key. A
revoked key stops working at once and its row stays for the audit trail. `last_used_at` is written at most once a
minute per key, so a busy integration does not turn every request into a write.
"""

import datetime as dt
import hmac
import logging

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from engagement_site.exceptions import ObjectNotFound
from engagement_site.secure_ids import make_secret
from wallet.models import ApiKey, Business
from wallet.tokens import hash_token

logger = logging.getLogger(__name__)

KEY_PREFIX = "ae_live_"
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 4
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class ApiKeyNotFound(ObjectNotFound):
    default_message = "No such API key."


def api_key_create(*, business: Business, name: str) -> tuple[ApiKey, str]:
    """A new key for `business`: the row, and the key itself (shown once, never stored)."""
    key = make_secret(KEY_PREFIX)
    api_key = ApiKey.objects.create(
        business=business, name=name, key_hash=hash_token(key), prefix=key[:SHOWN_PREFIX_LENGTH]
    )
    logger.info("api key created", extra={"business_id": business.business_id, "key_id": api_key.key_id})
    return api_key, key


def api_key_list(*, business: Business) -> QuerySet[ApiKey]:
    """The business's keys in force, newest first."""
    return ApiKey.objects.filter(business=business, revoked_at=None).order_by("-created_at", "-pk")


@transaction.atomic
def api_key_revoke(*, business: Business, key_id: str) -> None:
    """The key stops working at once; another business's key, or one already revoked, is not found."""
    api_key = ApiKey.objects.select_for_update().filter(business=business, key_id=key_id, revoked_at=None).first()
    if api_key is None:
        raise ApiKeyNotFound()
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    logger.info("api key revoked", extra={"business_id": business.business_id, "key_id": key_id})


def api_key_authenticate(key: str, *, now: dt.datetime | None = None) -> ApiKey | None:
    """The key in force that `key` is, with its business; None for an unknown or revoked key."""
    key_hash = hash_token(key)
    api_key = ApiKey.objects.select_related("business").filter(key_hash=key_hash).first()
    # The lookup is by hash; the constant-time comparison keeps the check itself free of timing leaks.
    if api_key is None or not hmac.compare_digest(api_key.key_hash, key_hash) or api_key.revoked_at is not None:
        return None
    now = now or timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
