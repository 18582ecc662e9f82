"""A site's gates seen from the operator's desk: `gated status` and `gated command`.

Both only talk to the broker:

    status    reads the retained `status` and `health` of every gate (gates/+/status, gates/+/health)
              and makes one row per gate of them;
    command   publishes a signed command (PROTOCOL §6) on gates/<gate>/cmd and waits for the gate's
              status to carry the command's nonce as `cmd` (docs/protocol.md: the gate republishes its
              status after every command it applies), then reports the mode the gate is in.

Every message is parsed inside its own boundary: a status or health that is not a JSON object is
noted against its gate (`problem`) and the rest of the site is shown as usual.
"""

from __future__ import annotations

import json
import os
import queue
import time
from dataclasses import dataclass, field

from paho.mqtt.subscribeoptions import SubscribeOptions

from gated import keys
from gated.brokerdiag import reason_words
from gated.core.announce import parse_device_announcement
from gated.core.command import COMMANDS, encode_command
from gated.core.errors import GatedError
from gated.core.occupancy import OccupancyRejected, read_occupancy
from gated.mqtt import MqttLink
from gated.mqtturl import UplinkSettings
from gated.topics import command_topic, gate_topic, occupancy_topic, root

HEALTH_SILENT_S = 120  # an online gate whose last health message is older than this: an alarm
EXPECTED_MODE = {"lock": "locked", "unlock": "online", "emergency_on": "emergency", "emergency_off": "online"}


class FleetError(GatedError, RuntimeError):
    """The broker could not be reached or refused us; the message says what to check."""


@dataclass
class GateView:
    gate: str
    status: dict | None = None
    health: dict | None = None
    problems: list[str] = field(default_factory=list)


def _age_s(ts, now_s: float) -> int | None:
    if not isinstance(ts, str):
        return None
    try:
        return max(0, int(now_s - keys.parse_time(ts)))
    except ValueError:
        return None


def _later(value, by: int | None):
    """A health figure that was `value` seconds `by` seconds ago."""
    return value + by if isinstance(value, int) and not isinstance(value, bool) and by is not None else None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _int(value) -> int | None:
    """An integer field of a gate's message, or None (a gate's messages are outside input)."""
    return value if type(value) is int else None


def _text(value) -> str | None:
    return value if type(value) is str else None


def gate_row(view: GateView, now_s: float) -> dict:
    """One gate's line of `gated status`: its retained status and health, aged to `now_s`."""
    status, health = view.status or {}, view.health or {}
    state = status.get("state")
    online = isinstance(state, str) and state != "offline"
    health_age = _age_s(health.get("ts"), now_s)
    mode = state if online else health.get("mode")
    alarms = []
    if not online:
        alarms.append("offline")
    if mode == "emergency":
        alarms.append("emergency")
    if health.get("camera_ok") is False:
        alarms.append("camera not delivering frames")
    if health.get("store_ok") is False:
        alarms.append("state database failing")
    if health.get("rev_stale") is True:
        alarms.append("revocation list stale" if health.get("rev") else "no revocation list yet")
    if health.get("clock_uncertain"):
        alarms.append("clock uncertain")
    if online and status.get("synced") is False:  # a replaced gate (docs/install-pi.md section 8)
        alarms.append("replaced: waiting for the admissions snapshot (gated admissions publish)")
    if online and (health_age is None or health_age > HEALTH_SILENT_S):
        alarms.append("no health report" if health_age is None else f"no health report for {health_age} s")
    alarms += view.problems
    return {
        "gate": view.gate,
        "online": online,
        "since": status.get("ts"),
        "since_s": _age_s(status.get("ts"), now_s),
        "mode": mode,
        "rev": health.get("rev", status.get("rev")),
        "rev_age_s": _later(health.get("rev_age_s"), health_age),
        "clock_source": _text(health.get("clock_source")),
        "clock_uncertain": health.get("clock_uncertain"),
        "clock_offset_ms": _int(health.get("clock_offset_ms")),
        "outbox": _int(health.get("outbox")),
        "last_scan_age_s": _later(health.get("last_scan_age_s"), health_age),
        "scans_per_min": _int(health.get("scans_per_min")),
        "health_age_s": health_age,
        "version": status.get("version"),
        "occupancy": _int(health.get("occupancy")),  # people inside the gate's zone as the gate counts them
        "occupancy_source": _text(health.get("occupancy_source")),  # central (the ledger's figure) or local
        "capacity": _int(health.get("capacity")),
        "checkin_list": _text(health.get("checkin_list")),  # the pretix check-in list held, and its version
        "checkin_list_version": _int(health.get("checkin_list_version")),
        "alarms": alarms,
    }


