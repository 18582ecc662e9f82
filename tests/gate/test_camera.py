"""Frame sources: files (images, directories, a video), synthetic, live-camera plumbing, supervision,
and `gated scan` over them."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from gated.cli import main
from gated.gate import camera
from gated.gate.camera import CameraError, FileSource, SupervisedSource, open_source
from gated.gate.rehearsal.camera import SyntheticSource
from gated.gate.scanner import Debouncer, Scanner
from tests.support.frames import MILD, idle_frames, ticket_frames, write_video


@pytest.fixture
def clip(tmp_path, authority):
    """A video: 3 idle frames, 4 frames of ticket A, 2 idle, 3 of ticket B."""
    a, b = authority.ticket(), authority.ticket()
    frames = idle_frames(3, size=(640, 480)) + ticket_frames([a] * 4, size=(640, 480), **MILD)
    frames += idle_frames(2, size=(640, 480), seed=5) + ticket_frames([b] * 3, size=(640, 480), seed=7, **MILD)
    return write_video(tmp_path / "gate.avi", frames), a, b, len(frames)


def read_all(source, limit=1000):
    frames = []
    while len(frames) < limit and (frame := source.read(timeout=0.5)) is not None:
        frames.append(frame)
    return frames


def test_files_source_plays_a_video_frame_by_frame_and_ends(clip):
    path, a, b, count = clip
    source = open_source(f"files:{path}")
    source.open()
    frames = read_all(source)
    assert source.finished and source.read() is None
    assert [f.seq for f in frames] == list(range(1, count + 1))
    assert frames[0].gray.shape == (480, 640) and frames[0].gray.dtype == np.uint8
    assert frames[4].origin == f"{path}#5"
    scanner = Scanner()
    assert [scanner.decode(f.gray) for f in frames] == [[]] * 3 + [[a]] * 4 + [[]] * 2 + [[b]] * 3


def test_looping_files_source_starts_again(clip):
    path, _, _, count = clip
    source = FileSource(path, loop=True)
    source.open()
    frames = read_all(source, limit=count + 3)
    assert not source.finished
    assert [f.origin for f in frames[count:]] == [f"{path}#{i}" for i in (1, 2, 3)]


def test_files_source_reads_a_directory_in_name_order_and_a_single_image(tmp_path, authority):
    text = authority.ticket()
    (frame,) = ticket_frames([text], size=(640, 480), **MILD)
    cv2.imwrite(str(tmp_path / "b.png"), frame)
    cv2.imwrite(str(tmp_path / "a.jpg"), idle_frames(1, size=(640, 480))[0])
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(f"files:{tmp_path}")
    source.open()
    assert [f.origin for f in read_all(source)] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    single = open_source(f"files:{tmp_path / 'b.png'}")
    single.open()
    assert Scanner().decode(single.read().gray) == [text]


def test_files_source_says_what_is_wrong(tmp_path):
    with pytest.raises(CameraError, match="no such file"):
        FileSource(tmp_path / "missing").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images or videos"):
        FileSource(tmp_path / "empty").open()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = FileSource(tmp_path / "broken.png")
    source.open()
    with pytest.raises(CameraError, match="cannot read image"):
        source.read()


def test_open_source_specs_and_options(tmp_path):
    files = open_source(f"files:{tmp_path}?loop=1&fps=12.5")
    assert isinstance(files, FileSource) and files.loop and files.fps == 12.5
    assert open_source("files:/x", loop=True).loop
    assert isinstance(open_source("v4l2:/dev/video0"), camera.V4L2Source)
    assert open_source("v4l2:2").device == 2
    assert isinstance(open_source("picamera2:0"), camera.Picamera2Source)
    # libcamera's short auto-exposure mode unless asked otherwise: less smear on a moving phone
    assert open_source("picamera2:0").controls == {"AeExposureMode": 1}
    assert open_source("picamera2:1?exposure=normal").controls == {"AeExposureMode": 0}
    synth = open_source("synthetic:?width=320&height=240&fps=0&blur=0")
    assert isinstance(synth, SyntheticSource) and synth.size == (320, 240) and synth.fps is None
    for bad, why in (
        ("webcam:0", "unknown kind"),
        ("/dev/video0", "KIND:WHAT"),
        ("v4l2:", "needs a device"),
        ("picamera2:0?exposure=fast", "exposure 'fast': choose one of short, normal"),
        ("synthetic:?wobble=3", "unknown distortion"),
        ("files:/x?colour=1", "colour"),
    ):
        with pytest.raises((CameraError, TypeError), match=why):
            open_source(bad)


def test_v4l2_source_that_cannot_open_says_what_to_check():
    source = camera.V4L2Source("/dev/video-gated-test-missing")
    with pytest.raises(CameraError, match="plugged in"):
        source.open()


def test_picamera2_source_without_picamera2_says_how_to_get_it():
    # picamera2 exists only on a Raspberry Pi; here its absence is the behaviour under test
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="system-site-packages"):
            camera.Picamera2Source(0).open()
    else:
        pytest.skip("picamera2 is installed: this machine has the real thing")


def test_synthetic_source_shows_what_the_simulator_puts_in_view(authority):
    text = authority.ticket()
    source = SyntheticSource(width=640, height=480, fps=None, seed=1, **MILD)
    source.open()
    scanner = Scanner()
    assert scanner.decode(source.read().gray) == []
    source.show(text)
    assert scanner.decode(source.read().gray) == [text]
    source.show(None)
    assert scanner.decode(source.read().gray) == []


def test_synthetic_source_is_paced_and_can_be_driven_from_another_thread(authority):
    text = authority.ticket()
    source = SyntheticSource(width=320, height=240, fps=20, seed=2, **{**MILD, "scale": 0.8})
    source.open()
    shower = threading.Timer(0.15, source.show, args=(text,))
    shower.start()
    started = time.monotonic()
    frames = [source.read() for _ in range(8)]
    shower.join()
    assert time.monotonic() - started >= 7 / 20 * 0.9
    seen = [Scanner().decode(f.gray) for f in frames]
    assert seen[0] == [] and seen[-1] == [text]


def test_supervision_notices_a_stalled_camera_reopens_it_and_says_so():
    inner = SyntheticSource(width=160, height=120, fps=None, seed=3)
    messages = []
    source = SupervisedSource(inner, stall_after_s=0.2, report=messages.append)
    source.open()
    assert source.read() is not None
    inner.stall()
    deadline = time.monotonic() + 5
    while source.reopens == 0 and time.monotonic() < deadline:
        assert source.read(timeout=0.05) is None
    assert source.reopens == 1
    assert source.read() is not None
    assert "no frame for" in messages[0] and "reopening" in messages[0]
    assert messages[1].endswith("frames again")


def test_supervision_leaves_a_finished_file_source_alone(clip):
    path, *_ = clip
    messages = []
    source = SupervisedSource(FileSource(path), stall_after_s=0.0, report=messages.append)
    source.open()
    read_all(source)
    assert source.finished and source.read() is None and messages == [] and source.reopens == 0


class CountingCamera(camera._LiveSource):
    """A live source whose 'device' makes numbered frames as fast as it can (or fails on demand)."""

    name = "counting"

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.fail_after = fail_after
        self.grabs = 0

    def _start(self):
        self.grabs = 0

    def _grab(self):
        self.grabs += 1
        if self.fail_after is not None and self.grabs > self.fail_after:
            return None
        time.sleep(0.002)
        return camera.as_gray(self.image(np.full((4, 4), self.grabs % 256, dtype=np.uint8)))

    def image(self, gray):
        """The device's frame, as a driver hands it over (grey here)."""
        return gray

    def _stop_device(self):
        pass


