"""How much text a channel shows at once: SMS segments (GSM-7 or UCS-2) and the lock-screen preview."""

import math

# GSM 03.38 basic character set, and the extension table whose characters take two septets.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")
LOCK_SCREEN_CHARACTERS = 90


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def sms_length(text: str) -> int:
    """Length in the units carriers count: septets for GSM-7, UTF-16 code units for UCS-2."""
    if is_gsm7(text):
        return sum(2 if char in GSM7_EXTENSION else 1 for char in text)
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """Segments a message takes: 160 (GSM-7) or 70 (UCS-2) fit in one; longer ones split at 153 or 67."""
    length = sms_length(text)
    single, multi = (160, 153) if is_gsm7(text) else (70, 67)
    if length <= single:
        return 1
    return math.ceil(length / multi)
