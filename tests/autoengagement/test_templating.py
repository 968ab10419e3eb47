from autoengagement.templating import render, template_errors, uses_attributes

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


def test_attributes_render_with_their_fallback_when_missing_or_empty():
    text = "{first_name}: {attributes.points} points, code {attributes.code|WELCOME10}"
    values = {"first_name": "Ana"}
    assert render(text, values, {"points": 120, "code": "SPRING"}) == "Ana: 120 points, code SPRING"
    assert render(text, values, {"points": 3.5, "code": ""}) == "Ana: 3.5 points, code WELCOME10"
    assert render(text, values, {}) == "Ana:  points, code WELCOME10"
    assert render(text, values) == "Ana:  points, code WELCOME10"


def test_attribute_names_are_looked_up_never_evaluated():
    """A name that would mean something to Python is just a key of the customer's attributes."""
    text = "{attributes.__class__|x} {attributes.__init__} {attributes.keys|k}"
    assert template_errors(text) == []
    assert render(text, {}, {"__init__": "{first_name}"}) == "x {first_name} k"


def test_attribute_placeholders_are_validated():
    assert template_errors("{attributes.tier|gold}") == []
    for wrong in ("{attributes.}", "{attributes.a-b}", "{attributes.a|b|c}", "{attributes}", "{attribute.tier}"):
        assert template_errors(wrong) == [
            f"Unknown placeholder {wrong}; allowed: {{first_name}}, {{business_name}}, {{days_inactive}}, "
            "{attributes.NAME} and {attributes.NAME|fallback}."
        ]


def test_html_rendering_escapes_every_customer_value_but_not_the_template():
    text = "<p>Hi <b>{first_name}</b>, {attributes.note|<i>none</i>}</p>"
    values = {"first_name": "<script>alert(1)</script>"}
    assert render(text, values, {"note": 'a "quote" & <tag>'}, escape=True) == (
        "<p>Hi <b>&lt;script&gt;alert(1)&lt;/script&gt;</b>, a &quot;quote&quot; &amp; &lt;tag&gt;</p>"
    )
    assert render(text, {"first_name": "Ana"}, {}, escape=True) == "<p>Hi <b>Ana</b>, &lt;i&gt;none&lt;/i&gt;</p>"


def test_uses_attributes_finds_attribute_placeholders_only():
    assert uses_attributes("Hi {attributes.tier}") and uses_attributes("{attributes.points|0} points")
    assert not uses_attributes("Hi {first_name}, {days_inactive} days at {business_name}")
    assert not uses_attributes("{attributes} {attribute.tier} attributes.tier")  # not attribute placeholders


def test_html_rendering_escapes_only_what_the_template_shows():
    """Values the template does not use are never looked at: a missing one is no error, an unused one no cost."""
    assert render("<b>{first_name}</b>", {"first_name": "A&B"}, escape=True) == "<b>A&amp;B</b>"
