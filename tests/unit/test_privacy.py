"""Phone masking however a number is written, and the nicknames it keeps out."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.flow_engine.validators import Invalid, Valid, nickname
from bot.privacy import mask_phones, phone_digits

MASKED = "138****5678"
KEYCAPS = "".join(f"{d}\ufe0f\u20e3" for d in "13812345678")

FORMS = [
    # country codes
    "13812345678", "+86 13812345678", "+8613812345678", "+86-138-1234-5678", "86 13812345678",
    "8613812345678", "0086 13812345678", "008613812345678", "(+86) 138 1234 5678",
    "（+86）138 1234 5678", "＋８６ １３８１２３４５６７８", "+86 (138) 1234-5678",
    # digit forms
    "１３８１２３４５６７８", "①③⑧①②③④⑤⑥⑦⑧", "❶❸❽❶❷❸❹❺❻❼❽", "➀➂➇➀➁➂➃➄➅➆➇", "⑴⑶⑻⑴⑵⑶⑷⑸⑹⑺⑻",
    "𝟏𝟑𝟖𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖", "𝟙𝟛𝟠𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠", "𝟷𝟹𝟾𝟷𝟸𝟹𝟺𝟻𝟼𝟽𝟾", "¹³⁸¹²³⁴⁵⁶⁷⁸", "١٣٨١٢٣٤٥٦٧٨",
    KEYCAPS, KEYCAPS.replace("\ufe0f", ""),
    # Chinese numerals, alone and mixed with digits
    "一三八一二三四五六七八", "幺三八幺两三四五六七八", "壹叁捌壹贰叁肆伍陆柒捌",
    "一三八 1234 五六七八",
    "一三八1234五六七八", "1三8一2三4五6七8", "壹3八①２3四⑤6七𝟖",
    # separators, one or more, mixed
    "138 1234 5678", "138.1234.5678", "138-1234-5678", "138/1234/5678", "138_1234_5678",
    "138\u200b1234\u200b5678", "138\u200c1234\u200c5678", "138\u200d1234\u200d5678",
    "138\u20601234\u20605678", "138\ufeff1234\ufeff5678", "138\u30001234\u30005678",
    "138\xa01234\xa05678", "(138)1234-5678", "[138] 1234 5678", "【138】1234 5678",
    "138－1234－5678", "138–1234–5678", "138—1234—5678", "138＿1234＿5678", "138。1234。5678",
    "138・1234・5678", "138\t1234\n5678", "\u200b".join("13812345678"),
    "1 3.8-1\u200b2_3/4(5)6—7\u30008", "138 - 1234 -- 5678", "138\u200b\u200b\u200b 1234 . 5678",
    "1 3 8 1 2 3 4 5 6 7 8",
    # 一 set between digits reads as a dash
    "138一1234一5678", "138 一 1234 一 5678",
    # a JSON-encoded text, as the log formatter sees it
    "138\\n1234\\n5678", "138\\u200b1234\\u200b5678",
    "\\uff11\\uff13\\uff18\\uff11\\uff12\\uff13\\uff14\\uff15\\uff16\\uff17\\uff18",
]  # fmt: skip

IN_TEXT = [
    ("call 13812345678 now", "call 138****5678 now"),
    ("电话：+86 138 1234 5678。", "电话：138****5678。"),
    ("对姐妹说 我的电话是一三八 1234 五六七八哦", "对姐妹说 我的电话是138****5678哦"),
    ("加我（138）1234-5678～", "加我138****5678～"),
    ("电话(13812345678)", "电话(138****5678)"),
    ("十一13812345678", "十一138****5678"),
    ("a13812345678b", "a138****5678b"),
    ("订单 2024 13812345678", "订单 2024 138****5678"),
    ("13912345678 和 +86 199 0000 1111", "139****5678 和 199****1111"),
    ("1 3 8 1 2 3 4 5 6 7 8 9", "138****5678 9"),
    ("幺三八零零零零五六七八", "138****5678"),
    ("一三八〇〇〇〇五六七八", "138****5678"),
]

NOT_PHONES = [
    "", "no digits at all", "id 213812345678901", "三个月", "一二年级", "两个宝宝",
    "宝宝三个月了，二胎，老大七岁，一二三四五六七八九十", "12812345678", "1381234567",
    "138123456789", "138 1234 567", "２１３８１２３４５６７８", "2026-05-01T13:12:34.567+00:00",
    "订单 20240513123456", "价格 ¥1,380,000 元", "uuid 550e8400-e29b-41d4-a716-446655440000",
    "十三亿八千万", "一一三八一二三四五六七八", "138****5678", "London +44 20 7946 0958",
    "\\u4e00\\u4e09", "1\u20e3" * 10,
]  # fmt: skip


@pytest.mark.parametrize("text", FORMS)
def test_every_form_of_a_mobile_is_masked(text: str) -> None:
    assert mask_phones(text) == MASKED


@pytest.mark.parametrize(("text", "expected"), IN_TEXT)
def test_the_number_goes_and_the_text_around_it_stays(text: str, expected: str) -> None:
    assert mask_phones(text) == expected


@pytest.mark.parametrize("text", NOT_PHONES)
def test_text_without_a_mobile_is_unchanged(text: str) -> None:
    assert mask_phones(text) == text


def test_phone_digits_reads_every_run_in_ascii() -> None:
    assert phone_digits("小美 一三八-1234 ⑤⑥⑦⑧") == ["13812345678"]
    assert phone_digits("a1b22x３\u200b3 y") == ["1", "22", "33"]
    assert phone_digits(KEYCAPS) == ["13812345678"]
    assert phone_digits("没有数字") == []


def test_every_character_with_a_digit_value_is_read_as_that_digit() -> None:
    # Also holds the cheap first look to the normaliser: it must count each of these.
    chinese = "〇零○一壹幺二贰两三叁四肆五伍六陆七柒八捌九玖"
    found = [ch for ch in map(chr, range(0x110000)) if unicodedata.digit(ch, None) is not None]
    assert len(found) > 700
    for ch in found + list(chinese):
        assert mask_phones(f"138{ch}2345678") == MASKED, ascii(ch)
    for ch in found:
        assert phone_digits(ch) == [str(unicodedata.digit(ch))], ascii(ch)


# --- nicknames -----------------------------------------------------------------------

TODAY = date(2026, 5, 1)


@pytest.mark.parametrize(
    "name",
    [
        "小美13812345678", "小美 138-1234-5678", "小美 一三八一二三四", "①②③④⑤⑥⑦", "幺三八幺两三四",
        "豆豆 138\u200b1234", "宝宝 ５２０１３１４", "𝟏𝟐𝟑𝟒𝟓𝟔𝟕", "1\u20e3" * 7, "lily 123.4567",
        "mama 123_4567", "小美138一1234", "壹贰叁肆伍陆柒", "加我 1 3 8 1 2 3 4",
    ],
)  # fmt: skip
def test_a_nickname_with_a_phone_like_run_is_refused(name: str) -> None:
    assert nickname(name, TODAY) == Invalid("invalid")


@pytest.mark.parametrize(
    "name", ["宝宝2023", "小美", "三三", "七七妈妈", "Lily妈妈", "二胎妈妈 123456"]
)
def test_a_nickname_with_a_short_number_is_kept(name: str) -> None:
    assert nickname(name, TODAY) == Valid(name)


# --- properties ----------------------------------------------------------------------

CHINESE_FORMS = ("〇零", "一壹幺", "二贰两", "三叁", "四肆", "五伍", "六陆", "七柒", "八捌", "九玖")


def _forms(d: int) -> list[str]:
    circled = "⓪" if d == 0 else chr(0x2460 + d - 1)
    return [
        str(d), chr(0xFF10 + d), chr(0x1D7CE + d), chr(0x1D7D8 + d), f"{d}\ufe0f\u20e3",
        f"{d}\u20e3", circled, *CHINESE_FORMS[d],
    ]  # fmt: skip


SEPARATORS = (
    " ", ".", "-", "/", "_", "(", ")", "（", "）", "【", "】", "－", "–", "—", "＿", "\u3000",
    "\xa0", "\t", "\n", "・", "。", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",
)  # fmt: skip
PREFIXES = ("", "+86", "86", "0086", "+86 ", "(+86) ", "＋８６-", "0086 ")
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
gaps = st.lists(st.sampled_from(SEPARATORS), max_size=3).map("".join)
# Text around the number holds no digit of any form, so nothing can join the number, and no
# backslash: "\\uab" before "13…" would open a JSON escape that takes the number's digits.
around = st.text(
    st.characters(categories=("L", "P", "S", "Zs"), exclude_characters="\\")
    .filter(lambda ch: not phone_digits(ch))
    | st.sampled_from("的我你好宝妈电话号码是"),
    max_size=12,
)


@st.composite
def rendered(draw: st.DrawFn) -> tuple[str, str]:
    mobile = draw(mobiles)
    parts = [draw(st.sampled_from(_forms(int(d)))) for d in mobile]
    body = "".join(part + draw(gaps) for part in parts[:-1]) + parts[-1]
    text = draw(around) + draw(st.sampled_from(PREFIXES)) + draw(gaps) + body + draw(around)
    return mobile, text


@given(rendered())
def test_a_rendered_mobile_never_survives(case: tuple[str, str]) -> None:
    mobile, text = case
    out = mask_phones(text)
    assert mobile not in "".join(phone_digits(out))
    assert f"{mobile[:3]}****{mobile[-4:]}" in out


@given(st.text())
def test_text_without_eleven_digits_in_a_run_is_unchanged(text: str) -> None:
    if all(len(run) < 11 for run in phone_digits(text)):
        assert mask_phones(text) == text


# --- adversarial input: linear, no backtracking (a blow-up would hang here) ------------

N = 200_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1" * N, "1" * N),
        ("1 " * (N // 2), "1 " * (N // 2)),
        ("13" * (N // 2), "13" * (N // 2)),
        ("1一" * (N // 2), "1一" * (N // 2)),
        ("+86 " * (N // 4), "+86 " * (N // 4)),
        ("１\u200b" * (N // 2), "１\u200b" * (N // 2)),
        (("1\u200b" * 10 + "x") * (N // 21), ("1\u200b" * 10 + "x") * (N // 21)),
        ("\\u4e00" * (N // 6), "\\u4e00" * (N // 6)),
        ("\\" * N + "u4e00", "\\" * N + "u4e00"),
        ("13812345678 " * (N // 12), f"{MASKED} " * (N // 12)),
        ("1" + "\u200b" * N + "3812345678", MASKED),
        (" " * N + "一三八一二三四五六七八", " " * N + MASKED),
    ],
    ids=[
        "run", "spaced", "13s", "1一", "cc", "fullwidth", "ten", "escapes", "backslashes", "many",
        "gap", "tail",
    ],
)
def test_large_adversarial_input(text: str, expected: str) -> None:
    assert mask_phones(text) == expected
