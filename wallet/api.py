"""The business API of this app: login and logout, customers and their visits. Views stay thin over
wallet.services and wallet.selectors; errors are turned into responses by the one exception handler."""

import functools
import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.http import HttpResponse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from engagement_site.api import (
    BAD_REQUEST_SCHEMA,
    ERROR_SCHEMA,
    AwareDateTimeField,
    PagePagination,
    PageQuerySerializer,
    RuleField,
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictInputSerializer,
    error_responses,
)
from engagement_site.exceptions import DomainError
from engagement_site.secure_ids import IdKind, is_valid_id
from wallet import api_keys, bulk, selectors, services
from wallet.authentication import BusinessSessionRequired
from wallet.customer_pass import customer_pass_response
from wallet.models import ApiKey, BusinessSession, Customer, WalletPass
from wallet.throttling import LoginRateThrottle
from wallet.validation import (
    ATTRIBUTE_INTEGER_LIMIT,
    ATTRIBUTE_TEXT_MAX_LENGTH,
    EXTERNAL_ID_MAX_LENGTH,
    MAX_ATTRIBUTES,
    PHONE_CACHE_SIZE,
    attributes_errors,
    normalise_phone,
    phone_e164,
    phone_errors,
)


class LoginInputSerializer(StrictInputSerializer):
    email = StrictCharField(max_length=254)
    password = StrictCharField(max_length=1024, trim_whitespace=False)


class LoginOutputSerializer(serializers.Serializer):
    session_token = serializers.CharField(help_text="Send it as X-Session-Token; shown only once.")
    business_id = serializers.CharField(help_text="Send it as X-Business-Id.")
    expires_at = serializers.DateTimeField()


class LoginView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (LoginRateThrottle,)

    @extend_schema(
        tags=["auth"],
        summary="Open a session",
        request=LoginInputSerializer,
        description="Checks the business's email and password and returns a session token for the other endpoints.",
        responses={201: LoginOutputSerializer, **error_responses(400, 401, 429, e401="Wrong email or password.")},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session, token = services.session_login(**serializer.validated_data)
        output = {"session_token": token, "business_id": session.business.business_id, "expires_at": session.expires_at}
        return Response(LoginOutputSerializer(output).data, status=status.HTTP_201_CREATED)


class LogoutView(BusinessSessionRequired, APIView):
    @extend_schema(
        tags=["auth"],
        summary="Revoke the current session",
        description="The session token stops working at once.",
        request=None,
        responses={204: OpenApiResponse(description="Logged out."), **error_responses(401, 403)},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.auth, BusinessSession):
            raise LogoutNeedsSession()
        services.session_revoke(session=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutNeedsSession(DomainError):
    default_message = "Logging out ends a session; an API key is revoked with DELETE /api/api-keys/{key_id}."


class ApiKeyInputSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=100, help_text="What the key is for, e.g. 'loyalty platform sync'.")


class ApiKeyOutputSerializer(serializers.Serializer):
    key_id = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell keys apart; never the key.")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute.")


class ApiKeyCreatedSerializer(ApiKeyOutputSerializer):
    key = serializers.CharField(help_text="Send it as Authorization: Bearer <key>. Shown only once: store it now.")


