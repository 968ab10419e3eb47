"""Message templates: `{first_name}`, `{business_name}` and `{days_inactive}` and nothing else.

Templates are user input, so they are never passed to `str.format` as written (which would allow attribute and
index access): `formatter` finds the known placeholders with a regular expression and builds a format string in
which they are the only fields (every other brace doubled, so it stays text), once per template rather than per
message.
"""

import re
from collections.abc import Callable, Mapping

PLACEHOLDERS = ("first_name", "business_name", "days_inactive")
HEADER_MAX_LENGTH = 120
BODY_MAX_LENGTH = 1000

_BRACED = re.compile(r"\{([^{}]*)\}")
_KNOWN = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def template_errors(text: str) -> list[str]:
    """What is wrong with one template string's placeholders (empty when it is fine)."""
    errors = [
        f"Unknown placeholder {{{name}}}; allowed: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + "."
        for name in _BRACED.findall(text)
        if name not in PLACEHOLDERS
    ]
    leftover = _BRACED.sub("", text)
    if not errors and ("{" in leftover or "}" in leftover):
        errors.append("Unbalanced brace: use braces only around a placeholder such as {first_name}.")
    return errors


def formatter(text: str) -> Callable[..., str]:
    """A function of the placeholders' values (keyword arguments) that renders `text`."""
    parts = _KNOWN.split(text)
    return "".join(
        "{" + part + "}" if index % 2 else part.replace("{", "{{").replace("}", "}}")
        for index, part in enumerate(parts)
    ).format


def render(text: str, values: Mapping[str, object]) -> str:
    return formatter(text)(**values)