def _show(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value}{unit}"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def format_table(rows: list[dict], site: str, zones: dict[str, dict] | None = None) -> str:
    """The rows as a plain text table, one gate a line, alarms last; then people inside per zone
    against its capacity (the ledger's figures, `zones` from the occupancy topic), if any."""
    head = ("gate", "state", "since", "mode", "list", "list age", "clock", "outbox", "last scan", "scans/min", "alarms")
    lines = [head]
    for r in rows:
        clock = (
            "-"
            if r["clock_source"] is None
            else (
                f"{r['clock_source']}{' UNCERTAIN' if r['clock_uncertain'] else ''}"
                + ("" if r["clock_offset_ms"] is None else f" {r['clock_offset_ms']:+d} ms")
            )
        )
        lines.append(
            (
                r["gate"],
                "online" if r["online"] else "OFFLINE",
                _duration(r["since_s"]),
                _show(r["mode"]),
                "-" if not r["rev"] else f"v{r['rev']}",
                _duration(r["rev_age_s"]),
                clock,
                _show(r["outbox"]),
                _duration(r["last_scan_age_s"]) if r["last_scan_age_s"] is not None else "none",
                _show(r["scans_per_min"]),
                "; ".join(r["alarms"]) or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines]
    online = sum(r["online"] for r in rows)
    text.append(
        f"site {site}: {len(rows)} gate(s), {online} online, {sum(bool(r['alarms']) for r in rows)} with alarms"
    )
    text += [zone_line(name, zone) for name, zone in sorted((zones or {}).items())]
    held = [
        f"{r['gate']} {r['checkin_list']!r} v{r['checkin_list_version']}" for r in rows if r.get("checkin_list_version")
    ]
    if held:
        text.append(f"pretix check-in list: {', '.join(held)}")
    local = [r["gate"] for r in rows if r.get("occupancy_source") == "local"]
    if local and zones:
        text.append(f"counting inside from their own events (cannot hear the ledger): {', '.join(local)}")
    return "\n".join(text)


def zone_line(name: str, zone: dict) -> str:
    """`zone hall: 7 inside of 8 (88 %)`, FULL at or over its capacity."""
    inside, capacity = zone["inside"], zone.get("capacity")
    if capacity is None:
        return f"zone {name or '(none)'}: {inside} inside, no capacity set"
    full = "  FULL: entries are denied `capacity`" if inside >= capacity else ""
    return f"zone {name or '(none)'}: {inside} inside of {capacity} ({100 * inside // capacity} %){full}"


class SiteWatch:
    """A non-persistent MQTT session reading every gate's status and health (and sending commands)."""

    def __init__(self, settings: UplinkSettings, site: str, client_id: str | None = None):
        self.site = site
        self.views: dict[str, GateView] = {}
        self.link = MqttLink(
            settings, client_id or settings.client_id or f"gated-operator-{site}-{os.getpid()}", persistent=False
        )
        for leaf in ("status", "health"):
            self.link.add_subscription(gate_topic(site, "+", leaf), SubscribeOptions(qos=1))
        self.link.add_subscription(occupancy_topic(site), SubscribeOptions(qos=1))
        self.zones: dict[str, dict] = {}  # people inside per zone, as the ledger last published it
        self.refused: str | None = None

    def start(self, timeout: float, until=None) -> None:
        """Connect and subscribe within `timeout` (FleetError if not); return early once `until()` holds."""
        self.link.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.link.connected and self.link.wait_subscribed(0.05):
                return
            if self.pump(0.05, until):
                return
            if self.refused:
                raise FleetError(f"{self.link.settings.url}: {self.refused}")
        from gated.brokerdiag import probe

        cause = probe(self.link.settings, min(timeout, 5.0))
        raise FleetError(
            f"no connection to {self.link.settings.url} within {timeout:g} s: "
            + (cause or "the broker accepts TCP and TLS but did not answer the MQTT CONNECT")
        )

    def stop(self) -> None:
        self.link.stop()

    def pump(self, seconds: float, until=None) -> bool:
        """Apply what arrives for up to `seconds`; stop early (True) once `until()` holds."""
        deadline = time.monotonic() + seconds
        while True:
            if until is not None and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                item = self.link.inbox.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            self._handle(item)

    def settle(self, quiet_s: float = 0.3, limit_s: float = 5.0, until=None) -> None:
        """Take the retained messages: until nothing has come for `quiet_s` (or `limit_s` passed, or
        `until()` holds)."""
        deadline = time.monotonic() + limit_s
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < min(deadline, quiet_until):
            if until is not None and until():
                return
            try:
                item = self.link.inbox.get(timeout=min(0.05, max(quiet_until - time.monotonic(), 0.001)))
            except queue.Empty:
                continue
            self._handle(item)
            quiet_until = time.monotonic() + quiet_s

    def _handle(self, item: tuple) -> None:
        if item[0] == "refused":
            self.refused = item[1]
        if item[0] != "message":
            return
        message = item[1]
        self.link.ack(message)
        if message.topic == occupancy_topic(self.site):
            try:
                self.zones = read_occupancy(message.payload, site=self.site)[0] if message.payload else {}
            except OccupancyRejected:
                self.zones = {}  # not the ledger's: show nothing rather than a wrong figure
            return
        prefix = root(self.site) + "gates/"
        gate, _, leaf = message.topic[len(prefix) :].partition("/")
        if not message.topic.startswith(prefix) or leaf not in ("status", "health") or not gate:
            return
        view = self.views.setdefault(gate, GateView(gate))
        view.problems = [p for p in view.problems if not p.startswith(leaf)]
        if not message.payload:  # a cleared retained topic
            setattr(view, leaf, None)
            return
        try:
            body = json.loads(message.payload, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):  # not JSON, NaN/Infinity, nested too deep
            body = None
        if not isinstance(body, dict):
            view.problems.append(f"{leaf} message is not a JSON object")
            return
        setattr(view, leaf, body)

    def rows(self, now_s: float | None = None) -> list[dict]:
        now_s = time.time() if now_s is None else now_s
        return [gate_row(self.views[g], now_s) for g in sorted(self.views)]

    # commands ----------------------------------------------------------------------------------
    def command(self, key, gates: list[str], name: str, timeout: float, until=None) -> list[dict]:
        """Send `name` to each gate, signed with `key`, and wait up to `timeout` for every
        acknowledgement (or until `until()` holds: the wait given up). One result per gate: gate,
        command, nonce, confirmed, mode, detail."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}")
        nonce = time.time_ns() // 1000  # microseconds: above any nonce an earlier command used
        pending = {}
        for gate in gates:
            blob = encode_command(
                key, gate=gate, command=name, nonce=nonce, iat=int(time.time())
            )  # a fresh iat: gates refuse old ones
            mid = self.link.publish(command_topic(self.site, gate), blob, 1, False)
            if mid is None:
                raise FleetError(f"could not hand the command for {gate} to the MQTT client")
            pending[gate] = mid
        refused: dict[str, str] = {}
        mids = {mid: gate for gate, mid in pending.items()}

        def acknowledged(gate: str) -> bool:
            status = (self.views.get(gate) or GateView(gate)).status or {}
            return status.get("cmd") == nonce

        def done() -> bool:
            return all(acknowledged(g) or g in refused for g in gates)

        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline and not (until is not None and until()):
            try:
                item = self.link.inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if item[0] == "published" and item[1] in mids and item[2] >= 0x80:
                refused[mids[item[1]]] = (
                    f"the broker refused the command: {reason_words(item[2])}: check its access rules (is this certificate `central`?)"
                )
            self._handle(item)
        given_up = not done() and time.monotonic() < deadline  # until() held first
        results = []
        for gate in gates:
            status = (self.views.get(gate) or GateView(gate)).status or {}
            mode = status.get("state")
            result = {"gate": gate, "command": name, "nonce": nonce, "confirmed": False, "mode": mode}
            if gate in refused:
                result["detail"] = refused[gate]
            elif not acknowledged(gate) and given_up:
                result["detail"] = (
                    "stopped waiting before its acknowledgement came: the broker has the command, the gate "
                    "may still apply it (see `gated status`)"
                )
            elif not acknowledged(gate):
                result["detail"] = f"no acknowledgement within {timeout:g} s: " + (
                    "the gate is offline (the broker keeps the command; a gate refuses it once it is too old)"
                    if mode in (None, "offline")
                    else "the gate ignored it (is this key trusted with role `command` in its keyring? see its log)"
                )
            elif name in EXPECTED_MODE and mode != EXPECTED_MODE[name]:
                result["detail"] = f"applied, but the gate is {mode} (expected {EXPECTED_MODE[name]})"
            else:
                result["confirmed"] = True
                result["detail"] = "relay opened" if name == "open" else f"now {mode}"
            results.append(result)
        return results


# --- device-key enrolment -------------------------------------------------------------------------


@dataclass
class Announcement:
    gate: str
    kid: str | None
    public_key: object | None  # Ed25519PublicKey
    problem: str | None = None
    trusted_kid: str | None = None  # the kid the keyring trusts as this gate's device key, if any

    @property
    def state(self) -> str:
        if self.problem:
            return "unusable"
        if self.trusted_kid is None:
            return "new"
        return "trusted" if self.trusted_kid == self.kid else "different"


def announcements(views: dict[str, GateView], keyring) -> list[Announcement]:
    """The device keys the gates announce in their status, compared with `keyring` (None: empty)."""
    trusted = {}
    for key in keyring.keys if keyring is not None else ():
        if "device" in key.roles:
            trusted[key.name] = key.kid.hex()
    out = []
    for gate in sorted(views):
        status = views[gate].status or {}
        if not keys.KEY_NAME.match(gate):  # a status topic anyone on the bridge may write: never approvable
            out.append(Announcement(gate, None, None, problem=f"the gate id is not {keys.KEY_NAME_TEXT}"))
            continue
        try:
            kid, public_key = parse_device_announcement(status)
        except ValueError as exc:
            out.append(Announcement(gate, None, None, problem=str(exc), trusted_kid=trusted.get(gate)))
            continue
        out.append(Announcement(gate, kid, public_key, trusted_kid=trusted.get(gate)))
    return out


def approve(keyring_dir, found: Announcement, *, replace: bool = False) -> None:
    """Trust an announced key as `device` for its gate (named after the gate) in keyring_dir."""
    import tempfile
    from pathlib import Path

    if found.state == "different" and not replace:
        raise FleetError(
            f"{found.gate}: the keyring trusts another device key (kid {found.trusted_kid}) for this "
            "gate; a replaced gate or state database? approve with --replace if so"
        )
    with tempfile.TemporaryDirectory() as tmp:  # the gate id is outside input: trust_key_file checks the name
        pem = Path(tmp) / "device.pub"
        pem.write_bytes(keys.public_pem(found.public_key))
        keys.trust_key_file(keyring_dir, pem, "device", name=found.gate, replace=replace)
