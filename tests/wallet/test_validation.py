import pytest

from wallet.validation import normalise_phone, phone_errors


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        (" +44 7911 123456 ", "+447911123456"),
        ("+33.6.12.34.56.78", "+33612345678"),
    ],
)
def test_normalise_to_e164(value, expected):
    assert normalise_phone(value) == expected
    assert phone_errors(value) == []


@pytest.mark.parametrize(
    "value",
    [
        "4155550100",  # no country code
        "0612345678",  # national form
        "+1415555",  # too short
        "+1 800 FLOWERS",  # letters
        "+999 123456789",  # no such country code
        "+1 415 555 0100 ext. 12",
        "+",
    ],
)
def test_not_e164_numbers_are_refused(value):
    assert phone_errors(value) != []
    with pytest.raises(ValueError):
        normalise_phone(value)


def test_an_empty_phone_is_allowed():
    assert phone_errors("") == []
    assert phone_errors("   ") == []
    assert normalise_phone(" ") == ""


def test_non_strings_are_refused():
    assert phone_errors(4155550100) == ["Must be a string."]


def test_the_factory_numbers_are_valid():
    assert all(phone_errors(f"+1415555{n:04d}") == [] for n in (0, 100, 9999))
