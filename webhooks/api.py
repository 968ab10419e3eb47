"""The webhooks API: register, list and delete endpoints, read an endpoint's deliveries. Thin over
webhooks.services and webhooks.selectors; the URL rules are webhooks.addresses'."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from engagement_site.api import (
    PagePagination,
    PageQuerySerializer,
    RuleField,
    StrictCharField,
    StrictInputSerializer,
    error_responses,
)
from engagement_site.secure_ids import IdKind, is_valid_id
from wallet.authentication import BusinessSessionRequired
from webhooks import selectors, services
from webhooks.addresses import url_errors
from webhooks.events import EVENT_TYPES, events_errors
from webhooks.models import WebhookEndpoint

URL_MAX_LENGTH = 2000


def _validate_url(value: str) -> None:
    if errors := url_errors(value):
        raise serializers.ValidationError(errors)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": list(EVENT_TYPES)},
        "minItems": 1,
        "uniqueItems": True,
        "description": f"The events to receive: any of {', '.join(EVENT_TYPES)}.",
    }
)
class EventListField(RuleField):
    """A non-empty list of distinct known event types (webhooks.events.events_errors)."""


class WebhookInputSerializer(StrictInputSerializer):
    read_only_names = frozenset({"webhook_id", "secret", "created_at", "disabled_at"})

    url = StrictCharField(
        max_length=URL_MAX_LENGTH,
        validators=[_validate_url],
        help_text="An https URL whose host resolves to public addresses only.",
    )
    events = EventListField(rule=events_errors)


class WebhookOutputSerializer(serializers.Serializer):
    webhook_id = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    created_at = serializers.DateTimeField()
    disabled_at = serializers.DateTimeField(
        allow_null=True, help_text="Set when the endpoint answered 410 Gone: nothing more is sent to it."
    )


class WebhookCreatedSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(
        help_text='The signing secret ("whsec_" + base64): shown only in this answer. Verify deliveries with it.'
    )


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True, help_text="The endpoint's HTTP status; null: no answer.")
    duration_ms = serializers.IntegerField()
    error = serializers.CharField(help_text="Why the attempt failed (empty when delivered).")
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class DeliverySerializer(serializers.Serializer):
    event_id = serializers.CharField(help_text="The webhook-id header: the same on every attempt.")
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    status = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When the next attempt is due.")
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    payload = serializers.JSONField(help_text="The body sent: {type, timestamp, data}.")
    attempt_log = AttemptSerializer(many=True, source="attempt_log.all")


class WebhookViewSet(BusinessSessionRequired, viewsets.GenericViewSet):
    idempotent_posts = False  # the answer holds the signing secret, which is never shown again
    # The business's endpoints only: another business's is a 404, like an unknown one.

    lookup_field = "webhook_id"
    lookup_value_regex = "[^/]+"
    pagination_class = PagePagination
    serializer_class = WebhookOutputSerializer
    queryset = WebhookEndpoint.objects.none()

    def _endpoint(self, webhook_id: str) -> WebhookEndpoint:
        if not is_valid_id(webhook_id, IdKind.WEBHOOK):
            raise services.WebhookNotFound()
        return services.endpoint_get(business=self.request.user, webhook_id=webhook_id)

    @extend_schema(
        tags=["webhooks"],
        summary="Register a webhook endpoint",
        description=(
            "Events are delivered signed per the Standard Webhooks spec (webhook-id, webhook-timestamp, "
            "webhook-signature) with the secret in this answer, which is never shown again."
        ),
        request=WebhookInputSerializer,
        responses={201: WebhookCreatedSerializer, **error_responses(400, 401, 403)},
    )
    def create(self, request: Request) -> Response:
        serializer = WebhookInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(business=request.user, **serializer.validated_data)
        return Response(WebhookCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=["webhooks"],
        summary="List webhook endpoints, newest first",
        description="The secrets are never listed. A 404 means the page is past the last one.",
        parameters=[PageQuerySerializer],
        responses={200: WebhookOutputSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def list(self, request: Request) -> Response:
        _check_page_query(request)
        page = self.paginate_queryset(selectors.endpoint_list(business=request.user))
        return self.get_paginated_response(WebhookOutputSerializer(page, many=True).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it, including messages still waiting for a retry.",
        request=None,
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404)},
    )
    def destroy(self, request: Request, webhook_id: str) -> Response:
        services.endpoint_delete(endpoint=self._endpoint(webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        tags=["webhooks"],
        summary="An endpoint's deliveries, newest first",
        description="Each event sent to the endpoint: its status, its attempts (status code, duration, error) and "
        "when the next attempt is due.",
        parameters=[PageQuerySerializer],
        responses={200: DeliverySerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, webhook_id: str) -> Response:
        endpoint = self._endpoint(webhook_id)
        _check_page_query(request)
        page = self.paginate_queryset(selectors.delivery_list(endpoint=endpoint))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class PageOnlyQuerySerializer(PageQuerySerializer):
    pass


def _check_page_query(request: Request) -> None:
    """page and limit, and nothing else: an unknown parameter is a 400 naming it."""
    PageOnlyQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
