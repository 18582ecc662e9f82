"""`gated doctor --config FILE` and `gated check-config FILE`: is this machine ready to be a gate?

check-config reads the configuration only. doctor then looks at the machine, one line per check:

    ok    config      /etc/gated/gated.toml: gate north-1 at arena
    ok    keyring     /etc/gated/keyring: 3 keys (issuer 1, revocation 1, command 1)
    FAIL  camera      v4l2:/dev/video0: cannot open (No such file or directory): is the camera connected?
    ...

Exit status: 0 when every check passed (warnings allowed), 1 when any failed, 2 for an unusable
configuration. A check never stops the others: the point is to see everything that is wrong.
doctor never writes to the state database (the running gate is its only writer).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from gated.cli.main import CommandError
from gated.cli.options import number

OK, WARN, FAIL = "ok", "warn", "FAIL"
MIN_FREE_BYTES = 64 * 1024 * 1024
LOW_FREE_BYTES = 512 * 1024 * 1024
EARLIEST_PLAUSIBLE = 1_767_225_600  # 2026-01-01: a clock before this has not been set since boot


@dataclass(frozen=True)
class Finding:
    status: str
    check: str
    message: str

    def line(self) -> str:
        return f"{self.status:<5} {self.check:<11} {self.message}"


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check this machine: camera, decoder, GPIO, keyring, state, broker, clock, disk")
    p.add_argument(
        "--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)"
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="CHECK",
        help="leave out a check (camera, decoder, gpio, keyring, state, revocations, broker, clock, disk)",
    )
    p.add_argument(
        "--timeout", type=number(), default=5.0, help="seconds to wait for frames and the broker (default 5)"
    )
    p.set_defaults(func=run_doctor)
    c = sub.add_parser(
        "check-config", help="check a gate configuration file and the files it names; list every problem"
    )
    c.add_argument("file", help="configuration file (e.g. /etc/gated/gated.toml)")
    c.add_argument(
        "--user", help="the service user who must be able to read the files (default: gated when it exists, else you)"
    )
    c.set_defaults(func=run_check_config)


def _load(path):
    from gated.gate import config

    try:
        return config.load(path)
    except config.ConfigError as exc:
        raise CommandError(f"configuration problems:\n{exc}") from None


def run_check_config(args) -> int:
    from gated.gate import preflight

    cfg = _load(args.file)
    try:
        user = preflight.User.named(args.user)
    except KeyError:
        raise CommandError(f"--user {args.user}: no such user on this machine") from None
    for key, text in preflight.warnings(cfg):
        print(f"warning: {args.file}: {key}: {text}", file=sys.stderr)
    problems = preflight.file_problems(cfg, user)
    for key, text in problems:
        print(f"{args.file}: {key}: {text}", file=sys.stderr)
    if problems:
        print(
            f"{len(problems)} problem(s) with the files the configuration names (checked for user {user.name})",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.file}: ok (gate {cfg.gate.id} at {cfg.gate.site}, events {', '.join(cfg.gate.events)}; "
        f"its files readable by {user.name})"
    )
    return 0


def run_doctor(args) -> int:
    from gated.gate import preflight

    cfg = _load(args.config)
    findings = [Finding(OK, "config", f"{args.config}: gate {cfg.gate.id} at {cfg.gate.site}")]
    findings += [Finding(WARN, "config", f"{key}: {text}") for key, text in preflight.warnings(cfg)]
    findings += [
        Finding(FAIL, "files", f"{key}: {text}") for key, text in preflight.file_problems(cfg, preflight.User.current())
    ]
    for finding in findings:
        print(finding.line(), flush=True)
    _quiet_libraries()
    for name, check in CHECKS:
        if name in args.skip:
            continue
        try:
            with warnings.catch_warnings():  # gpiozero's pin-factory fallbacks and the like: the finding says it
                warnings.simplefilter("ignore")
                result = check(cfg, args.timeout)
        except Exception as exc:  # noqa: BLE001 -- a check that crashes is reported as a failure, not raised
            result = Finding(FAIL, name, f"{type(exc).__name__}: {exc}")
        for finding in result if isinstance(result, list) else [result]:
            findings.append(finding)
            print(finding.line(), flush=True)
    failed = [f for f in findings if f.status == FAIL]
    print(
        f"{len(failed)} failed, {sum(f.status == WARN for f in findings)} warnings"
        if failed or any(f.status == WARN for f in findings)
        else "all checks passed",
        file=sys.stderr if failed else sys.stdout,
    )
    return 1 if failed else 0


def _quiet_libraries() -> None:
    """One line per check and nothing else on the screen: OpenCV's own log (a failed V4L2 open,
    say) goes through its C++ logger, not Python's warnings."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is first imported
    if "cv2" in sys.modules:
        cv2 = sys.modules["cv2"]
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# --- the checks -----------------------------------------------------------------------------------


