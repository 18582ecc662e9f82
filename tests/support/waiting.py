"""Waiting for something another thread or process does, without sleeping longer than it takes."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 2.0, interval: float = 0.005) -> bool:
    """Poll `condition()` until it is true (True) or `timeout` seconds have passed (its last value)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(interval)
    return True
