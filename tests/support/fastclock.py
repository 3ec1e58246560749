"""A real heartwatch whose clock runs fast: the server process alone under Debian's libfaketime, so an alert test
covers simulated minutes in seconds of real time, with a real json:// receiver for what it sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.receivers import HttpReceiver
from support.server import Server, running_server

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
SPEED = 30  # simulated seconds per real second

FAKETIME_MARK = pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs Debian's faketime package")


@contextmanager
def fast_server(folder: Path, config: str) -> Iterator[tuple[Server, HttpReceiver]]:
    """A server at SPEED times real time; `config` may use {url}, which becomes the receiver's json:// URL."""
    receiver = HttpReceiver().start()
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+0 x{SPEED}"}
    try:
        with running_server(folder, config.format(url=receiver.url()), env=env) as server:
            yield server, receiver
    finally:
        receiver.stop()
