"""Building blocks shared by the apps' APIs: strict JSON fields, strict input serializers, pagination and
the error shapes the OpenAPI schema documents."""

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false, nothing else ("true", 1 and "yes" are errors)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: "7", 7.0 and true are errors."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string: numbers are not turned into text."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"invalid": "Enter a valid email address."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """An ISO 8601 date and time with a UTC offset; a naive time is ambiguous, so it is an error."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date and time, e.g. 2026-03-01T09:30:00+01:00.",
        "naive": "Must include a UTC offset (Z or +01:00), e.g. 2026-03-01T09:30:00+01:00.",
        "offset": "The UTC offset must be between -12:00 and +14:00.",
    }
    # The offsets real time zones use. Wider ones (Python takes up to 24 hours) are typos, and PostgreSQL refuses
    # anything past 15:59 with an error.
    MIN_OFFSET, MAX_OFFSET = dt.timedelta(hours=-12), dt.timedelta(hours=14)

    def to_internal_value(self, data: Any) -> Any:
        try:
            parsed = parse_datetime(data) if isinstance(data, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if timezone.is_naive(parsed):
            self.fail("naive")
        if not self.MIN_OFFSET <= parsed.utcoffset() <= self.MAX_OFFSET:
            self.fail("offset")
        try:
            # Stored and compared in UTC whatever offset the client used.
            return parsed.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before the first instant Python can represent
            self.fail("invalid")

    def to_representation(self, value: Any) -> str:
        return value.isoformat()


class RuleField(serializers.Field):
    """A JSON value checked by one of the shared rule functions, which return the list of what is wrong."""

    def __init__(self, *, rule: Callable[[Any], list[str]], **kwargs: Any) -> None:
        self.rule = rule
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if errors := self.rule(data):
            raise serializers.ValidationError(errors)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields it does not declare, and reports every error (unknown fields included) in one 400.

    `read_only_names` are fields the client reads but may not send; they are named as read-only rather
    than unknown. Subclasses add rules across fields in `cross_field_errors`.
    """

    read_only_names: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)
        errors: dict[str, Any] = {}
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
            attrs = {}
        for name in data:
            if name not in self.fields:
                errors[name] = ["This field is read-only." if name in self.read_only_names else "Unknown field."]
        errors.update(self.cross_field_errors(attrs, errors))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def cross_field_errors(self, attrs: dict[str, Any], errors: dict[str, Any]) -> dict[str, list[str]]:
        """Errors that involve more than one field; `errors` holds the fields that already failed."""
        return {}


class PageQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1, help_text="Page number, from 1.")
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        default=DEFAULT_PAGE_SIZE,
        help_text=f"Items per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
    )


class PagePagination(PageNumberPagination):
    """`?page=&limit=` pages; views validate both with PageQuerySerializer first, so bad values are a 400."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "Every invalid field with its messages; `non_field_errors` for errors of the whole body.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"inactivity_days": ["Ensure this value is less than or equal to 365."]},
}

BAD_REQUEST_SCHEMA = {"oneOf": [VALIDATION_ERROR_SCHEMA, ERROR_SCHEMA]}

_ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, or the fields that are wrong.",
    401: "Missing, unknown, expired or revoked session token (or X-Business-Id missing).",
    403: "The session token belongs to another business than X-Business-Id.",
    404: "Not found (or not this business's).",
    429: "Too many attempts; retry after the number of seconds in the Retry-After header.",
    503: "The feature is not configured on this server (an operator must set it up).",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the given error status codes, in the shapes the exception handler produces.

    A keyword such as `e401="..."` replaces the usual description of that code.
    """
    return {
        code: OpenApiResponse(
            response=BAD_REQUEST_SCHEMA if code == 400 else ERROR_SCHEMA,
            description=descriptions.get(f"e{code}", _ERROR_DESCRIPTIONS[code]),
        )
        for code in codes
    }
