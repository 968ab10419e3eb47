"""The config change form of the admin: a journey's steps and variants as nested formsets, not JSON text boxes.

`ConfigAdminForm` owns the steps formset (prefix "steps"); each step form owns its variants formset (prefix
"steps-N-variants"). Cleaning the config form assembles the formsets into the `steps` JSON, checks it with
journeys.steps_errors (the rules the API and the model use) and puts each error on the form and field it names
("step 2, variant 1, email: 'subject' ..." on the subject of step 2's first variant), so nothing is saved while any
remains. With steps, the seed fields a journey sets (journeys.mirrored_fields) are read-only and follow it.
"""

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.formsets import ORDERING_FIELD_NAME
from django.utils.functional import cached_property

from autoengagement import journeys
from autoengagement.models import AutoEngagementConfig, default_channels, default_message_template
from autoengagement.templating import ALLOWED, BODY_MAX_LENGTH, HEADER_MAX_LENGTH
from engagement_site.admin_mixins import TimeZoneInput
from notifications.channels import Channel

# The content objects a step or variant may have, in the order the form shows them, with their labels.
CONTENT_LABELS = {
    "message": "Message",
    Channel.WALLET: "Wallet pass",
    Channel.EMAIL: "Email",
    Channel.SMS: "SMS",
    Channel.PUSH: "Push",
}
MULTILINE_KEYS = {"body", "text", "html"}
PLACEHOLDER_HELP = f"Placeholders: {ALLOWED}."
JOURNEY_ERROR = "The journey has errors: see the Journey section."

# The change form's "Preview changes" button: the form is checked and the preview shows its values; nothing is saved.
PREVIEW_BUTTON = "_preview"

_LOCATION = re.compile(r"^step (\d+)(?:, variant (\d+))?(?:, ([a-z]+))?: (.*)$", re.DOTALL)
_KEY = re.compile(r"^'([a-z]+)'")


class TextField(forms.CharField):
    """A template's text: browsers send a textarea's line breaks as CRLF; messages keep plain newlines, as the API's."""

    def to_python(self, value: Any) -> str:
        return super().to_python(value).replace("\r\n", "\n").replace("\r", "\n")


def content_field_name(content: str, key: str) -> str:
    return f"{content}_{key}"


def _content_widget(key: str) -> forms.Widget:
    if key in MULTILINE_KEYS:
        return forms.Textarea(attrs={"rows": 6 if key == "html" else 2, "cols": 60})
    return forms.TextInput(attrs={"class": "vTextField"})


def _content_fields(*, message_required: bool) -> dict[str, forms.Field]:
    """A field per key of each content object, its length limit journeys'; only a step's message is required."""
    return {
        content_field_name(content, key): TextField(
            label=f"{CONTENT_LABELS[content]} {'HTML' if key == 'html' else key}",
            max_length=limit,
            required=message_required and content == "message",
            widget=_content_widget(key),
        )
        for content in CONTENT_LABELS
        for key, (limit, _) in journeys.CONTENT_FIELDS[content].items()
    }


def _content_initial(owner: dict[str, Any]) -> dict[str, str]:
    return {
        content_field_name(content, key): value
        for content in CONTENT_LABELS
        if isinstance(owner.get(content), dict)
        for key, value in owner[content].items()
    }


def _content_objects(cleaned: dict[str, Any], *, with_message: bool) -> dict[str, dict[str, str]]:
    """The content objects the filled fields make: an object for each content with a field filled (the message
    always for a step), holding the filled keys only, so a missing required key is steps_errors' to name."""
    objects = {}
    for content in CONTENT_LABELS:
        filled = {
            key: cleaned[name]
            for key in journeys.CONTENT_FIELDS[content]
            if (name := content_field_name(content, key)) in cleaned and cleaned[name]
        }
        if filled or (with_message and content == "message"):
            objects[str(content)] = filled
    return objects