def test_live_source_hands_out_only_the_newest_frame_never_one_twice():
    source = CountingCamera()
    source.open()
    try:
        first = source.read(timeout=1.0)
        time.sleep(0.1)  # a slow decode: ~50 frames arrive meanwhile
        second = source.read(timeout=1.0)
        assert second.seq > first.seq + 5  # the backlog was dropped, not queued
        third = source.read(timeout=1.0)
        assert third.seq > second.seq
        assert source.frame_age() < 0.5
    finally:
        source.close()


def test_live_source_that_stops_delivering_ages_and_is_reopened():
    inner = CountingCamera(fail_after=3)
    messages = []
    source = SupervisedSource(inner, stall_after_s=0.3, report=messages.append)
    source.open()
    try:
        got = [f for f in (source.read(timeout=0.2) for _ in range(4)) if f is not None]
        assert 1 <= len(got) <= 3  # three good grabs, then the device fails
        deadline = time.monotonic() + 5
        while source.reopens == 0 and time.monotonic() < deadline:
            source.read(timeout=0.1)
        assert source.reopens >= 1 and "reopening" in messages[0]
        assert inner.error is None or inner.error == "the camera stopped delivering frames"
        assert source.read(timeout=1.0) is not None  # the reopened device delivers again
    finally:
        source.close()


class FloatCamera(CountingCamera):
    """A device whose driver hands over colour frames of floats: no frame the scanner reads."""

    def image(self, gray):
        return np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)


def test_a_camera_whose_frames_are_no_images_stops_and_supervision_says_why():
    messages = []
    inner = FloatCamera()
    source = SupervisedSource(inner, stall_after_s=0.3, report=messages.append)
    source.open()
    try:
        deadline = time.monotonic() + 5
        while source.reopens == 0 and time.monotonic() < deadline:
            assert source.read(timeout=0.1) is None  # nothing handed on: the reader thread refused it
        assert source.reopens >= 1
        assert (
            "its frames are not images the scanner reads: expected a grayscale uint8 frame, got float32 (4, 4, 3)"
            in (messages[0])
        )
        assert inner.grabs >= 1  # the device was read, and the thread ended on its first frame
    finally:
        source.close()