class ApiKeyViewSet(BusinessSessionRequired, viewsets.GenericViewSet):
    """The business's API keys: created (the key shown once), listed (never the key), revoked."""

    lookup_field = "key_id"
    lookup_value_regex = "[^/]+"
    idempotent_posts = False  # the answer holds the key, which is never stored
    pagination_class = PagePagination
    serializer_class = ApiKeyOutputSerializer
    queryset = ApiKey.objects.none()

    @extend_schema(
        tags=["api keys"],
        summary="List the API keys in force, newest first",
        parameters=[PageQuerySerializer],
        responses={200: ApiKeyOutputSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def list(self, request: Request) -> Response:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        page = self.paginate_queryset(api_keys.api_key_list(business=request.user))
        return self.get_paginated_response(ApiKeyOutputSerializer(page, many=True).data)

    @extend_schema(
        tags=["api keys"],
        summary="Create an API key for a server integration",
        description="The answer holds the key itself, shown this once; only its hash is kept.",
        request=ApiKeyInputSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 401, 403)},
    )
    def create(self, request: Request) -> Response:
        serializer = ApiKeyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, key = api_keys.api_key_create(business=request.user, **serializer.validated_data)
        output = ApiKeyCreatedSerializer({**ApiKeyOutputSerializer(api_key).data, "key": key}).data
        return Response(output, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=["api keys"],
        summary="Revoke an API key",
        description="It stops working at once. 404 for an unknown key, another business's, or one already revoked.",
        responses={204: OpenApiResponse(description="Revoked."), **error_responses(401, 403, 404)},
    )
    def destroy(self, request: Request, key_id: str) -> Response:
        if not is_valid_id(key_id, IdKind.API_KEY):
            raise api_keys.ApiKeyNotFound()
        api_keys.api_key_revoke(business=request.user, key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _validate_phone(value: str) -> None:
    if errors := phone_errors(value):
        raise serializers.ValidationError(errors)


ATTRIBUTES_SCHEMA = {
    "type": "object",
    "description": (
        f"Up to {MAX_ATTRIBUTES} names (1 to 64 letters, digits or underscores) to strings (at most "
        f"{ATTRIBUTE_TEXT_MAX_LENGTH} characters) or numbers (integers within +-{ATTRIBUTE_INTEGER_LIMIT}); what "
        "templates read as {attributes.NAME}. Given on an update, it replaces the whole object."
    ),
    "maxProperties": MAX_ATTRIBUTES,
    "additionalProperties": {
        "oneOf": [{"type": "string", "maxLength": ATTRIBUTE_TEXT_MAX_LENGTH}, {"type": "number"}],
    },
    "example": {"tier": "gold", "points": 120},
}


@extend_schema_field(ATTRIBUTES_SCHEMA)
class AttributesField(RuleField):
    pass


class WalletPassOutputSerializer(serializers.Serializer):
    pass_id = serializers.CharField()
    platform = serializers.ChoiceField(choices=WalletPass.Platform.choices)


class CustomerOutputSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    push_token = serializers.CharField()
    email_opt_out = serializers.BooleanField()
    sms_opt_out = serializers.BooleanField()
    push_opt_out = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField(allow_null=True)
    attributes = AttributesField(rule=attributes_errors)
    external_id = serializers.CharField(allow_null=True)
    wallet_passes = WalletPassOutputSerializer(many=True)


CUSTOMER_READ_ONLY = frozenset({"customer_id", "created_at", "last_activity_at", "wallet_passes"})


class CustomerUpdateInputSerializer(StrictInputSerializer):
    read_only_names = CUSTOMER_READ_ONLY | {"wallet_platform"}

    first_name = StrictCharField(required=False, allow_blank=True, max_length=100)
    last_name = StrictCharField(required=False, allow_blank=True, max_length=100)
    email = StrictEmailField(required=False, allow_blank=True, max_length=254)
    phone = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=32,
        validators=[_validate_phone],
        help_text="International form, e.g. +14155550100 (separators are dropped; stored as E.164)",
    )
    push_token = StrictCharField(required=False, allow_blank=True, max_length=4096)
    email_opt_out = StrictBooleanField(required=False, help_text="true: never email this customer.")
    sms_opt_out = StrictBooleanField(required=False, help_text="true: never text this customer.")
    push_opt_out = StrictBooleanField(required=False, help_text="true: never push to this customer.")
    attributes = AttributesField(rule=attributes_errors, required=False)
    external_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=EXTERNAL_ID_MAX_LENGTH,
        help_text="Your platform's key for the customer, unique within the business; null for none.",
    )


class CustomerCreateInputSerializer(CustomerUpdateInputSerializer):
    read_only_names = CUSTOMER_READ_ONLY

    wallet_platform = serializers.ChoiceField(
        choices=WalletPass.Platform.choices,
        required=False,
        allow_null=True,
        help_text="Also issue a wallet pass on this platform.",
    )


