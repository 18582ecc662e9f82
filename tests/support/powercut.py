"""Power cuts on the gate's state (tests/support/cutfs.py): the state directory on a file system
that loses every write not yet synced, the gate's store working on it, the power cut at a random
moment, the store opened again on what survived.

    cut_once(work, rng) -> what was checked
    cut_daemon_once(DaemonRig(work), rng)      the same under the whole `gated run`

The gate is a child process (`python -m tests.support.powercut gate DB`) doing what the daemon
does to its state, as fast as it can: an admission (the scan and its event, one transaction),
then, on the relay's line to the parent (printed only after the commit, as the daemon moves the
relay only after it), the passage or its timeout, the broker's PUBACKs for most events (marked:
the rows stay), now and then a ledger's confirmation (the rows it covers deleted), a state event now and then, and the operator's file written with
gated.atomicfile. After the cut the parent opens the store on the surviving files (the restart)
and checks: it opens (quick_check), every admission whose relay opened is there, the event chain
continues without a hole (the outbox's rows contiguous up to the counter, each pointing at the
one before; the next event follows the last), and the file is one of its versions, whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE, GATE = "cut", "g1"


def gate(db: str) -> None:
    """The child: the daemon's writes, in a loop, until it is killed."""
    from gated.atomicfile import write_atomic
    from gated.core.confirmation import Confirmation
    from gated.gate.store import GateStore

    rng = random.Random(os.getpid())
    store = GateStore(db, site=SITE, gate=GATE)
    for scan_id in store.pending_admissions():  # the restarted gate rolls back what nobody passed
        store.record_passage(scan_id, False, int(time.time() * 1000))
    print("ready", flush=True)
    version, delivered = 0, []
    while True:
        cti = os.urandom(16)
        now = int(time.time() * 1000)
        scan = store.record_scan(
            {"ticket": cti.hex(), "decision": "admit", "reason": "ok", "zone": None},
            now,
            admit_cti=cti,
            exp=now // 1000 + 3600,
            nbf=now // 1000 - 60,
        )
        print(f"relay {scan['seq']} {scan['hash']} {cti.hex()}", flush=True)  # the commit is on the card: relay opens
        if rng.random() < 0.8:  # the broker's PUBACK: the row stays until a ledger confirms it
            store.mark_delivered([scan["seq"]], now)
            delivered.append(scan["seq"])
        passage = store.record_passage(scan["id"], rng.random() < 0.9, now + 300)
        print(f"event {passage['seq']} {passage['hash']}", flush=True)
        if rng.random() < 0.8:
            store.mark_delivered([passage["seq"]], now + 300)
            delivered.append(passage["seq"])
        if delivered and rng.random() < 0.3:  # a ledger's confirmation of everything delivered so far
            for seq in delivered:
                print(f"ack {seq}", flush=True)  # said before: a row confirmed may go at any moment now
            store.prune_confirmed(Confirmation(max(delivered)))
            delivered = []
        if rng.random() < 0.05:
            event = store.record_event({"kind": "state", "state": "online", "rev": 0}, now + 400)
            print(f"event {event['seq']} {event['hash']}", flush=True)
        if rng.random() < 0.1:
            version += 1
            write_atomic(Path(db).parent / "operator.json", json.dumps({"version": version, "pad": "x" * 5000}))
            print(f"file {version}", flush=True)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def cut_once(work: Path, rng: random.Random) -> dict:
    """One power cut at a random moment; returns the figures checked (AssertionError if broken)."""
    from gated.core.events import GENESIS
    from gated.gate.store import GateStore

    backing, mount = work / "card", work / "mnt"
    backing.mkdir(exist_ok=True)
    mount.mkdir(exist_ok=True)
    fs = subprocess.Popen(
        [sys.executable, "-m", "tests.support.cutfs", str(backing), str(mount)], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    child = None
    try:
        _wait(lambda: os.path.ismount(mount), 20, "the cut file system did not mount")
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.powercut", "gate", str(mount / "gate.db")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready", "the gate did not start on the surviving state"
        time.sleep(rng.uniform(0.0, 0.4))
        fs.send_signal(signal.SIGUSR1)  # the power goes: nothing unsynced reaches the card from here on
        child.kill()
        lines = child.stdout.read().splitlines()
        child.wait(10)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True)
        fs.wait(20)
    relays = [line.split() for line in lines if line.startswith("relay ")]
    reported = {int(p[1]): p[2] for p in (line.split() for line in lines) if p[0] in ("relay", "event")}
    files = [int(line.split()[1]) for line in lines if line.startswith("file ")]
    with GateStore(backing / "gate.db") as store:  # the restart: opens, quick_check
        last = store.last_seq
        rows = [json.loads(e) for _, e in store.outbox(0, 1_000_000)]
        by_seq = {e["seq"]: e for e in rows}
        for _, seq, _, cti in relays:
            if store.admissions(bytes.fromhex(cti)):
                continue
            # gone only by its own passage `timeout` (nobody went through), the event right after it
            following = by_seq.get(int(seq) + 1)
            assert last > int(seq), f"admission of seq {seq} lost though its relay opened"
            assert following is None or (
                following["kind"] == "passage"
                and following["result"] == "timeout"
                and following["ref"] == f"{GATE}:{seq}"
            ), f"admission of seq {seq} lost though its relay opened (next event {following})"
        assert last >= max(reported, default=0), f"counter {last} below a committed event {max(reported)}"
        acked = {int(line.split()[1]) for line in lines if line.startswith("ack ")}
        for seq in reported:  # committed and not acknowledged by the broker: still to be sent
            assert seq in by_seq or seq in acked, f"event {seq} committed, never acknowledged, and gone"
        for e in rows:
            if e["seq"] in reported:
                assert e["hash"] == reported[e["seq"]], f"event {e['seq']} changed after its commit"
            before = by_seq.get(e["seq"] - 1)
            assert before is None or e["prev"] == before["hash"], f"chain broken at {e['seq']}"
        hashes = {**reported, **{e["seq"]: e["hash"] for e in rows}}
        follow = store.record_event({"kind": "state", "state": "online", "rev": 0}, int(time.time() * 1000))
        assert follow["seq"] == last + 1, "the counter did not continue"
        assert follow["prev"] == hashes.get(last, follow["prev"]), "the chain does not continue from the last event"
        assert last == 0 or follow["prev"] != GENESIS
    operator = backing / "operator.json"
    if operator.exists():
        version = json.loads(operator.read_text())["version"]  # whole, or this raises
        assert not files or version >= files[-1] - 1, "the operator's file went back more than its last unsynced write"
    return {"relays": len(relays), "seq": last, "outbox": len(rows)}


