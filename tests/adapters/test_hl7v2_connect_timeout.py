"""MLLP ``send.connect_timeout_seconds``: a peer whose listener accepts nothing is given up fast.

The peer is a real listening socket on 127.0.0.1 with a backlog of one, filled by
connections nobody accepts: the kernel then drops every further SYN, so a connect waits
until its own timeout, exactly as against an interface engine that is up but wedged.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.hl7v2 import create
from ehr_bridge.errors import ConfigError, TransientError

ITEM = WriteItem(
    "assessment",
    "SR1",
    "ref-1",
    {"tool_code": "720433000", "score": 9, "completed_at": "2026-11-10T19:35Z",
     "client_reference": "ref-1", "referral_id": "SR1"},
)  # fmt: skip


@pytest.fixture
def wedged_port() -> Iterator[int]:
    """A port whose accept queue is full: connects to it hang until their timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def _adapter(tmp_path: Path, **send: Any) -> Any:
    options = {"drop_folder": "in", "send": {"host": "127.0.0.1", **send}}
    return create(options, base_dir=tmp_path, key="connection[0].trust", provider_code="IESO01")


def test_a_peer_that_accepts_nothing_is_given_up_at_the_connect_timeout(
    tmp_path: Path, wedged_port: int
) -> None:
    adapter = _adapter(tmp_path, port=wedged_port, timeout_seconds=10, connect_timeout_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        adapter.write(ITEM)
    seconds = time.monotonic() - started
    assert 0.4 < seconds < 1.5  # the connect timeout, far inside the 10 s exchange
    assert caught.value.safe_message == (
        f"MLLP connect failed: TimeoutError: the connection to 127.0.0.1:{wedged_port} failed;"
        " check the network and connection[0].trust.send.host and connection[0].trust.send.port"
    )
    assert caught.value.code == "unreachable"
    assert not caught.value.ambiguous  # nothing was sent: no read-before-write needed


def test_the_connect_timeout_is_five_seconds_unless_set_and_is_checked(tmp_path: Path) -> None:
    client = _adapter(tmp_path, port=2575).writer.transport.client
    assert (client.connect_timeout, client.timeout) == (5.0, 10.0)
    capped = _adapter(tmp_path, port=2575, timeout_seconds=2, connect_timeout_seconds=30)
    assert capped.writer.transport.client.connect_timeout == 2  # never past the exchange
    with pytest.raises(ConfigError) as caught:
        _adapter(tmp_path, port=2575, connect_timeout_seconds=0)
    assert caught.value.key == "connection[0].trust.send.connect_timeout_seconds"
