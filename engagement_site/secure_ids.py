"""Public IDs: a kind prefix plus 20 random characters from [A-Za-z0-9], made with `secrets`.

Integer primary keys stay internal; everything outside the database speaks these IDs.
"""

import secrets
import string
from enum import StrEnum

ALPHABET = string.ascii_letters + string.digits
RANDOM_LENGTH = 20
MAX_LENGTH = 32


class IdKind(StrEnum):
    BUSINESS = "biz"
    CUSTOMER = "cust"
    PASS = "pass"
    CONFIG = "aec"
    NOTIFICATION = "ntf"
    API_KEY = "key"
    WEBHOOK = "whk"
    WEBHOOK_EVENT = "evt"

    @property
    def prefix(self) -> str:
        return f"{self.value}_"


# Random bytes below 248 (= 4 x 62) map evenly onto the alphabet; the rest are dropped (rejection sampling).
_ACCEPTED = 4 * len(ALPHABET)
_TO_ALPHABET = bytes((ALPHABET * 5)[:256], "ascii")
_REJECTED = bytes(range(_ACCEPTED, 256))


def _random_text(length: int) -> str:
    """`length` uniform characters of ALPHABET, drawn with one call to the OS's CSPRNG per batch."""
    text = b""
    while len(text) < length:
        raw = secrets.token_bytes(length - len(text) + length // 16 + 8)
        text += raw.translate(_TO_ALPHABET, _REJECTED)
    return text[:length].decode("ascii")


def make_id(kind: IdKind) -> str:
    return kind.prefix + _random_text(RANDOM_LENGTH)


def make_ids(kind: IdKind, count: int) -> list[str]:
    """`count` distinct IDs of one kind, for bulk inserts (fast: one CSPRNG draw for the batch)."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        text = _random_text((count - len(ids)) * RANDOM_LENGTH)
        for start in range(0, len(text), RANDOM_LENGTH):
            ids[kind.prefix + text[start : start + RANDOM_LENGTH]] = None
    return list(ids)


def kind_of(value: object) -> IdKind | None:
    """The kind an ID's prefix names, or None when it is not a well-formed ID of any kind."""
    if not isinstance(value, str):
        return None
    prefix, sep, random_part = value.partition("_")
    if not sep or len(random_part) != RANDOM_LENGTH or not all(c in ALPHABET for c in random_part):
        return None
    try:
        return IdKind(prefix)
    except ValueError:
        return None


def is_valid_id(value: object, kind: IdKind | None = None) -> bool:
    found = kind_of(value)
    return found is not None and (kind is None or found is kind)


def new_business_id() -> str:
    return make_id(IdKind.BUSINESS)


def new_customer_id() -> str:
    return make_id(IdKind.CUSTOMER)


def new_pass_id() -> str:
    return make_id(IdKind.PASS)


def new_config_id() -> str:
    return make_id(IdKind.CONFIG)


def new_notification_id() -> str:
    return make_id(IdKind.NOTIFICATION)


def new_api_key_id() -> str:
    return make_id(IdKind.API_KEY)


def make_secret(prefix: str, length: int = 40) -> str:
    """A credential shown once (an API key): `prefix` plus `length` random characters of ALPHABET (238 bits for
    40), so a leaked one is easy to find by its prefix in logs and repositories."""
    return prefix + _random_text(length)


def new_webhook_id() -> str:
    return make_id(IdKind.WEBHOOK)


def new_webhook_event_id() -> str:
    return make_id(IdKind.WEBHOOK_EVENT)
