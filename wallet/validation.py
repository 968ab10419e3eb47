"""Customer field rules shared by the API, admin and services, so they can never disagree."""

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