class BulkCustomerRowSerializer(CustomerUpdateInputSerializer):
    """A row of POST /api/customers/bulk: the fields of a single create, external_id required, no pass."""

    read_only_names = CUSTOMER_READ_ONLY

    external_id = StrictCharField(
        max_length=EXTERNAL_ID_MAX_LENGTH, help_text="Your platform's key for the customer: what the row upserts by."
    )


def _rows_errors(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["Must be a list."]
    if len(value) > bulk.MAX_ROWS:
        return [f"At most {bulk.MAX_ROWS} rows per request (there are {len(value)})."]
    return []


class BulkCustomersInputSerializer(StrictInputSerializer):
    # A list checked for its length only: its rows are checked by customer_rows_validate, all in one pass.
    customers = RuleField(rule=_rows_errors)


class BulkCustomersRequestSchema(serializers.Serializer):
    """The request as the OpenAPI schema describes it."""

    customers = BulkCustomerRowSerializer(many=True, max_length=bulk.MAX_ROWS)


class BulkCustomersOutputSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class VisitRowSerializer(serializers.Serializer):
    """Documentation of a row of POST /api/visits (rows are checked by _visit_row, one pass for all)."""

    customer_id = serializers.CharField(required=False, help_text="The customer, or give external_id instead.")
    external_id = serializers.CharField(required=False, help_text="The customer by your platform's key.")
    occurred_at = AwareDateTimeField(
        required=False, help_text="When the visit happened, with a UTC offset; default now; not in the future."
    )


class VisitsInputSerializer(StrictInputSerializer):
    # Its rows are checked by _visit_row, one pass for all.
    visits = RuleField(rule=_rows_errors)


class VisitsRequestSchema(serializers.Serializer):
    """The request as the OpenAPI schema describes it."""

    visits = VisitRowSerializer(many=True, max_length=bulk.MAX_ROWS)


class VisitsOutputSerializer(serializers.Serializer):
    recorded = serializers.IntegerField(help_text="Visits recorded (every row).")
    credited = serializers.IntegerField(help_text="Customers whose last activity moved forward.")


ROW_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Each invalid row by its index in the request, with DRF's {field: [messages]}; nothing was written.",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "errors": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "required": ["index", "errors"],
            },
        }
    },
    "required": ["errors"],
    "example": {"errors": [{"index": 3, "errors": {"email": ["Enter a valid email address."]}}]},
}


def _row_errors_response(errors: bulk.RowErrors) -> Response:
    return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)


_SURROGATES = re.compile("[\ud800-\udfff]")
_FAST_TEXT_LIMITS = {"first_name": 100, "last_name": 100, "push_token": 4096, "email": 254, "phone": 32}
_FAST_BOOLEANS = frozenset({"email_opt_out", "sms_opt_out", "push_opt_out"})
_BULK_ROW_FIELDS = frozenset(BulkCustomerRowSerializer().fields)


def _fast_text(value: Any, max_length: int) -> str | None:
    if type(value) is not str:
        return None
    value = value.strip()
    if len(value) > max_length or "\x00" in value or _SURROGATES.search(value):
        return None
    return value


@functools.lru_cache(maxsize=PHONE_CACHE_SIZE)
def _email_valid(value: str) -> bool:
    """Django's email check (the serializer's and the model's), remembered like phone_e164's answers."""
    try:
        validate_email(value)
    except DjangoValidationError:
        return False
    return True


def _customer_row_fast(row: Any) -> dict[str, Any] | None:
    """The values BulkCustomerRowSerializer (and then the service's phone normalisation) would give a row, when
    the row plainly passes its rules; None when it needs the serializer to judge it (and word its errors). Checking
    10,000 rows through the serializer takes seconds; this takes a fraction of that, and
    tests/wallet/test_api_bulk.py holds the two to the same results."""
    if type(row) is not dict or "external_id" not in row or not row.keys() <= _BULK_ROW_FIELDS:
        return None
    values: dict[str, Any] = {}
    for name, value in row.items():
        checked: Any
        if name in _FAST_BOOLEANS:
            checked = value if type(value) is bool else None
        elif name == "attributes":
            checked = value if type(value) is dict and not attributes_errors(value) else None
        elif name == "external_id":
            checked = _fast_text(value, EXTERNAL_ID_MAX_LENGTH) or None
        else:
            checked = _fast_text(value, _FAST_TEXT_LIMITS[name])
            if checked and name == "email" and not _email_valid(checked):
                checked = None
            elif checked is not None and name == "phone":
                checked = phone_e164(checked)
        if checked is None:
            return None
        values[name] = checked
    return values