class BrokenCamera(CountingCamera):
    """A device whose driver raises on its second frame (a USB camera pulled out mid-read)."""

    def image(self, gray):
        if self.grabs >= 2:
            raise OSError(19, "No such device")
        return gray


def test_a_camera_whose_driver_raises_stops_and_supervision_says_why():
    messages = []
    source = SupervisedSource(BrokenCamera(), stall_after_s=0.3, report=messages.append)
    source.open()
    try:
        deadline = time.monotonic() + 5
        while source.reopens == 0 and time.monotonic() < deadline:
            source.read(timeout=0.1)
        assert source.reopens >= 1
        assert "(the camera failed: OSError: [Errno 19] No such device)" in messages[0]
    finally:
        source.close()


def test_gated_scan_json_on_a_folder_of_camera_frames(tmp_path, authority, capsys):
    a, b = authority.ticket(), authority.ticket()
    for i, frame in enumerate(ticket_frames([a, b], **MILD) + idle_frames(1)):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), frame)
    assert main(["scan", "--json", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["file"], line["codes"]) for line in lines] == [
        (str(tmp_path / "frame0.png"), [a]),
        (str(tmp_path / "frame1.png"), [b]),
        (str(tmp_path / "frame2.png"), []),
    ]
    assert all(isinstance(line["ms"], float) and line["ms"] >= 0 for line in lines)


def test_gated_scan_with_gate_options_adds_each_decision(tmp_path, authority, capsys):
    good, other_event = authority.ticket(seat="C-3"), authority.ticket(aud="OTHER-2026")
    for i, frame in enumerate(ticket_frames([good, other_event], **MILD)):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), frame)
    argv = ["scan", "--json", str(tmp_path), "--keyring", str(authority.keyring_dir), "--event", "FINAL-2026"]
    assert main(argv) == 1  # one code denied
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["codes"] == [good] and first["decisions"][0]["decision"] == "admit"
    assert first["decisions"][0]["seat"] == "C-3"
    assert second["codes"] == [other_event] and second["decisions"][0]["decision"] == "deny"
    assert second["decisions"][0]["reason"] == "wrong_event"


def test_gated_scan_camera_reports_each_code_once_per_hold_off(clip, capsys):
    path, a, b, _ = clip
    assert main(["scan", "--camera", f"files:{path}", "--json", "--hold-off", "60"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["codes"] for line in lines] == [[a], [b]]
    assert [line["seq"] for line in lines] == [4, 10]


def test_gated_scan_text_output_and_usage_errors(tmp_path, authority, capsys):
    text = authority.ticket()
    cv2.imwrite(str(tmp_path / "t.png"), ticket_frames([text], **MILD)[0])
    assert main(["scan", "--backend", "pyzbar", str(tmp_path / "t.png")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 't.png'}: {text}\n"
    assert main(["scan"]) == 2
    assert main(["scan", str(tmp_path), "--keyring", str(authority.keyring_dir)]) == 2
    assert "--event" in capsys.readouterr().err
    assert main(["scan", "--camera", "webcam:9"]) == 2


def test_debounced_stream_from_a_synthetic_camera(authority):
    text = authority.ticket()
    source = SyntheticSource(width=640, height=480, fps=None, seed=4, **MILD)
    source.open()
    source.show(text)
    debouncer, scanner, passed = Debouncer(hold_off_s=10), Scanner(), []
    for _ in range(5):
        frame = source.read()
        passed += debouncer.feed(scanner.decode(frame.gray), frame.captured_at)
    assert passed == [text]


def test_every_kind_of_the_table_opens_and_no_other():
    """gated.gate.frames.CAMERA_KINDS is the one list of kinds (the config checks specs with it):
    open_source has an opener for each kind and for nothing else."""
    from gated.gate import camera
    from gated.gate.frames import CAMERA_KINDS

    assert set(camera._OPENERS) == set(CAMERA_KINDS)  # noqa: SLF001
    with pytest.raises(CameraError, match=r"unknown kind 'webcam' \(v4l2, picamera2, files, synthetic\)"):
        open_source("webcam:0")


def test_picamera2_gives_a_camera_only_the_controls_it_advertises():
    """Picamera2 refuses to configure a camera with a control it does not advertise: a camera
    without AeExposureMode (a USB camera through libcamera) must start with its own exposure,
    not fail to start at all."""
    source = camera.open_source("picamera2:0")
    rpi_camera = {"AeExposureMode": (0, 3, 0), "ExposureTime": (1, 66666, None)}
    assert source.controls_for(rpi_camera) == {"AeExposureMode": 1}
    assert source.controls_for({"Brightness": (-1.0, 1.0, 0.0)}) == {}
