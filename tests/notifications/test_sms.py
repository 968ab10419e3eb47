from notifications.sms import GSM7_BASIC, sms_size, sms_text

GSM7_BASIC_SAMPLE = "".join(sorted(GSM7_BASIC))


def test_gsm7_text_counts_septets():
    assert sms_size("Hello").encoding == "GSM-7"
    assert sms_size("a" * 160).segments == 1
    assert sms_size("a" * 161).segments == 2
    assert sms_size("a" * 306).segments == 2
    assert sms_size("a" * 307).segments == 3


def test_extension_characters_take_two_septets():
    assert sms_size("€" * 80).units == 160
    assert sms_size("€" * 80).segments == 1
    assert sms_size("€" * 81).segments == 2
    assert sms_size("a" * 159 + "€").segments == 2  # 161 septets


def test_every_gsm7_basic_character_stays_gsm7():
    assert sms_size(GSM7_BASIC_SAMPLE).encoding == "GSM-7"
    assert sms_size("ā").encoding == "UCS-2"


def test_one_character_outside_gsm7_switches_to_ucs2():
    size = sms_size("Café ☕" + "a" * 60)
    assert size.encoding == "UCS-2"
    assert size.segments == 1
    assert sms_size("☕" + "a" * 70).segments == 2
    assert sms_size("😀").units == 2
    assert sms_size("ж" * 70).segments == 1
    assert sms_size("ж" * 71).segments == 2
    assert sms_size("ж" * 134).segments == 2
    assert sms_size("ж" * 135).segments == 3
    assert sms_size("😀" * 35).segments == 1  # each emoji is two UTF-16 units
    assert sms_size("😀" * 36).segments == 2


def test_header_and_body_on_two_lines_when_they_fit():
    assert sms_text(header=" We miss you ", body="Come back for 10% off.") == "We miss you\nCome back for 10% off."
    assert sms_text(header="", body="Only a body") == "Only a body"
    assert sms_text(header="Only a header", body="") == "Only a header"


def test_long_gsm7_body_is_cut_at_a_word_to_the_segment_budget():
    text = sms_text(header="Hello", body="word " * 400, max_segments=10)
    assert text.startswith("Hello\nword word")
    assert text.endswith("word...")
    size = sms_size(text)
    assert size.encoding == "GSM-7"
    assert size.segments == 10
    assert size.units > 1500


def test_long_unicode_body_is_cut_with_an_ellipsis_to_the_ucs2_budget():
    text = sms_text(header="Bonjour ☕", body="é" * 2000, max_segments=2)
    assert text.startswith("Bonjour ☕\n")
    assert text.endswith("…")
    assert sms_size(text).units == 134


def test_never_longer_than_twilios_body_limit():
    text = sms_text(header="Hi", body="x" * 5000, max_segments=50)
    assert len(text) == 1600


def test_single_segment_budget():
    text = sms_text(header="A header", body="b" * 300, max_segments=1)
    assert text.startswith("A header\nbbb")
    assert sms_size(text).segments == 1
    assert len(text) == 160
