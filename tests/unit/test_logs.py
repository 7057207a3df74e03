"""JSON logs: one object per line, a request id, phone numbers masked."""

from __future__ import annotations

import json
import logging

from bot.logs import JsonFormatter, mask_phones, request_id


def test_phone_numbers_are_masked():
    assert mask_phones("call 13812345678 now") == "call 138****5678 now"
    assert mask_phones("id 213812345678901") == "id 213812345678901"  # not a phone


def test_json_line_with_request_id_and_extras():
    token = request_id.set("rid-1")
    try:
        record = logging.LogRecord("x", logging.INFO, "f", 1, "turn done", (), None)
        record.outcome = "replied"
        record.phone = "13912345678"
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    data = json.loads(line)
    assert data["request_id"] == "rid-1" and data["outcome"] == "replied"
    assert data["msg"] == "turn done" and "13912345678" not in line


def test_phone_numbers_written_with_separators_or_full_width_are_masked():
    assert mask_phones("138 1234 5678") == "138****5678"
    assert mask_phones("电话138-1234-5678。") == "电话138****5678。"
    assert mask_phones("１３８１２３４５６７８") == "138****5678"


def test_phone_numbers_json_escapes_would_hide_are_masked():
    # The formatter masks the encoded line: a line break becomes "\n" and a pre-encoded
    # value (json.dumps with ensure_ascii) carries its digits as \uff11 escapes.
    record = logging.LogRecord("x", logging.INFO, "f", 1, "对姐妹说 138\n1234\n5678", (), None)
    record.body = json.dumps({"text": "一三八 1234 五六七八"})
    record.wide = "１３８\u200b１２３４\u200b５６７８"
    data = json.loads(JsonFormatter().format(record))
    assert data["msg"] == "对姐妹说 138****5678"
    assert json.loads(data["body"]) == {"text": "138****5678"}
    assert data["wide"] == "138****5678"