class ContentForm(forms.Form):
    """A form whose fields are the content objects' keys (message_header, email_subject, ...)."""

    message_required = False
    required_css_class = "required"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in _content_fields(message_required=self.message_required).items():
            self.fields[name] = field

    def bound_contents(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(content, its label, its bound fields) in display order, for the template."""
        return [
            (str(content), label, [self[content_field_name(content, key)] for key in journeys.CONTENT_FIELDS[content]])
            for content, label in CONTENT_LABELS.items()
        ]

    def channel_contents(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        return [entry for entry in self.bound_contents() if entry[0] != "message"]

    def message_fields(self) -> list[forms.BoundField]:
        return self.bound_contents()[0][2]

    def has_channel_content(self) -> bool:
        """Whether any per-channel field has a value or an error (the template opens its section then)."""
        return _any_filled(self.channel_contents())

    def has_content(self) -> bool:
        return _any_filled(self.bound_contents())


def _any_filled(contents: list[tuple[str, str, list[forms.BoundField]]]) -> bool:
    return any(field.value() or field.errors for _, _, fields in contents for field in fields)


class VariantForm(ContentForm):
    name = forms.CharField(
        max_length=journeys.VARIANT_NAME_MAX_LENGTH,
        widget=forms.TextInput(attrs={"size": 20}),
        help_text="Unique in the step; letters, digits, spaces, '_', '.' or '-'.",
    )
    weight = forms.IntegerField(
        min_value=1, max_value=99, help_text="Share of the step's customers, in percent (sum 100)."
    )

    def as_json(self) -> dict[str, Any]:
        variant: dict[str, Any] = {"name": self.cleaned_data.get("name"), "weight": self.cleaned_data.get("weight")}
        variant.update(_content_objects(self.cleaned_data, with_message=False))
        return variant


class VariantFormSet(forms.BaseFormSet):
    """A step's variants. Its blank form's prefix uses "__variant__" (not "__prefix__"), so a blank step form,
    itself prefixed "steps-__prefix__", can hold a blank variant form that the page's script numbers apart."""

    @property
    def empty_form(self) -> forms.Form:
        form = self.form(
            auto_id=self.auto_id,
            prefix=self.add_prefix("__variant__"),
            empty_permitted=True,
            use_required_attribute=False,
            renderer=self.form_renderer,
            **self.get_form_kwargs(None),
        )
        self.add_fields(form, None)
        return form

    def kept_forms(self) -> list[VariantForm]:
        """The variants to save, in page order: the existing ones and the added ones filled in, unless removed."""
        return [
            form
            for index, form in enumerate(self.forms)
            if (index < self.initial_form_count() or form.has_changed()) and not self._should_delete_form(form)
        ]


VariantFormSetFactory = forms.formset_factory(
    VariantForm,
    formset=VariantFormSet,
    extra=0,
    max_num=journeys.VARIANTS_RANGE[1],
    validate_max=True,
    can_delete=True,
)


class StepForm(ContentForm):
    message_required = True

    after_days = forms.IntegerField(
        min_value=journeys.AFTER_DAYS_RANGE[0],
        max_value=journeys.AFTER_DAYS_RANGE[1],
        help_text="Days of inactivity before this step is sent; greater than the previous step's.",
    )

    def __init__(self, *args: Any, variants_initial: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variants = VariantFormSetFactory(
            data=self.data if self.is_bound else None,
            prefix=f"{self.prefix}-variants",
            initial=variants_initial,
        )

    def has_changed(self) -> bool:
        """Whether anything was typed in the step or its variants (a blank step the buttons only renumbered has
        not changed, so it is left out, as a blank added form is)."""
        return any(name != ORDERING_FIELD_NAME for name in self.changed_data) or self.variants.has_changed()

    def full_clean(self) -> None:
        super().full_clean()
        # The variants' own errors keep the step (and so the formset and the config form) invalid.
        checked = self.is_bound and not (self.empty_permitted and not self.has_changed())
        if checked and not self.variants.is_valid() and not self.errors:
            self.add_error(None, "Correct the variants' errors below.")

    def as_json(self) -> dict[str, Any]:
        step: dict[str, Any] = {"after_days": self.cleaned_data.get("after_days")}
        step.update(_content_objects(self.cleaned_data, with_message=True))
        if variants := self.variants.kept_forms():
            step["variants"] = [variant.as_json() for variant in variants]
        return step


class StepFormSet(forms.BaseFormSet):
    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        kwargs = super().get_form_kwargs(index)
        if index is not None and index < len(self.initial or ()):
            kwargs["variants_initial"] = self.initial[index].get("_variants")
        return kwargs

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        # Steps are moved with the page's buttons, which renumber this field; without them, page order stays.
        form.fields[ORDERING_FIELD_NAME].widget = forms.HiddenInput(attrs={"class": "journey-order"})
        form.fields["DELETE"].label = "Remove this step"

    def kept_forms(self) -> list[StepForm]:
        """The steps to save, in their order: the existing ones and the added ones filled in, unless removed
        (formset.ordered_forms, which needs a valid formset)."""
        return self.ordered_forms

    def as_json(self) -> list[dict[str, Any]] | None:
        """The `steps` the valid formset describes: null without steps."""
        return [form.as_json() for form in self.kept_forms()] or None


StepFormSetFactory = forms.formset_factory(
    StepForm,
    formset=StepFormSet,
    extra=0,
    max_num=journeys.MAX_STEPS,
    validate_max=True,
    can_delete=True,
    can_order=True,
)


def steps_initial(steps: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The formsets' initial data for a config's steps (the variants' under "_variants", for their formset)."""
    initial = []
    for step in steps or []:
        variants = [
            {"name": variant.get("name"), "weight": variant.get("weight"), **_content_initial(variant)}
            for variant in step.get("variants") or []
        ]
        initial.append({"after_days": step.get("after_days"), **_content_initial(step), "_variants": variants})
    return initial


def route_steps_errors(steps_formset: StepFormSet, errors: list[str]) -> list[str]:
    """Put each journeys.steps_errors error on the form and field it names; the ones naming no form are returned.

    "step N" is the N-th kept step form, "variant M" the M-th kept variant form of that step; "email: 'subject'"
    is the email_subject field, a leading after_days, name or weight that field; an error on the step's variants
    as a whole (their count, names, weights) goes on the step form itself, shown by its variants.
    """
    unplaced = []
    steps = steps_formset.kept_forms()
    for error in errors:
        match = _LOCATION.match(error)
        form: forms.Form | None = None
        if match:
            step_number, variant_number, content, detail = match.groups()
            form = _nth(steps, int(step_number))
            if form is not None and variant_number:
                form = _nth(form.variants.kept_forms(), int(variant_number))
        if form is None:
            unplaced.append(error)
            continue
        field = _field_of(form, content, detail)
        if field is None:  # a sentence of its own above the step's or variant's fields
            detail = f"{content}: {detail}" if content else detail[:1].upper() + detail[1:]
        form.add_error(field, detail)
    return unplaced


def _nth(forms_: list[Any], number: int) -> Any:
    return forms_[number - 1] if 1 <= number <= len(forms_) else None


def _field_of(form: forms.Form, content: str | None, detail: str) -> str | None:
    if content:
        key = _KEY.match(detail)
        name = content_field_name(content, key.group(1)) if key else None
    else:
        name = detail.split(" ", 1)[0]
    return name if name in form.fields else None


class MessageTemplateWidget(forms.MultiWidget):
    def __init__(self, attrs: dict[str, str] | None = None) -> None:
        super().__init__(
            {"header": forms.TextInput(attrs={"class": "vTextField"}), "body": forms.Textarea(attrs={"rows": 3})},
            attrs,
        )

    def decompress(self, value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [value.get("header"), value.get("body")]
        return [None, None]


class MessageTemplateField(forms.MultiValueField):
    """The seed's message_template {header, body} as two boxes; its rules are the model's (validation.py)."""

    widget = MessageTemplateWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (TextField(max_length=HEADER_MAX_LENGTH), TextField(max_length=BODY_MAX_LENGTH))
        super().__init__(fields, require_all_fields=True, **kwargs)

    def clean(self, value: Any) -> Any:
        if isinstance(value, dict):  # a disabled field cleans its initial value, the stored object
            value = self.widget.decompress(value)
        return super().clean(value)

    def compress(self, data_list: list[str]) -> dict[str, str]:
        return {"header": data_list[0], "body": data_list[1]} if data_list else {}


class ConfigAdminForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=default_channels,  # a new config's (a declared field does not take the model field's default)
        help_text="Each reachable customer gets the message on every channel ticked here.",
    )
    message_template = MessageTemplateField(
        label="Message (header, body)", initial=default_message_template, help_text=PLACEHOLDER_HELP
    )

    class Meta:
        model = AutoEngagementConfig
        fields = (  # the admin asks for its fieldsets' editable fields; these are all of them
            "business",
            "enabled",
            "inactivity_days",
            "max_reminders",
            "max_inactivity_days",
            "message_template",
            "channels",
            "run_time",
            "timezone",
            "holdout_percent",
            "attribution_days",
        )
        widgets = {"timezone": TimeZoneInput}

    class Media:
        css = {"all": ["autoengagement/journey.css"]}
        js = ["autoengagement/journey.js"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial_steps = self.instance.steps
        self.previewed = False
        if self.instance._state.adding and "timezone" in self.fields:
            self.fields["timezone"].required = False
            self.fields["timezone"].help_text = "Leave blank for the business's time zone."
        self.journey = StepFormSetFactory(
            data=self.data if self.is_bound else None, prefix="steps", initial=steps_initial(self.instance.steps)
        )
        if self.instance.steps:
            for name, source in (
                ("inactivity_days", "the first step's after_days"),
                ("max_reminders", "the number of steps"),
                ("message_template", "the first step's message"),
            ):
                if name in self.fields:
                    self.fields[name].disabled = True
                    self.fields[name].help_text = f"Set by the journey: {source}."

    @cached_property
    def changed_data(self) -> list[str]:
        """The form's fields, and "steps" when a valid journey differs from the stored one (the change message)."""
        changed = list(super().changed_data)
        if hasattr(self, "cleaned_data") and self.instance.steps != self.initial_steps:
            changed.append("steps")
        return changed

    def is_valid(self) -> bool:
        """False, with no error, when the form is valid but was sent by "Preview changes": the admin then shows the
        page again with the values typed (and `previewed` set, for the preview) instead of saving."""
        valid = super().is_valid()
        self.previewed = valid and PREVIEW_BUTTON in self.data
        return valid and not self.previewed

    def config_data(self) -> dict[str, Any]:
        """The config's fields as services.config.config_upsert takes them: the journey's mirrored fields are left
        to the service when the form has steps (it writes them from the journey)."""
        steps = self.instance.steps
        editable = [name for name in self.Meta.fields if name != "business" and name in self.fields]
        data = {name: self.cleaned_data[name] for name in editable}
        if steps:
            data = {name: value for name, value in data.items() if name not in journeys.mirrored_fields(steps)}
        return {**data, "steps": steps}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance._state.adding and not cleaned.get("timezone") and cleaned.get("business"):
            cleaned["timezone"] = cleaned["business"].timezone  # as config_upsert gives a new config
        if not self.journey.is_valid():
            raise ValidationError(JOURNEY_ERROR)
        steps = self.journey.as_json()
        errors = journeys.steps_errors(steps)
        if errors:
            unplaced = route_steps_errors(self.journey, errors)
            raise ValidationError([JOURNEY_ERROR, *unplaced])
        self.instance.steps = steps
        if steps:
            # The seed fields follow the journey (set here so the model's rules, max_inactivity_days', see them).
            cleaned.update(
                {name: value for name, value in journeys.mirrored_fields(steps).items() if name in self.fields}
            )
        return cleaned
