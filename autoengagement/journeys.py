"""Journeys: a config's steps, each with its content per channel and its variants (docs/journeys.md).

A config's `steps` is null (one message, `message_template`, repeated up to `max_reminders` times: a one-step journey)
or a list of 1..5 steps. A step has `after_days` (strictly increasing), a default `message` {header, body}, optional
per-channel content (`email` {subject, text, html?}, `sms` {text}, `push` {title, body}, `wallet` {header, body}) and
optional `variants` (2..4 of {name, weight, and any of message/email/sms/push/wallet}). A variant replaces the
step's objects it names; a channel without its own object sends the message.

Each channel's content becomes what a log row carries: a header (email subject, push title, wallet header; none for
an SMS of its own text), a body, and for email an optional HTML part.
"""

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoengagement.templating import BODY_MAX_LENGTH, HEADER_MAX_LENGTH, template_errors
from notifications.channels import Channel

MAX_STEPS = 5
AFTER_DAYS_RANGE = (1, 365)
VARIANTS_RANGE = (2, 4)
VARIANT_NAME_MAX_LENGTH = 40
VARIANT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")
SUBJECT_MAX_LENGTH = 200
HTML_MAX_LENGTH = 100_000

# Per content object: its keys, each with its length limit and whether it is required.
CONTENT_FIELDS: dict[str, dict[str, tuple[int, bool]]] = {
    "message": {"header": (HEADER_MAX_LENGTH, True), "body": (BODY_MAX_LENGTH, True)},
    Channel.EMAIL: {
        "subject": (SUBJECT_MAX_LENGTH, True),
        "text": (BODY_MAX_LENGTH, True),
        "html": (HTML_MAX_LENGTH, False),
    },
    Channel.SMS: {"text": (BODY_MAX_LENGTH, True)},
    Channel.PUSH: {"title": (HEADER_MAX_LENGTH, True), "body": (BODY_MAX_LENGTH, True)},
    Channel.WALLET: {"header": (HEADER_MAX_LENGTH, True), "body": (BODY_MAX_LENGTH, True)},
}
STEP_KEYS = {"after_days", "variants", *CONTENT_FIELDS}
VARIANT_KEYS = {"name", "weight", *CONTENT_FIELDS}


@dataclass(frozen=True)
class Content:
    """What one channel's log row carries: header (subject, title), body (text) and, for email, its own HTML."""

    header: str
    body: str
    html: str = ""


@dataclass(frozen=True)
class Variant:
    name: str  # empty for a step without variants
    weight: int
    contents: Mapping[str, Content] = field(default_factory=dict)  # every channel's

    def content(self, channel: str) -> Content:
        return self.contents[channel]


@dataclass(frozen=True)
class Step:
    number: int  # 1-based
    after_days: int
    variants: tuple[Variant, ...]


# Validation


def steps_errors(value: Any) -> list[str]:
    """What is wrong with a config's `steps` (empty when it is fine), each error naming where it is."""
    if value is None:
        return []
    if not isinstance(value, list):
        return ["Must be a list of steps, or null."]
    if not 1 <= len(value) <= MAX_STEPS:
        return [f"Must have 1 to {MAX_STEPS} steps (it has {len(value)})."]
    errors: list[str] = []
    previous_after_days = 0
    for index, step in enumerate(value, start=1):
        where = f"step {index}"
        if not isinstance(step, dict):
            errors.append(f"{where}: must be an object.")
            continue
        errors.extend(_step_errors(step, where))
        after_days = step.get("after_days")
        if _is_int(after_days) and AFTER_DAYS_RANGE[0] <= after_days <= AFTER_DAYS_RANGE[1]:
            if after_days <= previous_after_days:
                errors.append(f"{where}: after_days must be greater than the previous step's ({previous_after_days}).")
            previous_after_days = after_days
    return errors


def _step_errors(step: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}: unknown key {key!r}." for key in sorted(set(step) - STEP_KEYS)]
    after_days = step.get("after_days")
    low, high = AFTER_DAYS_RANGE
    if not _is_int(after_days) or not low <= after_days <= high:
        errors.append(f"{where}: after_days must be an integer from {low} to {high}.")
    if "message" not in step:
        errors.append(f"{where}: message is required.")
    errors.extend(_contents_errors(step, where))
    if "variants" in step:
        errors.extend(_variants_errors(step["variants"], where))
    return errors


