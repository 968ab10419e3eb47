"""Message templates: `{first_name}`, `{business_name}`, `{days_inactive}`, and a customer's attributes as
`{attributes.NAME}` or `{attributes.NAME|fallback}` (NAME: letters, digits, underscore), and nothing else.

Templates are user input, so they are never passed to `str.format` as written (which would allow attribute and
index access): `formatter` finds the known placeholders with a regular expression and builds a format string in
which they are the only fields (every other brace doubled, so it stays text), once per template rather than per
message. An attribute placeholder becomes a plain field of its own whose value the formatter computes from the
customer's attributes (or the fallback), so neither a template nor a customer's value is ever interpreted.
"""

import html
import re
from collections.abc import Callable, Mapping

PLACEHOLDERS = ("first_name", "business_name", "days_inactive")
HEADER_MAX_LENGTH = 120
BODY_MAX_LENGTH = 1000

_BRACED = re.compile(r"\{([^{}]*)\}")
_ATTRIBUTE = re.compile(r"attributes\.([A-Za-z0-9_]+)(?:\|([^{}|]*))?")
_KNOWN = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r"|" + _ATTRIBUTE.pattern + r")\}")
ALLOWED = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + ", {attributes.NAME} and {attributes.NAME|fallback}"

Values = Mapping[str, object]
Attributes = Mapping[str, object]


def template_errors(text: str) -> list[str]:
    """What is wrong with one template string's placeholders (empty when it is fine)."""
    errors = [
        f"Unknown placeholder {{{name}}}; allowed: {ALLOWED}."
        for name in _BRACED.findall(text)
        if name not in PLACEHOLDERS and not _ATTRIBUTE.fullmatch(name)
    ]
    leftover = _BRACED.sub("", text)
    if not errors and ("{" in leftover or "}" in leftover):
        errors.append("Unbalanced brace: use braces only around a placeholder such as {first_name}.")
    return errors


def formatter(text: str, *, escape: bool = False) -> Callable[..., str]:
    """A function of the placeholders' values (keyword arguments, plus `attributes`: the customer's, a mapping)
    that renders `text`; with `escape`, every value is HTML-escaped (the template itself is the author's HTML).
    Only the values the template uses are looked at (a run renders tens of thousands of messages a second)."""
    attributes: list[tuple[str, str]] = []  # (NAME, fallback) of each attribute placeholder, in field order
    parts = _split(text)
    format_map = "".join(
        "{" + _field(part, attributes) + "}" if is_placeholder else part.replace("{", "{{").replace("}", "}}")
        for is_placeholder, part in parts
    ).format_map
    if not attributes and not escape:
        return lambda attributes=None, **values: format_map(values)
    attribute_fields = [
        (field, name, fallback)
        for field, (name, fallback) in zip(_attribute_fields(len(attributes)), attributes, strict=True)
    ]
    if not escape:

        def render_text(attributes: Attributes | None = None, **values: object) -> str:
            get = attributes.get if attributes else _nothing
            for field, name, fallback in attribute_fields:
                value = get(name)
                values[field] = fallback if value is None or value == "" else value
            return format_map(values)

        return render_text
    used = [name for name in PLACEHOLDERS if any(is_placeholder and part == name for is_placeholder, part in parts)]
    quote = html.escape

    def render_html(attributes: Attributes | None = None, **values: object) -> str:
        get = attributes.get if attributes else _nothing
        fields = {name: quote(str(values[name])) for name in used}
        for field, name, fallback in attribute_fields:
            value = get(name)
            fields[field] = quote(fallback if value is None or value == "" else str(value))
        return format_map(fields)

    return render_html


def _nothing(name: str) -> None:
    return None


def uses_attributes(text: str) -> bool:
    """Whether `text` has an attribute placeholder ({attributes.NAME}, with or without a fallback)."""
    return any(_ATTRIBUTE.fullmatch(match.group(1)) for match in _KNOWN.finditer(text))


def _split(text: str) -> list[tuple[bool, str]]:
    """The text as (is a placeholder, its inside or the literal text between) pairs, in order."""
    parts: list[tuple[bool, str]] = []
    position = 0
    for match in _KNOWN.finditer(text):
        parts.append((False, text[position : match.start()]))
        parts.append((True, match.group(1)))
        position = match.end()
    parts.append((False, text[position:]))
    return parts


def _field(placeholder: str, attributes: list[tuple[str, str]]) -> str:
    """The format field for a placeholder: its own name, or a numbered field for an attribute (recorded)."""
    match = _ATTRIBUTE.fullmatch(placeholder)
    if match is None:
        return placeholder
    attributes.append((match.group(1), match.group(2) or ""))
    return _attribute_fields(len(attributes))[-1]


def _attribute_fields(count: int) -> list[str]:
    return [f"attribute_{index}" for index in range(count)]


def render(text: str, values: Values, attributes: Attributes | None = None, *, escape: bool = False) -> str:
    return formatter(text, escape=escape)(attributes=attributes, **values)
