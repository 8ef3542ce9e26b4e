"""Token buckets: what a flood of bad packets may cost in log lines and error replies is bounded per second."""

from __future__ import annotations

import logging
import threading
import time


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; take() spends one if there is one."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.last = clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class LimitedLog:
    """A logger's lines through a token bucket; lines over the limit are counted, and the count is logged as
    one "suppressed N" line with the next line that gets through (or at flush())."""

    def __init__(self, logger: logging.Logger, rate: float = 10.0, burst: float = 10.0, clock=time.monotonic):
        self.logger = logger
        self.bucket = TokenBucket(rate, burst, clock)
        self.suppressed = 0
        self.lock = threading.Lock()

    def log(self, level: int, message: str, *args, exc_info=None) -> bool:
        if not self.logger.isEnabledFor(level):
            return False
        if not self.bucket.take():
            with self.lock:
                self.suppressed += 1
            return False
        self.flush()
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args) -> bool:
        return self.log(logging.WARNING, message, *args)

    def flush(self) -> None:
        with self.lock:
            count, self.suppressed = self.suppressed, 0
        if count:
            self.logger.warning("suppressed %d similar log line(s) (more than %g a second)", count,
                                self.bucket.rate)
