"""SMS text: how many segments a text takes, and the header + body combined to fit a segment budget.

An SMS segment holds 160 GSM-7 characters (153 when a message is split into several) or, as soon as one
character is outside GSM-7, 70 UCS-2 code units (67 when split). Carriers join up to about 10 segments
reliably and Twilio refuses bodies over 1600 characters, so long text is cut to fit `max_segments`.
"""

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the GSM-7 extension table take two septets (an escape, then the character).
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
TWILIO_MAX_BODY = 1600


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def sms_size(text: str) -> SmsSize:
    """The encoding a phone will use for `text` and how many segments it takes."""
    if is_gsm7(text):
        units = sum(2 if char in GSM7_EXTENSION else 1 for char in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return SmsSize(encoding=encoding, units=units, segments=segments)


def _fits(text: str, max_segments: int) -> bool:
    return len(text) <= TWILIO_MAX_BODY and sms_size(text).segments <= max_segments


def sms_text(*, header: str, body: str, max_segments: int = 10) -> str:
    """Header and body on separate lines, the body cut at a word with an ellipsis when the whole is too long.

    The header is kept whole (it is short by validation) unless it alone does not fit. The ellipsis is "..."
    in GSM-7 text, so cutting never switches a message to the costlier UCS-2 encoding, and "…" otherwise.
    """
    header, body = header.strip(), body.strip()
    text = f"{header}\n{body}" if header and body else header or body
    if _fits(text, max_segments):
        return text
    ellipsis = "..." if is_gsm7(text) else "…"
    prefix = f"{header}\n" if header and body else ""
    kept = text[len(prefix) :]
    if not _fits(prefix + ellipsis, max_segments):
        prefix, kept = "", text
    low, high = 0, len(kept)
    while low < high:
        middle = (low + high + 1) // 2
        if _fits(prefix + kept[:middle].rstrip() + ellipsis, max_segments):
            low = middle
        else:
            high = middle - 1
    cut = kept[:low]
    word_end = cut.rstrip().rfind(" ")
    if word_end > len(cut) * 0.8:
        cut = cut[:word_end]
    return prefix + cut.rstrip() + ellipsis