def _variants_errors(variants: Any, where: str) -> list[str]:
    low, high = VARIANTS_RANGE
    if not isinstance(variants, list) or not low <= len(variants) <= high:
        return [f"{where}: variants must be a list of {low} to {high} variants."]
    errors: list[str] = []
    names: list[str] = []
    weights: list[int] = []
    for index, variant in enumerate(variants, start=1):
        at = f"{where}, variant {index}"
        if not isinstance(variant, dict):
            errors.append(f"{at}: must be an object.")
            continue
        errors.extend(f"{at}: unknown key {key!r}." for key in sorted(set(variant) - VARIANT_KEYS))
        name = variant.get("name")
        if not isinstance(name, str) or not VARIANT_NAME_PATTERN.fullmatch(name) or len(name) > VARIANT_NAME_MAX_LENGTH:
            errors.append(
                f"{at}: name must be 1 to {VARIANT_NAME_MAX_LENGTH} letters, digits, spaces, '_', '.' or '-', "
                "starting with a letter or digit."
            )
        else:
            names.append(name)
        weight = variant.get("weight")
        if not _is_int(weight) or not 1 <= weight <= 99:
            errors.append(f"{at}: weight must be an integer from 1 to 99.")
        else:
            weights.append(weight)
        errors.extend(_contents_errors(variant, at))
    if len(set(names)) != len(names):
        errors.append(f"{where}: variant names must be unique in the step.")
    if len(weights) == len(variants) and sum(weights) != 100:
        errors.append(f"{where}: variant weights must add up to 100 (they add up to {sum(weights)}).")
    return errors


def _contents_errors(owner: dict[str, Any], where: str) -> list[str]:
    errors: list[str] = []
    for name, fields in CONTENT_FIELDS.items():
        if name not in owner:
            continue
        content = owner[name]
        at = f"{where}, {name}"
        if not isinstance(content, dict):
            errors.append(f"{at}: must be an object with " + ", ".join(repr(key) for key in fields) + ".")
            continue
        errors.extend(f"{at}: unknown key {key!r}." for key in sorted(set(content) - set(fields)))
        for key, (limit, required) in fields.items():
            errors.extend(f"{at}: {error}" for error in _text_errors(content.get(key), key, limit, required))
    return errors


def _text_errors(text: Any, key: str, limit: int, required: bool) -> list[str]:
    if text is None:
        return [f"{key!r} is required."] if required else []
    if not isinstance(text, str):
        return [f"{key!r} must be a string."]
    if not text.strip():
        return [f"{key!r} may not be empty."]
    if "\x00" in text:
        return [f"{key!r} may not contain null characters."]
    if len(text) > limit:
        return [f"{key!r} may have at most {limit} characters (it has {len(text)})."]
    return [f"{key!r}: {error}" for error in template_errors(text)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The journey a config describes


def journey_of(
    *, steps: list[dict[str, Any]] | None, message_template: Mapping[str, str], inactivity_days: int
) -> tuple[Step, ...]:
    """The steps to follow (valid `steps`, or the one step a config without steps describes)."""
    if not steps:
        message = {"message": dict(message_template)}
        return (Step(1, inactivity_days, (Variant("", 100, _contents(message)),)),)
    return tuple(Step(number, step["after_days"], _variants_of(step)) for number, step in enumerate(steps, start=1))


def _variants_of(step: Mapping[str, Any]) -> tuple[Variant, ...]:
    if not step.get("variants"):
        return (Variant("", 100, _contents(step)),)
    return tuple(
        Variant(variant["name"], variant["weight"], _contents({**step, **variant})) for variant in step["variants"]
    )


def _contents(owner: Mapping[str, Any]) -> dict[str, Content]:
    """Every channel's content: its own object when there is one, else the message."""
    message = owner["message"]
    default = Content(message["header"], message["body"])
    contents = dict.fromkeys(Channel.values, default)
    if email := owner.get(Channel.EMAIL):
        contents[Channel.EMAIL] = Content(email["subject"], email["text"], email.get("html", ""))
    if sms := owner.get(Channel.SMS):
        contents[Channel.SMS] = Content("", sms["text"])
    if push := owner.get(Channel.PUSH):
        contents[Channel.PUSH] = Content(push["title"], push["body"])
    if wallet := owner.get(Channel.WALLET):
        contents[Channel.WALLET] = Content(wallet["header"], wallet["body"])
    return contents


def variant_for(step: Step, *, config_id: str, customer_id: str, spell_start: dt.datetime) -> Variant:
    """Deterministic: the same customer, spell and step get the same variant on every rerun and worker. A hash of
    its own (the step and a salt in the key), so independent of the holdout draw."""
    if len(step.variants) == 1:
        return step.variants[0]
    key = f"variant:{config_id}:{customer_id}:{spell_start.astimezone(dt.UTC).isoformat()}:{step.number}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    for variant in step.variants:
        if bucket < variant.weight:
            return variant
        bucket -= variant.weight
    return step.variants[-1]


def mirrored_fields(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed's fields as a journey sets them, so a config reads the same either way: the first step's delay and
    message, and as many messages per spell as there are steps."""
    return {
        "inactivity_days": steps[0]["after_days"],
        "message_template": dict(steps[0]["message"]),
        "max_reminders": len(steps),
    }
