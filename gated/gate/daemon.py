"""`gated run`: the gate daemon. Wiring only: every decision is made elsewhere.

Theory of operation
-------------------
The two threads that carry the work:

    camera thread   frame = camera.read()  ->  scanner.decode(frame)  ->  debouncer.feed()
                    -> codes queue: (text, captured_at)            (never touches the store)
    owner thread    codes queue -> gate.on_code(text, captured_at)    decide, commit, then relay
                    (both halves are gated/gate/scanloop.py, which bench/latency.py times too)
                    uplink.poll()   revocations, peer admissions, commands, outbox -> broker
                    gate.poll()     passage timeouts, sensor edges, held-open alarms
                    health, systemd watchdog

and four more of ours that touch neither the store nor a decision: a live camera's reader thread
(gated/gate/camera.py: keeps only the newest frame), the relay's pulse train on boards that want
pulses (gated/gate/turnstile.py), the metrics endpoint's HTTP server when [metrics] listen is set
(gated/gate/metrics.py) and, in a rehearsal only, the simulator's control socket
(gated/gate/rehearsal/control.py). paho and gpiozero add their own, which only queue work.
The parts are built by gated/gate/build.py.

The owner thread is the only writer to the state database. The gate (gated/gate/gate.py) commits an
admission and its event before it commands the relay, and keeps the gate shut when the store
fails; the daemon only passes the frame's capture time along so that the scan event's
`latency_us` runs from capture to the relay command.

Start-up order: keyring, store, GPIO (board profile, pin factory, turnstile), gate, camera
(first frame awaited), uplink (a few seconds at most to take the retained revocation list and
time beacon), then READY=1 for systemd. WATCHDOG=1 is sent from the owner loop,
and only while the camera delivers frames and the store accepts writes, so systemd restarts a
gate whose camera or disk hangs.

SIGTERM/SIGINT: the loop ends, the camera thread is stopped, the gate puts the relay in its
safe state and closes its pins, the uplink drains what it can and says `offline`, the store is
closed (every admission was committed when it was made), exit 0.
"""

from __future__ import annotations

import importlib.util
import queue
import signal
import threading
import time
from pathlib import Path

import structlog

from gated import topics
from gated.core.errors import GatedError
from gated.core.reasons import FINAL_REFUSALS
from gated.gate import build, health, sdnotify
from gated.gate.build import StartupError
from gated.gate.config import Config
from gated.lockfile import release

log = structlog.get_logger("gated.gate.daemon")

OCCUPANCY_SKEW_MS = 60_000  # an occupancy message stamped later than the gate's clock plus this is ignored


def occupancy_made_ms(text: bytes) -> int:
    """The `ts` of an occupancy message read_occupancy has accepted (unix ms)."""
    import json

    from gated.core.events import parse_ts
    from gated.core.occupancy import OccupancyRejected

    made = parse_ts(json.loads(text).get("ts"))
    if made is None:
        raise OccupancyRejected("ts must be a time like an event's ts (RFC 3339 UTC with milliseconds)")
    return made


LOOP_WAIT_S = 0.02  # owner loop: longest wait for a code before polling the uplink and the gate
REVOCATION_CHECK_S = 0.05  # how often the revocation list's age is checked against the policy
CAMERA_STALL_S = 5.0  # no frame for this long: the camera is unhealthy (no watchdog pings)
FIRST_FRAME_S = 15.0  # how long start-up waits for the camera's first frame
CATCH_UP_S = 3.0  # how long start-up gives the uplink to fetch retained revocations and beacons
SETTLE_S = 0.3  # once connected, how long to keep taking what the broker kept for us


# --- the daemon ----------------------------------------------------------------------------------


