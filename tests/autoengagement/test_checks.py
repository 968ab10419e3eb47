import pytest

from autoengagement.checks import run_settings_check


def test_the_default_run_settings_pass():
    assert run_settings_check() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTO_ENGAGEMENT_SEND_WINDOW", 0),
        ("AUTO_ENGAGEMENT_SEND_WINDOW", 501),
        ("AUTO_ENGAGEMENT_MAX_ATTEMPTS", 0),
        ("AUTO_ENGAGEMENT_BREAKER_THRESHOLD", 0),
        ("AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES", 0),
    ],
)
def test_a_run_setting_out_of_range_is_an_error_naming_it(settings, name, value):
    setattr(settings, name, value)
    [error] = run_settings_check()
    assert (error.id, error.obj) == ("autoengagement.E001", name)
    assert f"{name}={value}" in error.msg
