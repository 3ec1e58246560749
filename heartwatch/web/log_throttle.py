"""Repeated identical errors logged once per interval with a count, instead of once per request.

Why: with the disk full, every ping failed with the same traceback: 12,010 tracebacks, 13.6 MB of log in 8 s
(issue 14, finding 8), which fills the disk that is already full and buries everything else. The first of a
kind is logged whole (with its traceback); the same error again within INTERVAL is only counted, and the next
one after it says how many there were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two log lines about the same error.
INTERVAL = 60.0
#: Kinds of error remembered at once; past it the oldest are forgotten (a kind is its message, which may vary).
MAX_KINDS = 256


class LogThrottle:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._seen: dict[tuple[str, str, str], list[float]] = {}  # kind -> [last logged at, count since]

    def exception(self, what: str, error: BaseException) -> None:
        """Log `what` with `error` (and its traceback the first time), or count it if logged lately."""
        key = (what, type(error).__name__, str(error))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= MAX_KINDS:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = [now, 0]
            self.logger.error(what, exc_info=error)
            return
        if now - seen[0] < self.interval:
            seen[1] += 1
            return
        repeats, elapsed = seen[1] + 1, now - seen[0]
        seen[0], seen[1] = now, 0
        self.logger.error("%s: %s: %s (%d times in the last %.0f s)", what, type(error).__name__, error, repeats,
                          elapsed)