class Daemon:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.counters = health.Counters()
        self.codes: queue.Queue = queue.Queue()
        self._stop = threading.Event()  # set by a signal or stop(): the owner loop ends
        self._camera_stop = threading.Event()
        self._camera_thread: threading.Thread | None = None
        self._list_unreadable_said = False  # the held check-in list stopped verifying: said once
        self.store = self.keyring = self.turnstile = self.gate = self.camera = self.camera_source = None
        self.scanner = self.uplink = self.clock = self._sim = None
        self.metrics = self._metrics_server = self.pruner = None
        self._lock: int | None = None  # the state directory's lock (gated.lockfile), held while running
        self._occupancy_ms = 0  # `ts` of the newest occupancy message taken: an older one is ignored
        self.store_ok = True
        self.camera_fault: str | None = None
        self.decoder_fault: tuple[str, float] | None = None  # the decoder raised on the last frame: its error, when
        self._next_health = 0.0
        self._next_rev_check = 0.0
        self._stale_why: str | None = None
        self._status_sent: tuple | None = None
        self._next_watchdog = 0.0
        self._watchdog_every = sdnotify.watchdog_interval_s()

    # start-up ------------------------------------------------------------------------------
    def start(self) -> None:
        from gated import keys
        from gated.lockfile import RoleTaken, hold

        cfg = self.cfg
        self.keyring = keys.load_keyring(cfg.gate.keyring)
        Path(cfg.gate.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:  # one `gated run` per state directory: a second would write the same events, take the same session
            self._lock = hold(Path(cfg.gate.database).parent / "gated.lock", f"gated run for gate {cfg.gate.id}")
        except RoleTaken as exc:
            raise StartupError(str(exc)) from None
        self.store = build.open_store(cfg)
        log.info(
            "store open",
            path=str(cfg.gate.database),
            seq=self.store.last_seq,
            outbox=self.store.outbox_depth(),
            rev=self.store.revocation_state().version,
        )
        self.clock = build.make_clock(cfg, store=self.store, keyring=self.keyring)
        self.turnstile = build.make_turnstile(cfg)
        self.gate = build.make_gate(
            cfg, store=self.store, keyring=self.keyring, turnstile=self.turnstile, clock=self.clock
        )
        self._revocation_policy(time.monotonic())  # locked before the first scan if the list is stale
        self.scanner = build.make_scanner(cfg)
        from gated.gate.scanner import Debouncer

        self.debouncer = Debouncer(cfg.timings.debounce_s)
        self._open_camera()
        self._camera_thread = threading.Thread(target=self._camera_loop, name="camera", daemon=True)
        self._camera_thread.start()
        self._await_first_frame()
        self.uplink = self._make_uplink()
        self.uplink.start()
        self._catch_up()
        self._start_sim_control()
        self._start_metrics()
        sdnotify.ready(f"gate {cfg.gate.id} at {cfg.gate.site}: ready")
        log.info(
            "gate ready",
            site=cfg.gate.site,
            gate=cfg.gate.id,
            events=list(cfg.gate.events),
            camera=cfg.camera.source,
            board=cfg.turnstile.board,
            device_kid=keys.kid_of(self.store.device_public_key).hex(),
            epoch=self.store.epoch,
            synced=self.store.synced,
            until_synced=None if self.store.synced else cfg.gate.until_synced,
        )

    def _catch_up(self) -> None:
        """Before READY, a moment for the uplink to connect and apply what the broker kept for this
        gate (the retained revocation list and time beacon, queued commands), so a gate that can
        reach its broker does not begin with a stale list or an uncertain clock. Bounded: a gate
        without its broker starts anyway, on what it has. Codes read meanwhile wait in the queue."""
        deadline = time.monotonic() + CATCH_UP_S
        settled_at = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._guarded("uplink", self.uplink.poll, 0.02)
            self._guarded("revocation policy", self._revocation_policy, time.monotonic())
            if self.uplink.connected:
                settled_at = settled_at or time.monotonic() + SETTLE_S
                if time.monotonic() >= settled_at:
                    break

    def _open_camera(self) -> None:
        from gated.gate.camera import CameraError, SupervisedSource

        try:
            self.camera_source = build.open_camera(self.cfg)
        except CameraError as exc:
            raise StartupError(str(exc)) from exc
        # reopened when it stops delivering; the simulator steers the source inside (show, stall)
        self.camera = SupervisedSource(
            self.camera_source,
            stall_after_s=CAMERA_STALL_S / 2,
            report=lambda message: log.warning("camera", message=message),
        )

    def _make_uplink(self):
        cfg = self.cfg
        uplink = build.make_uplink(
            cfg, store=self.store, keyring=self.keyring, clock=self.clock, on_command=self._command, status=self._status
        )
        if self.clock is not None and cfg.clock.beacons:
            from gated.topics import beacon_topic

            uplink.subscribe(beacon_topic(cfg.gate.site), self._beacon)
        if cfg.gate.capacity is not None:
            uplink.subscribe(topics.occupancy_topic(cfg.gate.site), self._occupancy)
        uplink.subscribe(topics.checkin_list_topic(cfg.gate.site), self._checkin_list)
        if not self.store.synced:  # a replaced gate: recover the site's admissions (gated/gate/admissions.py)
            from gated.gate.admissions import Recovery

            recovery = Recovery(self.store, self.keyring, site=cfg.gate.site, events=cfg.gate.events)
            for topic in recovery.topics():
                uplink.subscribe(topic, recovery.on_message)
        return uplink

    def _checkin_list(self, topic: str, payload: bytes) -> None:
        """A pretix check-in list (gated/gate/checkinlists.py): taken, or refused keeping the one held."""
        from gated.gate import checkinlists

        if not payload:  # a cleared retained topic: the list held stays
            return
        outcome = checkinlists.accept(self.store, payload, self.keyring, site=self.cfg.gate.site)
        if outcome.status == "applied":
            log.info("check-in list", name=outcome.name, version=outcome.version)
        elif outcome.code == "replay":
            log.info("check-in list ignored", code=outcome.code, detail=outcome.detail)
        else:
            log.warning("check-in list rejected", code=outcome.code, detail=outcome.detail, kept=outcome.version)

    def _occupancy(self, topic: str, payload: bytes) -> None:
        """The ledger's retained occupancy figures: kept for the capacity check while fresh
        (GateStore.zone_occupancy); a message that is not one is logged and ignored."""
        from gated.core.ledgersig import UnverifiedLedgerMessage, unseal
        from gated.core.occupancy import OccupancyRejected, read_occupancy

        try:
            text, _signer = unseal(payload, self.keyring)
        except UnverifiedLedgerMessage as exc:  # only the ledger may say how many are inside
            self.uplink.unverified_ledger_messages += 1
            log.warning("occupancy message ignored: not from the ledger", code=exc.code, detail=exc.detail[:200])
            return
        try:
            zones, as_of, since_ms = read_occupancy(text, site=self.cfg.gate.site)
            made_ms = occupancy_made_ms(text)
        except OccupancyRejected as exc:
            log.warning("occupancy message ignored", problem=str(exc))
            return
        now_ms = int(self.clock.now() * 1000) if self.clock is not None else int(time.time() * 1000)
        if made_ms < self._occupancy_ms or made_ms > now_ms + OCCUPANCY_SKEW_MS:
            log.warning(
                "occupancy message ignored",
                problem="older than the figure the gate has, or later than its "
                f"clock plus {OCCUPANCY_SKEW_MS // 1000} s",
                ts=made_ms,
                have=self._occupancy_ms,
            )
            return
        self._occupancy_ms = made_ms
        self.store.set_central_occupancy(zones, now_ms, as_of, since_ms)  # its age is judged on the same clock

    def _command(self, name: str) -> None:
        """An authenticated remote command: `clock_reset` is the clock's, the others the gate's."""
        if name == "clock_reset":
            # the command's signed iat is the reference: beacons made before it stay refused (no replays)
            issued_ms = int((self.uplink.command_iat or time.time()) * 1000)
            before = self.clock.reset(issued_ms) if self.clock is not None else {}
            log.warning("clock trust reset by command", was=before)
            return
        self.gate.command(name)

    def _beacon(self, topic: str, payload: bytes) -> None:
        """A message on the time topic: the clock takes or ignores it (a value, never an exception); each
        ignored one is logged with its reason (a retained one seen before: info); accepted ones at debug."""
        outcome = self.clock.on_beacon(payload)
        fields = {"reason": outcome.reason, "detail": outcome.detail}
        if outcome.offset_s is not None:
            fields["offset_ms"] = int(round(outcome.offset_s * 1000))
        if outcome.accepted:
            log.debug("beacon", **fields)
        elif outcome.reason == "not_newer":
            log.info("beacon ignored", **fields)
        else:
            log.warning("beacon ignored", **fields)

    def _start_sim_control(self) -> None:
        sim = self.cfg.sim
        if sim is None or sim.control_socket is None:
            return
        if importlib.util.find_spec("gated.gate.rehearsal.control") is None:
            log.warning(
                "sim control socket configured but gated.gate.rehearsal.control is not installed",
                socket=str(sim.control_socket),
            )
            return
        from gated.gate.rehearsal import control as simcontrol

        self._sim = simcontrol.serve(
            str(sim.control_socket), camera=self.camera_source, turnstile=self.turnstile, gate=self.gate
        )
        log.warning("simulator control socket open: this is not a real gate", socket=str(sim.control_socket))

    def _start_metrics(self) -> None:
        listen = self.cfg.metrics.listen
        if listen is None:
            return
        from gated.gate.metrics import GateCollector, MetricsError, serve

        self.metrics = GateCollector(self.cfg.gate.site, self.cfg.gate.id)
        try:
            self._metrics_server = serve(listen, self.metrics)
        except MetricsError as exc:
            raise StartupError(f"[metrics] listen: {exc}") from exc
        log.info("metrics endpoint", url=f"http://{listen}/metrics")

    def _await_first_frame(self) -> None:
        deadline = time.monotonic() + FIRST_FRAME_S
        while self.counters.frames == 0:
            if time.monotonic() > deadline:
                undecoded = self._undecoded()
                if undecoded is not None:
                    raise StartupError(
                        f"camera {self.cfg.camera.source}: frames arrive, but the scanner failed on every one "
                        f"for {FIRST_FRAME_S:g} s ({undecoded}; the log's `frame not decoded` has "
                        "the traceback: a fault of gated's, please report it)"
                    )
                why = self.camera_fault or "no frame"
                raise StartupError(f"camera {self.cfg.camera.source}: {why} within {FIRST_FRAME_S:g} s of start")
            if self._stop.wait(0.01):
                return

    def _status(self) -> dict:
        status = {"state": self.gate.mode.value if self.gate is not None else "online"}
        if self.store.epoch:  # a replaced gate (docs/protocol.md, "Replacing a gate")
            status.update(epoch=self.store.epoch, synced=self.store.synced)
        return status

    # the camera thread: gated/gate/scanloop.py ----------------------------------------------------
    def _camera_loop(self) -> None:
        from gated.gate import scanloop

        scanloop.read_codes(
            self.camera,
            self.scanner,
            self.debouncer,
            self.codes,
            self._camera_stop,
            on_frame=self._frame_read,
            on_fault=self._camera_failed,
            on_lost=self._frame_lost,
        )

    def _frame_read(self, frame, texts) -> None:
        self.camera_fault = self.decoder_fault = None
        self.counters.frame(time.monotonic())

    def _frame_lost(self, frame, exc: Exception) -> None:
        self.camera_fault = None  # a frame came
        self.decoder_fault = (f"{type(exc).__name__}: {exc}", time.monotonic())

    def _camera_failed(self, exc: Exception) -> None:
        if str(exc) != self.camera_fault:
            log.error("camera failed", source=self.cfg.camera.source, error=str(exc))
        self.camera_fault, self.decoder_fault = str(exc), None

    def _undecoded(self) -> str | None:
        """The decoder's error, if the camera's last news is a frame it raised on, within
        CAMERA_STALL_S (after that, a camera that stalled since is the news)."""
        fault = self.decoder_fault  # one read: the camera thread may change it
        if fault is None or self.camera_fault is not None or time.monotonic() - fault[1] >= CAMERA_STALL_S:
            return None
        return fault[0]

    # the owner loop ------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stop.is_set():
            try:
                text, captured_at = self.codes.get(timeout=LOOP_WAIT_S)
            except queue.Empty:
                pass
            else:
                self._scan(text, captured_at)
            self._guarded("uplink", self.uplink.poll)
            self._poll_gate()
            # The admitted visitors passed. A board without a passage or door sensor never knows:
            # there an admitted code stays held while it is in view, and until it has been out of
            # sight for the hold-off (Debouncer.feed), like a code refused for good.
            if self.turnstile.counts_passages and self.debouncer.holding and not self.gate.state.grants:
                self.debouncer.passed(time.monotonic())
            now = time.monotonic()
            self._guarded("revocation policy", self._revocation_policy, now)
            self._publish_status()
            self._guarded("health", self._health, now)
            self._guarded("prune", self._prune, now)
            self._store_health()
            self._watchdog(now)

    def _prune(self, now: float) -> None:
        """Bounded state (gated/gate/prune.py): one small batch when due, between scans, on the
        gate's trusted time only: a clock wrongly ahead must not prune admissions that still decide."""
        if self.pruner is None:
            from gated.gate.prune import Pruner

            self.pruner = Pruner.from_config(self.store, self.cfg)
        from gated.gate.store import StoreError

        reading = self.clock.reading()
        if reading.uncertain:
            return
        try:
            self.pruner.step(now, reading.now)
        except StoreError:
            raise  # _guarded: the store's fault, said as such
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop the gate
            log.error("pruning failed; the gate goes on and tries again later", error=f"{type(exc).__name__}: {exc}")
            self.pruner.failed(now)

    def _guarded(self, step: str, work, *args) -> None:
        """One step of the owner loop whose writes may fail (a full disk: a revocation update, a
        beacon, a clock checkpoint): the gate stays up and shut, says so, and the loop goes on."""
        from gated.gate.store import StoreError

        try:
            work(*args)
        except StoreError as exc:
            self._store_failed(step, exc)

    def _store_failed(self, step: str, exc) -> None:
        """An error line for each failed step; once per fault, the alarm: the gate's fault signal and
        `tamper` alarm (if the store still takes it), `store_ok` false in health and the systemd
        status. Scans go on
        being judged; one whose record cannot be written is not admitted (the gate stays shut)."""
        first = self.store_ok
        self.store_ok = False
        log.error(
            "store fault: gate stays shut",
            step=step,
            error=str(exc),
            action="free disk space or replace the card; the gate keeps running",
        )
        if first:
            if self.gate is not None:
                self.gate.store_fault(exc)
            sdnotify.status(f"store failing: {exc}")

    def _store_health(self) -> None:
        """Follow the store's own record of its last write: a failure some inner boundary caught and
        logged still raises the alarm; the first write that works again clears it."""
        from gated.gate.store import StoreError

        fault = self.store.fault
        if fault is not None and self.store_ok:
            self._store_failed("store", StoreError(f"{self.store.path}: {fault}"))
        elif fault is None and not self.store_ok:
            self.store_ok = True
            log.info("store writes again")

    def _scan(self, text: str, captured_at: float) -> None:
        from gated.gate import scanloop

        # A copy queued while the judging of its presentation lagged more than the hold-off behind
        # the camera (a slow store): that presentation was judged already; not judged twice.
        stale = self.debouncer.stale(text, captured_at)
        if stale is not None:
            log.warning(f"stale scan skipped: {stale}", step="scan")
            return
        decision = scanloop.judge(self.gate, text, captured_at)
        # Copies from frames taken until now are this presentation again, whatever the outcome
        # (a store fault too: the gate stayed shut; each copy would wait out the store again).
        self.debouncer.judged(text, time.monotonic())
        if decision is None:  # a store fault: the gate stayed shut (and said so); keep going
            self.store_ok = False
            return
        if decision.admit:  # not judged again while the visitor still holds it up
            self.debouncer.admitted(text, time.monotonic())
        elif decision.reason in FINAL_REFUSALS:  # one red, not one every hold-off while it is in view
            self.debouncer.refused(text, time.monotonic())
        self.counters.decision(decision.admit)

    def _publish_status(self) -> None:
        """The retained status follows the gate's mode, list version and (a replaced gate) whether it
        has the site's admissions (the uplink also sends it on every connect, and `offline` as its
        last will)."""
        now = (self.gate.mode, self.store.revocation_state().version, self.store.synced)
        if now != self._status_sent and self.uplink.connected:
            if self.uplink.announce() is not None:  # self._status(): a replaced gate's epoch and synced too
                self._status_sent = now

    def _poll_gate(self) -> None:
        from gated.gate.store import StoreError

        try:
            self.gate.poll()
        except StoreError as exc:  # the gate logged it and kept shut; keep going
            self.store_ok = False
            log.error("store fault while polling the gate", error=str(exc))

    def _revocation_policy(self, now: float) -> None:
        """The staleness policy: log (the alarm) when the list goes stale or fresh again; fail closed
        by telling the gate, which holds a `stale_list` lock (a lock source beside the operator's,
        gated/core/gatestate.py) while the list is stale. With when_stale = open no such lock is held
        (one left from a run under `closed` is lifted)."""
        if now < self._next_rev_check:
            return
        self._next_rev_check = now + REVOCATION_CHECK_S
        policy = self.cfg.revocations.when_stale
        reading = self.clock.reading() if self.clock is not None else None
        why = health.revocation_staleness(
            self.store.revocation_state(),
            time.time() if reading is None else reading.now,
            self.cfg.revocations.max_age_s,
        )
        if why != self._stale_why:
            if why:
                log.error(
                    "revocations stale",
                    why=why,
                    policy=policy,
                    action="gate locked until a current list arrives"
                    if policy == "closed"
                    else "gate keeps admitting on the old list",
                )
            elif self._stale_why:
                log.info("revocations current again", rev=self.store.revocation_state().version)
            self._stale_why = why
        self.gate.list_stale(bool(why) and policy == "closed")

    @property
    def camera_ok(self) -> bool:
        last = self.counters.last_frame_at
        return self.camera_fault is None and last is not None and time.monotonic() - last < CAMERA_STALL_S

    @property
    def _camera_trouble(self) -> str:
        return "frames not decoded" if self._undecoded() is not None else "stalled"

    def _watchdog(self, now: float) -> None:
        """Pings while the loop runs and the camera delivers. A store that refuses writes (a full
        disk) does not stop them: a restart would not free space, and a restarting gate flaps its
        uplink; it stays up, shut, and says so (health `store_ok`, the status line, the alarm).
        A hung store hangs this loop, and the pings stop by themselves."""
        if self._watchdog_every is None or now < self._next_watchdog:
            return
        if self.camera_ok:
            sdnotify.watchdog()
            self._next_watchdog = now + self._watchdog_every
        if not (self.camera_ok and self.store_ok):
            sdnotify.status(
                f"unhealthy: camera {'ok' if self.camera_ok else self._camera_trouble}, "
                f"store {'ok' if self.store_ok else 'failing'}"
            )

    def _occupancy_figure(self) -> tuple[int, str, int | None]:
        """(people inside this gate's zone, "central" or "local", capacity) for the health message."""
        inside, source = self.store.zone_occupancy(self.cfg.gate.zone, int(self.clock.now() * 1000))  # as scans see it
        return inside, source, self.cfg.gate.capacity

    def _held_list(self) -> tuple[str, int] | None:
        from gated.gate import checkinlists

        held = checkinlists.held(self.store, self.keyring)
        stored = checkinlists.held_version(self.store)
        if held is None and stored and not self._list_unreadable_said:
            self._list_unreadable_said = True  # once: the health report comes every few seconds
            log.error(
                "check-in list held no longer verifies: pretix tickets are judged without it",
                version=stored,
                fix="trust its signer again, or have `gated pretix sync` send a new version",
            )
        return None if held is None else (held.name, held.version)

    def _health(self, now: float) -> None:
        if now < self._next_health:
            return
        self._next_health = now + self.cfg.health.interval_s
        rev = self.store.revocation_state()
        clock = {}
        if self.clock is not None:
            # so that after a restart the clock does not run back before now; a failed write must
            # not keep the health report (which says store_ok) from going out
            self._guarded("clock checkpoint", self.clock.checkpoint)
            clock = self.clock.health()
        body = health.snapshot(
            self.counters,
            now_mono=now,
            now_ms=self.clock.reading().now_ms if self.clock is not None else time.time_ns() // 1_000_000,
            outbox=self.store.outbox_depth(),
            rev_version=rev.version,
            rev_iat=rev.iat,
            clock=clock,
            mode=self.gate.mode.value,
            camera_ok=self.camera_ok,
            store_ok=self.store_ok,
            rev_stale=self._stale_why,
            occupancy=self._occupancy_figure(),
            delivery=(self.uplink.unconfirmed, self.uplink.dropped_unconfirmed, self.uplink.unverified_ledger_messages),
            checkin_list=self._held_list(),
        )
        self.uplink.publish(topics.health_topic(self.cfg.gate.site, self.cfg.gate.id), health.encode(body), 1, True)
        if self.metrics is not None:
            self.metrics.update(body)
        if self.cfg.health.textfile is not None:
            try:
                health.write_textfile(
                    self.cfg.health.textfile,
                    health.prometheus_text(body, site=self.cfg.gate.site, gate=self.cfg.gate.id),
                )
            except OSError as exc:
                log.warning("health textfile not written", path=str(self.cfg.health.textfile), error=str(exc))

    # shutdown ------------------------------------------------------------------------------
    def stop(self, *_signal) -> None:
        """Ask the owner loop to end (safe from a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        """Relay safe, devices closed, uplink told `offline`, store closed. Each step runs even if
        an earlier one failed, and each failure is logged."""
        sdnotify.stopping()
        self._camera_stop.set()
        steps = (
            ("sim control", lambda: self._sim.stop() if self._sim is not None else None),
            ("metrics", lambda: self._metrics_server.shutdown() if self._metrics_server is not None else None),
            ("camera thread", lambda: self._camera_thread.join(timeout=5) if self._camera_thread else None),
            ("last poll", self._last_poll),
            ("gate", lambda: self.gate.close() if self.gate is not None else None),
            ("turnstile", lambda: _close(self.turnstile)),
            ("camera", lambda: _close(self.camera)),
            ("uplink", lambda: self.uplink.stop() if self.uplink is not None else None),
            (
                "log",
                lambda: (
                    log.info("gate stopped", seq=self.store.last_seq, outbox=self.store.outbox_depth())
                    if self.store is not None
                    else None
                ),
            ),
            ("store", lambda: self.store.close() if self.store is not None else None),
            ("lock", lambda: release(self._lock)),
        )
        for name, step in steps:
            try:
                step()
            except (OSError, RuntimeError, ValueError) as exc:
                log.error("shutdown step failed", step=name, error=str(exc))

    def _last_poll(self) -> None:
        """Commit what the hardware reported before the stop (a passage, a door closing); codes
        decoded but not yet judged are dropped: the relay must not move while the gate stops."""
        if self.gate is None:
            return
        self._poll_gate()
        dropped = self.codes.qsize()
        if dropped:
            log.info("codes not judged at stop", count=dropped)


def _close(thing) -> None:
    if thing is not None and hasattr(thing, "close"):
        thing.close()


def run(cfg: Config) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop, 2 when start-up failed (systemd restarts us)."""
    from gpiozero.exc import GPIOZeroError

    daemon = Daemon(cfg)
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    try:
        daemon.start()
        daemon.run()
    except (GatedError, GPIOZeroError, OSError) as exc:
        from gated.brokerdiag import explain_oserror

        log.error(
            "gate cannot run",
            error=explain_oserror(exc) if isinstance(exc, OSError) else str(exc),
            fault=type(exc).__name__,
        )
        return 2
    finally:  # whatever ends the loop, even a fault nobody expected: the relay off first (close())
        daemon.close()
    return 0
