import pytest

from wallet.validation import attributes_errors, normalise_phone, phone_errors


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


# --- attributes ---


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"tier": "gold", "points": 120, "ratio": 0.5, "Offer_Code_2": ""},
        {"a" * 64: "x" * 500},
        {f"k{i}": i for i in range(50)},
        {"max": 2**53 - 1, "min": -(2**53 - 1), "big": 1e300, "negative": -0.0},
    ],
)
def test_valid_attributes(value):
    assert attributes_errors(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], ["Must be an object of names to strings or numbers."]),
        ("tier=gold", ["Must be an object of names to strings or numbers."]),
        (None, ["Must be an object of names to strings or numbers."]),
        ({"": 1}, ["'': a name must be 1 to 64 letters, digits or underscores."]),
        ({"a" * 65: 1}, [f"'{'a' * 65}': a name must be 1 to 64 letters, digits or underscores."]),
        ({"first-name": "x"}, ["'first-name': a name must be 1 to 64 letters, digits or underscores."]),
        ({"tier name": "x"}, ["'tier name': a name must be 1 to 64 letters, digits or underscores."]),
        ({"tiér": "x"}, ["'tiér': a name must be 1 to 64 letters, digits or underscores."]),
        ({"tier": True}, ["'tier': must be a string or a number."]),
        ({"tier": None}, ["'tier': must be a string or a number."]),
        ({"tier": ["gold"]}, ["'tier': must be a string or a number."]),
        ({"tier": {"level": 1}}, ["'tier': must be a string or a number."]),
        ({"code": "x" * 501}, ["'code': a text may have at most 500 characters (it has 501)."]),
        ({"code": "a\x00b"}, ["'code': may not contain null characters."]),
        ({"ratio": float("nan")}, ["'ratio': must be a finite number."]),
        ({"ratio": float("inf")}, ["'ratio': must be a finite number."]),
        (
            {"id": 2**53},
            [f"'id': an integer must be between -{2**53 - 1} and {2**53 - 1}; send it as text."],
        ),
        (
            {f"k{i}": i for i in range(51)},
            ["At most 50 attributes are allowed (there are 51)."],
        ),
        (
            {"ok": 1, "bad-name": False},
            [
                "'bad-name': a name must be 1 to 64 letters, digits or underscores.",
                "'bad-name': must be a string or a number.",
            ],
        ),
    ],
)
def test_invalid_attributes_name_the_key(value, expected):
    assert attributes_errors(value) == expected


def test_a_very_long_bad_name_is_shortened_in_the_message():
    (message,) = attributes_errors({"x-" * 200: 1})
    assert message == "'" + ("x-" * 200)[:67] + "...': a name must be 1 to 64 letters, digits or underscores."
