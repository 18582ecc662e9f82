"""The venue's machinery for one simulation run: keys, broker, ledger, gate processes, and a
listener on the broker. The runner (sim/runner.py) plays the crowd against it.

Everything here is the real thing: `gated run` processes (each with a synthetic camera and
gpiozero mock pins, steered through its control socket, gated/gate/rehearsal/control.py), `gated ledger`,
a Mosquitto, revocation updates through gated.central.publisher, signed time beacons.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import tomli_w

from gated import keys
from gated.atomicfile import write_atomic
from gated.core.errors import GatedError
from gated.core.events import EPOCH_SHIFT
from gated.gate.rehearsal.control import Client, ControlError
from gated.gate.store import GateStore
from gated.topics import gate_topic
from sim.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]


class VenueError(GatedError, RuntimeError):
    """A part of the venue would not start; the message says which and where its log is."""


def gated_command() -> list[str]:
    return [sys.executable, "-m", "gated.cli"]


class GateProcess:
    """One `gated run` with its config, state dir, control socket and log."""

    def __init__(self, gate_id: str, directory: Path, socket_path: Path, config: dict, clock_offset_s: float = 0.0):
        self.id = gate_id
        self.directory = directory
        self.socket_path = socket_path
        self.config_path = directory / "gated.toml"
        self.log_path = directory / "gate.log"
        self.db_path = directory / "state" / "gate.db"
        write_atomic(self.config_path, tomli_w.dumps(config))
        self.clock_offset_s = clock_offset_s
        self.process: subprocess.Popen | None = None
        self.client = Client(socket_path, timeout=5.0)
        self.up_since: float | None = None  # monotonic; None while down
        self.starts = 0
        self.made_before = 0  # events of the chains of this gate's earlier (replaced) states

    def start(self) -> None:
        if self.clock_offset_s:
            argv = [
                sys.executable,
                "-m",
                "sim.skewed",
                str(self.clock_offset_s),
                "run",
                "--config",
                str(self.config_path),
            ]
        else:
            argv = gated_command() + ["run", "--config", str(self.config_path)]
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )
        self.starts += 1

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VenueError(
                    f"gate {self.id} exited ({self.process.returncode}) before it was ready; "
                    f"see {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                self.client.request("ping")
                self.up_since = time.monotonic()
                return
            except (OSError, ControlError):
                self.client.close()
                time.sleep(0.1)
        raise VenueError(
            f"gate {self.id}: control socket {self.socket_path} not answering after {timeout:.0f} s; "
            f"see {self.log_path}:\n{_tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown steps at all, as a power cut or the OOM killer would."""
        self.up_since = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.client.close()

    def stop(self) -> int | None:
        self.up_since = None
        self.client.close()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode

    def db_seq(self) -> int:
        """The gate's event counter, read from its database (read-only; the gate is the writer)."""
        return int(_read_db(self.db_path, "SELECT value FROM meta WHERE key = 'seq'", one=True) or 0)

    def events_made(self) -> int:
        """Events made by this gate, over all its chains (a replaced gate's old ones in `made_before`)."""
        return self.made_before + (self.db_seq() & ((1 << EPOCH_SHIFT) - 1))

    def synced(self) -> bool:
        return not int(_read_db(self.db_path, "SELECT value FROM meta WHERE key = 'needs_sync'", one=True) or 0)

    def replace(self) -> str:
        """The card died: the state is gone (kept aside for inspection), and `gated replace` makes a
        new one, a new chain with a new device key, as docs/install-pi.md says. The new key's kid."""
        self.made_before = self.events_made()
        dead = self.directory / f"state.dead-{self.starts}"
        (self.directory / "state").rename(dead)
        (self.directory / "state").mkdir(mode=0o700)
        out = subprocess.run(
            gated_command() + ["replace", "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        if out.returncode != 0:
            raise VenueError(f"gate {self.id}: gated replace failed: {out.stderr.strip()}")
        kid = next(
            (
                w
                for line in out.stdout.splitlines()
                if line.startswith("device key kid")
                for w in [line.split()[3].rstrip(":")]
            ),
            None,
        )
        if kid is None:
            raise VenueError(f"gate {self.id}: gated replace printed no kid: {out.stdout.strip()}")
        return kid

    def knows(self, event_id: str) -> bool:
        """Whether this gate has taken in a peer's movement (an admission or exit scanned there, a
        free exit counted there), read from its database: what its occupancy count and its
        already-used check see."""
        peer, _, seq = event_id.rpartition(":")
        if not peer or not seq.isdigit():
            return False
        sql = (
            "SELECT 1 FROM peer_admissions WHERE gate = ?1 AND seq = ?2"
            " UNION ALL SELECT 1 FROM free_exits WHERE gate = ?1 AND seq = ?2"
        )
        return bool(_read_db(self.db_path, sql, (peer, int(seq))))

    def outbox_after(self, seq: int) -> list[dict]:
        rows = _read_db(self.db_path, "SELECT event FROM outbox WHERE seq > ? ORDER BY seq", (seq,)) or []
        return [json.loads(r[0]) for r in rows]

    def outbox_depth(self) -> int:
        return int(_read_db(self.db_path, "SELECT COUNT(*) FROM outbox", one=True) or 0)


def _read_db(path: Path, sql: str, args=(), one: bool = False):
    for _ in range(20):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            try:
                cur = db.execute(sql, args)
                if one:
                    row = cur.fetchone()
                    return row[0] if row else None
                return cur.fetchall()
            finally:
                db.close()
        except sqlite3.OperationalError:
            time.sleep(0.02)
    return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Listener:
    """The simulator's own subscription to the site: every event (to learn the gates' decisions
    and count duplicates), status and health (revocation versions), and the beacon publisher.
    A persistent MQTT v5 session, so events sent while it was cut off are queued for it."""

    def __init__(self, host: str, port: int, site: str, beacon_key=None, beacon_every_s: float = 2.0):
        self.site = site
        self.events: dict[str, dict[int, dict]] = {}  # gate -> seq -> event
        self.deliveries = 0
        self.received_at: dict[str, float] = {}  # event id -> monotonic
        self.revs: dict[str, int] = {}
        self.online_at: dict[str, float] = {}  # gate -> monotonic time of its last status other than offline
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._beacon_key, self._beacon_every = beacon_key, beacon_every_s
        self._beacon_seq = 0
        self._stop = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gated-sim-{site}-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.host, self.port = host, port
        self._beacons = threading.Thread(target=self._beacon_loop, name="beacons", daemon=True)

    def start(self) -> "Listener":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        if not self.connected.wait(15):
            raise VenueError(f"the simulator could not connect to the broker at {self.host}:{self.port}")
        self._beacons.start()
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            return
        client.subscribe([(gate_topic(self.site, "+", leaf), 1) for leaf in ("events", "status", "health")])
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        topic = message.topic
        try:
            body = json.loads(message.payload) if message.payload else None
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        gate = topic.split("/")[4] if topic.count("/") >= 5 else "?"
        now = time.monotonic()
        with self._lock:
            if topic.endswith("/events"):
                self.deliveries += 1
                seq = body.get("seq")
                if isinstance(seq, int):
                    self.events.setdefault(gate, {}).setdefault(seq, body)
                    self.received_at.setdefault(body.get("id", ""), now)
            else:
                if topic.endswith("/status") and body.get("state") not in (None, "offline") and not message.retain:
                    self.online_at[gate] = now  # a gate publishes its status on every (re)connect
                rev = body.get("rev", body.get("rev_version"))
                if isinstance(rev, int):
                    self.revs[gate] = max(rev, self.revs.get(gate, 0))

    def _beacon_loop(self) -> None:
        from gated.core.beacon import encode_beacon
        from gated.topics import beacon_topic

        while self._beacon_key is not None and not self._stop.is_set():
            if self.connected.is_set():
                self._beacon_seq += 1
                payload = encode_beacon(
                    self._beacon_key, site=self.site, unix_ms=time.time_ns() // 1_000_000, seq=self._beacon_seq
                )
                self.client.publish(beacon_topic(self.site), payload, qos=1, retain=True)
            self._stop.wait(self._beacon_every)

    def events_of(self, gate: str, after_seq: int) -> list[dict]:
        """The gate's events after `after_seq` in the same chain (a replaced gate's chains: epochs)."""
        with self._lock:
            mine = self.events.get(gate, {})
            return [mine[s] for s in sorted(mine) if s > after_seq and s >> EPOCH_SHIFT == after_seq >> EPOCH_SHIFT]

    def max_seq(self, gate: str, epoch: int = 0) -> int:
        with self._lock:
            return max(
                (s for s in self.events.get(gate, {}) if s >> EPOCH_SHIFT == epoch), default=epoch << EPOCH_SHIFT
            )

    def unique(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.events.values())

    def stop(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()


class Venue:
    """Keys, broker, ledger and gates for one run; close() stops everything it started."""

    def __init__(
        self, scenario, out_dir: Path, *, broker_url: str | None = None, ledger_db: str | None = None, log=print
    ):
        """`ledger_db`: the ledger's database (a postgresql:// URL, or a SQLite path); default a
        SQLite file in the work directory. It must hold no events: the report compares it with
        this run's ground truth."""
        self.scenario = scenario
        self.out = out_dir
        self.work = out_dir / "work"
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.sockets = Path(tempfile.mkdtemp(prefix="gsim-"))  # short paths: AF_UNIX allows ~107 bytes
        self.log = log
        self.broker: Mosquitto | None = None
        self.broker_url = broker_url
        self.ledger_processes: list[subprocess.Popen] = []  # one, or one per --partition
        self.ledger_partitions = 1
        self.ledger_db = ledger_db or self.work / "ledger.db"
        self._check_ledger_empty()
        self.gates: dict[str, GateProcess] = {}
        self.listener: Listener | None = None
        self._make_keys()

    # --- set-up -----------------------------------------------------------------------------
    def _make_keys(self) -> None:
        central = self.work / "central"
        self.keyring_dir = self.work / "keyring"
        made = {}
        pretix = self.scenario.ticket_format == "pretix_sig1"
        for name in ("issuer", "revocation", "command"):
            private, public = keys.generate_key_files(central, name)
            # a pretix event key is trusted for its one event (it is what names the event)
            keys.trust_key_file(
                self.keyring_dir, public, name, events=[self.scenario.event] if pretix and name == "issuer" else ()
            )
            made[name] = keys.load_private_key(private)
        self.issuer_key, self.revocation_key, self.command_key = made["issuer"], made["revocation"], made["command"]
        # the ledger's key: it signs committed and occupancy; the gates trust it with role `ledger`
        self.ledger_key_file, public = keys.generate_key_files(central, "ledger")
        keys.trust_key_file(self.keyring_dir, public, "ledger")
        self.other_event_key = None  # pretix_sig1: the key of another event, for the wrong_event cheats
        if pretix:
            private, public = keys.generate_key_files(central, "other-event")
            keys.trust_key_file(self.keyring_dir, public, "issuer", events=[self.scenario.event + "-OTHER"])
            self.other_event_key = keys.load_private_key(private)
        self.keyring = keys.load_keyring(self.keyring_dir)

    def start_broker(self) -> str:
        if self.broker_url is None:
            self.broker = Mosquitto(self.work / "broker").start()
            self.broker_url = self.broker.url
        return self.broker_url

    @property
    def broker_host_port(self) -> tuple[str, int]:
        from gated.mqtturl import parse_broker_url

        s = parse_broker_url(self.broker_url)
        return s.host, s.port

    def settings(self):
        from gated.mqtturl import parse_broker_url

        return parse_broker_url(self.broker_url)

    def prepare_gates(self) -> None:
        """Each gate's state database made ahead, so its device key exists and can be published
        (DIR/devices/<gate>.pub) and trusted by the ledger before the first event."""
        sc = self.scenario
        devices = self.out / "devices"
        devices.mkdir(parents=True, exist_ok=True)
        self.ledger_keyring = self.work / "ledger-keyring"
        offsets = {f.gate: f.offset_s for f in sc.faults_of("clock_skew")}
        for gate_id in sc.gate_ids:
            directory = self.work / "gates" / gate_id
            (directory / "state").mkdir(parents=True)
            with GateStore(directory / "state" / "gate.db", site=sc.site, gate=gate_id) as store:
                pem = keys.public_pem(store.device_public_key)
            write_atomic(devices / f"{gate_id}.pub", pem)
            keys.trust_key_file(self.ledger_keyring, devices / f"{gate_id}.pub", "device", name=gate_id)
            socket_path = self.sockets / f"{gate_id}.sock"
            self.gates[gate_id] = GateProcess(
                gate_id,
                directory,
                socket_path,
                self._gate_config(gate_id, directory, socket_path),
                clock_offset_s=offsets.get(gate_id, 0.0),
            )

    def _gate_config(self, gate_id: str, directory: Path, socket_path: Path) -> dict:
        sc = self.scenario
        gate = {
            "site": sc.site,
            "id": gate_id,
            "events": [sc.event],
            "keyring": str(self.keyring_dir),
            "state_dir": str(directory / "state"),
        }
        if sc.zone_of(gate_id):
            gate["zone"] = sc.zone_of(gate_id)
        if sc.faults_of("gate_replace"):
            gate["until_synced"] = sc.until_synced
        direction = sc.direction_of(gate_id)
        if direction in ("exit", "free"):
            gate["direction"], gate["exit"] = "exit", "scan" if direction == "exit" else "free"
        else:
            gate["reentry"] = sc.reentry
            if sc.zone_of(gate_id) in sc.capacities:
                gate["capacity"] = sc.capacities[sc.zone_of(gate_id)]
        return {
            "gate": gate,
            "camera": {"source": "synthetic:", "width": 640, "height": 480, "fps": sc.fps},
            "turnstile": {"board": sc.board, "pin_factory": "mock"},
            "timings": {
                "relay_pulse_s": sc.relay_pulse_s,
                "passage_timeout_s": sc.passage_timeout_s,
                "held_open_s": max(15.0, sc.relay_pulse_s),
                "debounce_s": 2.0,  # a loaded gate can take over a second to answer: the code is still held up
            },
            "clock": {"beacons": True, "ntp": sc.ntp},
            "mqtt": {"url": self.broker_url, "keepalive_s": 5},
            "logging": {"level": "info", "format": "json"},
            "health": {"interval_s": 2.0},
            "sim": {"control_socket": str(socket_path)},
        }

    def start_listener(self) -> Listener:
        host, port = self.broker_host_port
        self.listener = Listener(host, port, self.scenario.site, beacon_key=self.command_key).start()
        return self.listener

    def publish_revocations(self, version: int, base: int, add) -> None:
        from gated.central.publisher import publish_revocations
        from gated.core.revocation import encode_updates

        blobs = encode_updates(
            self.revocation_key, site=self.scenario.site, version=version, base=base, add=add, iat=int(time.time())
        )
        for i, blob in enumerate(blobs):
            write_atomic(self.work / "central" / f"revocations-v{version}-{i}.cose", blob)
        publish_revocations(self.settings(), self.scenario.site, blobs, keyring=self.keyring)

    def publish_checkin_list(self, unpaid) -> None:
        """The pretix check-in list the gates hold ([checkin_list]): one entry, the product rule
        admitting `admit_types` (a ticket type is pretix item `index + 1`, as sim/model.py issues them),
        the unpaid orders' tickets; signed with the revocation key, retained."""
        import json

        from gated.central.pretix_orders import publish_checkin_list
        from gated.core.checkinlist import encode_list

        types = list(self.scenario.ticket_types)
        products = [{"lookup": ["product", str(types.index(t) + 1), t]} for t in self.scenario.checkin_admit_types]
        rules = {"inList": [{"var": "product"}, {"objectList": products}]}
        settings = {
            "id": 1,
            "name": "rehearsal gates",
            "include_pending": False,
            "allow_multiple_entries": False,
            "allow_entry_after_exit": True,
            "all_products": True,
            "limit_products": [],
            "subevent": None,
            "rules": json.dumps(rules),
            "exit_all_at": None,
        }
        times = {"tz": "UTC", "date_from": int(time.time()), "date_to": None, "date_admission": None}
        blob = encode_list(
            self.revocation_key,
            site=self.scenario.site,
            version=1,
            iat=int(time.time()),
            event=self.scenario.event,
            settings=settings,
            times=times,
            gates={},
            pending=unpaid,
        )
        (self.work / "central" / "checkin-list.cose").write_bytes(blob)
        publish_checkin_list(self.settings(), self.scenario.site, blob)

    def start_ledger(self, partitions: int = 1) -> None:
        """`gated ledger`, or `partitions` of them (`--partition I/N`) on the one database, each with
        its own client id and lock; returns once each has subscribed."""
        base = gated_command() + [
            "ledger",
            "--broker",
            self.broker_url,
            "--site",
            self.scenario.site,
            "--db",
            str(self.ledger_db),
            "--keyring",
            str(self.ledger_keyring),
            "--signing-key",
            str(self.ledger_key_file),
        ]
        tickets = self.work / "central" / "tickets.csv"
        if tickets.exists():
            base += ["--tickets", str(tickets)]
        for zone, capacity in sorted(self.scenario.capacities.items()):
            base += ["--capacity", f"{zone}={capacity}"]
        log_path = self.work / "ledger.log"
        before = log_path.read_text(errors="replace").count("ledger: subscribed") if log_path.exists() else 0
        self.ledger_partitions = partitions
        with log_path.open("ab") as log:
            for i in range(partitions):
                argv = base + (["--partition", f"{i}/{partitions}"] if partitions > 1 else [])
                self.ledger_processes.append(
                    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
                )
        deadline = time.monotonic() + 30
        while log_path.read_text(errors="replace").count("ledger: subscribed") < before + partitions:
            for process in self.ledger_processes:
                if process.poll() is not None:
                    raise VenueError(f"gated ledger exited ({process.returncode}); see {log_path}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise VenueError(f"gated ledger did not subscribe within 30 s; see {log_path}")
            time.sleep(0.1)

    def approve_device(self, kid: str) -> None:
        """What an operator does for a replaced gate (docs/install-pi.md, "Replacing a gate"): approve
        the key it announces, in place of the old one, into the ledger's keyring (the ledger reloads it)."""
        self._central(
            "keys",
            "enrol",
            "--broker",
            self.broker_url,
            "--site",
            self.scenario.site,
            "--keyring",
            str(self.ledger_keyring),
            "--replace",
            "--approve",
            kid,
        )

    def publish_admissions(self) -> None:
        """The ledger's signed admissions snapshot of the event, retained, for the replaced gate."""
        self._central(
            "admissions",
            "publish",
            "--db",
            str(self.ledger_db),
            "--site",
            self.scenario.site,
            "--event",
            self.scenario.event,
            "--signing-key",
            str(self.work / "central" / "revocation.key"),
            "--broker",
            self.broker_url,
        )

    def _central(self, *argv: str) -> str:
        out = subprocess.run(gated_command() + list(argv), capture_output=True, text=True, cwd=ROOT, timeout=60)
        if out.returncode != 0:
            raise VenueError(f"gated {' '.join(argv[:2])} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
        return out.stdout

    @property
    def ledger_process(self) -> subprocess.Popen | None:
        return self.ledger_processes[0] if self.ledger_processes else None

    @property
    def ledger_in_server(self) -> bool:
        from gated.central.ledgerdb import is_database_url

        return is_database_url(self.ledger_db)

    def _check_ledger_empty(self) -> None:
        from gated.central.ledger import Ledger, LedgerError

        if not self.ledger_in_server and not Path(self.ledger_db).exists():
            return
        try:
            with Ledger(self.ledger_db) as ledger:
                (count,) = ledger.query("SELECT COUNT(*) FROM events")[0]
        except LedgerError as exc:
            raise VenueError(str(exc)) from None
        if count:
            raise VenueError(
                f"the ledger database {ledger.where} already holds {count} events; a rehearsal "
                "needs an empty one (its report compares the ledger with this run)"
            )

    def ledger_count(self) -> int:
        if self.ledger_in_server:
            from gated.central.ledger import Ledger, LedgerError

            try:
                with Ledger(self.ledger_db) as ledger:
                    return int(ledger.query("SELECT COUNT(*) FROM events")[0][0])
            except LedgerError:
                return 0
        return int(_read_db(self.ledger_db, "SELECT COUNT(*) FROM events", one=True) or 0)

    def ledger_duplicates(self) -> int | None:
        """Events the ledger workers received again and dropped by id (each worker's last words on
        stopping, summed over every worker that ran). None when the log does not say."""
        import re

        try:
            found = re.findall(
                r"ledger: \d+ messages, \d+ new events, (\d+) duplicates", (self.work / "ledger.log").read_text()
            )
        except OSError:
            return None
        return sum(map(int, found)) if found else None

    def write_tickets_csv(self, tickets: dict) -> None:
        path = self.work / "central" / "tickets.csv"
        write_atomic(path, "ticket_id,entries\n" + "".join(f"{cti},{ent}\n" for cti, ent in tickets.items()))

    def start_gates(self) -> None:
        for gate in self.gates.values():
            gate.start()
        for gate in self.gates.values():
            gate.wait_ready()

    # --- the end ----------------------------------------------------------------------------
    def stop_ledger(self) -> None:
        """Stop every ledger worker (SIGTERM: each finishes its batch and says its counts)."""
        running = [p for p in self.ledger_processes if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.ledger_processes = []

    def close(self) -> None:
        for gate in self.gates.values():
            try:
                gate.stop()
            except OSError:
                pass
        self.stop_ledger()
        if self.listener is not None:
            self.listener.stop()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.sockets, ignore_errors=True)
