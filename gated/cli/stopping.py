"""How a long-running command stops: SIGTERM (systemd, `kill`) and Ctrl-C set an event its loop
checks between two steps, so neither lands as an exception inside a library's code (paho holding
one of its locks, a database mid-statement) and the command ends cleanly, with its summary.

    with stop_on_signals() as stop:
        while not stop.is_set():
            ...one step...
            stop.wait(period)

A second Ctrl-C interrupts at once (KeyboardInterrupt: `gated` exits 130), for a stop that hangs.
The handlers are put back on leaving. Signals reach only the main thread: called from another one
(an embedding program), the event is only set by the caller.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def stopping(signum, frame) -> None:
        stop.set()
        if signum == signal.SIGINT:  # the next Ctrl-C interrupts whatever the stop is waiting on
            signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, stopping)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
