"""The contact-allowance rule (bot/allowance.py) on its own: what opens it, what a hold
keeps, which grant a send spends, what the platform's word changes, what waits."""

from __future__ import annotations

from bot import allowance as a

T0 = 1_000_000.0
DAY2 = 48 * 3600


def test_a_message_opens_five_and_a_hold_keeps_one_for_the_turn():
    rec = a.opened(None, T0, "message", 5, DAY2, hold="turn-1")
    assert a.free(rec, T0) == 4
    for _ in range(4):
        rec, kind = a.taken(rec, T0)
        assert kind == "message"
    rec, kind = a.taken(rec, T0)
    assert kind is None  # the fifth is the turn's
    rec, kind = a.taken(rec, T0, hold="turn-1")
    assert kind == "message" and a.free(rec, T0) == 0


def test_a_released_hold_is_free_again_and_an_expired_one_too():
    rec = a.opened(None, T0, "message", 5, DAY2, hold="t")
    assert a.free(a.released(rec, T0, "t"), T0) == 5
    assert a.free(rec, T0 + a.HOLD_SECONDS + 1) == 5  # a turn that never finished


def test_the_grant_that_ends_first_is_spent_first_and_grants_expire():
    rec = a.opened(None, T0, "message", 5, DAY2)
    rec = a.opened(rec, T0, "event", 3, 60)
    rec, kind = a.taken(rec, T0 + 1)
    assert kind == "event" and a.free(rec, T0 + 1) == 7
    assert a.free(rec, T0 + 61) == 5  # the minute is over
    assert not a.is_open(rec, T0 + DAY2 + 1) and a.free(rec, T0 + DAY2 + 1) == 0


def test_a_new_message_replaces_the_last_allowance():
    rec = a.opened(None, T0, "message", 5, DAY2)
    for _ in range(5):
        rec, _ = a.taken(rec, T0)
    assert a.free(rec, T0) == 0
    assert a.free(a.opened(rec, T0 + 10, "message", 5, DAY2), T0 + 10) == 5


def test_the_platforms_word_wins_45047_and_45015():
    rec = a.opened(None, T0, "message", 5, DAY2, hold="t")
    rec = a.opened(rec, T0, "event", 3, 60)
    spent = a.exhausted(rec, T0)
    assert a.free(spent, T0) == 0 and a.is_open(spent, T0)
    assert a.taken(spent, T0, hold="t")[1] is None  # no hold survives "none left"
    shut = a.exhausted(rec, T0, "message")
    assert a.free(shut, T0) == 3 and "message" not in shut["grants"]


def test_pushes_wait_in_order_once_each_and_not_for_someone_gone():
    rec = a.opened(None, T0, "message", 5, DAY2)
    for key in ("k1", "k2", "k1"):
        rec, kept = a.waiting_added(rec, T0, {"text": key}, key)
        assert kept
    rec, out = a.waiting_taken(rec, T0)
    assert [k for _, k in out] == ["k1", "k2"] and rec["waiting"] == []
    gone = a.closed(rec, T0)
    assert a.waiting_added(gone, T0, {"text": "x"}, "k3")[1] is False
    assert not a.opened(gone, T0, "message", 5, DAY2)["gone"]  # she came back


def test_only_so_many_wait():
    rec = a.opened(None, T0, "message", 5, DAY2)
    for i in range(a.MAX_WAITING + 5):
        rec, _ = a.waiting_added(rec, T0, {}, f"k{i}")
    assert len(rec["waiting"]) == a.MAX_WAITING and rec["waiting"][0][1] == "k5"
