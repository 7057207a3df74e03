"""What the JSON logs never show: configured secrets, credentials in headers and query
strings, phone numbers, and arq's job arguments."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import hide_secrets, json_handler, redact


def test_secrets_and_credentials_are_replaced():
    hide_secrets(["a-configured-admin-token"])
    line = redact("Authorization: Bearer a-configured-admin-token; GET /x?access_token=AT-1&y=2 "
                  '{"app_secret": "s3cretvalue"} token=abc signature=0f0f')
    assert "a-configured-admin-token" not in line and "AT-1" not in line
    assert "s3cretvalue" not in line and "abc" not in line and "0f0f" not in line
    assert "y=2" in line  # the rest of the line stays readable


def test_a_traceback_naming_the_header_is_redacted_too():
    hide_secrets(["another-admin-token"])
    stream = io.StringIO()
    handler = json_handler(logging.StreamHandler(stream))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    try:
        try:
            raise ValueError("bad header b'Authorization: Bearer another-admin-token'")
        except ValueError:
            log.exception("unhandled error")
    finally:
        log.removeHandler(handler)
    assert "another-admin-token" not in stream.getvalue()


def test_arq_job_lines_keep_the_job_and_drop_its_arguments():
    stream = io.StringIO()
    handler = json_handler(logging.StreamHandler(stream))
    arq = logging.getLogger("arq.worker")
    arq.addHandler(handler)
    old = arq.level
    arq.setLevel(logging.INFO)
    try:
        arq.info("%6.2fs → %s(%s)%s", 0.01, "scrm:jobs:cs:ab12:wechat_send_late",
                 "'o_openid', [{'text': '姐妹 小美 对你说：我孕20周了'}]", "")
    finally:
        arq.removeHandler(handler)
        arq.setLevel(old)
    line = json.loads(stream.getvalue())
    assert "wechat_send_late" in line["msg"]
    assert "o_openid" not in line["msg"] and "孕20周" not in line["msg"]


def test_profile_show_escapes_terminal_and_bidi_controls():
    from scrm.cli import printable

    shown = printable("小美\x1b[2J\u202eevil\u200b\tok")
    assert "\x1b" not in shown and "\u202e" not in shown and "\u200b" not in shown
    assert shown == "小美\\u001b[2J\\u202eevil\\u200b\tok"


def test_the_run_log_check_finds_texts_secrets_and_phones():
    from tests.support.log_check import leaks

    log = ('{"msg": "turn done", "text": "我想问问孕期能不能吃螃蟹"}\n'
           '{"msg": "call", "auth": "the-secret-value"}\n{"msg": "13812345678"}\n'
           '{"msg": "ok"}')
    found = leaks(log, ["我想问问孕期能不能吃螃蟹", "同意"], ["the-secret-value"])
    assert len(found) == 3 and not any('"ok"' in f for f in found)
