"""Building blocks shared by the apps' APIs: the JSON parser, strict JSON fields, strict input serializers,
pagination and the error shapes the OpenAPI schema documents."""

import codecs
import datetime as dt
import io
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.settings import api_settings

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# No request body of this API nests deeper than 3 levels; the limit leaves room and keeps recursion out of reach.
MAX_JSON_DEPTH = 32
NUL_MESSAGE = "Null characters are not allowed."


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep: a level at a time, containers only (a 10,000-row
    import is about 100,000 values, almost all of them scalars), with no recursion on hostile input."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return False


def _contains_nul(value: Any) -> bool:
    """Whether any string in the JSON value (object keys included) has a NUL character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _may_hold_nul(body: bytes, encoding: str) -> bool:
    """Whether a JSON text could have a NUL character in a string: only as the escape \\u0000 (JSON allows no raw
    control character in a string, and json.loads refuses one), which a UTF-8 or ASCII body without those six
    bytes cannot hold. The walk over every string (_contains_nul) is then needed only when they are there."""
    return b"\\u0000" in body or codecs.lookup(encoding).name not in {"utf-8", "ascii"}


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with two limits every endpoint needs.

    - Nesting deeper than MAX_JSON_DEPTH is a 400 (without the limit, 100,000 nested arrays are a RecursionError).
    - A NUL character in any string is a 400 naming the top-level field it is in: PostgreSQL refuses NUL in text
      and JSON, so it can never be stored, and it has no business in names, templates or time zones.

    Plugged in by REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] (settings).
    """

    max_depth = MAX_JSON_DEPTH

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping | None = None) -> Any:
        too_deep = ParseError(f"JSON parse error - nested more than {self.max_depth} levels deep.")
        body = stream.read()
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if _json_depth_exceeds(data, self.max_depth):
            raise too_deep
        if not _may_hold_nul(body, (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET):
            return data
        if isinstance(data, dict):
            if errors := {key: [NUL_MESSAGE] for key, value in data.items() if _contains_nul([key, value])}:
                raise serializers.ValidationError(errors)
        elif _contains_nul(data):
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [NUL_MESSAGE]})
        return data


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
        "range": "Must be between 0020-01-01T00:00:00Z and 9980-01-01T00:00:00Z.",
    }
    # The offsets real time zones use. Wider ones (Python takes up to 24 hours) are typos, and PostgreSQL refuses
    # anything past 15:59 with an error.
    MIN_OFFSET, MAX_OFFSET = dt.timedelta(hours=-12), dt.timedelta(hours=14)
    # About twenty years inside what Python represents: a value inside can be converted to any local time and moved
    # by any window the app uses (attribution, inactivity: at most ten years) without an OverflowError.
    EARLIEST, LATEST = dt.datetime(20, 1, 1, tzinfo=dt.UTC), dt.datetime(9980, 1, 1, tzinfo=dt.UTC)

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
            value = parsed.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before the first instant Python can represent
            self.fail("invalid")
        if not self.EARLIEST <= value <= self.LATEST:
            self.fail("range")
        return value

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


class StrictQuerySerializer(StrictInputSerializer):
    """Query parameters: any the endpoint does not declare is a 400 naming it (a misspelt filter must not quietly
    return everything). DRF's `format` override stays allowed."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping) and api_settings.URL_FORMAT_OVERRIDE in data:
            data = {name: data[name] for name in data if name != api_settings.URL_FORMAT_OVERRIDE}
        return super().to_internal_value(data)


class PageQuerySerializer(StrictQuerySerializer):
    """`page` and `limit`; any query parameter a subclass does not declare is a 400 naming it."""

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
