"""`scrm up` checks its ports before training: a port in use is a clear error, but one the
last run left only in TIME_WAIT is free (the server binds with SO_REUSEADDR)."""

from __future__ import annotations

import socket

import pytest

from scrm.cli import _check_free


def test_a_listening_port_is_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            _check_free(port, "the WeChat API sandbox", "pick another", taken=())


def test_a_port_left_in_time_wait_by_the_last_run_is_free():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server side closes first: its end waits in TIME_WAIT
    client.close()
    listener.close()
    _check_free(port, "the WeChat API sandbox", "pick another", taken=())  # no exit
