"""The business API of this app: login and logout, customers and their visits. Views stay thin over
wallet.services and wallet.selectors; errors are turned into responses by the one exception handler."""

from typing import Any

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
from wallet import api_keys, selectors, services
from wallet.authentication import BusinessSessionRequired
from wallet.customer_pass import customer_pass_response
from wallet.models import ApiKey, BusinessSession, Customer, WalletPass
from wallet.throttling import LoginRateThrottle
from wallet.validation import (
    ATTRIBUTE_INTEGER_LIMIT,
    ATTRIBUTE_TEXT_MAX_LENGTH,
    MAX_ATTRIBUTES,
    attributes_errors,
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


class CustomerCreateInputSerializer(CustomerUpdateInputSerializer):
    read_only_names = CUSTOMER_READ_ONLY

    wallet_platform = serializers.ChoiceField(
        choices=WalletPass.Platform.choices,
        required=False,
        allow_null=True,
        help_text="Also issue a wallet pass on this platform.",
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
        parameters=[PageQuerySerializer],
        responses={200: CustomerOutputSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def list(self, request: Request) -> Response:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.customer_list(business=request.user))
        return self.get_paginated_response(CustomerOutputSerializer(page, many=True).data)

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