def customer_rows_validate(rows: list[Any]) -> tuple[list[dict[str, Any]], bulk.RowErrors]:
    """Each row checked with the rules of a single create (BulkCustomerRowSerializer), phones normalised to E.164:
    (the rows' values, the errors of the bad ones)."""
    values: list[dict[str, Any]] = []
    errors: bulk.RowErrors = []
    for index, row in enumerate(rows):
        fast = _customer_row_fast(row)
        if fast is not None:
            values.append(fast)
            continue
        serializer = BulkCustomerRowSerializer(data=row)
        if serializer.is_valid():
            checked = dict(serializer.validated_data)
            if "phone" in checked:
                checked["phone"] = normalise_phone(checked["phone"])
            values.append(checked)
        else:
            errors.append({"index": index, "errors": serializer.errors})
    return values, errors


_OCCURRED_AT = AwareDateTimeField()
_VISIT_FIELDS = frozenset({"customer_id", "external_id", "occurred_at"})


def _visit_row(row: Any) -> tuple[bulk.VisitRow | None, dict[str, list[str]]]:
    """A row of POST /api/visits checked on its own: its VisitRow, or its errors."""
    if not isinstance(row, dict):
        return None, {"non_field_errors": [f"Must be an object, not {type(row).__name__}."]}
    errors: dict[str, list[str]] = {name: ["Unknown field."] for name in row if name not in _VISIT_FIELDS}
    customer_id, external_id = row.get("customer_id"), row.get("external_id")
    if ("customer_id" in row) == ("external_id" in row):
        errors["non_field_errors"] = ["Give exactly one of customer_id or external_id."]
    elif "customer_id" in row and not is_valid_id(customer_id, IdKind.CUSTOMER):
        errors["customer_id"] = [bulk.UNKNOWN_CUSTOMER]
    elif "external_id" in row and (
        not isinstance(external_id, str) or not 0 < len(external_id) <= EXTERNAL_ID_MAX_LENGTH
    ):
        errors["external_id"] = [f"Must be a non-empty string of at most {EXTERNAL_ID_MAX_LENGTH} characters."]
    occurred_at = None
    if "occurred_at" in row:
        try:
            occurred_at = _OCCURRED_AT.to_internal_value(row["occurred_at"])
        except serializers.ValidationError as exc:
            errors["occurred_at"] = list(exc.detail)
    if errors:
        return None, errors
    return bulk.VisitRow(customer_id=customer_id, external_id=external_id, occurred_at=occurred_at), {}


class CustomerListQuerySerializer(PageQuerySerializer):
    """The page, and the filters; any other query parameter is a 400 naming it."""

    email = serializers.CharField(required=False, max_length=254, help_text="Exact email, ignoring case.")
    phone = serializers.CharField(
        required=False,
        max_length=32,
        validators=[_validate_phone],
        help_text="Exact phone, in any form the customer fields accept (compared in E.164).",
    )
    external_id = serializers.CharField(
        required=False, max_length=EXTERNAL_ID_MAX_LENGTH, help_text="Your platform's key for the customer."
    )


class ActivityInputSerializer(StrictInputSerializer):
    occurred_at = AwareDateTimeField(
        required=False, help_text="When the visit happened, with a UTC offset; default now; not in the future."
    )


class PassQuerySerializer(StrictInputSerializer):
    platform = serializers.ChoiceField(choices=WalletPass.Platform.choices, required=False)


class SaveUrlSerializer(serializers.Serializer):
    save_url = serializers.URLField()


