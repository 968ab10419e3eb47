"""The config and history API, thin over autoengagement.services and autoengagement.selectors.

The config rules come from autoengagement.validation, the same functions the model and admin use.
"""

from dataclasses import asdict
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from autoengagement import journeys, selectors, stats, validation
from autoengagement.history_csv import history_csv_lines
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.config import config_delete, config_upsert
from autoengagement.services.preview import config_preview
from autoengagement.templating import ALLOWED, BODY_MAX_LENGTH, HEADER_MAX_LENGTH
from engagement_site.api import (
    PagePagination,
    PageQuerySerializer,
    RuleField,
    StrictBooleanField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictQuerySerializer,
    error_responses,
)
from engagement_site.secure_ids import IdKind, is_valid_id
from engagement_site.validation import timezone_errors
from notifications.channels import Channel
from notifications.models import NotificationLog
from wallet.authentication import BusinessSessionRequired

_PLACEHOLDER_HELP = f"Placeholders: {ALLOWED}, and nothing else."


def _text(limit: int, **kwargs: Any) -> serializers.CharField:
    return serializers.CharField(max_length=limit, **{"help_text": _PLACEHOLDER_HELP, **kwargs})


class MessageTemplateSerializer(serializers.Serializer):
    header = _text(HEADER_MAX_LENGTH)
    body = _text(BODY_MAX_LENGTH)


# The shape of `steps`, for the schema; the rules are journeys.steps_errors (the serializers below parse nothing).


class EmailContentSerializer(serializers.Serializer):
    subject = _text(journeys.SUBJECT_MAX_LENGTH)
    text = _text(BODY_MAX_LENGTH, help_text=f"The plain-text part. {_PLACEHOLDER_HELP}")
    html = _text(
        journeys.HTML_MAX_LENGTH,
        required=False,
        help_text=f"An HTML part of its own (customer values are HTML-escaped). {_PLACEHOLDER_HELP}",
    )


class SmsContentSerializer(serializers.Serializer):
    text = _text(BODY_MAX_LENGTH)


class PushContentSerializer(serializers.Serializer):
    title = _text(HEADER_MAX_LENGTH)
    body = _text(BODY_MAX_LENGTH)


class WalletContentSerializer(serializers.Serializer):
    header = _text(HEADER_MAX_LENGTH)
    body = _text(BODY_MAX_LENGTH)


class ChannelContentSerializer(serializers.Serializer):
    message = MessageTemplateSerializer(help_text="The content of every channel without an object of its own.")
    email = EmailContentSerializer(required=False)
    sms = SmsContentSerializer(required=False)
    push = PushContentSerializer(required=False)
    wallet = WalletContentSerializer(required=False)


class StepVariantSerializer(ChannelContentSerializer):
    name = serializers.RegexField(
        journeys.VARIANT_NAME_PATTERN.pattern,
        max_length=journeys.VARIANT_NAME_MAX_LENGTH,
        help_text="Unique in the step.",
    )
    weight = serializers.IntegerField(min_value=1, max_value=99, help_text="The step's weights add up to 100.")
    message = MessageTemplateSerializer(required=False, help_text="Replaces the step's message.")

    class Meta:
        ref_name = "StepVariant"


class StepSerializer(ChannelContentSerializer):
    after_days = serializers.IntegerField(
        min_value=journeys.AFTER_DAYS_RANGE[0],
        max_value=journeys.AFTER_DAYS_RANGE[1],
        help_text="Days of inactivity before this step; greater than the previous step's.",
    )
    variants = serializers.ListField(
        child=StepVariantSerializer(),
        min_length=journeys.VARIANTS_RANGE[0],
        max_length=journeys.VARIANTS_RANGE[1],
        required=False,
        help_text="Each replaces the step's content objects it names; a customer gets one, by a deterministic draw.",
    )

    class Meta:
        ref_name = "Step"


STEPS_SCHEMA = serializers.ListField(child=StepSerializer(), min_length=1, max_length=journeys.MAX_STEPS)


CHANNELS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": Channel.values},
    "minItems": 1,
    "uniqueItems": True,
}
RUN_TIME_SCHEMA = {"type": "string", "pattern": validation.RUN_TIME_PATTERN.pattern, "example": "09:00"}
TIMEZONE_SCHEMA = {"type": "string", "description": "An IANA time zone name.", "example": "Europe/Paris"}


@extend_schema_field(MessageTemplateSerializer)
class MessageTemplateField(RuleField):
    pass


