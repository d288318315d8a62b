"""The ports and error messages of the service processes the tests and the benchmark start
(services/bench/processes.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.bench.processes import Stack, _ephemeral_low, free_port


def test_a_free_port_is_below_the_ephemeral_range_so_no_outgoing_connection_can_take_it_first():
    """A clean-clone CI run lost a test when a port the kernel chose (bind(0): the ephemeral range)
    became some connection's source port before the service bound it: uvicorn exited with 3."""
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert all(1024 < port < low for port in ports), ports
    assert len(set(ports)) == len(ports)  # never the same port twice
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free


def test_a_port_taken_by_a_connection_refuses_a_listener_which_is_why_the_range_matters():
    """The failure mode itself: an outgoing connection's source port cannot be listened on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            taken = client.getsockname()[1]
            assert taken >= _ephemeral_low()
            with socket.socket() as listener, pytest.raises(OSError):
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", taken))


def test_a_process_that_exits_while_starting_is_reported_with_the_end_of_its_log(tmp_path: Path):
    stack = Stack(env={}, logs=tmp_path)
    (tmp_path / "broken.log").write_text("starting\n[Errno 98] address already in use\n")
    stack.procs["broken"] = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    stack.internal_ports["broken"] = free_port()
    stack.procs["broken"].wait()
    with pytest.raises(RuntimeError, match=r"(?s)broken exited with 3.*address already in use"):
        stack.wait_ready("broken", timeout=5)
