import re

import pytest

from engagement_site.secure_ids import IdKind, is_valid_id, kind_of, make_id, make_ids

ID_FORMAT = {kind: re.compile(rf"^{kind.value}_[A-Za-z0-9]{{20}}$") for kind in IdKind}


@pytest.mark.parametrize("kind", list(IdKind))
def test_make_id_has_prefix_and_twenty_alphanumerics(kind):
    value = make_id(kind)
    assert ID_FORMAT[kind].match(value), value
    assert kind_of(value) is kind
    assert is_valid_id(value, kind)


def test_prefixes_match_the_contract():
    assert [kind.prefix for kind in IdKind] == ["biz_", "cust_", "pass_", "aec_", "ntf_", "key_", "whk_", "evt_"]


def test_a_batch_of_100000_has_no_collision_and_right_format():
    ids = make_ids(IdKind.NOTIFICATION, 100_000)
    assert len(ids) == 100_000
    assert len(set(ids)) == 100_000
    assert all(ID_FORMAT[IdKind.NOTIFICATION].match(value) for value in ids)


def test_characters_are_spread_over_the_whole_alphabet():
    characters = "".join(value[4:] for value in make_ids(IdKind.CONFIG, 5_000))
    assert set(characters) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


@pytest.mark.parametrize(
    "value",
    [
        "biz_" + "a" * 19,  # too short
        "biz_" + "a" * 21,  # too long
        "biz_" + "a" * 19 + "-",  # bad character
        "biz_" + "a" * 19 + "é",  # non-ASCII
        "xyz_" + "a" * 20,  # unknown prefix
        "biz" + "a" * 20,  # no separator
        "",
        None,
        12345,
    ],
)
def test_malformed_ids_are_rejected(value):
    assert kind_of(value) is None
    assert not is_valid_id(value)


def test_wrong_kind_is_rejected():
    value = make_id(IdKind.CUSTOMER)
    assert is_valid_id(value, IdKind.CUSTOMER)
    assert not is_valid_id(value, IdKind.BUSINESS)
