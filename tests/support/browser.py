"""Debian's Chromium driven by Playwright, shared by the browser tests.

A test module does `from support.browser import BROWSER_MARKS, launch` and sets `pytestmark = BROWSER_MARKS`:
without chromium or playwright its tests skip and say what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# Flags that keep Chromium from reaching out to Google's services during the test.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM} "
                       "(apt-get install chromium; .ci/run does it)"),
]


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium for the length of the block."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
