"""The one CSV reader of every import (bot/members/csvfile.py): encodings as spreadsheets
save them, the header checked, rows with the lines a spreadsheet user counts, and files it
cannot read refused with where and why."""

from __future__ import annotations

import pytest

from bot.members.csvfile import MEMBER_TARGETS, CsvError, auto_mapping, read_csv


def reasons(data: bytes) -> list[str]:
    with pytest.raises(CsvError) as e:
        read_csv(data)
    return [str(p) for p in e.value.problems]


def test_utf8_with_or_without_bom_and_gbk_read_the_same():
    text = "手机号,昵称\r\n13800000001,小美\r\n"
    for data, encoding in ((text.encode("utf-8"), "utf-8"),
                           (text.encode("utf-8-sig"), "utf-8"),
                           (text.encode("gbk"), "gb18030")):
        table = read_csv(data)
        assert (table.encoding, table.headers) == (encoding, ["手机号", "昵称"])
        assert [r.cells for r in table.rows()] == [{"手机号": "13800000001", "昵称": "小美"}]


def test_rows_keep_their_true_lines_across_quoted_line_breaks_and_blank_lines():
    data = b'a,b\n1,"two\nlines"\n\n,\n3,="007"\n'
    rows = list(read_csv(data).rows())
    assert [(r.line, r.cells) for r in rows] == [
        (2, {"a": "1", "b": "two\nlines"}), (6, {"a": "3", "b": "007"})]


def test_a_header_that_is_blank_or_twice_names_its_column():
    assert reasons("手机号,,昵称,手机号\n".encode()) == [
        "line 1: column B: the header is blank",
        "line 1: column 手机号: two columns have this header (A and D)"]


def test_files_that_are_not_csv_text_are_refused_with_the_reason():
    assert "UTF-16" in reasons("a,b\n".encode("utf-16"))[0]
    assert "not UTF-8 and not GBK" in reasons(b"a,b\n\x81\x30\xff,1\n")[0]
    assert reasons(b"") == ["file: the file is empty: no header row"]
    [row] = list(read_csv(b'a,b\n1,"open\n').rows())
    assert row.line == 2 and "not valid CSV" in row.problems[0].reason


def test_headers_map_themselves_by_name_or_their_usual_chinese():
    columns, unused = auto_mapping(["会员编号", "手机号码", "Nickname", "标签", "备注"],
                                   MEMBER_TARGETS)
    assert columns.columns == {"会员编号": "id", "手机号码": "mobile", "Nickname": "nickname",
                               "标签": "tags"}
    assert unused == ["备注"]
