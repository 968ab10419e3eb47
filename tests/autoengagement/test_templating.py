from autoengagement.templating import render, template_errors

VALUES = {"first_name": "Ana", "business_name": "Café {x}", "days_inactive": 12}


def test_renders_every_placeholder():
    text = "Hi {first_name}, {days_inactive} days since {business_name}!"
    assert render(text, VALUES) == "Hi Ana, 12 days since Café {x}!"


def test_values_are_not_reinterpreted_as_placeholders():
    assert render("{business_name}", {**VALUES, "business_name": "{first_name}"}) == "{first_name}"


def test_errors():
    assert template_errors("Hello {first_name}") == []
    assert template_errors("plain text") == []
    assert template_errors("{nope}")
    assert template_errors("{first_name!r}")
    assert template_errors("{first_name:>10}")
    assert template_errors("{0}")
    assert template_errors("{}")
    assert template_errors("}{")
    assert template_errors("{{first_name}}")
