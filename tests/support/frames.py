"""Frames for camera and scanner tests: the real-photo data set, rendered ticket frames, videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gated.core.ticket import qr_symbol
from gated.gate.rehearsal.synthetic import render_idle_frame, render_ticket_frame

DATASET = Path(__file__).resolve().parents[1] / "data/qr-blackbox"  # ZXing's images, Apache-2.0 (NOTICE there)
# The ZXing Java decoder's own bar per folder and rotation (dataset README).
ZXING_BAR = {
    "qrcode-1": {0: 17, 90: 14, 180: 17, 270: 14},
    "qrcode-2": {0: 32, 90: 30, 180: 31, 270: 31},
    "qrcode-3": {0: 38, 90: 39, 180: 36, 270: 39},
    "qrcode-4": {0: 36, 90: 35, 180: 35, 270: 35},
}
# Images whose .txt disagrees with what two independent decoders (ZXing-cpp with the GlobalHistogram
# binarizer, and ZBar on the smoothed photo) both read, byte for byte. QR's Reed-Solomon code makes
# two decoders agreeing on one wrong text implausible, so the label is taken to be the error: such
# a reading counts neither as decoded nor as a misread. The reading itself is pinned by a test.
LABEL_DISPUTES = {
    "qrcode-2/13.png": "The 2005 USGS aerial photography of the Washington Monument is censored.",
}
ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
# Distortions both decoders can be expected to handle (a steady, reasonably lit ticket).
MILD = dict(scale=0.55, tilt=0.08, blur=0.6, motion=0.0, noise=3.0, glare=0.0, gradient=0.2, contrast=0.9)


@dataclass(frozen=True)
class Photo:
    path: Path
    expected: str  # exact, "\r\n" kept

    @property
    def disputed(self) -> str | None:
        """What the image really encodes, if its label is known to be wrong (LABEL_DISPUTES)."""
        return LABEL_DISPUTES.get(f"{self.path.parent.name}/{self.path.name}")

    def misread(self, texts: list[str]) -> bool:
        return bool(texts) and self.expected not in texts and self.disputed not in texts

    def gray(self, rotation: int = 0) -> np.ndarray:
        image = cv2.imread(str(self.path), cv2.IMREAD_GRAYSCALE)
        return image if ROTATIONS[rotation] is None else cv2.rotate(image, ROTATIONS[rotation])


def dataset_dir() -> Path:
    assert DATASET.is_dir(), f"real-photo data set missing at {DATASET}: it is part of the repository"
    return DATASET


def photos(folder: str) -> list[Photo]:
    """The folder's images with their expected texts (bytes decoded as UTF-8, so CRLF stays CRLF)."""
    root = dataset_dir() / folder
    return [
        Photo(png, png.with_suffix(".txt").read_bytes().decode("utf-8"))
        for png in sorted(root.glob("*.png"), key=lambda p: int(p.stem))
    ]


def ticket_frames(texts, *, size=(1280, 720), seed=1, **distortions) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_ticket_frame(text, size, rng, **distortions) for text in texts]


def idle_frames(count: int, *, size=(1280, 720), seed=2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_idle_frame(size, rng) for _ in range(count)]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MJPG .avi of grayscale frames (OpenCV's built-in encoder: no codec packages needed)."""
    height, width = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height), isColor=True)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for gray in frames:
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def render_card(directory: Path, name: str, text: str | None) -> Path:
    """One camera image for a file-source gate: the ticket's QR code as the issuer renders it, or a
    blank card (text None)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    if text is None:
        qr_symbol("BLANK").save(path, scale=1, border=200, dark="#fff", light="#fff")  # a plain white frame
    else:
        qr_symbol(text).save(path, scale=6, border=8)
    return path