class CustomerViewSet(BusinessSessionRequired, viewsets.GenericViewSet):
    # The business's customers only: any other business's customer is a 404, like an unknown one.

    lookup_field = "customer_id"
    lookup_value_regex = "[^/]+"
    pagination_class = PagePagination
    serializer_class = CustomerOutputSerializer
    queryset = Customer.objects.none()

    def _customer(self, customer_id: str) -> Customer:
        # Anything but a well-formed customer ID (a NUL, which PostgreSQL refuses, 300 characters...) is unknown.
        if not is_valid_id(customer_id, IdKind.CUSTOMER):
            raise selectors.CustomerNotFound()
        return selectors.customer_get(business=self.request.user, customer_id=customer_id)

    @staticmethod
    def _output(customer: Customer, code: int = status.HTTP_200_OK) -> Response:
        return Response(CustomerOutputSerializer(customer).data, status=code)

    @extend_schema(
        tags=["customers"],
        summary="List customers, newest first",
        description="A 404 means the page is past the last one.",
        parameters=[CustomerListQuerySerializer],
        responses={200: CustomerOutputSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def list(self, request: Request) -> Response:
        query = CustomerListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {name: query.validated_data.get(name) for name in ("email", "phone", "external_id")}
        if filters["phone"] is not None:
            filters["phone"] = normalise_phone(filters["phone"])
        page = self.paginate_queryset(selectors.customer_list(business=request.user, **filters))
        return self.get_paginated_response(CustomerOutputSerializer(page, many=True).data)

    @extend_schema(
        tags=["customers"],
        summary="One customer",
        description="404 for an unknown customer, another business's or an erased one.",
        responses={200: CustomerOutputSerializer, **error_responses(401, 403, 404)},
    )
    def retrieve(self, request: Request, customer_id: str) -> Response:
        return self._output(self._customer(customer_id))

    @extend_schema(
        tags=["customers"],
        summary="Erase a customer's personal data",
        description=(
            "Names, email, phone, push token, attributes and external_id are erased; the wallet passes are deleted "
            "with their device registrations (they stop updating); the notification log keeps the customer's rows "
            "with their messages and error texts emptied, so history counts and results stay exact. The customer "
            "is never messaged again, and is a 404 from then on (so is a second DELETE)."
        ),
        request=None,
        responses={204: OpenApiResponse(description="Erased."), **error_responses(401, 403, 404)},
    )
    def destroy(self, request: Request, customer_id: str) -> Response:
        services.customer_erase(customer=self._customer(customer_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        tags=["customers"],
        summary="Create or update up to 10,000 customers by external_id",
        description=(
            "Each row has the fields of a single create (no wallet_platform: no passes are issued) and a required "
            "external_id. A customer of this business with that external_id gets the given fields (the others stay); "
            "otherwise a customer is created. All or nothing: any invalid row (or an external_id given twice) is "
            "reported by its index and nothing is written."
        ),
        request=BulkCustomersRequestSchema,
        responses={
            200: BulkCustomersOutputSerializer,
            400: OpenApiResponse(response={"oneOf": [ROW_ERRORS_SCHEMA, BAD_REQUEST_SCHEMA]}),
            409: OpenApiResponse(response=ERROR_SCHEMA, description="A concurrent request created some of them."),
            **error_responses(401, 403),
        },
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request: Request) -> Response:
        envelope = BulkCustomersInputSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        rows, errors = customer_rows_validate(envelope.validated_data["customers"])
        if errors:
            return _row_errors_response(errors)
        try:
            result = bulk.customers_upsert(business=request.user, rows=rows)
        except bulk.RowsInvalid as exc:
            return _row_errors_response(exc.errors)
        return Response(BulkCustomersOutputSerializer(result).data)

    @extend_schema(
        tags=["customers"],
        summary="Create a customer (optionally with a wallet pass)",
        description="Every field is optional; wallet_platform also issues a wallet pass on that platform.",
        request=CustomerCreateInputSerializer,
        responses={201: CustomerOutputSerializer, **error_responses(400, 401, 403)},
    )
    def create(self, request: Request) -> Response:
        serializer = CustomerCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(business=request.user, **serializer.validated_data)
        return self._output(customer, status.HTTP_201_CREATED)

    @extend_schema(
        tags=["customers"],
        summary="Change a customer's names, addresses, push token, consent or attributes",
        description=(
            "Only the given fields change; `attributes`, when given, replaces the whole object ({} removes them "
            "all). 404 for an unknown customer or another business's."
        ),
        request=CustomerUpdateInputSerializer,
        responses={200: CustomerOutputSerializer, **error_responses(400, 401, 403, 404)},
    )
    def partial_update(self, request: Request, customer_id: str) -> Response:
        customer = self._customer(customer_id)
        serializer = CustomerUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._output(services.customer_update(customer=customer, data=serializer.validated_data))

    @extend_schema(
        tags=["customers"],
        summary="The customer's wallet pass",
        description=(
            'Apple: the signed .pkpass (application/vnd.apple.pkpass). Google: {"save_url": '
            '"https://pay.google.com/gp/v/save/<signed JWT>"}. The newest pass unless `platform` picks one. '
            "404 when the customer has no pass; 503 when this server has no wallet certificates configured."
        ),
        parameters=[PassQuerySerializer],
        responses={
            (200, "application/vnd.apple.pkpass"): OpenApiTypes.BINARY,
            (200, "application/json"): SaveUrlSerializer,
            **error_responses(400, 401, 403, 404, 503),
        },
    )
    @action(detail=True, methods=["get"], url_path="pass")
    def wallet_pass(self, request: Request, customer_id: str) -> HttpResponse | Response:
        customer = self._customer(customer_id)
        query = PassQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        issued = customer_pass_response(customer=customer, platform=query.validated_data.get("platform"))
        if issued.data is not None:
            return Response(issued.data)
        response = HttpResponse(issued.content, content_type=issued.content_type)
        response["Content-Disposition"] = f'attachment; filename="{issued.wallet_pass.pass_id}.pkpass"'
        response["Last-Modified"] = http_date(issued.wallet_pass.updated_at.timestamp())
        return response

    @extend_schema(
        tags=["customers"],
        summary="Record a visit",
        description=(
            "Moves last_activity_at forward to occurred_at (default now); an older visit changes nothing. A visit "
            "that ends an inactivity spell within attribution_days of that spell's re-engagement is credited to it "
            "(the results: GET /api/auto-engagement/stats)."
        ),
        request=ActivityInputSerializer,
        responses={200: CustomerOutputSerializer, **error_responses(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def activity(self, request: Request, customer_id: str) -> Response:
        customer = self._customer(customer_id)
        serializer = ActivityInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        options: dict[str, Any] = serializer.validated_data
        return self._output(services.customer_record_activity(customer=customer, **options))


class VisitsView(BusinessSessionRequired, APIView):
    @extend_schema(
        tags=["customers"],
        summary="Record up to 10,000 visits",
        description=(
            "Each row names its customer by customer_id or external_id, with occurred_at (default now; not in the "
            "future). Recorded exactly as POST /api/customers/{customer_id}/activity one by one, so visits that end "
            "an inactivity spell are credited to its re-engagement the same way. All or nothing: rows naming no "
            "customer of this business, or otherwise invalid, are reported by index and nothing is recorded. "
            "`credited`: how many customers' last activity moved forward."
        ),
        request=VisitsRequestSchema,
        responses={
            200: VisitsOutputSerializer,
            400: OpenApiResponse(response={"oneOf": [ROW_ERRORS_SCHEMA, BAD_REQUEST_SCHEMA]}),
            **error_responses(401, 403),
        },
    )
    def post(self, request: Request) -> Response:
        envelope = VisitsInputSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        rows: list[bulk.VisitRow] = []
        errors: bulk.RowErrors = []
        for index, item in enumerate(envelope.validated_data["visits"]):
            row, row_errors = _visit_row(item)
            if row is None:
                errors.append({"index": index, "errors": row_errors})
            else:
                rows.append(row)
        if errors:
            return _row_errors_response(errors)
        try:
            result = bulk.visits_record(business=request.user, rows=rows)
        except bulk.RowsInvalid as exc:
            return _row_errors_response(exc.errors)
        return Response(VisitsOutputSerializer(result).data)
