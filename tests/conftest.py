"""Shared fixtures. `server` runs the real `heartwatch serve` (tests/support/server.py) on a free loopback port,
one per test; a module whose tests can share one says `server = shared_server(CONFIG)` instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import Server, running_server


@pytest.fixture
def server_config() -> str:
    """The TOML the `server` fixture starts with; override in a test module to add checks."""
    return ""


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the `server` fixture."""
    return {}


@pytest.fixture
def server(tmp_path: Path, server_config: str, server_env: dict[str, str]) -> Iterator[Server]:
    with running_server(tmp_path, server_config, server_env) as srv:
        yield srv
