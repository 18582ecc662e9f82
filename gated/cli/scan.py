"""`gated scan`: decode QR codes in image files, directories and videos, or from a live camera;
with the `gated verify` gate options, judge each code as the gate would.

Exit codes: 0 when at least one code was read (and, with gate options, every code admitted);
1 when no code was read or a code was denied; 2 for a usage error or a fault.
"""

from __future__ import annotations

import json
import sys
import time

from gated.cli.main import CommandError
from gated.cli.options import number
from gated.cli.verify import GateSetup, add_gate_options


def register(sub) -> None:
    p = sub.add_parser("scan", help="decode QR codes in images, videos or a live camera (optionally judge them)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image file, directory of images/videos, or video file")
    p.add_argument(
        "--camera",
        metavar="DEVICE",
        help="read a live camera instead: /dev/video0, a /dev/v4l/by-id path, or a spec "
        "(v4l2:..., picamera2:0, files:..., synthetic:)",
    )
    p.add_argument("--backend", choices=("zxing", "pyzbar"), default="zxing", help="decoder (default zxing)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--hold-off",
        type=number(zero=True),
        default=2.0,
        metavar="S",
        help="--camera: the same code is reported at most once per S seconds (default 2)",
    )
    p.add_argument("--frames", type=int, default=None, metavar="N", help="--camera: stop after N frames")
    p.add_argument(
        "--record",
        action="store_true",
        help="with gate options: record admissions in --state (a code seen again is already_used)",
    )
    add_gate_options(p, event_required=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from gated.gate.scanner import Scanner, ScannerError

    if bool(args.paths) == bool(args.camera):
        raise CommandError("give image/video PATHs or --camera DEVICE (one of the two)")
    if args.keyring and not args.event:
        raise CommandError("--keyring needs --event (the event(s) this gate admits for)")
    if args.event and not args.keyring:
        raise CommandError("--event needs --keyring (the trusted public keys)")
    try:
        scanner = Scanner(args.backend)
    except ScannerError as exc:
        raise CommandError(str(exc)) from exc
    judge = _Judge(args) if args.keyring else None
    try:
        if args.camera:  # a live camera: read across frames, as the daemon does (gated/gate/tracker.py)
            from gated.gate.tracker import Tracker

            return _scan_camera(args, Tracker(scanner) if scanner.backend == "zxing" else scanner, judge)
        return _scan_paths(args, scanner, judge)
    finally:
        if judge is not None:
            judge.close()


class _Judge:
    """The gate options turned into decisions for scanned texts."""

    def __init__(self, args):
        self.setup = GateSetup(args)
        self.record = args.record
        self.denied = 0

    def decide(self, text: str, now: float | None = None) -> dict:
        from gated.gate.validate import describe, record, scan_fields, validate

        setup = self.setup
        when = setup.now if now is None else now
        decision = validate(text, setup.keyring, setup.context, setup.store, when)
        if self.record and decision.admit:
            rev = setup.store.revocation_state().version
            record(setup.store, decision, scan_fields(decision, setup.context, rev), int(when * 1000))
        if not decision.admit:
            self.denied += 1
        claims = decision.ticket.claims if decision.ticket else None
        return {
            "decision": decision.word,
            "reason": decision.reason.value,
            "ticket": decision.cti.hex() if decision.cti else None,
            "event": claims.aud if claims else None,
            "type": claims.typ if claims else None,
            "seat": claims.seat if claims else None,
            "text": describe(decision),
        }

    def close(self) -> None:
        self.setup.close()


def _scan_paths(args, scanner, judge) -> int:
    from gated.gate.camera import CameraError, FileSource

    found = 0
    for path in args.paths:
        source = FileSource(path)
        try:
            source.open()
            while (frame := source.read(timeout=None)) is not None:
                started = time.perf_counter()
                codes = scanner.decode(frame.gray)
                ms = (time.perf_counter() - started) * 1000
                found += len(codes)
                _print_result(args, {"file": frame.origin, "codes": codes, "ms": round(ms, 3)}, codes, judge)
        except CameraError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            source.close()
    return 0 if found and not (judge and judge.denied) else 1


def _print_result(args, record: dict, codes: list[str], judge, now: float | None = None) -> None:
    """One JSON line per image/frame (decisions added with gate options), or one text line per code."""
    decisions = [judge.decide(code, now) for code in codes] if judge else None
    if args.json:
        if decisions is not None:
            record["decisions"] = [{k: v for k, v in d.items() if k != "text"} for d in decisions]
        print(json.dumps(record, ensure_ascii=False), flush=True)
        return
    label = record["file"] if "file" in record else time.strftime("%H:%M:%S")
    if not codes:
        print(f"{label}: no code", flush=True)
    for i, code in enumerate(codes):
        print(f"{label}: {code}" + (f"\n    {decisions[i]['text']}" if decisions else ""), flush=True)


def _scan_camera(args, scanner, judge) -> int:
    from gated.gate.camera import CameraError, SupervisedSource, open_source
    from gated.gate.scanner import Debouncer

    spec = f"v4l2:{args.camera}" if args.camera.startswith("/") or args.camera.isdigit() else args.camera
    try:
        source = SupervisedSource(open_source(spec), report=lambda msg: print(msg, file=sys.stderr, flush=True))
        source.open()
    except CameraError as exc:
        raise CommandError(str(exc)) from exc
    debouncer = Debouncer(args.hold_off)
    frames = found = 0
    if not args.json:
        print(f"scanning {source.name} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while args.frames is None or frames < args.frames:
            frame = source.read(timeout=1.0)
            if frame is None:
                if source.finished:
                    break
                continue
            frames += 1
            started = time.perf_counter()
            codes = debouncer.feed(scanner.decode(frame.gray), frame.captured_at)
            ms = (time.perf_counter() - started) * 1000
            scanner.judged_in_view(debouncer.holding_off())  # as the gate's scan loop does
            if codes:
                found += len(codes)
                now = time.time() if judge and args.now is None and args.at is None else None
                record = {"seq": frame.seq, "frame": frame.origin, "codes": codes, "ms": round(ms, 3)}
                _print_result(args, record, codes, judge, now)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return 0 if found and not (judge and judge.denied) else 1