# --- the whole daemon -------------------------------------------------------------------------------


class DaemonRig:
    """`gated run` (synthetic camera, mock pins, the simulator's control socket, no broker) with its
    state directory on the cut file system: visitors show tickets, walk through on the green light;
    the power goes at a random moment; the next cut_daemon_once() starts the daemon again on what
    survived, as a gate does after a power cut."""

    def __init__(self, work: Path):
        import tempfile

        import tomli_w

        from gated import keys

        self.work = work
        self.card, self.mount = work / "card", work / "mnt"
        self.card.mkdir(exist_ok=True)
        self.mount.mkdir(exist_ok=True)
        private, public = keys.generate_key_files(work / "central", "issuer")
        keys.trust_key_file(work / "keyring", public, "issuer")
        self.issuer = keys.load_private_key(private)
        self.socket = Path(tempfile.mkdtemp(prefix="gcut-")) / "g1.sock"
        self.config = work / "gated.toml"
        self.config.write_text(
            tomli_w.dumps(
                {
                    "gate": {
                        "site": SITE,
                        "id": GATE,
                        "events": ["CUT-2026"],
                        "keyring": str(work / "keyring"),
                        "state_dir": str(self.mount / "state"),
                    },
                    "camera": {"source": "synthetic:", "width": 640, "height": 480, "fps": 15},
                    "turnstile": {"board": "generic-relay", "pin_factory": "mock"},
                    "timings": {"relay_pulse_s": 0.2, "passage_timeout_s": 2.0, "debounce_s": 1.0},
                    "clock": {"beacons": False, "trust_system_clock": True},
                    "revocations": {"when_stale": "open"},  # no broker, no list: the rehearsal is about the card
                    "mqtt": {"url": "mqtt://127.0.0.1:9", "keepalive_s": 5},
                    "logging": {"level": "warning", "format": "json"},
                    "sim": {"control_socket": str(self.socket)},
                }
            )
        )

    def ticket(self) -> tuple[str, str]:
        from gated.core import ticket

        cti, now = os.urandom(16), int(time.time())
        return cti.hex(), ticket.encode_static(
            ticket.Claims(cti=cti, aud="CUT-2026", nbf=now - 60, exp=now + 3600), self.issuer
        )