@extend_schema_field(STEPS_SCHEMA)
class StepsField(RuleField):
    pass


@extend_schema_field(CHANNELS_SCHEMA)
class ChannelsField(RuleField):
    pass


@extend_schema_field(RUN_TIME_SCHEMA)
class RunTimeField(RuleField):
    pass


@extend_schema_field(TIMEZONE_SCHEMA)
class TimezoneField(RuleField):
    pass


def _int_field(bounds: tuple[int, int], help_text: str, **kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=bounds[0], max_value=bounds[1], help_text=help_text, **kwargs)


CONFIG_READ_ONLY = frozenset(
    {
        "config_id",
        "business_id",
        "last_run_at",
        "last_run_status",
        "last_run_error",
        "total_customers_notified",
        "created_at",
        "updated_at",
    }
)


class ConfigInputSerializer(StrictInputSerializer):
    """Every field is optional: on create omitted fields take their defaults, on update they stay unchanged."""

    # context["config"] is the existing config (or None): max_inactivity_days is checked against the
    # inactivity_days the update leaves in place.

    read_only_names = CONFIG_READ_ONLY

    enabled = StrictBooleanField(required=False)
    inactivity_days = _int_field(validation.INACTIVITY_DAYS_RANGE, "Days without a visit before a message.")
    message_template = MessageTemplateField(rule=validation.message_template_errors, required=False)
    steps = StepsField(
        rule=journeys.steps_errors,
        required=False,
        allow_null=True,
        help_text=(
            "A journey of 1 to 5 steps, or null for one message (message_template) sent up to max_reminders times, "
            "inactivity_days apart. While steps are set they decide inactivity_days, message_template and "
            "max_reminders."
        ),
    )
    channels = ChannelsField(rule=validation.channels_errors, required=False)
    run_time = RunTimeField(rule=validation.run_time_errors, required=False)
    timezone = TimezoneField(rule=timezone_errors, required=False)
    max_reminders = _int_field(validation.MAX_REMINDERS_RANGE, "Messages per inactivity spell.")
    max_inactivity_days = StrictIntegerField(
        required=False,
        allow_null=True,
        max_value=validation.MAX_INACTIVITY_DAYS_LIMIT,
        help_text="null, or more than inactivity_days: customers inactive longer are left alone.",
    )
    holdout_percent = _int_field(validation.HOLDOUT_PERCENT_RANGE, "Share of the audience kept as a control group.")
    attribution_days = _int_field(validation.ATTRIBUTION_DAYS_RANGE, "Days after a message a visit counts for it.")

    def cross_field_errors(self, attrs: dict[str, Any], errors: dict[str, Any]) -> dict[str, list[str]]:
        config: AutoEngagementConfig | None = self.context.get("config")
        stored_steps = config.steps if config else None
        mirrored = validation.mirrored_field_errors(attrs, stored_steps=stored_steps)
        return {**self._limit_errors(attrs, errors, config), **mirrored}

    @staticmethod
    def _limit_errors(
        attrs: dict[str, Any], errors: dict[str, Any], config: AutoEngagementConfig | None
    ) -> dict[str, list[str]]:
        """max_inactivity_days against the inactivity_days in force after the update: the first step's after_days
        while steps are set, else the given, stored or default inactivity_days."""
        if errors.keys() & {"inactivity_days", "max_inactivity_days", "steps"}:
            return {}
        steps = attrs.get("steps", config.steps if config else None)
        default_inactivity = AutoEngagementConfig._meta.get_field("inactivity_days").default
        if steps:
            inactivity_days = steps[0]["after_days"]
        else:
            inactivity_days = attrs.get("inactivity_days", config.inactivity_days if config else default_inactivity)
        if "max_inactivity_days" in attrs:
            messages = validation.max_inactivity_days_errors(attrs["max_inactivity_days"], inactivity_days)
            return {"max_inactivity_days": messages} if messages else {}
        max_days = config.max_inactivity_days if config else None
        if not validation.max_inactivity_days_errors(max_days, inactivity_days):
            return {}
        limit = f"less than max_inactivity_days ({max_days}); change or clear max_inactivity_days too."
        if steps:
            return {"steps": [f"step 1: after_days must be {limit}"]}
        return {"inactivity_days": [f"Must be {limit}"]}


