"""Customer field rules shared by the API, admin and services, so they can never disagree."""

import functools
import math
import re
from typing import Any

import phonenumbers

# Digits after a leading "+", with the separators people type; letters (vanity numbers) are refused.
PHONE_CHARACTERS = re.compile(r"^\+[0-9 ().\-]+$")
PHONE_FORMAT_HELP = "Enter the number in international E.164 form, e.g. +14155550100."


def normalise_phone(value: str) -> str:
    """The E.164 form of an international number ('+1 (415) 555-0100' -> '+14155550100').

    An empty value stays empty (the phone is optional). Raises ValueError when `value` is not a real,
    assignable phone number for its country.
    """
    if not value.strip():
        return ""
    if errors := phone_errors(value):
        raise ValueError(errors[0])
    return phonenumbers.format_number(phonenumbers.parse(value.strip(), None), phonenumbers.PhoneNumberFormat.E164)


def phone_errors(value: Any) -> list[str]:
    """Problems with `value` as a customer's phone; an empty string is fine (the phone is optional)."""
    if not isinstance(value, str):
        return ["Must be a string."]
    value = value.strip()
    if not value:
        return []
    if not PHONE_CHARACTERS.fullmatch(value):
        return [PHONE_FORMAT_HELP]
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return [PHONE_FORMAT_HELP]
    if not phonenumbers.is_valid_number(number):
        return ["Not a valid phone number for its country code."]
    return []


# A customer's attributes: what templates read as {attributes.NAME}.
ATTRIBUTE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_ATTRIBUTES = 50
ATTRIBUTE_TEXT_MAX_LENGTH = 500
# Integers beyond this lose precision in JavaScript and other readers that hold JSON numbers as doubles.
ATTRIBUTE_INTEGER_LIMIT = 2**53 - 1


def attributes_errors(value: Any) -> list[str]:
    """Problems with `value` as a customer's attributes (empty when it is fine), each naming its key: an object of
    at most MAX_ATTRIBUTES names (letters, digits, underscore; 1 to 64) to strings (at most
    ATTRIBUTE_TEXT_MAX_LENGTH characters, no NUL) or finite numbers (not booleans)."""
    if not isinstance(value, dict):
        return ["Must be an object of names to strings or numbers."]
    errors = []
    if len(value) > MAX_ATTRIBUTES:
        errors.append(f"At most {MAX_ATTRIBUTES} attributes are allowed (there are {len(value)}).")
    for name, item in value.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME_PATTERN.fullmatch(name):
            errors.append(f"{_quoted(name)}: a name must be 1 to 64 letters, digits or underscores.")
        if message := _attribute_value_error(item):
            errors.append(f"{_quoted(name)}: {message}")
    return errors


def _attribute_value_error(value: Any) -> str:
    if isinstance(value, str):
        if "\x00" in value:
            return "may not contain null characters."
        if len(value) > ATTRIBUTE_TEXT_MAX_LENGTH:
            return f"a text may have at most {ATTRIBUTE_TEXT_MAX_LENGTH} characters (it has {len(value)})."
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a string or a number."
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number."
    if isinstance(value, int) and abs(value) > ATTRIBUTE_INTEGER_LIMIT:
        return f"an integer must be between -{ATTRIBUTE_INTEGER_LIMIT} and {ATTRIBUTE_INTEGER_LIMIT}; send it as text."
    return ""


def _quoted(name: Any) -> str:
    """A key as an error message names it: short, and without control characters that would garble the message."""
    text = name if isinstance(name, str) else str(name)
    shown = text if len(text) <= 70 else text[:67] + "..."
    return repr(shown)


EXTERNAL_ID_MAX_LENGTH = 255
PHONE_CACHE_SIZE = 100_000


@functools.lru_cache(maxsize=PHONE_CACHE_SIZE)
def phone_e164(value: str) -> str | None:
    """The E.164 form of `value` (already stripped; "" stays ""), or None when phone_errors would find something
    wrong: the checks of phone_errors and normalise_phone with the number parsed once. Bulk imports check
    thousands, about 60 microseconds each (most of a bulk request's time), and a platform re-sends the same
    customers every sync: the answers for the last PHONE_CACHE_SIZE values are kept (about 10 MB)."""
    if not value:
        return ""
    if not PHONE_CHARACTERS.fullmatch(value):
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
