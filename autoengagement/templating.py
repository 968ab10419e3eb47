"""Message templates: `{first_name}`, `{business_name}` and `{days_inactive}` and nothing else.

Templates are user input, so they are never passed to `str.format` (which would allow attribute and index
access); placeholders are found and replaced with a regular expression.
"""

import re
from collections.abc import Mapping

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


def render(text: str, values: Mapping[str, object]) -> str:
    return _KNOWN.sub(lambda match: str(values[match.group(1)]), text)