class ConfigOutputSerializer(serializers.ModelSerializer):
    business_id = serializers.CharField(source="business.business_id")
    message_template = MessageTemplateSerializer()
    # Present while the config has a journey, absent while it has none (steps null): the config's JSON keeps the key
    # set it had before journeys existed. Not read-only, so that the schema does not list it as always present.
    steps = StepsField(
        rule=journeys.steps_errors,
        required=False,
        help_text="The journey; absent while the config has none (one message, max_reminders times).",
    )
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices))

    class Meta:
        model = AutoEngagementConfig
        fields = (
            "config_id",
            "business_id",
            "enabled",
            "inactivity_days",
            "message_template",
            "steps",
            "channels",
            "run_time",
            "timezone",
            "max_reminders",
            "max_inactivity_days",
            "holdout_percent",
            "attribution_days",
            "last_run_at",
            "last_run_status",
            "last_run_error",
            "total_customers_notified",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def to_representation(self, instance: AutoEngagementConfig) -> dict[str, Any]:
        data = super().to_representation(instance)
        if data.get("steps") is None:
            data.pop("steps", None)
        return data


class ConfigViewSet(BusinessSessionRequired, viewsets.ViewSet):
    # The business's one config: no ID in the URL, the session says whose it is.

    @extend_schema(
        tags=["auto-engagement"],
        summary="The business's config",
        description="404 while the business has none.",
        responses={200: ConfigOutputSerializer, **error_responses(401, 403, 404)},
    )
    def retrieve(self, request: Request) -> Response:
        return Response(ConfigOutputSerializer(selectors.config_get(business=request.user)).data)

    @extend_schema(
        tags=["auto-engagement"],
        summary="Create or update the config",
        description=(
            "Creates the config (201; omitted fields take their defaults) or updates it (200; only the given "
            "fields change). Every error is reported at once; on any error nothing is written."
        ),
        request=ConfigInputSerializer,
        responses={
            201: OpenApiResponse(ConfigOutputSerializer, description="Created."),
            200: OpenApiResponse(ConfigOutputSerializer, description="Updated."),
            **error_responses(400, 401, 403),
        },
    )
    def upsert(self, request: Request) -> Response:
        existing = selectors.config_find(business=request.user)
        serializer = ConfigInputSerializer(data=request.data, context={"config": existing})
        serializer.is_valid(raise_exception=True)
        config, created = config_upsert(business=request.user, data=serializer.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ConfigOutputSerializer(config).data, status=code)

    @extend_schema(
        tags=["auto-engagement"],
        summary="Delete the config",
        description="The notification history stays.",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404)},
    )
    def destroy(self, request: Request) -> Response:
        config_delete(business=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreviewSampleSerializer(serializers.Serializer):
    customer_id = serializers.CharField(help_text="Empty when nobody is inactive (an example is rendered instead).")
    header = serializers.CharField()
    body = serializers.CharField()


class PreviewWarningSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(
        choices=Channel.choices, allow_null=True, help_text="The channel it concerns; null when it concerns them all."
    )
    step = serializers.IntegerField(
        allow_null=True, help_text="The journey's step it concerns (1-based); null without steps, or for all steps."
    )
    variant = serializers.CharField(
        allow_blank=True, help_text="The step's variant it concerns; empty when it concerns the step as a whole."
    )
    message = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    audience = serializers.IntegerField(help_text="Customers a run would reach now (holdout included).")
    reachable = serializers.DictField(
        child=serializers.IntegerField(), help_text="Per configured channel: audience members it can reach."
    )
    left_out_by_max_inactivity_days = serializers.IntegerField(
        help_text="Customers inactive for longer than max_inactivity_days, left alone."
    )
    sample = PreviewSampleSerializer()
    warnings = PreviewWarningSerializer(many=True)
    local_date = serializers.DateField(help_text="Today in the config's time zone.")
    steps = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            'The audience by the step a run would send each customer now, keyed by the step\'s number ("1", '
            '"2", ...), every step of the journey listed; a config without steps has one step, "1".'
        ),
    )


class PreviewViewSet(BusinessSessionRequired, viewsets.ViewSet):
    @extend_schema(
        tags=["auto-engagement"],
        summary="Preview the audience and the message (sends nothing)",
        description=(
            "The audience size now and reach per channel, the message rendered for a sample customer, and "
            "warnings, per channel and (with steps) per step and variant: text longer than a lock screen (about 90 "
            "characters) or one SMS segment shows, a step's content for a channel the config does not use, a step "
            "waiting longer than max_inactivity_days, an attribute the templates use that no customer has. "
            "Writes and sends nothing. 404 while the business has no config."
        ),
        request=None,
        responses={200: PreviewSerializer, **error_responses(401, 403, 404)},
    )
    def create(self, request: Request) -> Response:
        config = selectors.config_get(business=request.user)
        return Response(PreviewSerializer(asdict(config_preview(config=config, now=timezone.now()))).data)


