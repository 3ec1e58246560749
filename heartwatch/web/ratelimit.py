"""Fixed-window counters: the optional per-check ping rate limit, and the brake on wrong login passwords.

A fixed window (count per key, all counts dropped when the window ends) is O(1) per hit and its memory is
bounded by the hits of one window, whatever keys an attacker makes up: keys of unknown checks cost one
dict entry until the window ends, never longer. Its one weakness, up to twice the limit across a window
boundary, does not matter for keeping a flood off the disk.
"""

from __future__ import annotations

import math
from collections.abc import Hashable


class FixedWindow:
    """At most `limit` hits per key in each window of `seconds`; time is passed in (seconds since the epoch)."""

    def __init__(self, limit: int, seconds: float = 60.0) -> None:
        if limit < 1:
            raise ValueError(f"a limit is at least 1, got {limit}")
        self.limit, self.seconds = limit, seconds
        self._counts: dict[Hashable, int] = {}
        self._window_end = -math.inf

    def hit(self, key: Hashable, now: float) -> float:
        """Count a hit; 0.0 when it is allowed, else the seconds until the window ends (for Retry-After).

        Windows are aligned to multiples of `seconds` (whole minutes for the ping limit), so every key's
        window ends at the same moment and one `clear()` resets them all. A clock that stepped back more
        than a window also starts a fresh one, rather than blocking until the clock has caught up.
        """
        if now >= self._window_end or now < self._window_end - self.seconds:
            self._counts.clear()
            self._window_end = (now // self.seconds + 1) * self.seconds
        count = self._counts.get(key, 0) + 1
        if count > self.limit:
            return self._window_end - now  # a refused hit is not counted: the count cannot grow past limit+1
        self._counts[key] = count
        return 0.0

    def retry_after(self, now: float) -> int:
        """Whole seconds (at least 1) until the current window ends: the Retry-After of a refused hit."""
        return max(1, math.ceil(self._window_end - now))

    def forget(self, key: Hashable) -> None:
        """Drop a key's count (a successful login clears that address's wrong tries)."""
        self._counts.pop(key, None)
