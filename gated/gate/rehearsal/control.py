"""The simulator's hand inside a gate process: a Unix socket that steers the world around the gate.

Only ever started when the configuration has `[sim] control_socket`; a real gate never listens.
It fakes nothing inside the gate: it changes what the synthetic camera sees and drives the mock
pins of the turnstile's input devices (passage sensor, emergency button), as a person or an
electrician would, and reads the pins of its outputs (relay, lamps) back.

Wire format: one JSON object per line each way, one answer per request, on a stream socket.

    {"op": "show", "text": "GT1:..."}          camera sees this code (null: nothing)   -> {"ok": true}
    {"op": "drive", "device": "passage", "active": true}
                                               input device goes active (or inactive), honouring
                                               its wiring's polarity (Turnstile.active_level)  -> {"ok": true}
    {"op": "drive", "device": "passage", "level": "high"}   the raw pin level instead
    {"op": "state"}                            -> {"ok": true, "devices": {name: {"kind": "input"|"output",
                                               "pin": str, "active": bool, "activations": int}}}
    {"op": "stall", "seconds": 2.5}            the camera hangs: no frames until it is reopened (the gate's
                                               supervision does) or, with seconds, at most that long
                                               -> {"ok": true, "recovery": "how it ends"}
    {"op": "ping"}                             -> {"ok": true, "pid": int}

`activations` counts rising edges to the active level in the mock pin's history, so the
simulator can tell that the relay pulsed even if it polls after the pulse ended.
A request that cannot be done answers {"ok": false, "error": "..."}; the gate keeps running.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import socketserver
import threading
from pathlib import Path

from gated.core.errors import GatedError


class ControlError(GatedError, ValueError):
    """A request the control socket cannot carry out (unknown device, camera without stall...)."""


def find_devices(turnstile) -> dict:
    """The turnstile's devices by attribute name (a leading underscore dropped): gpiozero devices
    and the turnstile's inputs (gated.gate.turnstile.Input). Found by type, so this keeps working
    whatever the turnstile module names them."""
    from gpiozero import Device

    from gated.gate.turnstile import Input

    found = {}
    for attr, value in vars(turnstile).items():
        values = value.items() if isinstance(value, dict) else [(attr, value)]
        for name, device in values:
            if isinstance(device, (Device, Input)) and getattr(device, "pin", None) is not None:
                found[str(name).lstrip("_")] = device
    return found


def _is_input(device) -> bool:
    from gpiozero import InputDevice

    from gated.gate.turnstile import Input

    return isinstance(device, (Input, InputDevice))


def _activations(device, active_high: bool) -> int:
    states = getattr(device.pin, "states", None)
    if not states:
        return 0
    count, previous = 0, None
    for entry in states:
        level = bool(entry.state)
        if previous is not None and level == active_high and previous != active_high:
            count += 1
        previous = level
    return count


class Controller:
    """The requests, apart from the socket (tests call this directly too)."""

    def __init__(self, *, camera, turnstile, gate=None):
        self.camera, self.turnstile, self.gate = camera, turnstile, gate
        self.devices = find_devices(turnstile) if turnstile is not None else {}

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            if op == "show":
                text = request.get("text")
                if text is not None and not isinstance(text, str):
                    raise ControlError("text must be a string or null")
                self.camera.show(text)
                return {"ok": True}
            if op == "drive":
                self.drive(request.get("device"), active=request.get("active"), level=request.get("level"))
                return {"ok": True}
            if op == "state":
                return {"ok": True, "devices": self.state()}
            if op == "stall":
                return {"ok": True, "recovery": self.stall(request.get("seconds"))}
            raise ControlError(f"unknown op {op!r} (show, drive, state, stall, ping)")
        except (ControlError, TypeError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    def stall(self, seconds) -> str:
        """Hang the camera. A camera whose stall() takes no duration hangs until it is reopened (the
        daemon's supervision does that); with `seconds` it is also reopened from here after that
        long, a transient hang. Says which recovery applies."""
        stall = getattr(self.camera, "stall", None)
        if stall is None:
            raise ControlError("this camera cannot stall (no stall() method)")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
            raise ControlError("seconds must be a number >= 0")
        try:
            takes_duration = bool(inspect.signature(stall).parameters)
        except (TypeError, ValueError):
            takes_duration = False
        if takes_duration:
            stall(float(seconds or 0))
            return f"by itself after {float(seconds or 0):g} s"
        stall()
        reopen = getattr(self.camera, "open", None)
        if seconds and reopen is not None:
            timer = threading.Timer(float(seconds), reopen)
            timer.daemon = True
            timer.start()
            return f"reopened after {float(seconds):g} s, or earlier by the gate's camera supervision"
        return "when the gate's camera supervision reopens it"

    def drive(self, name, *, active=None, level=None) -> None:
        device = self.devices.get(name)
        if device is None:
            raise ControlError(f"no device {name!r} (have: {', '.join(sorted(self.devices))})")
        if not _is_input(device):
            raise ControlError(f"{name} is an output; only inputs can be driven")
        if level is not None:
            if level not in ("high", "low"):
                raise ControlError("level must be 'high' or 'low'")
            high = level == "high"
        elif isinstance(active, bool):
            high = active == self._active_level(name)
        else:
            raise ControlError("give active (true/false) or level ('high'/'low')")
        pin = device.pin
        if not hasattr(pin, "drive_high"):
            raise ControlError(f"{name} is on a real pin ({pin}); only mock pins can be driven")
        pin.drive_high() if high else pin.drive_low()

    def state(self) -> dict:
        out = {}
        for name, device in sorted(self.devices.items()):
            out[name] = {
                "kind": "input" if _is_input(device) else "output",
                "pin": str(device.pin),
                "active": bool(device.is_active),
                "activations": _activations(device, self._active_level(name)),
            }
        return out

    def _active_level(self, name: str) -> bool:
        """True: the device is active when its pin is high (the turnstile knows from the board)."""
        level = getattr(self.turnstile, "active_level", None)
        if level is None:
            raise ControlError(f"cannot tell {name}'s active level: the turnstile does not say")
        return level(name)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                answer = self.server.controller.handle(request)
            except ValueError as exc:
                answer = {"ok": False, "error": f"bad request: {exc}"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    """A running control socket; stop() closes it and removes the socket file."""

    def __init__(self, path: Path, controller: Controller):
        self.path = path
        if path.exists() or path.is_symlink():
            path.unlink()  # a stale socket from a killed gate
        path.parent.mkdir(parents=True, exist_ok=True)
        self._server = _Server(str(path), _Handler)
        self._server.controller = controller
        self._thread = threading.Thread(target=self._server.serve_forever, name="simcontrol", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    __call__ = stop


def serve(socket_path: str | os.PathLike, *, camera, turnstile, gate=None) -> ControlServer:
    """Listen on `socket_path` (inside the gate process); returns the server (stop() or call it to end)."""
    return ControlServer(Path(socket_path), Controller(camera=camera, turnstile=turnstile, gate=gate))


class Client:
    """The simulator's side: one connection, one request at a time (guarded by a lock)."""

    def __init__(self, socket_path: str | os.PathLike, timeout: float = 5.0):
        self.path = str(socket_path)
        self.timeout = timeout
        self._sock = None
        self._file = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self._sock, self._file = sock, sock.makefile("rwb")

    def request(self, op: str, **fields) -> dict:
        """Send one request; raises OSError when the gate is not there (killed, not started yet)."""
        with self._lock:
            if self._sock is None:
                self._connect()
            try:
                self._file.write(json.dumps({"op": op, **fields}).encode() + b"\n")
                self._file.flush()
                line = self._file.readline()
                if not line:
                    raise ConnectionResetError("control socket closed")
            except OSError:
                self._close()
                raise
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ControlError(answer.get("error", "request refused"))
        return answer

    def _close(self) -> None:
        for thing in (self._file, self._sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
        self._sock = self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()