class DateRangeQuerySerializer(serializers.Serializer):
    """`date_from` / `date_to`: inclusive ISO dates in the business's time zone, the first not after the second."""

    date_from = serializers.DateField(
        required=False, input_formats=["iso-8601"], help_text="First local date (YYYY-MM-DD), inclusive."
    )
    date_to = serializers.DateField(
        required=False, input_formats=["iso-8601"], help_text="Last local date (YYYY-MM-DD), inclusive."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "date_from" in attrs and "date_to" in attrs and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_to": ["Must be on or after date_from."]})
        return attrs


class HistoryFilterSerializer(StrictQuerySerializer, DateRangeQuerySerializer):
    """The history's filters (the JSON pages and the CSV export): a date range, a customer, a channel, a status."""

    customer_id = serializers.CharField(required=False, help_text="One customer's notifications (cust_...).")
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    status = serializers.ChoiceField(choices=NotificationLog.Status.choices, required=False)

    def validate_customer_id(self, value: str) -> str:
        if not is_valid_id(value, IdKind.CUSTOMER):
            raise serializers.ValidationError("Must be a customer id (cust_ and 20 letters or digits).")
        return value


class HistoryQuerySerializer(HistoryFilterSerializer, PageQuerySerializer):
    pass


class HistoryItemSerializer(serializers.Serializer):
    notification_id = serializers.CharField()
    customer_id = serializers.CharField(source="public_customer_id")
    channel = serializers.ChoiceField(choices=Channel.choices)
    status = serializers.ChoiceField(choices=NotificationLog.Status.choices)
    header = serializers.CharField()
    body = serializers.CharField()
    error = serializers.CharField(help_text="Why it failed or was skipped; empty otherwise.")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(
        allow_null=True,
        help_text=(
            "When a receipt said the message arrived: wallet, the device fetched the updated pass; SMS, Twilio's "
            "`delivered` status; email, the email service's delivery event. Null until then, or when the channel "
            "reports no deliveries."
        ),
    )
    delivery_error = serializers.CharField(
        help_text=(
            'Why a receipt said the message did not arrive (its code and message, e.g. "Twilio 30003: Unreachable '
            'destination handset", "bounced: ..."); empty otherwise. A customer whose every sent message has one '
            "does not count as reached."
        )
    )
    step = serializers.IntegerField(help_text="The journey step (1-based) the message came from; 1 without steps.")
    variant = serializers.CharField(help_text="The step's variant the customer was assigned; empty without variants.")


class HistoryViewSet(BusinessSessionRequired, viewsets.GenericViewSet):
    pagination_class = PagePagination
    serializer_class = HistoryItemSerializer

    @extend_schema(
        tags=["auto-engagement"],
        summary="Auto re-engagement notifications, newest first",
        description=(
            "date_from and date_to are inclusive dates in the business's time zone. "
            "A 404 means the page is past the last one."
        ),
        parameters=[HistoryQuerySerializer],
        responses={200: HistoryItemSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def list(self, request: Request) -> Response:
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {name: query.validated_data[name] for name in HISTORY_FILTERS if name in query.validated_data}
        page = self.paginate_queryset(selectors.notification_history(business=request.user, **filters))
        return self.get_paginated_response(HistoryItemSerializer(page, many=True).data)


HISTORY_FILTERS = ("date_from", "date_to", "customer_id", "channel", "status")


class HistoryCsvView(BusinessSessionRequired, APIView):
    """The history as CSV, streamed: the rows are read in chunks and written as they come, so a year of history
    takes the memory of one chunk."""

    @extend_schema(
        tags=["auto-engagement"],
        summary="Export the history as CSV",
        description=(
            "The history items matching the filters (the same as the history's, without paging), newest first, "
            "as text/csv with a header row and the history item's fields as columns. Cells that a spreadsheet "
            "would read as a formula (starting with =, +, -, @, a tab or a carriage return) are prefixed with a "
            "single quote."
        ),
        parameters=[HistoryFilterSerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(description="The CSV file."),
            **error_responses(400, 401, 403),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = HistoryFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.notification_history(business=request.user, **query.validated_data)
        response = StreamingHttpResponse(history_csv_lines(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="history-{request.user.business_id}.csv"'
        return response


class StatsQuerySerializer(StrictQuerySerializer, DateRangeQuerySerializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "date_from" in attrs and "date_to" in attrs:
            days = (attrs["date_to"] - attrs["date_from"]).days + 1
            if days > stats.MAX_DAYS:
                raise serializers.ValidationError({"date_to": [f"The range may span at most {stats.MAX_DAYS} days."]})
        return attrs


class GroupCountsSerializer(serializers.Serializer):
    reached = serializers.IntegerField()
    holdout = serializers.IntegerField()


class GroupRatesSerializer(serializers.Serializer):
    reached = serializers.FloatField(allow_null=True, help_text="Fraction 0..1; null while the group is empty.")
    holdout = serializers.FloatField(allow_null=True, help_text="Fraction 0..1; null while the group is empty.")


class UpliftSerializer(serializers.Serializer):
    estimate = serializers.FloatField(help_text="Reached rate minus holdout rate.")
    ci95_low = serializers.FloatField()
    ci95_high = serializers.FloatField()


class DailyPointSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="Local date of the re-engagements.")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    reactivated = serializers.IntegerField(help_text="Customers reached that day who came back since.")


class VariantResultSerializer(serializers.Serializer):
    name = serializers.CharField(help_text='The variant\'s name; "" for a step without variants.')
    reached = serializers.IntegerField(help_text="Distinct customers this step's variant reached (a channel sent).")
    reactivated = serializers.IntegerField(help_text="Those of them whose re-engagement by it was credited a visit.")
    rate = serializers.FloatField(allow_null=True, help_text="Fraction 0..1; null while nobody was reached.")
    uplift = UpliftSerializer(
        allow_null=True, help_text="This variant's rate minus the holdout group's; null while either is empty."
    )
    vs_first = UpliftSerializer(
        allow_null=True,
        help_text="This variant's rate minus its step's first variant's; null for the first, or while either is empty.",
    )


class StepResultSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="The journey step, 1-based.")
    variants = VariantResultSerializer(many=True, help_text="In the config's order, else by name.")


class StatsSerializer(serializers.Serializer):
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    timezone = serializers.CharField(help_text="The zone the dates are in (the business's).")
    channels = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="Per channel, log rows per status.",
    )
    delivered = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            "Per channel, rows a delivery receipt marked delivered (delivered_at set): wallet, the device fetched the "
            "pass (listed whenever the window has wallet rows); SMS and email, Twilio's and the email service's "
            "receipts (listed once any was reported)."
        ),
    )
    reached = serializers.IntegerField(
        help_text="Distinct customers with at least one channel sent and not reported undelivered by a receipt."
    )
    reached_definition = serializers.CharField(help_text="What `reached` counts, in words.")
    holdout = serializers.IntegerField(help_text="Distinct customers held out (sent nothing).")
    reactivated = GroupCountsSerializer(help_text="Customers of each group who came back within attribution_days.")
    reactivation_rate = GroupRatesSerializer()
    uplift = UpliftSerializer(
        allow_null=True,
        help_text="Newcombe hybrid score 95% interval for the difference; null while either group is empty.",
    )
    daily = DailyPointSerializer(many=True)
    steps = StepResultSerializer(
        many=True,
        required=False,
        help_text="Per journey step and variant. Present only when the config has steps, or a customer of the window "
        "was reached by a step after the first or a named variant (every business: when any config has steps).",
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if data.get("steps") is None:
            data.pop("steps", None)  # the seed's shape when there are no journeys
        return data


class StatsViewSet(BusinessSessionRequired, viewsets.ViewSet):
    @extend_schema(
        tags=["auto-engagement"],
        summary="Results: outcomes, reactivation, uplift over the holdout group",
        description=(
            "Re-engagements made between date_from and date_to (inclusive local dates in the business's time "
            "zone; default the last 30 days; at most 366 days): rows per channel and status, reached and holdout "
            "customers, how many of each came back within attribution_days, the two rates, the uplift with its "
            "95% interval, and a daily series; with journeys, the same per step and variant (`steps`), each variant "
            "compared with the holdout group and with its step's first variant."
        ),
        parameters=[StatsQuerySerializer],
        responses={200: StatsSerializer, **error_responses(400, 401, 403)},
    )
    def retrieve(self, request: Request) -> Response:
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = stats.engagement_stats(
            business=request.user,
            date_from=query.validated_data.get("date_from"),
            date_to=query.validated_data.get("date_to"),
        )
        return Response(StatsSerializer(asdict(result)).data)
