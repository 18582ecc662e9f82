"""`gated run` as a subprocess for end-to-end tests: its config, its JSON log lines, a systemd
notify socket to catch READY=1/WATCHDOG=1, and an MQTT collector for the events it reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import tomli_w

from gated.core import events
from gated.gate.tracker import WINDOW_S

ROOT = Path(__file__).resolve().parents[2]
GATED = Path(sys.executable).parent / "gated"
EXAMPLE = ROOT / "firmware_config" / "gated.example.toml"
SIGHT_MARGIN_S = 0.3  # a loaded test machine's camera thread may read a frame this much late ...
SHOWN_AGAIN_S = 3.0  # ... and when a text shown again is not judged this long after the hold-off,
SHOWINGS = 3  # it is taken away again and shown again, this many showings in all


def gate_config(
    tmp: Path,
    *,
    keyring: Path,
    broker_url: str,
    camera_source: str,
    site: str,
    gate: str,
    event: str,
    board: str = "relay-only",
    **sections,
) -> dict:
    """firmware_config/gated.example.toml adapted to a test bench: this gate's identity and keyring,
    a state dir in `tmp`, mock pins, the given camera, a local broker without TLS or password,
    JSON logs, fast health. `sections` then override keys table by table."""
    cfg = tomllib.loads(EXAMPLE.read_text())
    cfg["gate"].update(
        site=site, id=gate, events=[event], zone="north", keyring=str(keyring), state_dir=str(tmp / "state")
    )
    cfg["camera"].update(source=camera_source, width=640, height=480)
    cfg["turnstile"].update(board=board, pin_factory="mock")
    cfg["timings"].update(relay_pulse_s=0.05, debounce_s=0.5)
    cfg["clock"].update(trust_system_clock=True)
    cfg["revocations"].update(max_age_s=3600.0, when_stale="open")
    cfg["mqtt"] = {"url": broker_url, "keepalive_s": 5}
    cfg["logging"].update(format="json")
    cfg["health"].update(interval_s=0.5)
    for name, table in sections.items():
        cfg[name] = {**cfg.get(name, {}), **table}
    return cfg


class NotifySocket:
    """A stand-in for systemd's notify socket: collects the datagrams a service sends."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def saw(self, word: str) -> int:
        return sum(word in m.split("\n") for m in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class GateProcess:
    """One `gated run --config FILE`; stderr's JSON lines are parsed into `logs` as they come."""

    def __init__(self, config_path: Path, *, notify: NotifySocket | None = None, env: dict | None = None):
        self.config_path = config_path
        self.notify = notify
        self.env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", **(env or {})}
        self.env.pop("JOURNAL_STREAM", None)
        if notify is not None:
            self.env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")
        self.process: subprocess.Popen | None = None
        self.logs: list[dict] = []
        self.raw: list[str] = []
        self._reader: threading.Thread | None = None
        self._hidden_at: dict[str, float] = {}  # text -> when judge() last took it away
        timings = tomllib.loads(config_path.read_text()).get("timings", {})
        self.hold_off_s = float(timings.get("debounce_s", 3.0))

    def start(self) -> "GateProcess":
        self.logs, self.raw = [], []
        self.process = subprocess.Popen(
            [str(GATED), "run", "--config", str(self.config_path)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        return self

    def _read(self, process) -> None:
        for line in process.stderr:
            self.raw.append(line)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                self.logs.append(entry)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition"):
        result = self._until(predicate, timeout)
        if result:
            return result
        if self.process.poll() is not None:
            time.sleep(0.2)  # let the reader catch the last lines
            raise AssertionError(
                f"gated run exited ({self.process.returncode}) while waiting for {what}:\n" + "".join(self.raw[-30:])
            )
        raise AssertionError(f"timed out waiting for {what}; last log lines:\n" + "".join(self.raw[-30:]))

    def _until(self, predicate, timeout: float):
        """`predicate()`'s first true result within `timeout`; None at the timeout or once the gate exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            if self.process.poll() is not None:
                return None
            time.sleep(0.02)
        return None

    def logged(self, event: str) -> list[dict]:
        return [e for e in list(self.logs) if e.get("event") == event]

    def scans(self) -> list[dict]:
        return self.logged("scan")

    def judge(self, camera, text: str, *, settle_s: float = 0.0) -> dict:
        """Show `text` to the gate's camera (its control socket client) until the gate has judged
        it once more, take it away, wait `settle_s`; that scan's log line. A scan of the ticket
        shown before, when another text is shown now, is not the answer: a loaded gate may still
        decode frames of it after it was taken away (or read it from its stacked frames).
        A text shown before is shown again only once the gate sees a new presentation in it: the
        Tracker may read it from its recent frames for WINDOW_S after it was taken away, and a code
        admitted on a board without a passage sensor, or refused for good, is judged again only
        after that, out of sight for the hold-off (`timings.debounce_s`; gated/gate/scanner.py). A
        loaded machine's camera thread may see it later than that: a text shown again and not
        judged within SHOWN_AGAIN_S is taken away for as long again and shown once more."""
        again = text in self._hidden_at
        if again:
            self._out_of_sight(text)
        before = len(self.scans())
        previous_text, previous_ticket = getattr(self, "_shown", (None, None))
        stale = previous_ticket if previous_text != text else None

        def answers():
            return [s for s in self.scans()[before:] if stale is None or s.get("ticket") != stale]

        camera.request("show", text=text)
        try:
            for _ in range(SHOWINGS - 1 if again else 0):
                if self._until(answers, self.hold_off_s + WINDOW_S + SHOWN_AGAIN_S) or self.process.poll() is not None:
                    break  # judged, or the gate exited: wait_for says so, with its last log lines
                self.hide(camera, text)  # still held from the last showing: out of sight again
                self._out_of_sight(text)
                if answers():
                    break
                camera.request("show", text=text)
            self.wait_for(answers, what="the code judged")
        finally:
            try:
                self.hide(camera, text)
            except OSError:  # the gate (its control socket) is gone: the error above tells why
                pass
        answer = answers()[0]
        self._shown = (text, answer.get("ticket"))
        time.sleep(settle_s)
        return answer

    def hide(self, camera, text: str) -> None:
        """Take the code shown (`text`) away from the camera; `judge` shows it again only once the
        gate sees a new presentation in it."""
        camera.request("show", text=None)
        self._hidden_at[text] = time.monotonic()

    def _out_of_sight(self, text: str) -> None:
        time.sleep(max(0.0, self._hidden_at[text] + WINDOW_S + self.hold_off_s + SIGHT_MARGIN_S - time.monotonic()))

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda: self.logged("gate ready"), timeout, "gate ready")

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.terminate()
        return self._wait(timeout)

    def kill(self) -> int:
        self.process.kill()
        return self._wait(10)

    def _wait(self, timeout: float) -> int:
        rc = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return rc

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class EventCollector:
    """Subscribes to a gate's events (and health) and keeps each event once, by id."""

    def __init__(self, port: int, site: str, gate: str):
        self.site, self.gate = site, gate
        self.events: dict[int, dict] = {}
        self.health: list[dict] = []
        self.status: list[dict] = []
        self.deliveries = 0
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        root = f"gated/v1/{site}/gates/{gate}/"
        self.client.subscribe([(root + "events", 1), (root + "health", 1), (root + "status", 1)])
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("collector could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        body = json.loads(message.payload)
        with self._lock:
            if message.topic.endswith("/health"):
                self.health.append(body)
            elif message.topic.endswith("/status"):
                self.status.append(body)
            else:
                self.deliveries += 1
                self.events.setdefault(body["seq"], body)

    def chain(self) -> list[dict]:
        with self._lock:
            return [self.events[s] for s in sorted(self.events)]

    def wait_for_seq(self, seq: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(s in self.events for s in range(1, seq + 1)):
                    return
            time.sleep(0.02)
        raise AssertionError(f"events 1..{seq} did not all arrive; have {sorted(self.events)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_chain(chain: list[dict], device_public_key) -> None:
    """seq 1..n without gaps, each `prev` the previous `hash`, each hash and signature valid."""
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1)), [e["seq"] for e in chain]
    prev = events.GENESIS
    for event in chain:
        assert event["prev"] == prev, f"chain broken at {event['id']}"
        problems = events.check_seal(event, device_public_key)
        assert not problems, f"{event['id']}: {problems}"
        prev = event["hash"]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(tomli_w.dumps(cfg))
    return path