def check_keyring(cfg, timeout) -> Finding:
    from gated.keys import KeyringError, load_keyring

    try:
        ring = load_keyring(cfg.gate.keyring)
    except KeyringError as exc:
        return Finding(FAIL, "keyring", str(exc).replace("\n", "; "))
    counts = {role: sum(role in k.roles for k in ring.keys) for role in ("issuer", "revocation", "command")}
    text = f"{cfg.gate.keyring}: {len(ring.keys)} keys ({', '.join(f'{r} {n}' for r, n in counts.items())})"
    if counts["issuer"] == 0:
        return Finding(FAIL, "keyring", text + ": no issuer key, every ticket would be unknown_key")
    for event in cfg.gate.events:
        if not any("issuer" in k.roles and k.allows_event(event) for k in ring.keys):
            return Finding(FAIL, "keyring", text + f": no issuer key may sign for event {event!r}")
    if counts["revocation"] == 0 or counts["command"] == 0:
        missing = [r for r in ("revocation", "command") if counts[r] == 0]
        return Finding(WARN, "keyring", text + f": no {' or '.join(missing)} key, those messages will be refused")
    return Finding(OK, "keyring", text)


def _summary(db_path: Path):
    """The state's summary, read-only (gated.gate.store.read_summary); StoreError when unreadable."""
    from gated.gate.store import read_summary

    return read_summary(db_path)


