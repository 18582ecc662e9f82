"""The scan loop: frame -> decode -> debounce -> decide, as `gated run` runs it and as
bench/latency.py times it (one copy of the code, so the benchmark times what ships).

Two halves, on two threads (see gated/gate/daemon.py):

    read_codes()   the camera thread: frame = camera.read() -> scanner.decode(frame) ->
                   debouncer.feed() -> codes.put((text, captured_at)); the texts the debouncer
                   holds off go back to the scanner (judged_in_view: read at their place alone
                   from the next frame on, the rest of the frame read without them). Never
                   touches the store.
                   A camera that raises is reported (on_fault) and retried every half second;
                   a stalled one is the supervised source's to reopen (gated.gate.camera.SupervisedSource).
    judge()        the owner thread: one (text, captured_at) from the queue to Gate.on_code(),
                   which decides, commits and only then moves the relay. Each scan runs inside
                   Gate.on_code's own error boundary; a StoreError (the gate stayed shut) is
                   logged here and reported as None so the caller can stop its watchdog pings.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable

import structlog

from gated.core.decide import Decision
from gated.gate.frames import CameraError, Frame
from gated.gate.scanner import Debouncer, Scanner
from gated.gate.store import StoreError

log = structlog.get_logger("gated.gate.scanloop")

READ_TIMEOUT_S = 0.5  # longest wait for one frame before the stop flag is looked at again
FAULT_RETRY_S = 0.5  # a failing camera is tried again this often
FINISHED_WAIT_S = 0.05  # a file source at its end: how often to look whether to stop


def read_codes(
    camera,
    scanner: Scanner,
    debouncer: Debouncer,
    codes: queue.Queue,
    stop: threading.Event,
    *,
    on_frame: Callable[[Frame, list[str]], None] | None = None,
    on_fault: Callable[[Exception], None] | None = None,
    on_lost: Callable[[Frame, Exception], None] | None = None,
) -> None:
    """The camera thread, until `stop` is set: every code read, once per debounce hold-off, goes
    into `codes` as (text, captured_at). `on_frame(frame, texts)` is called after each frame is
    decoded (the daemon counts frames and clears its camera fault there; the benchmark times the
    decode); `on_fault(exc)` when the camera raises (CameraError, OSError); `on_lost(frame, exc)`
    when the decoder raises on a frame.

    A frame the decoder raises on is lost alone: it is logged (`frame not decoded`, once for a run
    of the same error, with the frame's origin), it is neither counted nor fed to the debouncer
    (it tells nothing of what is in view; a decoder failing on every frame stops the daemon's
    watchdog pings as a stalled camera does), and the loop goes on with the next frame."""
    failing: _Failing | None = None
    while not stop.is_set():
        try:
            frame = camera.read(timeout=READ_TIMEOUT_S)
        except (CameraError, OSError) as exc:  # supervision reopens a stalled camera; this is worse
            if on_fault is not None:
                on_fault(exc)
            stop.wait(FAULT_RETRY_S)
            continue
        if frame is None:  # nothing new yet, a stall being handled, or a file source at its end
            if camera.finished:
                stop.wait(FINISHED_WAIT_S)
            continue
        try:
            texts = scanner.decode(frame.gray)
        except Exception as exc:  # noqa: BLE001  a frame the decoder chokes on costs that frame, not the camera thread
            failing = _undecoded(failing, exc, frame)
            if on_lost is not None:
                on_lost(frame, exc)
            continue
        if failing is not None:
            log.warning("frames decoded again", frames_lost=failing.frames, last_error=failing.error)
            failing = None
        if on_frame is not None:
            on_frame(frame, texts)
        for text in debouncer.feed(texts, frame.captured_at):
            codes.put((text, frame.captured_at))
        # what the gate has judged and holds off does not end the next frames' reading (Scanner.signs)
        scanner.judged_in_view(debouncer.holding_off())


@dataclass
class _Failing:
    """Frames the decoder raised on since the last one it decoded; the last error."""

    error: str
    frames: int = 0


def _undecoded(failing: _Failing | None, exc: Exception, frame: Frame) -> _Failing:
    """Count a frame lost to the decoder; log the first of each run of one error, with its traceback
    (a fault of ours in a pass looks like nothing else in the log)."""
    error = f"{type(exc).__name__}: {exc}"
    if failing is None or failing.error != error:
        log.error("frame not decoded", error=error, origin=frame.origin, seq=frame.seq, exc_info=exc)
        failing = _Failing(error, failing.frames if failing is not None else 0)
    failing.frames += 1
    return failing


def judge(gate, text: str, captured_at: float | None) -> Decision | None:
    """The owner thread: one code to the gate, and its log line. None when the store failed (the
    gate stayed shut, and said so); the caller keeps going."""
    try:
        decision = gate.on_code(text, captured_at)
    except StoreError as exc:
        log.error("store fault: gate stays shut", step="scan", error=str(exc))
        return None
    event = gate.last_scan or {}
    log.info(
        "scan",
        id=event.get("id"),
        decision=decision.word,
        reason=decision.reason.value,
        ticket=event.get("ticket"),
        latency_us=event.get("latency_us"),
        relay_latency_us=gate.last_latency_us if decision.admit else None,
    )
    return decision