def cut_daemon_once(rig: DaemonRig, rng: random.Random) -> dict:
    """Start the daemon on the card, let visitors through, cut the power at a random moment, and
    check what survived (AssertionError if something was lost)."""
    from gated.gate.rehearsal.control import Client, ControlError
    from gated.gate.store import GateStore

    fs = subprocess.Popen(
        [sys.executable, "-m", "tests.support.cutfs", str(rig.card), str(rig.mount)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    daemon = None
    relayed: list[str] = []
    try:
        _wait(lambda: os.path.ismount(rig.mount), 20, "the cut file system did not mount")
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gated.cli", "run", "--config", str(rig.config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        client = Client(rig.socket, timeout=5.0)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.request("ping")
                break
            except (OSError, ControlError):
                client.close()
                assert daemon.poll() is None, f"gated run exited: {daemon.stderr.read().decode()[-2000:]}"
                assert time.monotonic() < deadline, "gated run did not open its control socket"
                time.sleep(0.1)
        cut_at = time.monotonic() + rng.uniform(0.2, 4.0)
        while time.monotonic() < cut_at:
            cti, text = rig.ticket()
            before = client.request("state")["devices"]["relay"]["activations"]
            client.request("show", text=text)
            seen = _poll(lambda before=before: client.request("state")["devices"]["relay"]["activations"] > before, 5.0)
            client.request("show", text=None)
            assert seen, "a valid ticket did not open the relay"
            relayed.append(cti)  # the relay opened: the admission was committed before it did
            if time.monotonic() >= cut_at:
                break
            client.request("drive", device="passage", active=True)
            time.sleep(0.05)
            client.request("drive", device="passage", active=False)
            time.sleep(rng.uniform(0.0, 0.3))
        client.close()
        fs.send_signal(signal.SIGUSR1)  # the power goes
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        subprocess.run(["fusermount3", "-u", "-z", str(rig.mount)], capture_output=True)
        fs.wait(20)
    with GateStore(rig.card / "state" / "gate.db") as store:  # opens: quick_check
        for cti in relayed:
            assert store.admissions(bytes.fromhex(cti)), f"ticket {cti} let through, its admission lost"
        last = store.last_seq
        rows = [json.loads(e) for _, e in store.outbox(0, 1_000_000)]  # no broker: every event is still here
        assert [e["seq"] for e in rows] == list(range(1, last + 1)), "a hole in the gate's events"
        for before, after in zip(rows, rows[1:]):
            assert after["prev"] == before["hash"], f"chain broken at {after['seq']}"
    return {"relays": len(relayed), "seq": last}


def _poll(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["gate"]:
        try:
            gate(sys.argv[2])
        except OSError:  # the cut: the file system answers EIO until the process is killed
            time.sleep(60)
    elif sys.argv[1:2] == ["cuts"]:
        import tempfile

        n = int(sys.argv[2])
        rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 25)
        work = Path(tempfile.mkdtemp(prefix="gated-powercut-"))
        started = time.monotonic()
        for i in range(n):
            figures = cut_once(work, rng)
            if (i + 1) % 25 == 0 or i + 1 == n:
                print(
                    f"{i + 1} cuts: store opened every time, no admission lost, chain whole "
                    f"(now at seq {figures['seq']}, {time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    elif sys.argv[1:2] == ["daemon-cuts"]:
        import tempfile

        n = int(sys.argv[2])
        rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 25)
        rig = DaemonRig(Path(tempfile.mkdtemp(prefix="gated-powercut-daemon-")))
        started, relays = time.monotonic(), 0
        for i in range(n):
            figures = cut_daemon_once(rig, rng)
            relays += figures["relays"]
            if (i + 1) % 5 == 0 or i + 1 == n:
                print(
                    f"{i + 1} cuts of gated run: it started again every time, no admission of the {relays} "
                    f"visitors let through lost, events 1..{figures['seq']} whole ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