def check_state(cfg, timeout) -> Finding:
    directory, db_path = cfg.gate.state_dir, cfg.gate.database
    if directory.exists() and not directory.is_dir():
        return Finding(FAIL, "state", f"{directory} exists but is not a directory")
    if not directory.is_dir():
        parent = next((p for p in directory.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Finding(WARN, "state", f"{directory} does not exist yet; the gate will create it")
        return Finding(
            FAIL,
            "state",
            f"{directory} does not exist and {parent} is not writable (systemd: StateDirectory=gated creates it)",
        )
    probe = directory / f".doctor-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"x")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return Finding(FAIL, "state", f"{directory} is not writable ({exc.strerror}); check owner and permissions")
    finally:
        probe.unlink(missing_ok=True)
    if not db_path.exists():
        return Finding(OK, "state", f"{directory} writable; {db_path.name} will be created on first start")
    if not os.access(db_path, os.W_OK):
        return Finding(FAIL, "state", f"{db_path} is not writable by this user; the gate would stay shut")
    from gated.gate.store import StoreError

    try:
        state = _summary(db_path)
    except StoreError as exc:
        return Finding(FAIL, "state", f"{db_path}: unreadable ({exc}); start a new chain: gated replace --move-aside")
    if (state.site, state.gate) != (cfg.gate.site, cfg.gate.id):
        return Finding(
            FAIL,
            "state",
            f"{db_path} belongs to gate {state.gate!r} at {state.site!r}, not {cfg.gate.id!r} at {cfg.gate.site!r}",
        )
    exposed = [
        p.name for p in (db_path, db_path.with_name(db_path.name + "-wal")) if p.exists() and p.stat().st_mode & 0o077
    ]
    if exposed:  # the gate makes them 0600 when it next starts; until then other users can read the device key
        return Finding(
            WARN,
            "state",
            f"{', '.join(exposed)} readable by other users (it holds the device key); "
            f"the gate makes it 0600 when it starts, or: chmod 600 {db_path}",
        )
    return Finding(
        OK,
        "state",
        f"{db_path}: writable, intact, {state.seq} events, "
        f"{state.outbox} waiting for the broker, {state.pending} admissions pending",
    )


def check_revocations(cfg, timeout) -> Finding:
    db_path = cfg.gate.database
    severity = FAIL if cfg.revocations.when_stale == "closed" else WARN
    consequence = (
        "the gate stays locked (denies every ticket)" if severity == FAIL else "the gate admits on an old list"
    )
    first = (
        (
            "expected before the gate's first start: it stays locked until the central side publishes a "
            "list (gated publish-revocations, docs/central.md)"
        )
        if severity == FAIL
        else "expected before the gate's first start: it admits without one until the central side publishes a list"
    )
    if not db_path.exists():
        return Finding(WARN, "revocations", f"no list yet (no state database): {first}")
    from gated.gate.store import StoreError

    try:
        rev = _summary(db_path).revocations
    except StoreError as exc:
        return Finding(FAIL, "revocations", f"{db_path}: unreadable ({exc})")
    version, applied_ms, iat = rev.version, rev.applied_ms, rev.iat
    if version == 0:
        return Finding(WARN, "revocations", f"no list received yet: {first}")
    age = time.time() - (iat or applied_ms / 1000)
    text = f"v{version}, issued {_age(age)} ago (limit {_age(cfg.revocations.max_age_s)})"
    if rev.stale:
        return Finding(severity, "revocations", text + f"; a gap was seen, waiting for a snapshot: {consequence}")
    if age > cfg.revocations.max_age_s:
        return Finding(severity, "revocations", text + f": stale, {consequence}")
    return Finding(OK, "revocations", text)


def check_disk(cfg, timeout) -> Finding:
    where = next((p for p in (cfg.gate.state_dir, *cfg.gate.state_dir.parents) if p.exists()), Path("/"))
    usage = shutil.disk_usage(where)
    text = f"{where}: {usage.free / 2**20:.0f} MiB free of {usage.total / 2**20:.0f} MiB"
    if usage.free < MIN_FREE_BYTES:
        return Finding(FAIL, "disk", text + ": too little for the outbox and the database journal")
    if usage.free < LOW_FREE_BYTES:
        return Finding(WARN, "disk", text + ": getting low")
    return Finding(OK, "disk", text)


def check_clock(cfg, timeout) -> Finding:
    now = time.time()
    text = _iso(now)
    if now < EARLIEST_PLAUSIBLE:
        return Finding(
            FAIL,
            "clock",
            f"{text}: before 2026, the clock was never set (no RTC, no NTP, no beacon yet); "
            f"every ticket would be not_yet_valid",
        )
    from gated.gate.clock import system_ntp_synchronized

    ntp_ignored = cfg.clock.ntp == "ignore" and not cfg.clock.trust_system_clock
    synced = cfg.clock.trust_system_clock or (not ntp_ignored and system_ntp_synchronized())
    db_path = cfg.gate.database
    if db_path.exists():
        from gated.gate.store import StoreError

        try:
            state = _summary(db_path)
        except StoreError:
            state = None
        iat = state.revocations.iat if state is not None else 0
        if iat and now + cfg.clock.skew_s < iat:
            return Finding(
                FAIL,
                "clock",
                f"{text}: earlier than the revocation list's issue time ({_iso(iat)}); the clock is behind",
            )
        trust = _clock_trust(cfg, state.value if state is not None else (lambda key: None), now)
        if trust is not None:
            return Finding(trust[0], "clock", f"{text}: {trust[1]}")
    if not synced:
        why = 'NTP ignored by configuration ([clock] ntp = "ignore")' if ntp_ignored else "not NTP-synchronised"
        if cfg.clock.beacons:
            return Finding(
                WARN,
                "clock",
                f"{text}: {why}; the gate relies on time beacons "
                f"(until one arrives, time checks {cfg.clock.when_uncertain})",
            )
        return Finding(FAIL, "clock", f"{text}: {why} and beacons are off: every time check denies")
    return Finding(
        OK,
        "clock",
        f"{text}: " + ("NTP-synchronised" if not cfg.clock.trust_system_clock else "trusted by configuration"),
    )


def _clock_trust(cfg, stored, now: float) -> tuple[str, str] | None:
    """What the gate persisted about its clock against this machine's clock (gated.gate.clock.diagnose_trust),
    as a finding: a trusted time ahead of it (the gate would judge every ticket in the future), a refused
    beacon, a beacon bound (same boot) that disagrees with the system time. None when all agree."""
    from gated.gate import clock

    found = clock.diagnose_trust(stored, now=now, max_offset_s=cfg.clock.max_offset_s)
    if found is None:
        return None
    if found.kind == "ahead":
        return FAIL, (
            f"the gate's persisted trusted time {_iso(found.trusted_s)} is {_age(found.trusted_s - now)} "
            f"ahead of this clock: it judges every ticket then; if that time is wrong, stop the gate "
            f"and run `gated clock reset --config ...`"
        )
    if found.kind == "refused":
        seen = f" at {_iso(found.seen_s)}" if found.seen_s is not None else ""
        ahead = _age(found.beacon_s - found.reference_s)
        return WARN, (
            f"beacon time and {found.source} time disagree: a beacon {ahead} "
            f"ahead ({_iso(found.beacon_s)}) was refused{seen}; check the central clock and NTP "
            f"(`gated clock reset` clears this)"
        )
    return WARN, (
        f"beacon time and system time disagree by {found.offset_s:+.0f} s "
        f"(limit {cfg.clock.max_offset_s:g} s); the gate is uncertain while they do: check NTP and the "
        f"central clock"
    )


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def gate_running(cfg) -> bool:
    """`gated run` holds its state directory's lock (gated/lockfile.py)."""
    from gated.lockfile import RoleTaken, hold, release

    lock = Path(cfg.gate.database).parent / "gated.lock"
    if not lock.exists():
        return False
    try:
        release(hold(lock, "gated run"))
    except RoleTaken:
        return True
    except OSError:
        return False
    return False


def check_broker(cfg, timeout) -> Finding:
    """TCP, TLS (each side's verdict), the certificate's CN against the gate id, then a test publish and
    subscribe with the gate's own identity on its `doctor` topic (docs/protocol.md, "Site broker")."""
    from gated.brokerdiag import certificate_cn, probe
    from gated.gate.build import uplink_settings
    from gated.mqtturl import BrokerUrlError

    try:
        settings = uplink_settings(cfg)
    except OSError as exc:  # the password file: the only file read here
        path = cfg.mqtt.password_file
        fix = (
            f"create it: install -m 0640 -o root -g gated /dev/stdin {path} <<< 'the-password'"
            if isinstance(exc, FileNotFoundError)
            else "check its owner and mode (root:gated 0640)"
        )
        return Finding(FAIL, "broker", f"password file {path}: {exc.strerror}; {fix}")
    except BrokerUrlError as exc:
        return Finding(FAIL, "broker", str(exc))
    where = settings.url
    cause = probe(settings, timeout)
    if cause:
        return Finding(FAIL, "broker", f"{where}: {cause}")
    if settings.cert_file:
        cn = certificate_cn(settings.cert_file)
        if cn != cfg.gate.id:
            return Finding(
                FAIL,
                "broker",
                f"{where}: certificate CN {cn} ≠ [gate] id {cfg.gate.id}: the broker "
                f"knows this gate as {cn}, and would refuse its events (not authorised)",
            )
    if settings.cert_file and gate_running(cfg):
        # the broker takes the certificate's CN (the gate id) as the client id: logging in with it would
        # knock the running gate off the broker and take its session (issue #22)
        return Finding(
            OK,
            "broker",
            f"{where}: TCP and TLS work, certificate CN {cfg.gate.id}; login not tried: "
            f"`gated run` for {cfg.gate.id} is running with this certificate (a second login would take "
            "over its session): see its status, `gated status`",
        )
    return _publish_and_subscribe(cfg, settings, timeout)


def _publish_and_subscribe(cfg, settings, timeout) -> Finding:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from gated.brokerdiag import NOT_AUTHORISED_HINT, reason_words
    from gated.topics import gate_topic

    where, topic = settings.url, gate_topic(cfg.gate.site, cfg.gate.id, "doctor")
    answer: dict = {}
    # The shipped broker makes the certificate's CN the client id (use_username_as_clientid): this may be
    # the gate's own session. So: resume it (never clean it), ack nothing it holds for the gate (the gate
    # gets it again), and leave no subscription of ours in it.
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"gated-doctor-{cfg.gate.site}-{cfg.gate.id}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    client.on_connect = lambda c, u, flags, reason, props: answer.setdefault("connect", reason)
    client.on_subscribe = lambda c, u, mid, codes, props: answer.setdefault("subscribe", codes[0])
    client.on_publish = lambda c, u, mid, reason, props: answer.setdefault("publish", reason)
    client.on_message = lambda c, u, m: answer.setdefault("echo", m.payload) if m.topic == topic else None
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry_s
    deadline = time.monotonic() + timeout

    def wait_for(key):
        while key not in answer and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        return answer.get(key)

    identity = (
        "its certificate"
        if settings.cert_file
        else (f"user {settings.username}" if settings.username else "no user name")
    )
    try:
        client.connect(settings.host, settings.port, keepalive=10, clean_start=False, properties=props)
        reason = wait_for("connect")
        if reason is None:
            return Finding(FAIL, "broker", f"{where}: no answer to CONNECT within {timeout:g} s")
        if reason.is_failure:
            hint = f" ({NOT_AUTHORISED_HINT})" if reason.value in (134, 135) else ""
            return Finding(FAIL, "broker", f"{where}: connection refused: {reason_words(reason)}{hint}")
        client.subscribe(topic, qos=1)
        granted = wait_for("subscribe")
        if granted is None or granted.is_failure:
            why = reason_words(granted) if granted is not None else f"no answer within {timeout:g} s"
            return Finding(
                FAIL,
                "broker",
                f"{where}: subscribing to {topic} as gate {cfg.gate.id} ({identity}): {why}; {NOT_AUTHORISED_HINT}",
            )
        client.publish(topic, b"doctor", qos=1)
        published = wait_for("publish")
        if published is None or published.is_failure:
            why = reason_words(published) if published is not None else f"no answer within {timeout:g} s"
            return Finding(
                FAIL,
                "broker",
                f"{where}: test publish on {topic} as gate {cfg.gate.id} ({identity}): {why}; "
                f"the gate's events would be refused the same way; {NOT_AUTHORISED_HINT}",
            )
        if wait_for("echo") is None:
            return Finding(
                FAIL,
                "broker",
                f"{where}: the test message on {topic} did not come back within "
                f"{timeout:g} s (the broker's read rules?)",
            )
        client.unsubscribe(topic)
        client.loop(timeout=0.2)
    except (OSError, ValueError) as exc:
        from gated.brokerdiag import explain_oserror

        return Finding(FAIL, "broker", f"{where}: {explain_oserror(exc) if isinstance(exc, OSError) else exc}")
    finally:
        client.disconnect()
    return Finding(
        OK,
        "broker",
        f"{where}: connected as gate {cfg.gate.id} ({identity}); test publish and subscribe on {topic} work",
    )


def check_decoder(cfg, timeout) -> Finding:
    from gated.gate.build import make_scanner
    from gated.gate.rehearsal.synthetic import clean_ticket_frame

    text = "GT1:DOCTOR-TEST-1234"
    found = make_scanner(cfg).decode(clean_ticket_frame(text, 640, 480))
    if text not in found:
        return Finding(FAIL, "decoder", f"{cfg.scanner.backend}: did not read a clean test QR code (got {found})")
    return Finding(OK, "decoder", f"{cfg.scanner.backend}: reads QR codes")


def check_camera(cfg, timeout) -> Finding:
    from gated.gate.build import open_camera
    from gated.gate.camera import CameraError

    where = cfg.camera.source
    try:
        camera = open_camera(cfg)
    except (CameraError, OSError) as exc:
        return Finding(FAIL, "camera", f"{where}: cannot open: {exc}")
    frames, started, shape = 0, time.monotonic(), None
    try:
        deadline = started + timeout
        while frames < 10 and time.monotonic() < deadline:
            frame = camera.read(timeout=max(0.01, deadline - time.monotonic()))
            if frame is None:
                if camera.finished:
                    break
                continue
            frames += 1
            shape = frame.gray.shape
    except (CameraError, OSError) as exc:
        return Finding(FAIL, "camera", f"{where}: failed while reading ({exc})")
    finally:
        camera.close()
    elapsed = time.monotonic() - started
    if frames == 0:
        return Finding(FAIL, "camera", f"{where}: opened, but no frame within {timeout:g} s")
    height, width = shape[:2]
    return Finding(OK, "camera", f"{where}: {frames} frames of {width}x{height} in {elapsed:.2f} s")


def check_gpio(cfg, timeout) -> Finding:
    from gpiozero.exc import BadPinFactory, GPIOZeroError

    from gated.gate.boards import BoardError
    from gated.gate.build import StartupError, load_board, make_pin_factory
    from gated.gate.turnstile import Turnstile

    try:
        board = load_board(cfg)
    except BoardError as exc:
        return Finding(FAIL, "gpio", str(exc).replace("\n", ";"))
    try:
        factory = make_pin_factory(cfg)
        turnstile = Turnstile(board, pin_factory=factory)
    except (BadPinFactory, ImportError) as exc:
        return Finding(
            FAIL,
            "gpio",
            f"no GPIO on this machine (not a Raspberry Pi, or lgpio missing: "
            f"apt-get install python3-lgpio); on a bench without pins set "
            f'[turnstile] pin_factory = "mock" ({type(exc).__name__})',
        )
    except (StartupError, GPIOZeroError, OSError, RuntimeError) as exc:
        return Finding(
            FAIL,
            "gpio",
            f"board {board.name}: pins not claimable ({type(exc).__name__}: {exc}); "
            f"is gated (or another program) running, is this user in group gpio?",
        )
    try:
        pins = [
            str(getattr(turnstile, name).pin)
            for name in ("relay", "passage", "passage_out", "emergency", "door", "green", "red", "buzzer")
            if getattr(turnstile, name) is not None
        ]
        kind = type(turnstile.relay.pin_factory).__name__
    finally:
        turnstile.close()
    return Finding(
        OK, "gpio", f"board {board.name}: {len(pins)} pins claimed and released ({', '.join(pins)}) via {kind}"
    )


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"


CHECKS = (
    ("keyring", check_keyring),
    ("state", check_state),
    ("revocations", check_revocations),
    ("disk", check_disk),
    ("clock", check_clock),
    ("decoder", check_decoder),
    ("camera", check_camera),
    ("gpio", check_gpio),
    ("broker", check_broker),
)
